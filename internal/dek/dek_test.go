package dek

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
)

func TestCurrentSharesOneDEK(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{})
	k1, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil {
		t.Fatal(err)
	}
	if k1 != k2 {
		t.Fatal("two calls got different DEKs")
	}
	if n := f.generateCalls.Load(); n != 1 {
		t.Fatalf("%d GenerateDEK calls, want 1", n)
	}
	if s := m.Stats(); s.EncryptHits != 1 || s.EncryptMisses != 1 || s.DEKsGenerated != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCurrentSingleflight(t *testing.T) {
	f := newFakeKMS("kek-a")
	gate := make(chan struct{})
	f.setGate(gate, false)
	m, _ := newManager(t, f, Options{})

	const n = 50
	keys := make([]*Key, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := m.Current(t.Context(), ref("kek-a"))
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	eventually(t, "all callers to miss", func() bool { return m.Stats().EncryptMisses == n })
	close(gate)
	wg.Wait()
	for i := range keys {
		if keys[i] != keys[0] {
			t.Fatalf("caller %d got a different DEK", i)
		}
	}
	if c := f.generateCalls.Load(); c != 1 {
		t.Fatalf("%d GenerateDEK calls for %d concurrent misses, want 1", c, n)
	}
}

func TestRefreshIsAsynchronous(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{})
	k1, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil {
		t.Fatal(err)
	}

	gate := make(chan struct{})
	f.setGate(gate, false)
	clock.Advance(DefaultRefreshAfterWrite + time.Minute)
	// The KMS now hangs; the old DEK must keep serving without waiting.
	for range 10 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		k, err := m.Current(ctx, ref("kek-a"))
		cancel()
		if err != nil || k != k1 {
			t.Fatalf("during refresh: key %p err %v, want the old DEK", k, err)
		}
	}
	eventually(t, "the refresh to reach the KMS", func() bool { return f.generateCalls.Load() >= 2 })
	m.Current(t.Context(), ref("kek-a"))
	if c := f.generateCalls.Load(); c != 2 {
		t.Fatalf("%d GenerateDEK calls, want 2 (one refresh, not one per caller)", c)
	}
	close(gate)
	eventually(t, "the refreshed DEK", func() bool {
		k, err := m.Current(t.Context(), ref("kek-a"))
		return err == nil && k != k1
	})
	if s := m.Stats(); s.Refreshes != 1 || s.DEKsGenerated != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestFailedRefreshKeepsOldDEKUntilExpiry(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{})
	k1, _ := m.Current(t.Context(), ref("kek-a"))
	f.setFail(kms.ErrUnavailable)
	clock.Advance(DefaultRefreshAfterWrite + time.Minute)
	if k, err := m.Current(t.Context(), ref("kek-a")); k != k1 || err != nil {
		t.Fatalf("got %p %v, want the old DEK", k, err)
	}
	eventually(t, "the failed refresh", func() bool { return m.Stats().GenerateFailures == 1 })

	clock.Advance(DefaultExpireAfterWrite) // past expiry
	_, err := m.Current(t.Context(), ref("kek-a"))
	if !errors.Is(err, ErrUnavailable) || !Retriable(err) {
		t.Fatalf("after expiry with the KMS down: err = %v, want ErrUnavailable", err)
	}
}

func TestExpiredDEKIsNeverServed(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{})
	k1, _ := m.Current(t.Context(), ref("kek-a"))
	gate := make(chan struct{})
	f.setGate(gate, false)
	clock.Advance(DefaultExpireAfterWrite)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	k, err := m.Current(ctx, ref("kek-a"))
	if k != nil || !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired DEK: got %p, %v", k, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("waited %v past a 50 ms deadline", d)
	}
	close(gate)
	k2, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil || k2 == k1 {
		t.Fatalf("after the KMS recovers: %p %v", k2, err)
	}
}

func TestCapRotatesDEK(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{MaxEncryptionsPerDEK: 8})
	k1, _ := m.Current(t.Context(), ref("kek-a"))
	for i := range uint64(8) {
		n, err := k1.Next()
		if err != nil || n != i {
			t.Fatalf("Next #%d = %d, %v", i, n, err)
		}
	}
	if _, err := k1.Next(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Next past the cap: %v, want ErrExhausted", err)
	}
	if !k1.Exhausted() || k1.Used() != 8 {
		t.Fatalf("Exhausted %v Used %d", k1.Exhausted(), k1.Used())
	}
	k2, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil || k2 == k1 || bytes.Equal(k2.EDEK(), k1.EDEK()) {
		t.Fatalf("after exhaustion: %v, same key %v", err, k2 == k1)
	}
	if n, err := k2.Next(); n != 0 || err != nil {
		t.Fatalf("new DEK starts at %d, %v", n, err)
	}
}

func TestRefreshStartsBeforeCap(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{MaxEncryptionsPerDEK: 8})
	k1, _ := m.Current(t.Context(), ref("kek-a"))
	for range 7 {
		k1.Next()
	}
	if k, _ := m.Current(t.Context(), ref("kek-a")); k != k1 {
		t.Fatal("a DEK with counters left was not served")
	}
	eventually(t, "a background DEK at 7/8 of the cap", func() bool { return m.Stats().DEKsGenerated == 2 })
	if k, _ := m.Current(t.Context(), ref("kek-a")); k == k1 {
		t.Fatal("the new DEK is not active")
	}
}

func TestSlowKMSDoesNotStallOtherKEKs(t *testing.T) {
	f := newFakeKMS("kek-a", "kek-b")
	m, _ := newManager(t, f, Options{})
	if _, err := m.Current(t.Context(), ref("kek-b")); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	defer close(gate)
	f.setGate(gate, false)

	errA := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := m.Current(ctx, ref("kek-a"))
		errA <- err
	}()
	eventually(t, "kek-a to be in flight", func() bool { return f.generateCalls.Load() == 2 })
	start := time.Now()
	if _, err := m.Current(t.Context(), ref("kek-b")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("kek-b waited %v behind a hung kek-a", d)
	}
	select {
	case err := <-errA:
		if !Retriable(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("kek-a err = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("kek-a caller ignored its deadline")
	}
}

func TestKMSIgnoringContextIsAbandoned(t *testing.T) {
	f := newFakeKMS("kek-a")
	gate := make(chan struct{})
	f.setGate(gate, true)
	m, _ := newManager(t, f, Options{KMSTimeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := m.Current(context.Background(), ref("kek-a")) // no deadline of its own
	if !Retriable(err) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("waited %v, KMSTimeout is 50 ms", d)
	}
	close(gate) // the abandoned call now returns a key, which must be wiped
	eventually(t, "the late key to be wiped", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.handed) == 1 && allZero(f.handed[0])
	})
	f.setGate(nil, false)
	if _, err := m.Current(t.Context(), ref("kek-a")); err != nil {
		t.Fatalf("a new flight after the abandoned one: %v", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		name      string
		kek       string
		fail      error
		wantIs    error
		wantCalls int64
	}{
		// The caller resolved the KEK before asking for a DEK: a missing
		// KEK now means it was deleted, which must never read as "no KEK".
		{"KEK missing: not retried, unusable", "nope", nil, kms.ErrKeyUnusable, 1},
		{"KMS unavailable: retried", "kek-a", kms.ErrUnavailable, ErrUnavailable, DefaultKMSAttempts},
		{"KMS refuses: not retried, still no DEK", "kek-a", errors.New("access denied"), ErrUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeKMS("kek-a")
			f.setFail(tt.fail)
			m, _ := newManager(t, f, Options{})
			k, err := m.Current(t.Context(), ref(tt.kek))
			if k != nil || !errors.Is(err, tt.wantIs) {
				t.Fatalf("Current = %p, %v; want error %v", k, err, tt.wantIs)
			}
			if c := f.generateCalls.Load(); c != tt.wantCalls {
				t.Fatalf("%d calls, want %d", c, tt.wantCalls)
			}
		})
	}
}

func TestReusedDEKIsRefused(t *testing.T) {
	f := newFakeKMS("kek-a")
	f.sameKey = bytes.Repeat([]byte{7}, 32)
	m, _ := newManager(t, f, Options{MaxEncryptionsPerDEK: 1})
	k1, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil {
		t.Fatal(err)
	}
	k1.Next()
	if _, err := m.Current(t.Context(), ref("kek-a")); !errors.Is(err, ErrReusedDEK) {
		t.Fatalf("second identical DEK: err = %v, want ErrReusedDEK", err)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestRawKeysAreWiped(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{})
	k, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Decryptor(t.Context(), k.EDEK()); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.handed) != 2 {
		t.Fatalf("%d keys handed out, want 2", len(f.handed))
	}
	for i, raw := range f.handed {
		if !allZero(raw) {
			t.Fatalf("key %d handed out by the KMS was not wiped", i)
		}
	}
}

// Sealed with the encrypt side, opened with the decrypt side, through the
// record format: the two halves agree, and the decrypt side cannot seal.
func TestSealOpenThroughManager(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{})
	k, err := m.Current(t.Context(), ref("kek-a"))
	if err != nil {
		t.Fatal(err)
	}
	b := recordcrypt.Binding{Topic: "orders", Key: []byte("k")}
	sealed, err := recordcrypt.Seal(nil, k, b, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := recordcrypt.Parse(sealed)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := m.Decryptor(t.Context(), env.EDEK)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := recordcrypt.Open(nil, aead, env, b)
	if err != nil || string(plain) != "secret" {
		t.Fatalf("Open = %q, %v", plain, err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("sealing with a decrypt-side DEK did not panic")
		}
	}()
	aead.Seal(nil, make([]byte, 12), []byte("x"), nil)
}

func TestDecryptorSingleflightAndCache(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{})
	k, _ := m.Current(t.Context(), ref("kek-a"))
	gate := make(chan struct{})
	f.setGate(gate, false)

	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			edek := bytes.Clone(k.EDEK()) // each caller has its own buffer
			if _, err := m.Decryptor(t.Context(), edek); err != nil {
				t.Error(err)
			}
		}()
	}
	eventually(t, "all callers to miss", func() bool { return m.Stats().DecryptMisses == n })
	close(gate)
	wg.Wait()
	if c := f.decryptCalls.Load(); c != 1 {
		t.Fatalf("%d DecryptDEK calls for %d concurrent misses, want 1", c, n)
	}
	if _, err := m.Decryptor(t.Context(), k.EDEK()); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.DecryptHits != 1 || f.decryptCalls.Load() != 1 || s.DecryptCached != 1 {
		t.Fatalf("stats %+v, calls %d", s, f.decryptCalls.Load())
	}
}

// edeks makes n DEKs under kek-a and returns their EDEKs.
func edeks(t *testing.T, m *Manager, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for range n {
		k, err := m.Current(t.Context(), ref("kek-a"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k.EDEK())
		for !k.Exhausted() {
			k.Next()
		}
	}
	return out
}

func TestDecryptorLRUEviction(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{DecryptCacheSize: 2, MaxEncryptionsPerDEK: 1})
	e := edeks(t, m, 3)
	open := func(i int) {
		t.Helper()
		if _, err := m.Decryptor(t.Context(), e[i]); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	open(0)
	open(1)
	open(0) // 1 is now least recently used
	open(2) // evicts 1
	calls := f.decryptCalls.Load()
	open(0)
	open(2)
	if c := f.decryptCalls.Load(); c != calls {
		t.Fatalf("recently used DEKs were evicted (%d extra calls)", c-calls)
	}
	open(1)
	if c := f.decryptCalls.Load(); c != calls+1 {
		t.Fatalf("least recently used DEK was not evicted")
	}
	if s := m.Stats(); s.DecryptCached != 2 || s.DecryptEvictions != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestDecryptorTTLAfterAccess(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{DecryptCacheTTL: time.Minute})
	e := edeks(t, m, 1)[0]
	m.Decryptor(t.Context(), e)
	for range 5 { // kept alive by use
		clock.Advance(50 * time.Second)
		m.Decryptor(t.Context(), e)
	}
	if c := f.decryptCalls.Load(); c != 1 {
		t.Fatalf("%d calls, want 1 while in use", c)
	}
	clock.Advance(time.Minute)
	m.Sweep()
	if s := m.Stats(); s.DecryptCached != 0 || s.DecryptEvictions != 1 {
		t.Fatalf("after TTL and Sweep: %+v", s)
	}
	m.Decryptor(t.Context(), e)
	if c := f.decryptCalls.Load(); c != 2 {
		t.Fatalf("%d calls, want 2 after TTL", c)
	}
}

func TestDecryptorRemembersNotFound(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{})
	e := edeks(t, m, 1)[0]
	f.deleteKEK("kek-a")
	for range 3 {
		_, err := m.Decryptor(t.Context(), e)
		if !errors.Is(err, kms.ErrKeyNotFound) || Retriable(err) {
			t.Fatalf("err = %v, want kms.ErrKeyNotFound", err)
		}
	}
	if c := f.decryptCalls.Load(); c != 1 {
		t.Fatalf("%d DecryptDEK calls, want 1 (not found is remembered)", c)
	}
	clock.Advance(DefaultNotFoundTTL)
	m.Decryptor(t.Context(), e)
	if c := f.decryptCalls.Load(); c != 2 {
		t.Fatalf("%d DecryptDEK calls, want 2 after NotFoundTTL", c)
	}
}

func TestDecryptorDoesNotRememberOutages(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{KMSAttempts: 1})
	e := edeks(t, m, 1)[0]
	f.setFail(kms.ErrUnavailable)
	if _, err := m.Decryptor(t.Context(), e); !Retriable(err) {
		t.Fatalf("err = %v, want retriable", err)
	}
	f.setFail(nil)
	if _, err := m.Decryptor(t.Context(), e); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

func TestResolve(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{})
	r, err := m.Resolve(t.Context(), "kek-a")
	if err != nil || r != ref("kek-a") {
		t.Fatalf("Resolve = %+v, %v", r, err)
	}
	m.Resolve(t.Context(), "kek-a")
	if c := f.resolveCalls.Load(); c != 1 {
		t.Fatalf("%d calls, want 1 (cached)", c)
	}

	// After KEKRefreshAfter: served from cache, refreshed in the background.
	clock.Advance(DefaultKEKRefreshAfter)
	gate := make(chan struct{})
	f.setGate(gate, false)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	r, err = m.Resolve(ctx, "kek-a")
	cancel()
	if err != nil || r != ref("kek-a") {
		t.Fatalf("during refresh: %+v, %v", r, err)
	}
	close(gate)
	f.setGate(nil, false)
	eventually(t, "the background refresh", func() bool {
		m.resMu.RLock()
		defer m.resMu.RUnlock()
		return f.resolveCalls.Load() == 2 && m.res["kek-a"].flight == nil
	})

	// The KEK is deleted; once the entry expires the miss is seen and
	// remembered. It resolved before, so it is unusable, not "not found".
	f.deleteKEK("kek-a")
	clock.Advance(DefaultKEKExpireAfter)
	for range 3 {
		if _, err := m.Resolve(t.Context(), "kek-a"); !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("err = %v, want kms.ErrKeyUnusable only", err)
		}
	}
	if c := f.resolveCalls.Load(); c != 3 {
		t.Fatalf("%d calls, want 3 (not found remembered)", c)
	}
	clock.Advance(DefaultNotFoundTTL)
	m.Resolve(t.Context(), "kek-a")
	if c := f.resolveCalls.Load(); c != 4 {
		t.Fatalf("%d calls, want 4 after NotFoundTTL", c)
	}
}

func TestResolveCacheIsBounded(t *testing.T) {
	f := newFakeKMS()
	m, _ := newManager(t, f, Options{KEKCacheSize: 10})
	for i := range 100 {
		m.Resolve(t.Context(), string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	m.resMu.RLock()
	n := len(m.res)
	m.resMu.RUnlock()
	if n > 10 {
		t.Fatalf("%d names cached, bound is 10", n)
	}
}

func TestSweepDropsExpiredDEKs(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{})
	m.Current(t.Context(), ref("kek-a"))
	clock.Advance(DefaultExpireAfterWrite)
	m.Sweep()
	m.encMu.RLock()
	n := len(m.enc)
	m.encMu.RUnlock()
	if n != 0 {
		t.Fatalf("%d active entries after expiry and Sweep", n)
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"refresh not below expiry", Options{RefreshAfterWrite: 2 * time.Hour, ExpireAfterWrite: time.Hour}},
		{"cap above 2^32", Options{MaxEncryptionsPerDEK: MaxEncryptionsCeiling + 1}},
		{"negative TTL", Options{DecryptCacheTTL: -time.Second}},
		{"KEK refresh not below expiry", Options{KEKRefreshAfter: time.Hour}},
		{"negative size", Options{DecryptCacheSize: -1}},
	}
	for _, tt := range tests {
		if _, err := New(newFakeKMS(), tt.o); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	if _, err := New(newFakeKMS(), Options{}); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
}

func TestHooksSeeEveryAttempt(t *testing.T) {
	f := newFakeKMS("kek-a")
	f.setFail(kms.ErrUnavailable)
	var mu sync.Mutex
	var ops []Op
	m, _ := newManager(t, f, Options{Hooks: Hooks{OnKMSCall: func(op Op, d time.Duration, err error) {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}}})
	m.Current(t.Context(), ref("kek-a"))
	mu.Lock()
	defer mu.Unlock()
	if len(ops) != DefaultKMSAttempts || ops[0] != OpGenerateDEK {
		t.Fatalf("hook saw %v", ops)
	}
	if s := m.Stats(); s.KMSCalls != DefaultKMSAttempts || s.KMSErrors != DefaultKMSAttempts {
		t.Fatalf("stats = %+v", s)
	}
}

func BenchmarkCurrentHit(b *testing.B) {
	m, err := New(newFakeKMS("kek-a"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	kek := ref("kek-a")
	m.Current(ctx, kek)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Current(ctx, kek); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecryptorHit(b *testing.B) {
	m, err := New(newFakeKMS("kek-a"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	k, _ := m.Current(ctx, ref("kek-a"))
	edek := k.EDEK()
	m.Decryptor(ctx, edek)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Decryptor(ctx, edek); err != nil {
				b.Fatal(err)
			}
		}
	})
}

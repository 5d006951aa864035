package dek

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// A DEK in constant use used to live forever (its TTL slid with every
// hit), so a KEK deleted in the KMS never stopped an open consumer. Now the
// KMS is asked again before DecryptCacheMaxAge, without a fetch waiting,
// and a deletion takes effect within that age.
func TestDecryptorMaxAgeBoundsRevocation(t *testing.T) {
	f := newFakeKMS("kek-a")
	const maxAge = time.Minute
	m, clock := newManager(t, f, Options{DecryptCacheTTL: time.Hour, DecryptCacheMaxAge: maxAge})
	e := edeks(t, m, 1)[0]
	if _, err := m.Decryptor(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	// Ten minutes of constant use: a background unwrap once per maxAge or
	// so, and never a miss (no fetch waited for the KMS).
	for range 120 {
		clock.Advance(5 * time.Second)
		if _, err := m.Decryptor(t.Context(), e); err != nil {
			t.Fatalf("while in use: %v", err)
		}
		eventually(t, "background unwrap to finish", func() bool {
			m.decMu.RLock()
			defer m.decMu.RUnlock()
			return len(m.decFlights) == 0
		})
	}
	s := m.Stats()
	if s.DecryptMisses != 1 {
		t.Errorf("%d misses while in use, want 1 (the first)", s.DecryptMisses)
	}
	if c := f.decryptCalls.Load(); c < 10 || c > 13 {
		t.Errorf("%d DecryptDEK calls in 10 minutes of use with a 1 minute maximum age, want about 11", c)
	}
	if s.DecryptRefreshes != uint64(f.decryptCalls.Load()-1) {
		t.Errorf("DecryptRefreshes = %d, want %d", s.DecryptRefreshes, f.decryptCalls.Load()-1)
	}

	// The KEK is deleted: within maxAge of use, the KMS's refusal arrives.
	f.deleteKEK("kek-a")
	var after time.Duration
	for {
		_, err := m.Decryptor(t.Context(), e)
		if errors.Is(err, kms.ErrKeyNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("after deletion: %v, want kms.ErrKeyNotFound", err)
		}
		if after > maxAge {
			t.Fatalf("the deleted KEK still decrypts %v after its deletion (maximum age %v)", after, maxAge)
		}
		clock.Advance(5 * time.Second)
		after += 5 * time.Second
		// Let a background unwrap land before the next lookup.
		time.Sleep(time.Millisecond)
		eventually(t, "background unwrap to finish", func() bool {
			m.decMu.RLock()
			defer m.decMu.RUnlock()
			return len(m.decFlights) == 0
		})
	}
	t.Logf("refused %v after the deletion", after)
}

// A KMS that does not answer the background unwrap does not stall hits;
// at the maximum age the key is gone and callers wait (bounded by their
// context) for the KMS.
func TestDecryptorMaxAgeRefreshDoesNotStall(t *testing.T) {
	f := newFakeKMS("kek-a")
	const maxAge = 8 * time.Minute
	m, clock := newManager(t, f, Options{DecryptCacheMaxAge: maxAge})
	e := edeks(t, m, 1)[0]
	if _, err := m.Decryptor(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	f.setGate(gate, false)
	clock.Advance(7 * time.Minute) // 7/8: refresh due
	for range 100 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		_, err := m.Decryptor(ctx, e)
		cancel()
		if err != nil {
			t.Fatalf("hit while the background unwrap hangs: %v", err)
		}
	}
	eventually(t, "the background unwrap to reach the KMS", func() bool { return f.decryptCalls.Load() >= 2 })
	if c := f.decryptCalls.Load(); c != 2 {
		t.Fatalf("%d DecryptDEK calls, want 2 (one background unwrap for 100 hits)", c)
	}
	clock.Advance(time.Minute) // maximum age
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	_, err := m.Decryptor(ctx, e)
	cancel()
	if !Retriable(err) {
		t.Fatalf("past the maximum age with the KMS hanging: %v, want a retriable error", err)
	}
	if c := f.decryptCalls.Load(); c != 2 {
		t.Fatalf("%d DecryptDEK calls, want 2 (the waiting caller joins the running unwrap)", c)
	}
	close(gate)
	if _, err := m.Decryptor(t.Context(), e); err != nil {
		t.Fatalf("after the KMS answered: %v", err)
	}
}

// A failed background unwrap keeps the cached key until its maximum age,
// is tried again only after KMSBackoffMax, and a revoked key's refusal
// replaces the cached key at once.
func TestDecryptorMaxAgeRefreshFailures(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, clock := newManager(t, f, Options{DecryptCacheMaxAge: 8 * time.Minute, KMSBackoffMax: 10 * time.Second})
	e := edeks(t, m, 1)[0]
	if _, err := m.Decryptor(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	settle := func() {
		eventually(t, "background unwrap to finish", func() bool {
			m.decMu.RLock()
			defer m.decMu.RUnlock()
			return len(m.decFlights) == 0
		})
	}
	f.setFail(kms.ErrUnavailable)
	clock.Advance(7 * time.Minute)
	if _, err := m.Decryptor(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	settle()
	calls := f.decryptCalls.Load()
	for range 5 {
		if _, err := m.Decryptor(t.Context(), e); err != nil {
			t.Fatalf("cached key after a failed refresh: %v", err)
		}
	}
	settle()
	if c := f.decryptCalls.Load(); c != calls {
		t.Fatalf("%d more DecryptDEK calls before the backoff passed", c-calls)
	}
	clock.Advance(10 * time.Second)
	m.Decryptor(t.Context(), e)
	settle()
	if c := f.decryptCalls.Load(); c <= calls {
		t.Fatal("no new background unwrap after the backoff")
	}

	// Refused for good (here: the KEK is gone): effective immediately.
	f.setFail(nil)
	f.deleteKEK("kek-a")
	clock.Advance(10 * time.Second)
	m.Decryptor(t.Context(), e) // starts the unwrap, still served from the cache
	settle()
	if _, err := m.Decryptor(t.Context(), e); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("after the refusal of a refresh: %v, want kms.ErrKeyNotFound", err)
	}
}

func TestDecryptCacheMaxAgeOption(t *testing.T) {
	m, err := New(newFakeKMS(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.DecryptCacheMaxAge(); got != DefaultDecryptCacheMaxAge {
		t.Errorf("default = %v, want %v", got, DefaultDecryptCacheMaxAge)
	}
	for _, d := range []time.Duration{-time.Second, time.Millisecond, 999 * time.Millisecond} {
		if _, err := New(newFakeKMS(), Options{DecryptCacheMaxAge: d}); err == nil {
			t.Errorf("decryptCacheMaxAge %v accepted", d)
		}
	}
	// An idle TTL above the maximum age is allowed (it has no effect).
	if _, err := New(newFakeKMS(), Options{DecryptCacheMaxAge: time.Second, DecryptCacheTTL: time.Hour}); err != nil {
		t.Errorf("1s maximum age with a 1h TTL: %v", err)
	}
}

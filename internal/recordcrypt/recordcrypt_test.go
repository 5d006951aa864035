package recordcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

var errTestExhausted = errors.New("test key exhausted")

// testKey is a minimal Key: a fixed AES key, an EDEK, and an atomic counter
// from start up to (excluding) limit.
type testKey struct {
	aead  cipher.AEAD
	edek  []byte
	next  atomic.Uint64
	limit uint64
}

func newTestKey(tb testing.TB, raw, edek []byte, start uint64) *testKey {
	tb.Helper()
	block, err := aes.NewCipher(raw)
	if err != nil {
		tb.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		tb.Fatal(err)
	}
	k := &testKey{aead: aead, edek: edek, limit: MaxCounter + 1}
	k.next.Store(start)
	return k
}

func randomKey(tb testing.TB, edekLen int) *testKey {
	tb.Helper()
	raw := make([]byte, 32)
	edek := make([]byte, edekLen)
	rand.Read(raw)
	rand.Read(edek)
	return newTestKey(tb, raw, edek, 0)
}

func (k *testKey) AEAD() cipher.AEAD { return k.aead }
func (k *testKey) EDEK() []byte      { return k.edek }
func (k *testKey) Next() (uint64, error) {
	n := k.next.Add(1) - 1
	if n >= k.limit {
		return 0, errTestExhausted
	}
	return n, nil
}

func mustSeal(tb testing.TB, k Key, b Binding, value []byte) []byte {
	tb.Helper()
	out, err := Seal(nil, k, b, value)
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return out
}

func openWith(k *testKey, sealed []byte, b Binding) ([]byte, error) {
	env, err := Parse(sealed)
	if err != nil {
		return nil, err
	}
	return Open(nil, k.aead, env, b)
}

func TestRoundTrip(t *testing.T) {
	k := randomKey(t, 70)
	big := make([]byte, 64<<10)
	rand.Read(big)
	tests := []struct {
		name  string
		b     Binding
		value []byte
	}{
		{"empty value", Binding{Topic: "orders", Key: []byte("k1")}, []byte{}},
		{"one byte", Binding{Topic: "orders", Key: []byte("k1")}, []byte{0x42}},
		{"null key", Binding{Topic: "orders"}, []byte("v")},
		{"empty key", Binding{Topic: "orders", Key: []byte{}}, []byte("v")},
		{"key not bound", Binding{Topic: "orders", Key: []byte("k"), SkipKey: true}, []byte("v")},
		{"64 KiB value, long key", Binding{Topic: "t", Key: bytes.Repeat([]byte("k"), 300)}, big},
		{"empty topic", Binding{Topic: "", Key: []byte("k")}, []byte("v")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed := mustSeal(t, k, tt.b, tt.value)
			env, err := Parse(sealed)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if env.Version != Version1 || !bytes.Equal(env.EDEK, k.edek) {
				t.Fatalf("envelope = v%d EDEK %x", env.Version, env.EDEK)
			}
			if env.KeyBound() == tt.b.SkipKey {
				t.Fatalf("KeyBound() = %v with SkipKey %v", env.KeyBound(), tt.b.SkipKey)
			}
			if env.PlaintextLen() != len(tt.value) {
				t.Fatalf("PlaintextLen = %d, want %d", env.PlaintextLen(), len(tt.value))
			}
			if got, want := len(sealed)-len(tt.value), Overhead(len(k.edek), env.Counter); got != want {
				t.Fatalf("overhead %d, Overhead() says %d", got, want)
			}
			got, err := Open(nil, k.aead, env, tt.b)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.value) {
				t.Fatalf("Open = %x, want %x", got, tt.value)
			}
		})
	}
}

func TestSealAppendsAndOpenInPlace(t *testing.T) {
	k := randomKey(t, 70)
	b := Binding{Topic: "orders", Key: []byte("k")}
	dst := []byte("prefix")
	out, err := Seal(dst, k, b, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("prefix")) {
		t.Fatalf("Seal did not append: %q", out[:6])
	}
	env, err := Parse(out[6:])
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Open(env.Ciphertext[:0], k.aead, env, b)
	if err != nil || string(plain) != "hello" {
		t.Fatalf("in-place Open = %q, %v", plain, err)
	}
}

// Every single-byte change anywhere in the value must be rejected, by Parse
// or by Open: no field is malleable.
func TestEveryByteIsAuthenticated(t *testing.T) {
	for _, edekLen := range []int{70, 184} {
		k := randomKey(t, edekLen)
		k.next.Store(300) // a two-byte counter
		b := Binding{Topic: "orders", Key: []byte("order-1")}
		sealed := mustSeal(t, k, b, []byte("some value worth protecting"))
		for i := range sealed {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				tampered := bytes.Clone(sealed)
				tampered[i] ^= mask
				if got, err := openWith(k, tampered, b); err == nil {
					t.Fatalf("EDEK %d B: byte %d ^ %#x opened to %q", edekLen, i, mask, got)
				}
			}
		}
		// Truncation and extension too.
		for n := range sealed {
			if _, err := openWith(k, sealed[:n], b); err == nil {
				t.Fatalf("truncated to %d bytes opened", n)
			}
		}
		if _, err := openWith(k, append(bytes.Clone(sealed), 0), b); err == nil {
			t.Fatal("extended value opened")
		}
	}
}

func TestBindingMismatchFails(t *testing.T) {
	k := randomKey(t, 70)
	other := randomKey(t, 70)
	orig := Binding{Topic: "orders", Key: []byte("alice")}
	sealed := mustSeal(t, k, orig, []byte("balance=100"))
	sealedNullKey := mustSeal(t, k, Binding{Topic: "orders"}, []byte("v"))
	sealedSkip := mustSeal(t, k, Binding{Topic: "orders", Key: []byte("alice"), SkipKey: true}, []byte("v"))

	tests := []struct {
		name   string
		key    *testKey
		sealed []byte
		b      Binding
		wantOK bool
	}{
		{"original", k, sealed, orig, true},
		{"moved to another topic", k, sealed, Binding{Topic: "payments", Key: []byte("alice")}, false},
		{"topic prefix", k, sealed, Binding{Topic: "order", Key: []byte("salice")}, false},
		{"swapped to another key", k, sealed, Binding{Topic: "orders", Key: []byte("bob")}, false},
		{"key set to null", k, sealed, Binding{Topic: "orders"}, false},
		{"key set to empty", k, sealed, Binding{Topic: "orders", Key: []byte{}}, false},
		{"null key stays null", k, sealedNullKey, Binding{Topic: "orders"}, true},
		{"null key becomes empty", k, sealedNullKey, Binding{Topic: "orders", Key: []byte{}}, false},
		{"wrong DEK", other, sealed, orig, false},
		{"unbound key may change", k, sealedSkip, Binding{Topic: "orders", Key: []byte("bob")}, true},
		{"unbound key, topic still bound", k, sealedSkip, Binding{Topic: "payments", Key: []byte("alice")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := openWith(tt.key, tt.sealed, tt.b)
			if tt.wantOK && err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !tt.wantOK && !errors.Is(err, ErrAuth) {
				t.Fatalf("Open err = %v, want ErrAuth", err)
			}
		})
	}
}

// A ciphertext spliced under another DEK's EDEK (replayed across DEKs) must
// not open with either key.
func TestReplayAcrossDEKs(t *testing.T) {
	k1 := randomKey(t, 70)
	k2 := randomKey(t, 70)
	b := Binding{Topic: "orders", Key: []byte("k")}
	s1 := mustSeal(t, k1, b, []byte("value one"))
	s2 := mustSeal(t, k2, b, []byte("value two"))
	e1, _ := Parse(s1)
	e2, _ := Parse(s2)
	// EDEK of k2, counter and ciphertext of k1.
	spliced := append(append([]byte{}, e2.prefix...), e1.Ciphertext...)
	for _, k := range []*testKey{k1, k2} {
		if _, err := openWith(k, spliced, b); !errors.Is(err, ErrAuth) {
			t.Fatalf("spliced envelope: err = %v, want ErrAuth", err)
		}
	}
}

func TestNonceCountersAreUnique(t *testing.T) {
	k := randomKey(t, 70)
	const workers, each = 8, 500
	var mu sync.Mutex
	seen := make(map[uint64]bool, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for range each {
				var err error
				buf, err = Seal(buf[:0], k, Binding{Topic: "t"}, []byte("v"))
				if err != nil {
					t.Error(err)
					return
				}
				env, err := Parse(buf)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[env.Counter] {
					t.Errorf("counter %d used twice", env.Counter)
				}
				seen[env.Counter] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != workers*each {
		t.Fatalf("%d distinct counters, want %d", len(seen), workers*each)
	}
}

func TestSealFailsWhenKeyExhausted(t *testing.T) {
	k := randomKey(t, 70)
	k.limit = 2
	dst := []byte("keep")
	for i := range 2 {
		if _, err := Seal(nil, k, Binding{Topic: "t"}, []byte("v")); err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
	}
	out, err := Seal(dst, k, Binding{Topic: "t"}, []byte("v"))
	if !errors.Is(err, errTestExhausted) {
		t.Fatalf("err = %v, want the key's exhaustion error", err)
	}
	if string(out) != "keep" {
		t.Fatalf("dst changed on error: %q", out)
	}
}

func TestSealRejectsBadKeys(t *testing.T) {
	k := randomKey(t, 70)
	tests := []struct {
		name string
		edek []byte
		next uint64
	}{
		{"empty EDEK", []byte{}, 0},
		{"EDEK too long", make([]byte, MaxEDEKLen+1), 0},
		{"counter above MaxCounter", k.edek, MaxCounter + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := &testKey{aead: k.aead, edek: tt.edek, limit: 1 << 40}
			bad.next.Store(tt.next)
			if _, err := Seal(nil, bad, Binding{Topic: "t"}, []byte("v")); err == nil {
				t.Fatal("Seal succeeded")
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	edek := bytes.Repeat([]byte{0xee}, 3)
	tag := make([]byte, TagSize)
	build := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	valid := build([]byte{1, 1, 3}, edek, []byte{5}, tag)
	if _, err := Parse(valid); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	tests := []struct {
		name  string
		value []byte
		want  error
	}{
		{"empty", nil, ErrMalformed},
		{"one byte", []byte{1}, ErrMalformed},
		{"version 0", build([]byte{0, 1, 3}, edek, []byte{5}, tag), ErrUnsupportedVersion},
		{"version 2", build([]byte{2, 1, 3}, edek, []byte{5}, tag), ErrUnsupportedVersion},
		{"unknown flag", build([]byte{1, 3, 3}, edek, []byte{5}, tag), ErrMalformed},
		{"zero EDEK length", build([]byte{1, 1, 0}, []byte{5}, tag), ErrMalformed},
		{"EDEK length not minimal", build([]byte{1, 1, 0x83, 0x00}, edek, []byte{5}, tag), ErrMalformed},
		{"EDEK too long", build([]byte{1, 1}, binary.AppendUvarint(nil, MaxEDEKLen+1), make([]byte, MaxEDEKLen+1), []byte{5}, tag), ErrMalformed},
		{"EDEK truncated", []byte{1, 1, 100, 0xee}, ErrMalformed},
		{"counter missing", build([]byte{1, 1, 3}, edek), ErrMalformed},
		{"counter not minimal", build([]byte{1, 1, 3}, edek, []byte{0x85, 0x00}, tag), ErrMalformed},
		{"counter above MaxCounter", build([]byte{1, 1, 3}, edek, binary.AppendUvarint(nil, MaxCounter+1), tag), ErrMalformed},
		{"counter overflows 64 bits", build([]byte{1, 1, 3}, edek, bytes.Repeat([]byte{0xff}, 11), tag), ErrMalformed},
		{"no tag", build([]byte{1, 1, 3}, edek, []byte{5}, tag[:15]), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.value); !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%x) err = %v, want %v", tt.value, err, tt.want)
			}
		})
	}
}

func TestOpenNeedsParsedEnvelope(t *testing.T) {
	k := randomKey(t, 70)
	env := Envelope{Version: Version1, EDEK: k.edek, Ciphertext: make([]byte, 32)}
	if _, err := Open(nil, k.aead, env, Binding{}); err == nil {
		t.Fatal("Open accepted a hand-made envelope")
	}
}

func TestMarker(t *testing.T) {
	k := randomKey(t, 70)
	env, err := Parse(mustSeal(t, k, Binding{Topic: "t"}, []byte("v")))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		header []byte
		want   error
	}{
		{[]byte{Version1}, nil},
		{nil, ErrMalformed},
		{[]byte{1, 1}, ErrMalformed},
		{[]byte{2}, ErrUnsupportedVersion},
	}
	for _, tt := range tests {
		if err := CheckMarker(tt.header, env); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("CheckMarker(%x) = %v, want %v", tt.header, err, tt.want)
		}
	}
}

func TestDEKID(t *testing.T) {
	a, b := DEKIDOf([]byte("edek-a")), DEKIDOf([]byte("edek-b"))
	if a == b || a != DEKIDOf([]byte("edek-a")) {
		t.Fatal("DEKID not a stable, distinguishing function of the EDEK")
	}
	if s := a.String(); len(s) != 16 {
		t.Fatalf("DEKID string %q, want 16 hex digits", s)
	}
}

func TestOverhead(t *testing.T) {
	tests := []struct {
		edekLen int
		counter uint64
		want    int
	}{
		{70, 0, 2 + 1 + 70 + 1 + 16},
		{70, 127, 2 + 1 + 70 + 1 + 16},
		{70, 128, 2 + 1 + 70 + 2 + 16},
		{70, 4_999_999, 2 + 1 + 70 + 4 + 16},
		{128, 0, 2 + 2 + 128 + 1 + 16},
		{184, MaxCounter, 2 + 2 + 184 + 5 + 16},
	}
	for _, tt := range tests {
		if got := Overhead(tt.edekLen, tt.counter); got != tt.want {
			t.Errorf("Overhead(%d, %d) = %d, want %d", tt.edekLen, tt.counter, got, tt.want)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	k := randomKey(t, 70)
	b := Binding{Topic: "orders", Key: []byte("order-1")}
	value := make([]byte, 1024)
	dst := make([]byte, 0, len(value)+Overhead(70, MaxCounter))
	sealed := mustSeal(t, k, b, value)
	plain := make([]byte, 0, len(value))
	if n := testing.AllocsPerRun(200, func() {
		if _, err := Seal(dst[:0], k, b, value); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Seal: %v allocs per run, want 0", n)
	}
	if n := testing.AllocsPerRun(200, func() {
		env, err := Parse(sealed)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(plain[:0], k.aead, env, b); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Parse+Open: %v allocs per run, want 0", n)
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			k := randomKey(b, 70)
			bind := Binding{Topic: "orders", Key: []byte("order-000042")}
			value := make([]byte, size)
			dst := make([]byte, 0, size+Overhead(70, MaxCounter))
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if k.next.Load() > MaxCounter-1 {
					k.next.Store(0)
				}
				if _, err := Seal(dst[:0], k, bind, value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			k := randomKey(b, 70)
			bind := Binding{Topic: "orders", Key: []byte("order-000042")}
			sealed := mustSeal(b, k, bind, make([]byte, size))
			plain := make([]byte, 0, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				env, err := Parse(sealed)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Open(plain[:0], k.aead, env, bind); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

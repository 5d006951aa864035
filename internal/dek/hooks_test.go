package dek

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// The audit hooks see every non-transient answer about a KEK and every new
// DEK's EDEK (never the key); transient failures are not reported.
func TestAuditHooks(t *testing.T) {
	f := newFakeKMS("kek-a", "kek-off")
	f.disable("kek-off", true)
	var mu sync.Mutex
	states := map[string][]error{}
	var edeks [][]byte
	opts := Options{KMSAttempts: 1}
	opts.Hooks.OnKEKState = func(name string, err error) {
		mu.Lock()
		states[name] = append(states[name], err)
		mu.Unlock()
	}
	opts.Hooks.OnDEKGenerated = func(kek kms.KEKRef, edek []byte) {
		if kek.Name != "kek-a" {
			t.Errorf("DEK generated under %v", kek)
		}
		mu.Lock()
		edeks = append(edeks, bytes.Clone(edek))
		mu.Unlock()
	}
	m, clock := newManager(t, f, opts)
	m.Resolve(t.Context(), "never")
	m.Resolve(t.Context(), "kek-off")
	r, err := m.Resolve(t.Context(), "kek-a")
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.Current(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	f.setFail(kms.ErrUnavailable)
	m.CheckKEKs(t.Context()) // transient: not reported
	f.setFail(nil)
	f.deleteKEK("kek-a")
	clock.Advance(DefaultExpireAfterWrite) // the next Current asks for a new DEK
	if _, err := m.Current(t.Context(), r); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("Current after deletion: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(edeks) != 1 || !bytes.Equal(edeks[0], k.EDEK()) {
		t.Fatalf("OnDEKGenerated EDEKs %x, want [%x]", edeks, k.EDEK())
	}
	for _, key := range f.handed {
		if bytes.Contains(edeks[0], key) {
			t.Fatal("the hook was given the DEK itself")
		}
	}
	check := func(name string, want ...error) {
		t.Helper()
		got := states[name]
		if len(got) != len(want) {
			t.Fatalf("%s: states %v, want %v", name, got, want)
		}
		for i := range want {
			if (want[i] == nil) != (got[i] == nil) || (want[i] != nil && !errors.Is(got[i], want[i])) {
				t.Fatalf("%s: state %d is %v, want %v", name, i, got[i], want[i])
			}
		}
	}
	check("never", kms.ErrKeyNotFound)
	check("kek-off", kms.ErrKeyUnusable)
	check("kek-a", nil, kms.ErrKeyUnusable)
}

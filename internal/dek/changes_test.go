package dek

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// changingKMS is a fakeKMS that reports changes of its keys (kms.Changes),
// as the local KMS does when its store changes.
type changingKMS struct {
	*fakeKMS
	gen atomic.Uint64
}

func (c *changingKMS) Changes() uint64 { return c.gen.Load() }

func newChangingManager(t *testing.T, f *fakeKMS) (*Manager, *changingKMS) {
	t.Helper()
	c := &changingKMS{fakeKMS: f}
	m, err := New(c, Options{Now: newFakeClock().Now, KMSBackoff: time.Millisecond, KMSBackoffMax: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return m, c
}

// A KEK created after its name was found missing is used by the next
// Resolve once the KMS reports the change, not after NotFoundTTL (the
// clock never moves here). Without the change counter the second Resolve
// answers the remembered "not found".
func TestResolveForgetsNotFoundOnKMSChange(t *testing.T) {
	f := newFakeKMS()
	m, c := newChangingManager(t, f)
	if _, err := m.Resolve(t.Context(), "kek-new"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	f.mu.Lock()
	f.keks["kek-new"] = true
	f.mu.Unlock()
	// Unchanged counter: the "not found" is still remembered.
	if _, err := m.Resolve(t.Context(), "kek-new"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("err = %v, want the remembered not found", err)
	}
	if n := f.resolveCalls.Load(); n != 1 {
		t.Fatalf("%d ResolveKEK calls, want 1", n)
	}
	c.gen.Add(1)
	ref, err := m.Resolve(t.Context(), "kek-new")
	if err != nil || ref.Name != "kek-new" {
		t.Fatalf("after the KMS changed: %+v, %v", ref, err)
	}
	// A found KEK is not re-resolved on a change (KEKCheckInterval covers it).
	c.gen.Add(1)
	if _, err := m.Resolve(t.Context(), "kek-new"); err != nil {
		t.Fatal(err)
	}
	if n := f.resolveCalls.Load(); n != 2 {
		t.Fatalf("%d ResolveKEK calls, want 2", n)
	}
}

// The decrypt side's remembered refusal goes with a change too (a KEK
// restored from a backup decrypts again at once).
func TestDecryptorForgetsNotFoundOnKMSChange(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, c := newChangingManager(t, f)
	e := edeks(t, m, 1)[0]
	f.deleteKEK("kek-a")
	if _, err := m.Decryptor(t.Context(), e); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
	f.mu.Lock()
	f.keks["kek-a"] = true
	f.mu.Unlock()
	if _, err := m.Decryptor(t.Context(), e); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("err = %v, want the remembered not found", err)
	}
	c.gen.Add(1)
	if _, err := m.Decryptor(t.Context(), e); err != nil {
		t.Fatalf("after the KMS changed: %v", err)
	}
}

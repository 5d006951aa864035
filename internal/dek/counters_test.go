package dek

import "testing"

// A Manager replacing another (a config reload) with the same Counters
// continues its totals; the decrypt cache size is its own.
func TestSharedCountersCarryOver(t *testing.T) {
	f := newFakeKMS("kek-a")
	var c Counters
	m1, _ := newManager(t, f, Options{Counters: &c})
	k, err := m1.Current(t.Context(), ref("kek-a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.Decryptor(t.Context(), k.EDEK()); err != nil {
		t.Fatal(err)
	}
	before := m1.Stats()
	if before.DEKsGenerated != 1 || before.EncryptMisses != 1 || before.DecryptMisses != 1 || before.DecryptCached != 1 {
		t.Fatalf("first manager: %+v", before)
	}

	m2, _ := newManager(t, f, Options{Counters: &c})
	after := m2.Stats()
	if after.DEKsGenerated != 1 || after.EncryptMisses != 1 || after.DecryptMisses != 1 || after.KMSCalls != before.KMSCalls {
		t.Errorf("new manager sharing the counters starts at %+v, want the totals of %+v", after, before)
	}
	if after.DecryptCached != 0 {
		t.Errorf("new manager reports %d cached DEKs, want its own 0", after.DecryptCached)
	}
	if _, err := m2.Current(t.Context(), ref("kek-a")); err != nil {
		t.Fatal(err)
	}
	if s := m2.Stats(); s.DEKsGenerated != 2 || s.EncryptMisses != 2 {
		t.Errorf("after a DEK from the new manager: %+v, want 2 generated and 2 misses", s)
	}
	// The old manager, still finishing requests, counts into the same totals.
	if _, err := m1.Current(t.Context(), ref("kek-a")); err != nil {
		t.Fatal(err)
	}
	if s := m2.Stats(); s.EncryptHits != 1 {
		t.Errorf("hit on the old manager not counted: %+v", s)
	}

	// Without shared counters a Manager starts at zero.
	if s := func() Stats { m, _ := newManager(t, f, Options{}); return m.Stats() }(); s.DEKsGenerated != 0 {
		t.Errorf("a manager with its own counters starts at %+v", s)
	}
}

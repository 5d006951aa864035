package dek

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// A KEK that never existed is "not found" (the caller's
// unresolvedKeyPolicy applies); one that resolved before and is gone, or
// that exists but is disabled, is unusable.
func TestResolveTellsMissingFromGone(t *testing.T) {
	f := newFakeKMS("kek-a", "kek-off")
	f.disable("kek-off", true)
	m, clock := newManager(t, f, Options{})
	if _, err := m.Resolve(t.Context(), "never"); !errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("never existed: %v, want ErrKeyNotFound only", err)
	}
	if _, err := m.Resolve(t.Context(), "kek-off"); !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("disabled: %v, want ErrKeyUnusable only", err)
	}
	if _, err := m.Resolve(t.Context(), "kek-a"); err != nil {
		t.Fatal(err)
	}
	f.deleteKEK("kek-a")
	clock.Advance(DefaultKEKExpireAfter)
	if _, err := m.Resolve(t.Context(), "kek-a"); !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("deleted after use: %v, want ErrKeyUnusable only", err)
	}
}

// CheckKEKs finds a KEK deleted or disabled while its DEK is cached, drops
// the DEK and refuses it, without waiting for the name cache to expire;
// re-enabling it makes DEKs again.
func TestCheckKEKsDropsDEKOfUnusableKEK(t *testing.T) {
	for _, how := range []string{"deleted", "disabled"} {
		t.Run(how, func(t *testing.T) {
			f := newFakeKMS("kek-a", "kek-b")
			m, _ := newManager(t, f, Options{})
			for _, n := range []string{"kek-a", "kek-b"} {
				r, err := m.Resolve(t.Context(), n)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := m.Current(t.Context(), r); err != nil {
					t.Fatal(err)
				}
			}
			if how == "deleted" {
				f.deleteKEK("kek-a")
			} else {
				f.disable("kek-a", true)
			}
			m.CheckKEKs(t.Context())
			if s := m.Stats(); s.KEKChecks != 2 || s.KEKUnusable == 0 {
				t.Fatalf("stats %+v, want 2 checks and an unusable KEK", s)
			}
			if _, err := m.Resolve(t.Context(), "kek-a"); !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
				t.Fatalf("Resolve after check: %v, want ErrKeyUnusable only", err)
			}
			gen := f.generateCalls.Load()
			if k, err := m.Current(t.Context(), ref("kek-a")); k != nil || !errors.Is(err, kms.ErrKeyUnusable) {
				t.Fatalf("Current after check = %v, %v; want the cached DEK dropped and ErrKeyUnusable", k, err)
			}
			if f.generateCalls.Load() != gen {
				t.Fatal("Current asked the KMS for a DEK under an unusable KEK")
			}
			m.Sweep()
			if _, err := m.Current(t.Context(), ref("kek-a")); !errors.Is(err, kms.ErrKeyUnusable) {
				t.Fatalf("Current after Sweep: %v, want still refused", err)
			}
			// The other KEK is untouched.
			if _, err := m.Current(t.Context(), ref("kek-b")); err != nil {
				t.Fatal(err)
			}
			if how == "disabled" {
				f.disable("kek-a", false)
				m.CheckKEKs(t.Context()) // no positive entry for kek-a: nothing to check
				m.resMu.Lock()
				m.res["kek-a"].at = time.Time{} // let the refusal expire
				m.resMu.Unlock()
				if _, err := m.Resolve(t.Context(), "kek-a"); err != nil {
					t.Fatalf("re-enabled: %v", err)
				}
				if _, err := m.Current(t.Context(), ref("kek-a")); err != nil {
					t.Fatalf("Current after re-enabling: %v", err)
				}
			}
		})
	}
}

// A transient failure of the check keeps the KEK in use.
func TestCheckKEKsIgnoresOutages(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, _ := newManager(t, f, Options{KMSAttempts: 1})
	r, _ := m.Resolve(t.Context(), "kek-a")
	if _, err := m.Current(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	f.setFail(kms.ErrUnavailable)
	m.CheckKEKs(t.Context())
	f.setFail(nil)
	if _, err := m.Resolve(t.Context(), "kek-a"); err != nil {
		t.Fatalf("after an outage: %v", err)
	}
	if _, err := m.Current(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

// Run checks at KEKCheckInterval: a deletion is refused within it.
func TestRunChecksKEKsAtInterval(t *testing.T) {
	f := newFakeKMS("kek-a")
	m, err := New(f, Options{KEKCheckInterval: 20 * time.Millisecond, KMSBackoff: time.Millisecond, KMSBackoffMax: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go m.Run(ctx, time.Hour)
	r, _ := m.Resolve(t.Context(), "kek-a")
	if _, err := m.Current(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	f.deleteKEK("kek-a")
	start := time.Now()
	eventually(t, "the deletion to be noticed", func() bool {
		_, err := m.Current(t.Context(), r)
		return errors.Is(err, kms.ErrKeyUnusable)
	})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("noticed after %v, interval is 20ms", d)
	}
}

func TestKEKCheckIntervalValidated(t *testing.T) {
	if _, err := New(newFakeKMS(), Options{KEKCheckInterval: -time.Second}); err == nil {
		t.Fatal("negative kekCheckInterval accepted")
	}
}

// Managers sharing UsedKEKs (a reload builds a new one) keep refusing a
// KEK the earlier one used.
func TestUsedKEKsSurviveReload(t *testing.T) {
	f := newFakeKMS("kek-a")
	var used UsedKEKs
	m1, _ := newManager(t, f, Options{UsedKEKs: &used})
	if _, err := m1.Resolve(t.Context(), "kek-a"); err != nil {
		t.Fatal(err)
	}
	f.deleteKEK("kek-a")
	m2, _ := newManager(t, f, Options{UsedKEKs: &used})
	if _, err := m2.Resolve(t.Context(), "kek-a"); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("after reload: %v, want ErrKeyUnusable", err)
	}
	m3, _ := newManager(t, f, Options{})
	if _, err := m3.Resolve(t.Context(), "kek-a"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("unrelated manager: %v, want ErrKeyNotFound", err)
	}
}

// KEKs nobody used for KEKExpireAfter are not checked any more.
func TestCheckKEKsSkipsUnusedNames(t *testing.T) {
	f := newFakeKMS("kek-a", "kek-b")
	m, clock := newManager(t, f, Options{})
	m.Resolve(t.Context(), "kek-a")
	m.Resolve(t.Context(), "kek-b")
	clock.Advance(DefaultKEKRefreshAfter - time.Second)
	m.Resolve(t.Context(), "kek-a") // a hit: still in use
	clock.Advance(DefaultKEKExpireAfter - DefaultKEKRefreshAfter + 2*time.Second)
	m.CheckKEKs(t.Context())
	if s := m.Stats(); s.KEKChecks != 1 {
		t.Fatalf("%d checks, want 1 (kek-b unused for kekExpireAfter)", s.KEKChecks)
	}
}

package dek

import (
	"context"
	"errors"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// panicKMS panics in every call that reads a KMS answer, as a provider bug
// triggered by a hostile answer would.
type panicKMS struct{ *fakeKMS }

func (panicKMS) ResolveKEK(context.Context, string) (kms.KEKRef, error) { panic("resolve bug") }
func (panicKMS) GenerateDEK(context.Context, kms.KEKRef) (kms.DEK, error) {
	panic("generate bug")
}
func (panicKMS) DecryptDEK(context.Context, []byte) ([]byte, error) { panic("decrypt bug") }

// Every KMS call runs on a goroutine of its own, where no connection's
// recover reaches: a provider panic must come back as an error, not end
// the process (this test binary with it).
func TestProviderPanicIsAnError(t *testing.T) {
	m, err := New(panicKMS{newFakeKMS("k")}, Options{KMSAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Resolve(ctx, "k"); !errors.Is(err, ErrProviderPanic) {
		t.Errorf("Resolve: %v, want ErrProviderPanic", err)
	}
	if _, err := m.Current(ctx, kms.KEKRef{Name: "k", ID: "k"}); err == nil {
		t.Error("Current: no error")
	}
	if _, err := m.Decryptor(ctx, []byte("k|1")); !errors.Is(err, ErrProviderPanic) {
		t.Errorf("Decryptor: %v, want ErrProviderPanic", err)
	}
}

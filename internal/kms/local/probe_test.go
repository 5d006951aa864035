package local

import (
	"context"
	"os"
	"testing"
)

// The local KMS is part of the process: it stays ready, and keeps serving
// its keys, even when its store can no longer be read.
func TestProbeAlwaysAnswers(t *testing.T) {
	cfg := newStore(t)
	k := open(t, cfg)
	mustCreate(t, k, "KEK-a")
	if err := k.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	os.Remove(cfg.KeyStore)
	if err := k.Reload(); err == nil {
		t.Fatal("Reload of a missing store succeeded")
	}
	if err := k.Probe(context.Background()); err != nil {
		t.Errorf("Probe after the store vanished: %v", err)
	}
	generate(t, k, "KEK-a")
}

package local

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// Another process's `kseal kms create` is loaded as soon as it lands (with
// a reload interval of an hour, only the change notification can do it),
// and the KMS's change counter moves: internal/dek then forgets a
// remembered "not found" for the new KEK at once.
func TestStoreChangeIsLoadedAtOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("change notification is implemented for Linux; elsewhere reloadInterval applies")
	}
	cfg := newStore(t)
	cfg.ReloadInterval = time.Hour
	proxy := open(t, cfg)
	cli := open(t, cfg)
	before := proxy.Changes()
	mustCreate(t, cli, "KEK-new")
	deadline := time.Now().Add(5 * time.Second)
	for proxy.Changes() == before {
		if time.Now().After(deadline) {
			t.Fatal("the store change was not loaded within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Loaded, not merely counted: no out-of-turn recheck needed.
	if proxy.state.Load().keys["KEK-new"] == nil {
		t.Fatal("counter moved but the new KEK is not served")
	}
	if _, err := proxy.ResolveKEK(context.Background(), "KEK-new"); err != nil {
		t.Fatal(err)
	}
}

// The KMS's own writes move the counter too.
func TestChangesCountsOwnWrites(t *testing.T) {
	k := open(t, newStore(t))
	before := k.Changes()
	mustCreate(t, k, "KEK-a")
	if k.Changes() == before {
		t.Fatal("Create did not move the change counter")
	}
}

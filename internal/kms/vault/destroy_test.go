package vault

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// serveDestroy is Transit's keys/NAME/config (deletion_allowed) and DELETE
// keys/NAME, which refuses keys whose config does not allow deletion.
func (f *fakeTransit) serveDestroy(w http.ResponseWriter, method, name string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deletable == nil {
		f.deletable = map[string]bool{}
	}
	if key, ok := strings.CutSuffix(name, "/config"); ok && method == http.MethodPost {
		var req struct {
			DeletionAllowed bool `json:"deletion_allowed"`
		}
		if json.Unmarshal(body, &req) != nil || f.keys[key] == nil {
			replyErr(w, http.StatusBadRequest, "bad config request")
			return
		}
		f.deletable[key] = req.DeletionAllowed
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if method != http.MethodDelete || f.keys[name] == nil {
		replyErr(w, http.StatusNotFound)
		return
	}
	if !f.deletable[name] {
		replyErr(w, http.StatusBadRequest, "deletion is not allowed for this key")
		return
	}
	delete(f.keys, name)
	w.WriteHeader(http.StatusNoContent)
}

func TestDestroy(t *testing.T) {
	fake := newFakeTransit(t, "transit", testToken)
	fake.addKey("tenant-a")
	fake.addKey("tenant-b")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	k, _ := openTest(t, srv.URL+"/", nil)
	ctx := context.Background()
	var d kms.Destroyer = k
	ref, err := k.ResolveKEK(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Destroy(ctx, ref)
	if err != nil || !res.Done {
		t.Fatalf("Destroy = %+v, %v", res, err)
	}
	if _, err := k.ResolveKEK(ctx, "tenant-a"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("after Destroy: %v, want not found", err)
	}
	if _, err := k.ResolveKEK(ctx, "tenant-b"); err != nil {
		t.Fatalf("the other key: %v", err)
	}
	var saw []string
	for _, r := range fake.log() {
		saw = append(saw, r.Method+" "+r.Path)
	}
	want := "POST /v1/transit/keys/tenant-a/config,DELETE /v1/transit/keys/tenant-a"
	if !strings.Contains(strings.Join(saw, ","), want) {
		t.Fatalf("requests %v, want %s", saw, want)
	}
	// A key that is gone: the KMS's error.
	if _, err := d.Destroy(ctx, ref); err == nil {
		t.Fatal("Destroy of a missing key succeeded")
	}
}

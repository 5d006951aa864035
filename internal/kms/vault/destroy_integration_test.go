//go:build integration

package vault

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// shredPolicy is what docs/shredding.md says kseal shred's operator token
// needs on a Transit mount, here for keys named tenant-*: read (resolve),
// update (keys/NAME/config: deletion_allowed; the glob covers it) and
// delete.
const shredPolicy = `
path "kseal/transit/keys/tenant-*" {
  capabilities = ["read", "update", "delete"]
}
`

// TestOpenBaoDestroy destroys a Transit key on a real OpenBao server with
// a token holding only shredPolicy: deletion allowed, then deleted; the
// other key stays.
func TestOpenBaoDestroy(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_VAULT") == "1" {
		t.Skip("KSEAL_IT_NO_VAULT=1: skipping the real OpenBao server test")
	}
	srv := startOpenBao(t)
	ctx := context.Background()
	srv.admin(t, "POST", "", "sys/namespaces/"+itNamespace, `{}`)
	srv.admin(t, "POST", itNamespace, "sys/mounts/"+itMount, `{"type":"transit"}`)
	body, _ := json.Marshal(map[string]string{"policy": shredPolicy})
	srv.admin(t, "PUT", itNamespace, "sys/policies/acl/kseal", string(body))
	for _, k := range []string{"tenant-a", "tenant-b"} {
		srv.admin(t, "POST", itNamespace, itMount+"/keys/"+k, `{}`)
	}
	k := srv.open(t, srv.createToken(t, `{"policies":["kseal"],"no_default_policy":true,"ttl":"1h"}`), nil)
	ref, err := k.ResolveKEK(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	res, err := k.Destroy(ctx, ref)
	if err != nil || !res.Done {
		t.Fatalf("Destroy = %+v, %v", res, err)
	}
	if _, err := k.ResolveKEK(ctx, "tenant-a"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("after Destroy: %v, want ErrKeyNotFound", err)
	}
	if _, err := k.ResolveKEK(ctx, "tenant-b"); err != nil {
		t.Fatalf("the other key: %v", err)
	}
}

//go:build integration

package aws

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// TestMotoDestroy schedules the deletion of a key behind an alias on moto:
// pending, the key unusable at once, the other key untouched.
func TestMotoDestroy(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_AWS") == "1" {
		t.Skip("KSEAL_IT_NO_AWS=1: skipping the AWS KMS test against moto")
	}
	dir := t.TempDir()
	m := startMoto(t, dir, "")
	admin := m.admin()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(m.env["AWS_SECRET_ACCESS_KEY"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Region = m.env["AWS_REGION"]
	cfg.Endpoint = m.env["MOTO_ENDPOINT"]
	cfg.Timeout = 5 * time.Second
	cfg.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyID: m.env["AWS_ACCESS_KEY_ID"], SecretAccessKeyFile: secretFile}
	opened, err := cfg.Open(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := opened.(*KMS)
	ctx := t.Context()
	idA := createKEK(t, admin, "alias/tenant-a")
	createKEK(t, admin, "alias/tenant-b")
	ref, err := p.ResolveKEK(ctx, "tenant-a")
	if err != nil || ref.ID != idA {
		t.Fatalf("ResolveKEK = %+v, %v", ref, err)
	}
	res, err := p.Destroy(ctx, ref)
	if err != nil || res.Done {
		t.Fatalf("Destroy = %+v, %v; want a pending deletion", res, err)
	}
	t.Log(res.What)
	if _, err := p.ResolveKEK(ctx, "tenant-a"); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("after Destroy: %v, want ErrKeyUnusable (pending deletion)", err)
	}
	if _, err := p.ResolveKEK(ctx, "tenant-b"); err != nil {
		t.Fatalf("the other key: %v", err)
	}
}

//go:build integration

package kmip

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// TestPyKMIPIntegration runs the provider against PyKMIP's server (from
// PyPI, started by scripts/pykmip.sh with certificates of its own) over
// mutual TLS, with keys the test creates with kseal's own KMIP client.
func TestPyKMIPIntegration(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_KMIP") == "1" {
		t.Skip("KSEAL_IT_NO_KMIP=1: skipping the real KMIP server test")
	}
	start := time.Now()
	env := startPyKMIP(t)
	t.Logf("PyKMIP up after %v at %s", time.Since(start).Round(time.Millisecond), env["KMIP_ENDPOINT"])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	open := func(mode string) *KMS {
		cfg := NewConfig()
		cfg.Endpoint = env["KMIP_ENDPOINT"]
		cfg.CAFile = env["KMIP_CA_FILE"]
		cfg.CertFile = env["KMIP_CERT_FILE"]
		cfg.KeyFile = env["KMIP_KEY_FILE"]
		cfg.ServerName = env["KMIP_SERVER_NAME"]
		cfg.CipherMode = mode
		cfg.MaxConnections = 2
		k, err := New(ctx, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		return k
	}
	k := open("GCM")

	id1, err := k.CreateKey(ctx, "KEK-orders")
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := k.ResolveKEK(ctx, "KEK-orders"); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("Pre-Active key: %v, want ErrKeyUnusable", err)
	}
	if err := k.Activate(ctx, id1); err != nil {
		t.Fatalf("Activate: %v", err)
	}

	var ref1 kms.KEKRef
	t.Run("resolve", func(t *testing.T) {
		ref1, err = k.ResolveKEK(ctx, "KEK-orders")
		if err != nil || ref1 != (kms.KEKRef{Name: "KEK-orders", ID: id1}) {
			t.Fatalf("ResolveKEK = %+v, %v; want id %s", ref1, err, id1)
		}
		if _, err := k.ResolveKEK(ctx, "KEK-missing"); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("unknown key: %v, want ErrKeyNotFound", err)
		}
		if err := k.Probe(ctx); err != nil {
			t.Fatalf("Probe: %v", err)
		}
	})

	var d1 kms.DEK
	for _, mode := range []string{"GCM", "CBC"} {
		t.Run("round trip "+mode, func(t *testing.T) {
			km := open(mode)
			d, err := km.GenerateDEK(ctx, ref1)
			if err != nil {
				t.Fatalf("GenerateDEK: %v", err)
			}
			t.Logf("%s EDEK: %d bytes", mode, len(d.EDEK))
			if info, err := DescribeEDEK(d.EDEK); err != nil || info.KEK != "KEK-orders" || info.Version != id1 {
				t.Fatalf("DescribeEDEK = %+v, %v", info, err)
			}
			// Either setting reads both modes: the EDEK records its own.
			for _, reader := range []*KMS{km, k} {
				got, err := reader.DecryptDEK(ctx, d.EDEK)
				if err != nil || !bytes.Equal(got, d.Key) {
					t.Fatalf("DecryptDEK: %v (equal %v)", err, bytes.Equal(got, d.Key))
				}
			}
			bad := bytes.Clone(d.EDEK)
			bad[len(bad)-1] ^= 1
			if got, err := km.DecryptDEK(ctx, bad); err == nil && bytes.Equal(got, d.Key) {
				t.Fatal("a changed EDEK decrypted to the DEK")
			}
			if mode == "GCM" {
				d1 = d
			}
		})
	}

	t.Run("concurrent requests share the pool", func(t *testing.T) {
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				_, err := k.DecryptDEK(ctx, d1.EDEK)
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})

	var id2 string
	t.Run("rotate", func(t *testing.T) {
		// Activation Dates have one-second resolution: the newer key must
		// be activated in a later second.
		time.Sleep(1100 * time.Millisecond)
		id2, err = k.CreateKey(ctx, "KEK-orders")
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Activate(ctx, id2); err != nil {
			t.Fatal(err)
		}
		ref2, err := k.ResolveKEK(ctx, "KEK-orders")
		if err != nil || ref2.ID != id2 {
			t.Fatalf("after rotation ResolveKEK = %+v, %v; want id %s", ref2, err, id2)
		}
		d2, err := k.GenerateDEK(ctx, ref2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []kms.DEK{d1, d2} {
			if got, err := k.DecryptDEK(ctx, d.EDEK); err != nil || !bytes.Equal(got, d.Key) {
				t.Fatalf("DecryptDEK after rotation: %v", err)
			}
		}
	})

	t.Run("revoked and destroyed keys are unusable", func(t *testing.T) {
		if err := k.Revoke(ctx, id1, false); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		// The name still resolves to the newer, Active key.
		if ref, err := k.ResolveKEK(ctx, "KEK-orders"); err != nil || ref.ID != id2 {
			t.Fatalf("ResolveKEK = %+v, %v", ref, err)
		}
		// PyKMIP refuses Decrypt with a Deactivated key (the KMIP spec lets
		// servers allow it): kseal reports the key as unusable.
		if _, err := k.DecryptDEK(ctx, d1.EDEK); !errors.Is(err, kms.ErrKeyUnusable) {
			t.Fatalf("Decrypt under a Deactivated key: %v, want ErrKeyUnusable", err)
		}
		if _, err := k.GenerateDEK(ctx, ref1); !errors.Is(err, kms.ErrKeyUnusable) {
			t.Fatalf("Encrypt under a Deactivated key: %v, want ErrKeyUnusable", err)
		}
		if err := k.Revoke(ctx, id2, true); err != nil {
			t.Fatalf("Revoke (compromise): %v", err)
		}
		if _, err := k.ResolveKEK(ctx, "KEK-orders"); !errors.Is(err, kms.ErrKeyUnusable) {
			t.Fatalf("only Deactivated and Compromised keys: %v, want ErrKeyUnusable", err)
		}
		if err := k.Destroy(ctx, id1); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		// PyKMIP deletes a destroyed object outright: gone is not found.
		if _, err := k.DecryptDEK(ctx, d1.EDEK); !errors.Is(err, kms.ErrKeyNotFound) && !errors.Is(err, kms.ErrKeyUnusable) {
			t.Fatalf("Decrypt under a destroyed key: %v", err)
		}
	})

	t.Run("outage and recovery", func(t *testing.T) {
		id3, err := k.CreateKey(ctx, "KEK-outage")
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Activate(ctx, id3); err != nil {
			t.Fatal(err)
		}
		stopPyKMIP(t, env)
		if _, err := k.ResolveKEK(ctx, "KEK-outage"); !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("server down: %v, want ErrUnavailable", err)
		}
		if err := k.Probe(ctx); err == nil {
			t.Fatal("Probe passed with the server down")
		}
		env = startPyKMIPAt(t, env)
		if ref, err := k.ResolveKEK(ctx, "KEK-outage"); err != nil || ref.ID != id3 {
			t.Fatalf("after restart: %+v, %v", ref, err)
		}
	})
}

func startPyKMIP(t *testing.T) map[string]string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pykmip")
	env := startPyKMIPAt(t, map[string]string{"dir": dir})
	t.Cleanup(func() { stopPyKMIP(t, env) })
	return env
}

// startPyKMIPAt starts the server in env["dir"], on env["KMIP_PORT"] when
// set (a restart keeps the port, the certificates and the database).
func startPyKMIPAt(t *testing.T, env map[string]string) map[string]string {
	t.Helper()
	dir := env["dir"]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args := []string{"start", "--dir", dir, "--owner-pid", strconv.Itoa(os.Getpid())}
	if p := env["KMIP_PORT"]; p != "" {
		args = append(args, "--port", p)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "pykmip.sh"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pykmip.sh start (set KSEAL_IT_NO_KMIP=1 to skip this test): %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "pykmip.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{"dir": dir}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}

func stopPyKMIP(t *testing.T, env map[string]string) {
	t.Helper()
	if out, err := exec.Command(filepath.Join(repoRoot(t), "scripts", "pykmip.sh"), "stop", "--dir", env["dir"]).CombinedOutput(); err != nil {
		t.Errorf("pykmip.sh stop: %v\n%s", err, out)
	}
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

//go:build integration

package hadoop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// TestHadoopKMSIntegration runs the provider against a real Apache Hadoop
// KMS (jars from Maven Central, started by scripts/hadoop-kms.sh) with a
// JCEKS key store and simple authentication.
func TestHadoopKMSIntegration(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_HADOOP") == "1" {
		t.Skip("KSEAL_IT_NO_HADOOP=1: skipping the real Hadoop KMS test")
	}
	start := time.Now()
	srv := startHadoopKMS(t)
	t.Logf("Hadoop KMS up after %v at %s", time.Since(start).Round(time.Millisecond), srv.addr)
	ctx := context.Background()

	for _, name := range []string{"kek-orders", "kek-other"} {
		srv.admin(t, http.MethodPost, "keys", `{"name":"`+name+`","cipher":"AES/CTR/NoPadding","length":256}`, http.StatusCreated)
	}
	srv.admin(t, http.MethodPost, "keys", `{"name":"kek-short","cipher":"AES/CTR/NoPadding","length":128}`, http.StatusCreated)

	cfg := NewConfig()
	cfg.Address = srv.addr
	cfg.User = srv.user
	k, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	orders := kms.KEKRef{Name: "kek-orders", ID: "kek-orders"}

	t.Run("resolve", func(t *testing.T) {
		if ref, err := k.ResolveKEK(ctx, "kek-orders"); err != nil || ref != orders {
			t.Fatalf("ResolveKEK = %+v, %v", ref, err)
		}
		if _, err := k.ResolveKEK(ctx, "kek-missing"); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("unknown key: %v, want ErrKeyNotFound", err)
		}
		_, err := k.ResolveKEK(ctx, "kek-short")
		if err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) || !strings.Contains(err.Error(), "128 bits") {
			t.Fatalf("128-bit key: %v, want a plain error naming its length", err)
		}
	})

	t.Run("probe", func(t *testing.T) {
		if err := k.Probe(ctx); err != nil {
			t.Fatalf("Probe: %v", err)
		}
	})

	var v0 kms.DEK
	t.Run("round trip", func(t *testing.T) {
		var err error
		v0, err = k.GenerateDEK(ctx, orders)
		if err != nil {
			t.Fatalf("GenerateDEK: %v", err)
		}
		if len(v0.Key) != 32 || len(v0.EDEK) != EDEKSize("kek-orders", "kek-orders@0") || len(v0.EDEK) != 73 {
			t.Fatalf("key %d bytes, EDEK %d bytes; want 32 and 73", len(v0.Key), len(v0.EDEK))
		}
		if info, err := k.DescribeEDEK(v0.EDEK); err != nil || info.KEK != "kek-orders" || info.Version != "0" {
			t.Fatalf("DescribeEDEK = %+v, %v", info, err)
		}
		got, err := k.DecryptDEK(ctx, v0.EDEK)
		if err != nil || !bytes.Equal(got, v0.Key) {
			t.Fatalf("DecryptDEK = %v (equal: %v)", err, bytes.Equal(got, v0.Key))
		}
		other, err := k.GenerateDEK(ctx, orders)
		if err != nil || bytes.Equal(other.Key, v0.Key) {
			t.Fatalf("second DEK: %v (equal to the first: %v)", err, err == nil)
		}
	})

	t.Run("generate for a missing key", func(t *testing.T) {
		if _, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "kek-missing", ID: "kek-missing"}); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("GenerateDEK(missing) = %v, want ErrKeyNotFound", err)
		}
	})

	t.Run("tampered EDEKs", func(t *testing.T) {
		name, version, iv, material, err := parseEDEK(v0.EDEK)
		if err != nil {
			t.Fatal(err)
		}
		// Another key's name with this version: the KMS refuses it.
		swapped := appendEDEK(nil, "kek-other", string(version), iv, material)
		if _, err := k.DecryptDEK(ctx, swapped); err == nil || errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("decrypt with the key name swapped: %v, want a plain error", err)
		}
		// A version that does not exist.
		if _, err := k.DecryptDEK(ctx, appendEDEK(nil, string(name), "kek-orders@9", iv, material)); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("decrypt with a missing version: %v, want ErrKeyNotFound", err)
		}
	})

	t.Run("roll over", func(t *testing.T) {
		srv.admin(t, http.MethodPost, "key/kek-orders", `{}`, http.StatusOK)
		v1, err := k.GenerateDEK(ctx, orders)
		if err != nil {
			t.Fatalf("GenerateDEK after roll over: %v", err)
		}
		if info, _ := DescribeEDEK(v1.EDEK); info.Version != "1" {
			t.Fatalf("after roll over the EDEK names version %q, want 1", info.Version)
		}
		for i, d := range []kms.DEK{v0, v1} {
			got, err := k.DecryptDEK(ctx, d.EDEK)
			if err != nil || !bytes.Equal(got, d.Key) {
				t.Fatalf("DecryptDEK(version %d) after roll over: %v", i, err)
			}
		}
	})

	t.Run("deleted key", func(t *testing.T) {
		srv.admin(t, http.MethodDelete, "key/kek-orders", "", http.StatusOK)
		if _, err := k.ResolveKEK(ctx, "kek-orders"); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("ResolveKEK(deleted) = %v, want ErrKeyNotFound", err)
		}
		// The KMS may still hand out an EEK it queued before the delete;
		// GenerateDEK's decrypt then finds the version gone.
		if _, err := k.GenerateDEK(ctx, orders); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("GenerateDEK(deleted) = %v, want ErrKeyNotFound", err)
		}
		if _, err := k.DecryptDEK(ctx, v0.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("DecryptDEK(deleted) = %v, want ErrKeyNotFound", err)
		}
	})

	t.Run("other user", func(t *testing.T) {
		c := *cfg
		c.User = "mallory"
		m, err := New(ctx, &c, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		_, err = m.ResolveKEK(ctx, "kek-other")
		if err == nil || errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) || !strings.Contains(err.Error(), "403") {
			t.Fatalf("ResolveKEK as a user the ACLs do not name: %v, want a plain 403 error", err)
		}
	})

	t.Run("outage", func(t *testing.T) {
		srv.stop(t)
		_, err := k.ResolveKEK(ctx, "kek-other")
		if !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("ResolveKEK with the KMS down: %v, want ErrUnavailable", err)
		}
		if err := k.Probe(ctx); err == nil {
			t.Fatal("Probe with the KMS down succeeded")
		}
		// Back on the same address with the same key store: the same
		// client carries on.
		srv.start(t)
		if _, err := k.ResolveKEK(ctx, "kek-other"); err != nil {
			t.Fatalf("ResolveKEK after the restart: %v", err)
		}
		if err := k.Probe(ctx); err != nil {
			t.Fatalf("Probe after the restart: %v", err)
		}
	})
}

type hadoopKMS struct {
	script, dir string
	addr, user  string
	hc          *http.Client
}

func startHadoopKMS(t *testing.T) *hadoopKMS {
	t.Helper()
	s := &hadoopKMS{
		script: filepath.Join(repoRoot(t), "scripts", "hadoop-kms.sh"),
		dir:    filepath.Join(t.TempDir(), "kms"),
		hc:     &http.Client{Timeout: 10 * time.Second},
	}
	t.Cleanup(func() { s.stop(t) })
	s.start(t)
	return s
}

func (s *hadoopKMS) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(s.script, "start", "--dir", s.dir, "--owner-pid", strconv.Itoa(os.Getpid()), "--timeout", "60")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hadoop-kms.sh start: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(s.dir, "hadoop-kms.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), "=")
		switch key {
		case "HADOOP_KMS_ADDR":
			s.addr = val
		case "HADOOP_KMS_USER":
			s.user = val
		}
	}
	if s.addr == "" || s.user == "" {
		t.Fatalf("hadoop-kms.env lacks HADOOP_KMS_ADDR or HADOOP_KMS_USER")
	}
}

func (s *hadoopKMS) stop(t *testing.T) {
	t.Helper()
	s.hc.CloseIdleConnections()
	if out, err := exec.Command(s.script, "stop", "--dir", s.dir).CombinedOutput(); err != nil {
		t.Errorf("hadoop-kms.sh stop: %v\n%s", err, out)
	}
}

// admin makes a key-management call as the test user.
func (s *hadoopKMS) admin(t *testing.T, method, path, body string, want int) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.addr+"/kms/v1/"+path+"?user.name="+s.user, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d, want %d: %.300s", method, path, resp.StatusCode, want, b)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
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
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

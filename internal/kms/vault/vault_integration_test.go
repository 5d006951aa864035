//go:build integration

package vault

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/testenv"
)

// The policy docs/kms-vault.md gives, for a Transit mount at kseal/transit
// inside the namespace the token lives in. The test token has only this
// policy (no "default"), so it proves the policy is enough.
const leastPrivilegePolicy = `
path "kseal/transit/keys/KEK-*" {
  capabilities = ["read"]
}
path "kseal/transit/datakey/plaintext/KEK-*" {
  capabilities = ["update"]
}
path "kseal/transit/decrypt/KEK-*" {
  capabilities = ["update"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
`

const (
	itNamespace = "kafka"
	itMount     = "kseal/transit"
)

// TestOpenBaoIntegration runs the provider against a real OpenBao server
// (installed from PyPI by scripts/openbao.sh) over mutual TLS, inside a
// namespace, on a custom mount, with a least-privilege token.
func TestOpenBaoIntegration(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_VAULT") == "1" {
		t.Skip("KSEAL_IT_NO_VAULT=1: skipping the real OpenBao server test")
	}
	start := time.Now()
	srv := startOpenBao(t)
	t.Logf("OpenBao up after %v at %s", time.Since(start).Round(time.Millisecond), srv.addr)
	ctx := context.Background()

	srv.admin(t, "POST", "", "sys/namespaces/"+itNamespace, `{}`)
	srv.admin(t, "POST", itNamespace, "sys/mounts/"+itMount, `{"type":"transit"}`)
	body, _ := json.Marshal(map[string]string{"policy": leastPrivilegePolicy})
	srv.admin(t, "PUT", itNamespace, "sys/policies/acl/kseal", string(body))
	for _, k := range []string{"KEK-orders", "KEK-payments", "other"} {
		srv.admin(t, "POST", itNamespace, itMount+"/keys/"+k, `{}`)
	}
	token := srv.createToken(t, `{"policies":["kseal"],"no_default_policy":true,"ttl":"1h"}`)
	// Renewal: two tokens with a 3 s period, one kept alive by renewToken.
	renewed := srv.createToken(t, `{"policies":["kseal"],"no_default_policy":true,"period":"3s"}`)
	control := srv.createToken(t, `{"policies":["kseal"],"no_default_policy":true,"period":"3s"}`)
	renewedAt := time.Now()
	kr := srv.open(t, renewed, func(c *Config) { c.RenewToken = true })
	kc := srv.open(t, control, nil)

	k := srv.open(t, token, nil)
	orders := kms.KEKRef{Name: "KEK-orders", ID: "KEK-orders"}

	t.Run("resolve", func(t *testing.T) {
		ref, err := k.ResolveKEK(ctx, "KEK-orders")
		if err != nil || ref != orders {
			t.Fatalf("ResolveKEK = %+v, %v", ref, err)
		}
		if _, err := k.ResolveKEK(ctx, "KEK-missing"); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("unknown key: %v, want ErrKeyNotFound", err)
		}
	})

	t.Run("readiness probe", func(t *testing.T) {
		// sys/health needs no policy: the least-privilege token in a
		// namespace probes fine.
		if err := k.Probe(ctx); err != nil {
			t.Fatalf("Probe: %v", err)
		}
	})

	var v1 kms.DEK
	t.Run("round trip", func(t *testing.T) {
		var err error
		v1, err = k.GenerateDEK(ctx, orders)
		if err != nil {
			t.Fatalf("GenerateDEK: %v", err)
		}
		if len(v1.Key) != 32 || len(v1.EDEK) != 73 {
			t.Fatalf("key %d bytes, EDEK %d bytes; want 32 and 73", len(v1.Key), len(v1.EDEK))
		}
		if info, err := k.DescribeEDEK(v1.EDEK); err != nil || info.KEK != "KEK-orders" || info.Version != "1" {
			t.Fatalf("DescribeEDEK = %+v, %v", info, err)
		}
		got, err := k.DecryptDEK(ctx, v1.EDEK)
		if err != nil || !bytes.Equal(got, v1.Key) {
			t.Fatalf("DecryptDEK = %v", err)
		}
		other, err := k.GenerateDEK(ctx, orders)
		if err != nil || bytes.Equal(other.Key, v1.Key) {
			t.Fatalf("second DEK: %v (equal to the first: %v)", err, err == nil)
		}
	})

	t.Run("unknown key", func(t *testing.T) {
		if _, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-missing", ID: "KEK-missing"}); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("GenerateDEK: %v, want ErrKeyNotFound", err)
		}
		_, _, ct, _ := parseEDEK(v1.EDEK)
		if _, err := k.DecryptDEK(ctx, appendEDEK(nil, "KEK-missing", 1, ct)); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("DecryptDEK: %v, want ErrKeyNotFound", err)
		}
	})

	t.Run("tampered EDEK", func(t *testing.T) {
		bad := bytes.Clone(v1.EDEK)
		bad[len(bad)-1] ^= 1
		_, err := k.DecryptDEK(ctx, bad)
		if err == nil || errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("err = %v, want a plain error", err)
		}
		// Another key's EDEK relabelled as KEK-payments does not open.
		_, _, ct, _ := parseEDEK(v1.EDEK)
		if _, err := k.DecryptDEK(ctx, appendEDEK(nil, "KEK-payments", 1, ct)); err == nil {
			t.Fatal("KEK-payments decrypted a KEK-orders EDEK")
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		// Outside KEK-*: denied, and reported as a plain error, not as
		// a missing key or an outage.
		_, err := k.ResolveKEK(ctx, "other")
		if err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) || !strings.Contains(err.Error(), "403") {
			t.Errorf("key outside the policy: %v, want a plain 403 error", err)
		}
		// The token cannot rotate, read other mounts or make tokens.
		for _, p := range []struct{ method, path string }{
			{"POST", itMount + "/keys/KEK-orders/rotate"},
			{"POST", itMount + "/encrypt/KEK-orders"},
			{"GET", "sys/mounts"},
			{"POST", "auth/token/create"},
		} {
			if status := srv.do(t, token, p.method, itNamespace, p.path, `{}`); status != http.StatusForbidden {
				t.Errorf("%s %s with the kseal token: HTTP %d, want 403", p.method, p.path, status)
			}
		}
	})

	t.Run("rotation", func(t *testing.T) {
		srv.admin(t, "POST", itNamespace, itMount+"/keys/KEK-orders/rotate", `{}`)
		v2, err := k.GenerateDEK(ctx, orders)
		if err != nil {
			t.Fatalf("GenerateDEK after rotation: %v", err)
		}
		if info, _ := DescribeEDEK(v2.EDEK); info.Version != "2" {
			t.Fatalf("new DEK under version %q, want 2", info.Version)
		}
		for _, d := range []kms.DEK{v1, v2} {
			if got, err := k.DecryptDEK(ctx, d.EDEK); err != nil || !bytes.Equal(got, d.Key) {
				t.Fatalf("DecryptDEK after rotation: %v", err)
			}
		}
		// Retiring version 1 (min_decryption_version) makes its EDEKs a
		// missing key, not an outage.
		srv.admin(t, "POST", itNamespace, itMount+"/keys/KEK-orders/config", `{"min_decryption_version":2}`)
		if _, err := k.DecryptDEK(ctx, v1.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("retired version: %v, want ErrKeyNotFound", err)
		}
		srv.admin(t, "POST", itNamespace, itMount+"/keys/KEK-orders/config", `{"min_decryption_version":1}`)
	})

	t.Run("revocation reaches a DEK in constant use", func(t *testing.T) {
		// Through the DEK layer, as kseal uses the provider: a DEK looked
		// up every 20 ms stays cached (no lookup waits for the KMS) but is
		// unwrapped again before decryptCacheMaxAge; once the key is
		// deleted, lookups fail with ErrKeyNotFound (Fetch: 91) within
		// that age plus one KMS operation.
		const maxAge, kmsTimeout = 2 * time.Second, 3 * time.Second
		srv.admin(t, "POST", itNamespace, itMount+"/keys/KEK-revoked", `{}`)
		m, err := dek.New(k, dek.Options{DecryptCacheTTL: time.Hour, DecryptCacheMaxAge: maxAge,
			NotFoundTTL: 500 * time.Millisecond, KMSTimeout: kmsTimeout,
			KMSBackoff: 100 * time.Millisecond, KMSBackoffMax: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		key, err := m.Current(ctx, kms.KEKRef{Name: "KEK-revoked", ID: "KEK-revoked"})
		if err != nil {
			t.Fatal(err)
		}
		edek := key.EDEK()
		if _, err := m.Decryptor(ctx, edek); err != nil {
			t.Fatal(err)
		}
		var slowest time.Duration
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			t0 := time.Now()
			if _, err := m.Decryptor(ctx, edek); err != nil {
				t.Fatalf("DEK in use: %v", err)
			}
			slowest = max(slowest, time.Since(t0))
		}
		s := m.Stats()
		t.Logf("5 s of use: %d background unwraps, slowest lookup %v", s.DecryptRefreshes, slowest)
		if s.DecryptMisses != 1 || s.DecryptRefreshes < 2 {
			t.Errorf("stats %+v: want 1 miss (the first lookup) and at least 2 background unwraps", s)
		}

		srv.admin(t, "POST", itNamespace, itMount+"/keys/KEK-revoked/config", `{"deletion_allowed":true}`)
		srv.admin(t, "DELETE", itNamespace, itMount+"/keys/KEK-revoked", "")
		deleted := time.Now()
		for {
			_, err := m.Decryptor(ctx, edek)
			if errors.Is(err, kms.ErrKeyNotFound) {
				break
			}
			if err != nil {
				t.Fatalf("after the deletion: %v, want ErrKeyNotFound", err)
			}
			if time.Since(deleted) > maxAge+kmsTimeout {
				t.Fatalf("the deleted key's DEK still served %v after the deletion", time.Since(deleted))
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("refused %v after the deletion (bound %v)", time.Since(deleted).Round(time.Millisecond), maxAge+kmsTimeout)
	})

	t.Run("frozen server times out", func(t *testing.T) {
		if err := testenv.Freeze(srv.pid); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		_, err := k.DecryptDEK(ctx, v1.EDEK)
		took := time.Since(begin)
		if err := syscall.Kill(srv.pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if took > 3*time.Second {
			t.Fatalf("gave up after %v; the timeout is 1s", took)
		}
		if _, err := k.DecryptDEK(ctx, v1.EDEK); err != nil {
			t.Fatalf("after SIGCONT: %v", err)
		}
	})

	t.Run("token renewal", func(t *testing.T) {
		// Past the 3 s period: the control token has expired, the renewed
		// one lives.
		time.Sleep(time.Until(renewedAt.Add(4500 * time.Millisecond)))
		if _, err := kr.ResolveKEK(ctx, "KEK-orders"); err != nil {
			t.Fatalf("renewed token: %v", err)
		}
		if _, err := kc.ResolveKEK(ctx, "KEK-orders"); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("control token without renewal: %v, want 403 (expired)", err)
		}
	})

	t.Run("stopped and restarted", func(t *testing.T) {
		srv.stop(t)
		begin := time.Now()
		_, err := k.DecryptDEK(ctx, v1.EDEK)
		if !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("stopped server: %v, want ErrUnavailable", err)
		}
		if took := time.Since(begin); took > 2*time.Second {
			t.Fatalf("stopped server: gave up after %v", took)
		}
		if err := k.Probe(ctx); !errors.Is(err, kms.ErrUnavailable) {
			t.Fatalf("Probe of the stopped server: %v, want ErrUnavailable", err)
		}
		t0 := time.Now()
		srv.restart(t)
		t.Logf("restarted in %v", time.Since(t0).Round(time.Millisecond))
		t0 = time.Now()
		// Same storage: the key versions and the token survived.
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := k.DecryptDEK(ctx, v1.EDEK)
			if err == nil {
				if !bytes.Equal(got, v1.Key) {
					t.Fatal("wrong key after restart")
				}
				break
			}
			if !errors.Is(err, kms.ErrUnavailable) || time.Now().After(deadline) {
				t.Fatalf("after restart: %v", err)
			}
			t.Logf("after restart: %v", err)
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("serving %v after the restart", time.Since(t0).Round(time.Millisecond))
		if err := k.Probe(ctx); err != nil {
			t.Fatalf("Probe after the restart: %v", err)
		}
		if _, err := k.GenerateDEK(ctx, orders); err != nil {
			t.Fatalf("GenerateDEK after restart: %v", err)
		}
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// openBao is a server started by scripts/openbao.sh.
type openBao struct {
	script, dir, tlsDir string
	pki                 *testPKI
	addr, root          string
	pid                 int
	hc                  *http.Client
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

func startOpenBao(t *testing.T) *openBao {
	t.Helper()
	base := t.TempDir()
	s := &openBao{
		script: filepath.Join(repoRoot(t), "scripts", "openbao.sh"),
		dir:    filepath.Join(base, "bao"),
		tlsDir: filepath.Join(base, "tls"),
	}
	if err := os.MkdirAll(s.tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.pki = newTestPKI(t, s.tlsDir)
	cert, err := tls.LoadX509KeyPair(s.pki.path("client.crt"), s.pki.path("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	s.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: s.pki.caPool, Certificates: []tls.Certificate{cert}}}}
	t.Cleanup(func() {
		s.hc.CloseIdleConnections()
		if out, err := exec.Command(s.script, "stop", "--dir", s.dir).CombinedOutput(); err != nil {
			t.Errorf("openbao.sh stop: %v\n%s", err, out)
		}
	})
	s.restart(t)
	return s
}

// restart runs openbao.sh start: the first time it installs (if needed),
// initialises and unseals; later it restarts the same server.
func (s *openBao) restart(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.script, "start", "--dir", s.dir, "--tls-dir", s.tlsDir,
		"--owner-pid", strconv.Itoa(os.Getpid()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openbao.sh start (set KSEAL_IT_NO_VAULT=1 to skip this test): %v\n%s", err, out)
	}
	env := readEnvFile(t, filepath.Join(s.dir, "openbao.env"))
	s.addr, s.root = env["BAO_ADDR"], env["BAO_TOKEN"]
	pid, err := strconv.Atoi(env["BAO_PID"])
	if err != nil || s.addr == "" || s.root == "" || !strings.HasPrefix(s.addr, "https://127.0.0.1:") {
		t.Fatalf("openbao.env: addr %q pid %q root set %v", s.addr, env["BAO_PID"], s.root != "")
	}
	s.pid = pid
}

func (s *openBao) stop(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(s.script, "stop", "--dir", s.dir).CombinedOutput(); err != nil {
		t.Fatalf("openbao.sh stop: %v\n%s", err, out)
	}
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// do sends one request with token and returns the status.
func (s *openBao) do(t *testing.T, token, method, namespace, path, body string) int {
	t.Helper()
	status, _ := s.request(t, token, method, namespace, path, body)
	return status
}

func (s *openBao) request(t *testing.T, token, method, namespace, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.addr+"/v1/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	if namespace != "" {
		req.Header.Set("X-Vault-Namespace", namespace)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// admin makes a set-up request with the root token; it must succeed.
func (s *openBao) admin(t *testing.T, method, namespace, path, body string) []byte {
	t.Helper()
	status, b := s.request(t, s.root, method, namespace, path, body)
	if status/100 != 2 {
		t.Fatalf("admin %s %s (namespace %q): HTTP %d: %s", method, path, namespace, status, b)
	}
	return b
}

// createToken makes a token in the test namespace (not root, no default
// policy) and returns it.
func (s *openBao) createToken(t *testing.T, body string) string {
	t.Helper()
	var out struct {
		Auth struct {
			ClientToken string   `json:"client_token"`
			Policies    []string `json:"policies"`
		} `json:"auth"`
	}
	if err := json.Unmarshal(s.admin(t, "POST", itNamespace, "auth/token/create", body), &out); err != nil || out.Auth.ClientToken == "" {
		t.Fatalf("token create: %v", err)
	}
	if fmt.Sprint(out.Auth.Policies) != "[kseal]" {
		t.Fatalf("token policies %v, want only kseal", out.Auth.Policies)
	}
	return out.Auth.ClientToken
}

// open opens the provider as kseal would, with token in a file and the
// client certificate as PKCS#12.
func (s *openBao) open(t *testing.T, token string, edit func(*Config)) *KMS {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Address = s.addr
	cfg.Namespace = itNamespace
	cfg.Mount = itMount
	cfg.TokenFile = path
	cfg.Timeout = time.Second
	cfg.TLS = TLSConfig{CAFile: s.pki.path("ca.crt"), PKCS12File: s.pki.path("client.p12"), PKCS12PasswordFile: s.pki.path("client.p12.pass")}
	if edit != nil {
		edit(cfg)
	}
	k, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

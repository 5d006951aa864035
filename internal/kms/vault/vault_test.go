package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

const testToken = "s.TestTokenDoNotLog0123456789"

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openTest opens a KMS against addr with the token in a file (not an
// environment variable: t.Setenv rules out parallel tests); edit adjusts
// the config. The log is returned so tests can check
// that the token never shows up in it.
func openTest(t *testing.T, addr string, edit func(*Config)) (*KMS, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Address = addr
	cfg.TokenFile = path
	if edit != nil {
		edit(cfg)
	}
	logs := &syncBuffer{}
	k, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		k.Close()
		if strings.Contains(logs.String(), testToken) {
			t.Errorf("the token appears in the log:\n%s", logs)
		}
	})
	return k, logs
}

// noToken fails the test when err's text carries the token.
func noToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Fatalf("error carries the token: %v", err)
	}
}

func TestRoundTripAndRequestShapes(t *testing.T) {
	fake := newFakeTransit(t, "kafka/transit", testToken)
	fake.namespace = "team-a/kafka"
	fake.addKey("KEK-orders")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	k, _ := openTest(t, srv.URL+"/", func(c *Config) {
		c.Mount = "kafka/transit"
		c.Namespace = "team-a/kafka"
	})
	ctx := context.Background()

	ref, err := k.ResolveKEK(ctx, "KEK-orders")
	if err != nil || ref != (kms.KEKRef{Name: "KEK-orders", ID: "KEK-orders"}) {
		t.Fatalf("ResolveKEK = %+v, %v", ref, err)
	}
	dek, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatalf("GenerateDEK: %v", err)
	}
	if len(dek.Key) != 32 || len(dek.EDEK) != 73 || len(dek.EDEK) != EDEKSize("KEK-orders", 1, 60) {
		t.Fatalf("DEK key %d bytes, EDEK %d bytes; want 32 and 73", len(dek.Key), len(dek.EDEK))
	}
	info, err := k.DescribeEDEK(dek.EDEK)
	if err != nil || info != (kms.EDEKInfo{KEK: "KEK-orders", Version: "1"}) {
		t.Fatalf("DescribeEDEK = %+v, %v", info, err)
	}
	got, err := k.DecryptDEK(ctx, dek.EDEK)
	if err != nil || !bytes.Equal(got, dek.Key) {
		t.Fatalf("DecryptDEK = %x, %v; want %x", got, err, dek.Key)
	}

	reqs := fake.log()
	want := []struct{ method, path string }{
		{"GET", "/v1/kafka/transit/keys/KEK-orders"},
		{"POST", "/v1/kafka/transit/datakey/plaintext/KEK-orders"},
		{"POST", "/v1/kafka/transit/decrypt/KEK-orders"},
	}
	if len(reqs) != len(want) {
		t.Fatalf("%d requests, want %d: %+v", len(reqs), len(want), reqs)
	}
	for i, w := range want {
		r := reqs[i]
		if r.Method != w.method || r.Path != w.path || r.Token != testToken || r.Namespace != "team-a/kafka" {
			t.Errorf("request %d = %s %s token ok %v ns %q; want %s %s", i, r.Method, r.Path, r.Token == testToken, r.Namespace, w.method, w.path)
		}
		if r.Method == "POST" && r.ContentType != "application/json" {
			t.Errorf("request %d content type %q", i, r.ContentType)
		}
	}
	if reqs[1].Body != `{"bits":256}` {
		t.Errorf("datakey body %s", reqs[1].Body)
	}
	var dec struct{ Ciphertext string }
	if err := json.Unmarshal([]byte(reqs[2].Body), &dec); err != nil || !strings.HasPrefix(dec.Ciphertext, "vault:v1:") || len(dec.Ciphertext) != 89 {
		t.Errorf("decrypt body %s (%v): want an 89-character vault:v1: ciphertext", reqs[2].Body, err)
	}
}

func TestRotationKeepsOldEDEKs(t *testing.T) {
	fake := newFakeTransit(t, "transit", testToken)
	fake.addKey("KEK-a")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	k, _ := openTest(t, srv.URL, nil)
	ctx := context.Background()
	ref := kms.KEKRef{Name: "KEK-a", ID: "KEK-a"}
	old, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	fake.rotate("KEK-a")
	fresh, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dek     kms.DEK
		version string
	}{{old, "1"}, {fresh, "2"}} {
		if info, _ := DescribeEDEK(tc.dek.EDEK); info.Version != tc.version {
			t.Errorf("EDEK version %q, want %s", info.Version, tc.version)
		}
		got, err := k.DecryptDEK(ctx, tc.dek.EDEK)
		if err != nil || !bytes.Equal(got, tc.dek.Key) {
			t.Errorf("v%s: DecryptDEK = %v", tc.version, err)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	type class int
	const (
		plain class = iota
		notFound
		unavailable
		denied
	)
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   class
	}{
		{"404 key read", 404, `{"errors":[]}`, notFound},
		{"400 encryption key not found", 400, `{"errors":["encryption key not found"]}`, notFound},
		{"400 version too new", 400, `{"errors":["invalid ciphertext: version is too new"]}`, notFound},
		{"400 version too old", 400, `{"errors":["ciphertext or signature version is disallowed by policy (too old)"]}`, notFound},
		{"404 no such mount", 404, `{"errors":["no handler for route \"nope/keys/k\". route entry not found."]}`, plain},
		{"403 permission denied", 403, `{"errors":["permission denied"]}`, denied},
		{"401", 401, ``, denied},
		{"400 authentication failed", 400, `{"errors":["cipher: message authentication failed"]}`, plain},
		{"429 rate limited", 429, `{"errors":["request path \"transit/decrypt/k\": rate limit quota exceeded"]}`, unavailable},
		{"500", 500, `{"errors":["internal error"]}`, unavailable},
		{"502 html from a proxy", 502, `<html>bad gateway</html>`, unavailable},
		{"503 sealed", 503, `{"errors":["Vault is sealed"]}`, unavailable},
		{"412 not replicated yet", 412, ``, unavailable},
		{"473 performance standby", 473, ``, unavailable},
		{"200 without data", 200, `{"data":null}`, plain},
		{"200 not json", 200, `not json`, plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			k, _ := openTest(t, srv.URL, nil)
			edek := appendEDEK(nil, "KEK-a", 1, make([]byte, 60))
			for op, call := range map[string]func() error{
				"ResolveKEK": func() error { _, err := k.ResolveKEK(context.Background(), "KEK-a"); return err },
				"GenerateDEK": func() error {
					_, err := k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
					return err
				},
				"DecryptDEK": func() error { _, err := k.DecryptDEK(context.Background(), edek); return err },
			} {
				err := call()
				noToken(t, err)
				var got class
				switch {
				case err == nil:
					t.Fatalf("%s: no error", op)
				case errors.Is(err, kms.ErrKeyNotFound) && errors.Is(err, kms.ErrUnavailable):
					t.Fatalf("%s: both not-found and unavailable: %v", op, err)
				case errors.Is(err, kms.ErrKeyNotFound):
					got = notFound
				case errors.Is(err, kms.ErrUnavailable):
					got = unavailable
				case errors.Is(err, kms.ErrAccessDenied):
					got = denied
				}
				if got != tc.want {
					t.Errorf("%s: class %d, want %d: %v", op, got, tc.want, err)
				}
			}
		})
	}
}

func TestKeyStates(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       error // kms.ErrKeyUnusable, or nil for a plain error
	}{
		// A key that exists is never "not found": that would let its
		// topics fall back to the unresolvedKeyPolicy.
		{"soft-deleted", `{"name":"k","latest_version":1,"soft_deleted":true,"supports_encryption":true}`, kms.ErrKeyUnusable},
		{"no versions", `{"name":"k","latest_version":0,"supports_encryption":true}`, kms.ErrKeyUnusable},
		{"signing key", `{"name":"k","type":"ed25519","latest_version":1,"supports_encryption":false}`, nil},
		{"derived key", `{"name":"k","latest_version":1,"derived":true,"supports_encryption":true}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"data":`+tc.data+`}`)
			}))
			defer srv.Close()
			k, _ := openTest(t, srv.URL, nil)
			_, err := k.ResolveKEK(context.Background(), "k")
			if err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) ||
				errors.Is(err, kms.ErrKeyUnusable) != (tc.want != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestInvalidNamesNeverReachTheServer(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	k, _ := openTest(t, srv.URL, nil)
	for _, name := range []string{"", "../sys/seal", "a/b", "a b", "KEK-ü", strings.Repeat("a", 256)} {
		if _, err := k.ResolveKEK(context.Background(), name); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("ResolveKEK(%q) = %v, want ErrKeyNotFound", name, err)
		}
		if _, err := k.GenerateDEK(context.Background(), kms.KEKRef{Name: name}); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("GenerateDEK(%q) = %v, want ErrKeyNotFound", name, err)
		}
	}
	if _, err := k.DecryptDEK(context.Background(), []byte{1, 2, '.', '/', 1, 0}); !errors.Is(err, errMalformedEDEK) {
		t.Errorf("DecryptDEK of a bad name = %v", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestTimeoutIsUnavailable(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	k, _ := openTest(t, srv.URL, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := k.DecryptDEK(context.Background(), appendEDEK(nil, "KEK-a", 1, make([]byte, 60)))
	if !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about the 200ms timeout", d)
	}
}

func TestConnectionRefusedIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	k, _ := openTest(t, "http://"+addr, nil)
	_, err = k.ResolveKEK(context.Background(), "KEK-a")
	if !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestOversizedResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"data":{"name":"`)
		w.Write(bytes.Repeat([]byte{'a'}, maxResponse))
		io.WriteString(w, `"}}`)
	}))
	defer srv.Close()
	k, _ := openTest(t, srv.URL, nil)
	_, err := k.ResolveKEK(context.Background(), "KEK-a")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestBadDataKeyAnswers(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"short key", `{"plaintext":"AAAA","ciphertext":"vault:v1:AAAA"}`},
		{"not vault prefix", `{"plaintext":"` + b64(32) + `","ciphertext":"v1:AAAA"}`},
		{"version zero", `{"plaintext":"` + b64(32) + `","ciphertext":"vault:v0:AAAA"}`},
		{"leading zero version", `{"plaintext":"` + b64(32) + `","ciphertext":"vault:v01:AAAA"}`},
		{"bad base64", `{"plaintext":"` + b64(32) + `","ciphertext":"vault:v1:A*AA"}`},
		{"empty ciphertext", `{"plaintext":"` + b64(32) + `","ciphertext":"vault:v1:"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"data":`+tc.data+`}`)
			}))
			defer srv.Close()
			k, _ := openTest(t, srv.URL, nil)
			_, err := k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-a"})
			if err == nil || errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) {
				t.Fatalf("err = %v, want a plain error", err)
			}
		})
	}
}

func b64(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }

func TestTokenFileIsReloaded(t *testing.T) {
	old := tokenFileCheck
	tokenFileCheck = 20 * time.Millisecond
	defer func() { tokenFileCheck = old }()

	fake := newFakeTransit(t, "transit", "s.first")
	fake.addKey("KEK-a")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("  s.first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, logs := openTest(t, srv.URL, func(c *Config) { c.TokenFile = path })
	if _, err := k.ResolveKEK(context.Background(), "KEK-a"); err != nil {
		t.Fatalf("with the first token: %v", err)
	}
	fake.mu.Lock()
	fake.token = "s.second"
	fake.mu.Unlock()
	if err := os.WriteFile(path+".tmp", []byte("s.second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := k.ResolveKEK(context.Background(), "KEK-a")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new token not picked up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "s.first") || strings.Contains(logs.String(), "s.second") {
		t.Errorf("a token appears in the log:\n%s", logs)
	}
}

func TestRenewal(t *testing.T) {
	oldMin := renewMin
	renewMin = 10 * time.Millisecond
	t.Cleanup(func() { renewMin = oldMin }) // after the parallel subtests

	for _, tc := range []struct {
		name    string
		status  int
		body    string
		atLeast int32 // renew-self calls within 1.2 s
		atMost  int32
	}{
		// lease 1 s: renewed after 2/3 s, so twice in 1.2 s (at 0 and ~0.67 s).
		{"renewable 1s", 200, `{"auth":{"lease_duration":1,"renewable":true}}`, 2, 3},
		{"root token", 400, `{"errors":["lease is not renewable"]}`, 1, 1},
		{"non-expiring", 200, `{"auth":{"lease_duration":0,"renewable":false}}`, 1, 1},
		// failures retry after 1 s: the first try and one retry.
		{"server down", 503, `{"errors":["Vault is sealed"]}`, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeTransit(t, "transit", testToken)
			var calls atomic.Int32
			fake.renew = func() (int, string) { calls.Add(1); return tc.status, tc.body }
			srv := httptest.NewServer(fake)
			defer srv.Close()
			k, _ := openTest(t, srv.URL, func(c *Config) { c.RenewToken = true })
			time.Sleep(1200 * time.Millisecond)
			k.Close()
			if n := calls.Load(); n < tc.atLeast || n > tc.atMost {
				t.Errorf("%d renew-self calls, want %d to %d", n, tc.atLeast, tc.atMost)
			}
			for _, r := range fake.log() {
				if r.Path != "/v1/auth/token/renew-self" || r.Method != "POST" || r.Token != testToken {
					t.Errorf("unexpected request %s %s", r.Method, r.Path)
				}
			}
		})
	}
}

func TestCloseDoesNotWaitForAHungRenewal(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	k, _ := openTest(t, srv.URL, func(c *Config) { c.RenewToken = true; c.Timeout = time.Minute })
	time.Sleep(50 * time.Millisecond) // let the first renewal start
	start := time.Now()
	k.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}

func TestTokenFromEnv(t *testing.T) {
	fake := newFakeTransit(t, "transit", testToken)
	fake.addKey("KEK-a")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	t.Setenv("KSEAL_TEST_VAULT_TOKEN", " "+testToken+"\n")
	k, _ := openTest(t, srv.URL, func(c *Config) { c.TokenFile, c.TokenEnv = "", "KSEAL_TEST_VAULT_TOKEN" })
	if k.done != nil {
		t.Error("a maintenance goroutine runs with neither a token file nor renewal")
	}
	if _, err := k.ResolveKEK(context.Background(), "KEK-a"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenTokenErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	spaced := filepath.Join(dir, "spaced")
	os.WriteFile(spaced, []byte("s.abc def"), 0o600)
	t.Setenv("KSEAL_TEST_EMPTY", "")
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"missing file", func(c *Config) { c.TokenFile = filepath.Join(dir, "nope") }, "tokenFile"},
		{"empty file", func(c *Config) { c.TokenFile = empty }, "token is empty"},
		{"space in token", func(c *Config) { c.TokenFile = spaced }, "space or non-printable"},
		{"unset env", func(c *Config) { c.TokenEnv = "KSEAL_TEST_UNSET_VAR" }, "KSEAL_TEST_UNSET_VAR is empty or not set"},
		{"empty env", func(c *Config) { c.TokenEnv = "KSEAL_TEST_EMPTY" }, "KSEAL_TEST_EMPTY is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.Address = "http://127.0.0.1:8200"
			tc.edit(cfg)
			_, err := New(context.Background(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "abc") {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
}

// TestRedirects: a redirect is followed only to the same scheme, host and
// port. A redirect anywhere else (a standby node's 307 to the active node
// included) is refused before the token is sent there: net/http copies
// X-Vault-Token to any host.
func TestRedirects(t *testing.T) {
	fake := newFakeTransit(t, "transit", testToken)
	fake.addKey("KEK-a")
	// other is a second server on another port; it must never see the
	// token, nor any request at all.
	var otherHits atomic.Int32
	var otherToken atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		if r.Header.Get("X-Vault-Token") != "" {
			otherToken.Store(true)
		}
		fake.ServeHTTP(w, r)
	}))
	defer other.Close()
	var crossOrigin atomic.Bool
	var first *httptest.Server
	first = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/moved/"):
			r2 := r.Clone(r.Context())
			r2.URL.Path, r2.URL.RawPath = strings.TrimPrefix(r.URL.Path, "/moved"), ""
			fake.ServeHTTP(w, r2)
		case crossOrigin.Load():
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
		default:
			// Same origin: followed.
			http.Redirect(w, r, first.URL+"/moved"+r.URL.Path, http.StatusTemporaryRedirect)
		}
	}))
	defer first.Close()
	k, logs := openTest(t, first.URL, nil)
	dek, err := k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-a"})
	if err != nil {
		t.Fatalf("GenerateDEK through a same-origin 307: %v", err)
	}
	if got, err := k.DecryptDEK(context.Background(), dek.EDEK); err != nil || !bytes.Equal(got, dek.Key) {
		t.Fatalf("DecryptDEK through a same-origin 307: %v", err)
	}

	crossOrigin.Store(true)
	for name, call := range map[string]func() error{
		"ResolveKEK":  func() error { _, err := k.ResolveKEK(context.Background(), "KEK-a"); return err },
		"GenerateDEK": func() error { _, err := k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-a"}); return err },
		"DecryptDEK":  func() error { _, err := k.DecryptDEK(context.Background(), dek.EDEK); return err },
		"renew-self": func() error {
			var auth *tokenAuth
			return k.call(context.Background(), "renew token", "", http.MethodPost, "auth/token/renew-self", []byte(`{}`), &auth)
		},
	} {
		err := call()
		if !errors.Is(err, kms.ErrRedirectRefused) {
			t.Errorf("%s redirected to another port: err = %v, want ErrRedirectRefused", name, err)
		}
		if errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("%s: a refused redirect is neither an outage nor a missing key: %v", name, err)
		}
	}
	if n := otherHits.Load(); n != 0 || otherToken.Load() {
		t.Errorf("the other server got %d requests (token seen: %v)", n, otherToken.Load())
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("token logged")
	}

	// https -> http on the same host and port is another origin too: the
	// token would cross the network in clear.
	tlsFirst := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+r.Host+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer tlsFirst.Close()
	k2, _ := openTest(t, tlsFirst.URL, nil)
	k2.hc.Transport.(*http.Transport).TLSClientConfig.RootCAs = tlsFirst.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	if _, err := k2.ResolveKEK(context.Background(), "KEK-a"); !errors.Is(err, kms.ErrRedirectRefused) {
		t.Fatalf("https->http redirect: err = %v", err)
	}
}

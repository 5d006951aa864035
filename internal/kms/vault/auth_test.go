package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// fakeAuth puts a log-in endpoint and token lifetimes in front of a
// fakeTransit: it issues tokens at auth/<mount>/login for the credentials in
// want, renews them up to maxTTL, and refuses expired or revoked tokens with
// 403 like Vault does.
type fakeAuth struct {
	transit *fakeTransit
	mount   string
	ttl     time.Duration
	maxTTL  time.Duration

	mu       sync.Mutex
	want     map[string]string // the login body that succeeds
	tokens   map[string]*fakeToken
	logins   []map[string]string
	renewals int
	refused  int
}

type fakeToken struct{ created, expires time.Time }

func newFakeAuth(t *testing.T, mount string, want map[string]string) *fakeAuth {
	f := &fakeAuth{transit: newFakeTransit(t, "transit", testToken), mount: mount, ttl: time.Hour, maxTTL: 24 * time.Hour,
		want: want, tokens: map[string]*fakeToken{}}
	f.transit.addKey("KEK-a")
	return f
}

func (f *fakeAuth) setWant(want map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.want = want
}

func (f *fakeAuth) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

func (f *fakeAuth) counts() (logins, renewals, refused int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.logins), f.renewals, f.refused
}

func (f *fakeAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	switch r.URL.Path {
	case "/v1/auth/" + f.mount + "/login":
		if r.Header.Get("X-Vault-Token") != "" {
			replyErr(w, http.StatusBadRequest, "login sent a token")
			return
		}
		var body map[string]string
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			replyErr(w, http.StatusBadRequest, "bad body")
			return
		}
		f.logins = append(f.logins, body)
		if fmt.Sprint(body) != fmt.Sprint(f.want) {
			replyErr(w, http.StatusBadRequest, "invalid role or secret ID")
			return
		}
		tok := fmt.Sprintf("s.login-%d", len(f.logins))
		f.tokens[tok] = &fakeToken{created: now, expires: now.Add(f.ttl)}
		reply(w, http.StatusOK, map[string]any{"auth": map[string]any{
			"client_token": tok, "lease_duration": int(f.ttl / time.Second), "renewable": true}})
		return
	}
	tok := f.tokens[r.Header.Get("X-Vault-Token")]
	if tok == nil || now.After(tok.expires) {
		f.refused++
		replyErr(w, http.StatusForbidden, "permission denied")
		return
	}
	if r.URL.Path == "/v1/auth/token/renew-self" {
		f.renewals++
		tok.expires = now.Add(f.ttl)
		if limit := tok.created.Add(f.maxTTL); tok.expires.After(limit) {
			tok.expires = limit
		}
		reply(w, http.StatusOK, map[string]any{"auth": map[string]any{
			"client_token": r.Header.Get("X-Vault-Token"), "lease_duration": int(tok.expires.Sub(now) / time.Second), "renewable": true}})
		return
	}
	r.Header.Set("X-Vault-Token", testToken)
	f.transit.ServeHTTP(w, r)
}

// writeFile writes a credential file in dir.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// openAuth opens a KMS logging in with auth; the log must never carry a
// token or one of secrets.
func openAuth(t *testing.T, addr string, auth AuthConfig, secrets ...string) (*KMS, *syncBuffer) {
	t.Helper()
	k, logs := openTest(t, addr, func(c *Config) { c.TokenFile, c.Auth = "", auth })
	t.Cleanup(func() {
		for _, s := range append(secrets, "s.login-") {
			if strings.Contains(logs.String(), s) {
				t.Errorf("%q appears in the log:\n%s", s, logs)
			}
		}
	})
	return k, logs
}

func TestLoginMethods(t *testing.T) {
	dir := t.TempDir()
	roleID := writeFile(t, dir, "role-id", "role-1234")
	secretID := writeFile(t, dir, "secret-id", "secret-5678")
	jwt := writeFile(t, dir, "jwt", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrc2VhbCJ9.c2ln")
	for _, tc := range []struct {
		name  string
		auth  AuthConfig
		mount string
		want  map[string]string
	}{
		{"approle", AuthConfig{Method: "approle", RoleIDFile: roleID, SecretIDFile: secretID}, "approle",
			map[string]string{"role_id": "role-1234", "secret_id": "secret-5678"}},
		{"approle without secret id", AuthConfig{Method: "approle", Mount: "apps/kseal", RoleIDFile: roleID}, "apps/kseal",
			map[string]string{"role_id": "role-1234"}},
		{"kubernetes", AuthConfig{Method: "kubernetes", Role: "kseal", JWTFile: jwt}, "kubernetes",
			map[string]string{"role": "kseal", "jwt": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrc2VhbCJ9.c2ln"}},
		{"jwt", AuthConfig{Method: "jwt", Mount: "oidc", Role: "kafka", JWTFile: jwt}, "oidc",
			map[string]string{"role": "kafka", "jwt": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrc2VhbCJ9.c2ln"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeAuth(t, tc.mount, tc.want)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			k, _ := openAuth(t, srv.URL, tc.auth, "secret-5678", "c2ln")
			kek, err := k.ResolveKEK(context.Background(), "KEK-a")
			if err != nil {
				t.Fatal(err)
			}
			d, err := k.GenerateDEK(context.Background(), kek)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := k.DecryptDEK(context.Background(), d.EDEK); err != nil || string(pt) != string(d.Key) {
				t.Fatalf("decrypt: %v", err)
			}
			if logins, _, refused := fake.counts(); logins != 1 || refused != 0 {
				t.Fatalf("%d logins, %d refused requests; want 1 and 0", logins, refused)
			}
		})
	}
}

// A refused token (revoked, or expired while kseal was stopped) makes the
// next request log in again, re-reading a rotated secret id, and succeed.
func TestReloginAfterRefusalRereadsSecretID(t *testing.T) {
	dir := t.TempDir()
	roleID := writeFile(t, dir, "role-id", "role-1")
	secretID := writeFile(t, dir, "secret-id", "secret-old")
	fake := newFakeAuth(t, "approle", map[string]string{"role_id": "role-1", "secret_id": "secret-old"})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	old := reloginMin
	reloginMin = 0
	t.Cleanup(func() { reloginMin = old })
	k, _ := openAuth(t, srv.URL, AuthConfig{Method: "approle", RoleIDFile: roleID, SecretIDFile: secretID}, "secret-old", "secret-new")
	ctx := context.Background()
	kek := kms.KEKRef{Name: "KEK-a", ID: "KEK-a"}
	if _, err := k.GenerateDEK(ctx, kek); err != nil {
		t.Fatal(err)
	}
	fake.revokeAll()
	writeFile(t, dir, "secret-id", "secret-new")
	fake.setWant(map[string]string{"role_id": "role-1", "secret_id": "secret-new"})
	if _, err := k.GenerateDEK(ctx, kek); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	logins, _, refused := fake.counts()
	if logins != 2 || refused < 1 {
		t.Fatalf("%d logins, %d refused; want 2 and at least 1", logins, refused)
	}
	if k.logins.Load() != 2 {
		t.Fatalf("client counted %d logins", k.logins.Load())
	}
}

// Renewal keeps the token alive until its TTL shrinks toward the max TTL;
// then kseal logs in again before the token expires, so no request is ever
// refused.
func TestRenewalThenReloginAtMaxTTL(t *testing.T) {
	oldMin := renewMin
	renewMin = 10 * time.Millisecond
	t.Cleanup(func() { renewMin = oldMin })
	dir := t.TempDir()
	fake := newFakeAuth(t, "jwt", map[string]string{"role": "r", "jwt": "a.b.c"})
	fake.ttl, fake.maxTTL = 2*time.Second, 3*time.Second
	srv := httptest.NewServer(fake)
	defer srv.Close()
	k, _ := openAuth(t, srv.URL, AuthConfig{Method: "jwt", Role: "r", JWTFile: writeFile(t, dir, "jwt", "a.b.c")})
	ctx := context.Background()
	kek := kms.KEKRef{Name: "KEK-a", ID: "KEK-a"}
	deadline := time.Now().Add(3500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := k.GenerateDEK(ctx, kek); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logins, renewals, refused := fake.counts()
	if logins < 2 || renewals < 1 || refused != 0 {
		t.Fatalf("%d logins, %d renewals, %d refused; want >= 2, >= 1, 0", logins, renewals, refused)
	}
}

func TestLoginFailures(t *testing.T) {
	dir := t.TempDir()
	fake := newFakeAuth(t, "approle", map[string]string{"role_id": "role-1", "secret_id": "right"})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	kek := kms.KEKRef{Name: "KEK-a", ID: "KEK-a"}
	k, _ := openAuth(t, srv.URL, AuthConfig{Method: "approle", RoleIDFile: writeFile(t, dir, "r", "role-1"),
		SecretIDFile: writeFile(t, dir, "s", "wrong-secret")}, "wrong-secret")
	_, err := k.GenerateDEK(context.Background(), kek)
	if err == nil || !strings.Contains(err.Error(), "login (approle at auth/approle)") || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("bad secret id: %v", err)
	}
	k2, _ := openAuth(t, srv.URL, AuthConfig{Method: "approle", RoleIDFile: filepath.Join(dir, "missing")})
	_, err = k2.GenerateDEK(context.Background(), kek)
	if err == nil || !strings.Contains(err.Error(), "auth.roleIdFile") {
		t.Fatalf("missing role id file: %v", err)
	}
}

// A token refused right after a log-in (a policy without the path) does not
// make every request log in again.
func TestNoLoginStormOnPolicyDenial(t *testing.T) {
	dir := t.TempDir()
	want := map[string]string{"role_id": "role-1"}
	fake := newFakeAuth(t, "approle", want)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	k, _ := openAuth(t, srv.URL, AuthConfig{Method: "approle", RoleIDFile: writeFile(t, dir, "r", "role-1")})
	for range 5 {
		// Every token refused, as a policy lacking the path would.
		fake.revokeAll()
		k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
	}
	if logins, _, _ := fake.counts(); logins > 3 {
		t.Fatalf("%d logins for 5 refused requests within reloginMin", logins)
	}
}

// A log-in answered with a redirect to another origin is refused before the
// credentials go there.
func TestLoginRedirectRefused(t *testing.T) {
	var reached atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	dir := t.TempDir()
	k, _ := openAuth(t, srv.URL, AuthConfig{Method: "approle", RoleIDFile: writeFile(t, dir, "r", "role-1"),
		SecretIDFile: writeFile(t, dir, "s", "secret-redirected")}, "secret-redirected")
	_, err := k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
	if !errors.Is(err, kms.ErrRedirectRefused) {
		t.Fatalf("err = %v, want a refused redirect", err)
	}
	k.Close()
	if n := reached.Load(); n != 0 {
		t.Fatalf("the other origin got %d requests", n)
	}
}

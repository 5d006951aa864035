package azure

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

func openFake(t *testing.T, f *fakeVault, mod func(c *Config)) *KMS {
	t.Helper()
	c := fakeConfig(f)
	if mod != nil {
		mod(c)
	}
	k, err := New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// keyOpParams is the body of a wrapkey or unwrapkey request.
type keyOpParams struct {
	Alg   string `json:"alg"`
	Value string `json:"value"`
}

func TestRequestShapes(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, nil)
	createKey(t, k, "KEK-orders", "RSA", 2048)
	f.ResetRecorded()
	ctx := context.Background()
	d, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-orders", ID: "KEK-orders"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.DecryptDEK(ctx, d.EDEK); err != nil {
		t.Fatal(err)
	}
	p, _ := parseEDEK(d.EDEK)
	reqs := f.Recorded()
	// The SDK's first request elicits the vault's challenge: no token, no
	// body. A key's current version is asked for with a trailing slash.
	if len(reqs) == 0 || reqs[0].Header.Get("Authorization") != "" || len(reqs[0].Body) != 0 {
		t.Fatalf("first request %+v, want the challenge request", reqs)
	}
	reqs = reqs[1:]
	want := []struct{ method, path string }{
		{"GET", "/keys/KEK-orders/"},
		{"POST", "/keys/KEK-orders/" + p.version + "/wrapkey"},
		{"POST", "/keys/KEK-orders/" + p.version + "/unwrapkey"},
	}
	if len(reqs) != len(want) {
		t.Fatalf("%d requests, want %d: %+v", len(reqs), len(want), reqs)
	}
	for i, w := range want {
		r := reqs[i]
		if r.Method != w.method || r.Path != w.path || r.Query != "api-version=7.4" {
			t.Errorf("request %d: %s %s?%s, want %s %s?api-version=7.4", i, r.Method, r.Path, r.Query, w.method, w.path)
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok-") {
			t.Errorf("request %d: Authorization %q", i, r.Header.Get("Authorization"))
		}
	}
	var wrap keyOpParams
	if err := json.Unmarshal(reqs[1].Body, &wrap); err != nil {
		t.Fatal(err)
	}
	if wrap.Alg != "RSA-OAEP-256" || wrap.Value != base64.RawURLEncoding.EncodeToString(d.Key) {
		t.Errorf("wrapkey body %s: want alg RSA-OAEP-256 and the DEK in unpadded base64url", reqs[1].Body)
	}
	if ct := reqs[1].Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var unwrap keyOpParams
	json.Unmarshal(reqs[2].Body, &unwrap)
	if unwrap.Alg != "RSA-OAEP-256" || unwrap.Value != base64.RawURLEncoding.EncodeToString(p.wrapped) {
		t.Errorf("unwrapkey body %s", reqs[2].Body)
	}
}

func TestOctHSMKey(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, nil)
	createKey(t, k, "KEK-hsm", "oct-HSM", 256)
	ctx := context.Background()
	d, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-hsm", ID: "KEK-hsm"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.EDEK) != 1+1+7+1+16+40 {
		t.Fatalf("oct-HSM EDEK is %d bytes", len(d.EDEK))
	}
	p, _ := parseEDEK(d.EDEK)
	if p.alg != algA256KW {
		t.Fatalf("alg %d", p.alg)
	}
	got, err := k.DecryptDEK(ctx, d.EDEK)
	if err != nil || !bytes.Equal(got, d.Key) {
		t.Fatalf("DecryptDEK = %v", err)
	}
}

func TestRefusedKeys(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, nil)
	createKey(t, k, "KEK-ec", "EC", 0)
	adminCall(t, k, http.MethodPost, "/keys/KEK-signonly/create", map[string]any{"kty": "RSA", "key_size": 2048, "key_ops": []string{"sign", "verify"}})
	createKey(t, k, "KEK-off", "RSA", 2048)
	kb := adminCall(t, k, http.MethodGet, "/keys/KEK-off", nil)
	kid := kb["key"].(map[string]any)["kid"].(string)
	v, _ := versionFromKID(kid, "KEK-off")
	adminCall(t, k, http.MethodPatch, "/keys/KEK-off/"+v, map[string]any{"attributes": map[string]any{"enabled": false}})

	for name, want := range map[string]string{
		"KEK-ec":       "cannot wrap keys",
		"KEK-signonly": "does not allow wrapKey",
	} {
		_, err := k.ResolveKEK(context.Background(), name)
		if err == nil || !strings.Contains(err.Error(), want) || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyUnusable) {
			t.Errorf("ResolveKEK(%s) = %v, want a plain error with %q", name, err, want)
		}
	}
	// A disabled key exists: unusable, never "not found" (which would let
	// its topics fall back to the unresolvedKeyPolicy).
	_, err := k.ResolveKEK(context.Background(), "KEK-off")
	if err == nil || !strings.Contains(err.Error(), "is disabled") || !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
		t.Errorf("ResolveKEK(KEK-off) = %v, want ErrKeyUnusable only", err)
	}
	// And a wrap under it (a DEK refresh racing the disabling) too.
	_, err = k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-off", ID: "KEK-off"})
	if !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
		t.Errorf("GenerateDEK(KEK-off) = %v, want ErrKeyUnusable only", err)
	}
}

func TestDisabledKeyWrapIsUnusable(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, nil)
	createKey(t, k, "KEK-late", "RSA", 2048)
	kb := adminCall(t, k, http.MethodGet, "/keys/KEK-late", nil)
	v, _ := versionFromKID(kb["key"].(map[string]any)["kid"].(string), "KEK-late")
	info, err := k.currentKey(context.Background(), "KEK-late")
	if err != nil {
		t.Fatal(err)
	}
	adminCall(t, k, http.MethodPatch, "/keys/KEK-late/"+v, map[string]any{"attributes": map[string]any{"enabled": false}})
	_, _, err = k.keyOp(context.Background(), true, "KEK-late", info.version, info.alg, make([]byte, dekSize))
	if !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
		t.Errorf("wrap under a disabled key = %v, want ErrKeyUnusable", err)
	}
}

func TestInvalidNameIsNotFoundWithoutRequest(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, nil)
	f.ResetRecorded()
	for _, name := range []string{"KEK-orders.eu", "KEK_orders", "", "../secrets/x", strings.Repeat("a", 128)} {
		if _, err := k.ResolveKEK(context.Background(), name); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("ResolveKEK(%q) = %v, want ErrKeyNotFound", name, err)
		}
	}
	if _, err := k.DecryptDEK(context.Background(), []byte{1, 2, 3}); err == nil || errors.Is(err, kms.ErrUnavailable) {
		t.Errorf("DecryptDEK(garbage) = %v", err)
	}
	if n := len(f.Recorded()); n != 0 {
		t.Fatalf("%d vault requests for names that cannot exist", n)
	}
}

func TestErrorClassification(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, func(c *Config) { c.Timeout = time.Second })
	createKey(t, k, "KEK-a", "RSA", 2048)
	ctx := context.Background()
	d, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
	if err != nil {
		t.Fatal(err)
	}
	type class int
	const (
		plain class = iota
		notFound
		unavailable
		denied
	)
	tests := []struct {
		status int
		code   string
		want   class
	}{
		{404, "KeyNotFound", notFound},
		{500, "InternalServerError", unavailable},
		{502, "", unavailable},
		{503, "ServiceUnavailable", unavailable},
		{429, "Throttled", unavailable},
		{408, "", unavailable},
		{403, "Forbidden", denied},
		{401, "Unauthorized", denied},
		{400, "BadParameter", plain},
		{409, "Conflict", plain},
	}
	for _, tt := range tests {
		f.Fail(tt.status, tt.code)
		for op, call := range map[string]func() error{
			"ResolveKEK": func() error { _, err := k.ResolveKEK(ctx, "KEK-a"); return err },
			"GenerateDEK": func() error {
				_, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
				return err
			},
			"DecryptDEK": func() error { _, err := k.DecryptDEK(ctx, d.EDEK); return err },
		} {
			err := call()
			var got class
			switch {
			case err == nil:
				t.Fatalf("%s with HTTP %d succeeded", op, tt.status)
			case errors.Is(err, kms.ErrKeyNotFound) && errors.Is(err, kms.ErrUnavailable):
				t.Fatalf("%s: both classes: %v", op, err)
			case errors.Is(err, kms.ErrKeyNotFound):
				got = notFound
			case errors.Is(err, kms.ErrUnavailable):
				got = unavailable
			case errors.Is(err, kms.ErrAccessDenied):
				got = denied
			}
			if got != tt.want {
				t.Errorf("%s with HTTP %d: %v (class %d, want %d)", op, tt.status, err, got, tt.want)
			}
			if tt.code != "" && !strings.Contains(err.Error(), tt.code) {
				t.Errorf("%s with HTTP %d: error %q does not carry the vault's code", op, tt.status, err)
			}
		}
	}
	f.Fail(0, "")

	// A hung vault: ErrUnavailable after the configured timeout.
	f.Pause()
	start := time.Now()
	_, err = k.DecryptDEK(ctx, d.EDEK)
	f.Resume()
	if !errors.Is(err, kms.ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Errorf("hung vault: %v after %v", err, time.Since(start))
	}

	// Nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	k2 := openFake(t, f, func(c *Config) { c.VaultURL = "https://" + addr })
	if _, err := k2.DecryptDEK(ctx, d.EDEK); !errors.Is(err, kms.ErrUnavailable) {
		t.Errorf("connection refused: %v", err)
	}

	// An untrusted certificate is configuration, not an outage.
	k3 := openFake(t, f, func(c *Config) { c.TLS.CAFile = "" })
	if _, err := k3.DecryptDEK(ctx, d.EDEK); err == nil || errors.Is(err, kms.ErrUnavailable) || !strings.Contains(err.Error(), "tls.caFile") {
		t.Errorf("unknown CA: %v", err)
	}
	// ... unless verification is off, which works and warns.
	var logs bytes.Buffer
	c := fakeConfig(f)
	c.TLS.CAFile = ""
	c.TLS.InsecureSkipVerify = true
	k4, err := New(ctx, c, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer k4.Close()
	if _, err := k4.DecryptDEK(ctx, d.EDEK); err != nil {
		t.Errorf("insecureSkipVerify: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "insecureSkipVerify") {
		t.Errorf("no warning logged: %s", logs.String())
	}
}

// A 401 drops the cached token and the request is sent once more with a
// fresh one; a vault that refuses every token gets exactly two requests.
// No error or log line ever carries the token.
func TestUnauthorized(t *testing.T) {
	f := newFakeVault(t)
	var logs bytes.Buffer
	c := fakeConfig(f)
	k, err := New(context.Background(), c, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	createKey(t, k, "KEK-a", "RSA", 2048)
	if _, err := k.ResolveKEK(context.Background(), "KEK-a"); err != nil {
		t.Fatal(err)
	}
	// The vault forgets every token (as after a revocation).
	f.Mu.Lock()
	f.Tokens = map[string]bool{}
	f.Mu.Unlock()
	before := f.TokenCalls.Load()
	if _, err := k.ResolveKEK(context.Background(), "KEK-a"); err != nil {
		t.Fatalf("ResolveKEK with a revoked cached token: %v", err)
	}
	if n := f.TokenCalls.Load() - before; n != 1 {
		t.Fatalf("%d token fetches after a 401, want 1", n)
	}

	f.RejectAll.Store(true)
	tok := mustToken(t, k)
	f.ResetRecorded()
	_, err = k.ResolveKEK(context.Background(), "KEK-a")
	if err == nil || errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("ResolveKEK with every token refused = %v", err)
	}
	vaultReqs := 0
	for _, r := range f.Recorded() {
		if strings.HasPrefix(r.Path, "/keys/") {
			vaultReqs++
		}
	}
	if vaultReqs != 2 {
		t.Fatalf("%d vault requests, want 2 (one retry with a fresh token)", vaultReqs)
	}
	for _, tk := range []string{tok, mustToken(t, k)} {
		if strings.Contains(err.Error(), tk) || strings.Contains(logs.String(), tk) {
			t.Fatal("an access token leaked into an error or a log line")
		}
	}
}

func TestManagedIdentityRequest(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, func(c *Config) { c.Auth.ClientID = "user-assigned-id" })
	f.ResetRecorded()
	if _, err := k.tokens.get(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := f.Recorded()
	if len(reqs) != 1 {
		t.Fatalf("%d token requests", len(reqs))
	}
	r := reqs[0]
	q, _ := url.ParseQuery(r.Query)
	if r.Method != "GET" || r.Path != "/metadata/identity/oauth2/token" || r.Header.Get("Metadata") != "true" ||
		q.Get("api-version") != "2018-02-01" || q.Get("resource") != "https://vault.azure.net" || q.Get("client_id") != "user-assigned-id" {
		t.Fatalf("managed identity request %s %s?%s Metadata=%q", r.Method, r.Path, r.Query, r.Header.Get("Metadata"))
	}
}

func TestClientSecretFlow(t *testing.T) {
	f := newFakeVault(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("s3cret-1\n"), 0o600)
	c := fakeConfig(f)
	c.Auth = AuthConfig{
		Method:           MethodClientSecret,
		TenantID:         "contoso.onmicrosoft.com",
		ClientID:         "app-id",
		ClientSecretFile: secretFile,
		AuthorityHost:    f.Entra.URL,
	}
	c.VaultURL = "https://hsm1.managedhsm.azure.net" // only the audience matters here
	k, err := New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	f.ResetRecorded()
	if _, err := k.tokens.get(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := f.Recorded()[0]
	form, _ := url.ParseQuery(string(r.Body))
	if r.Method != "POST" || r.Path != "/contoso.onmicrosoft.com/oauth2/v2.0/token" ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") ||
		form.Get("grant_type") != "client_credentials" || form.Get("client_id") != "app-id" ||
		form.Get("client_secret") != "s3cret-1" || !slices.Contains(strings.Fields(form.Get("scope")), "https://managedhsm.azure.net/.default") {
		t.Fatalf("token request %s %s form %v", r.Method, r.Path, form)
	}

	// The secret file is read again for each token: a rotated secret is used.
	os.WriteFile(secretFile, []byte("s3cret-2"), 0o600)
	k.tokens.invalidate(mustToken(t, k))
	f.ResetRecorded()
	mustToken(t, k)
	form, _ = url.ParseQuery(string(f.Recorded()[0].Body))
	if form.Get("client_secret") != "s3cret-2" {
		t.Fatalf("rotated secret not used: %q", form.Get("client_secret"))
	}

	// Refusals: a bad secret is configuration; Entra ID down is transient.
	cv := *c
	cv.VaultURL = f.URL()
	kv, err := New(context.Background(), &cv, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	for status, transient := range map[int]bool{401: false, 400: false, 500: true, 503: true, 429: true} {
		f.TokenFail.Store(int32(status))
		kv.tokens.invalidate(kv.tokens.tok.value)
		_, err := kv.ResolveKEK(context.Background(), "KEK-a")
		if err == nil || errors.Is(err, kms.ErrUnavailable) != transient || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("token endpoint HTTP %d: %v (want transient=%v, no secret)", status, err, transient)
		}
		if !transient && !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("token endpoint HTTP %d: error %q lacks Entra ID's code", status, err)
		}
	}

	// A missing secret fails at Open.
	c.Auth.ClientSecretFile = filepath.Join(t.TempDir(), "missing")
	if _, err := New(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "auth.clientSecretFile") {
		t.Fatalf("New with a missing secret file: %v", err)
	}
	c.Auth.ClientSecretFile = ""
	c.Auth.ClientSecretEnv = "KSEAL_TEST_UNSET_SECRET_VAR"
	if _, err := New(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "KSEAL_TEST_UNSET_SECRET_VAR") {
		t.Fatalf("New with an unset secret variable: %v", err)
	}
	t.Setenv("KSEAL_TEST_UNSET_SECRET_VAR", "from-env")
	k2, err := New(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.TokenFail.Store(0)
	f.ResetRecorded()
	mustToken(t, k2)
	form, _ = url.ParseQuery(string(f.Recorded()[0].Body))
	if form.Get("client_secret") != "from-env" {
		t.Fatalf("secret from env not used")
	}
}

func mustToken(t *testing.T, k *KMS) string {
	t.Helper()
	tok, err := k.tokens.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenCache(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	now := time.Unix(1_000_000, 0)
	life := time.Hour
	gate := make(chan struct{})
	close(gate)
	fetch := func(ctx context.Context) (token, error) {
		<-gate
		mu.Lock()
		defer mu.Unlock()
		calls++
		return token{value: "t" + string(rune('0'+calls)), expiresAt: now.Add(life)}, nil
	}
	c := newTokenCache(fetch, time.Second)
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	get := func() string {
		v, err := c.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return calls }

	// Concurrent first use: one fetch.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); get() }()
	}
	wg.Wait()
	if count() != 1 {
		t.Fatalf("%d fetches for 20 concurrent callers", count())
	}
	// Cached until the refresh point (5 minutes before expiry for an hour).
	advance(50 * time.Minute)
	if get() != "t1" || count() != 1 {
		t.Fatal("token not cached")
	}
	// Past the refresh point: the old token is still served, a renewal runs.
	advance(6 * time.Minute)
	if get() != "t1" {
		t.Fatal("early renewal made the caller wait")
	}
	deadline := time.Now().Add(2 * time.Second)
	for count() != 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for get() != "t2" && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if count() != 2 {
		t.Fatalf("%d fetches after the refresh point, want 2", count())
	}
	// Expired: callers wait for a new token; a caller's context bounds it.
	advance(2 * time.Hour)
	gate = make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := c.get(ctx)
	cancel()
	if !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("waiting past the context: %v", err)
	}
	close(gate)
	if v := get(); v != "t3" {
		t.Fatalf("got %q after expiry", v)
	}
	// A short-lived token is renewed at a fifth of its life before expiry.
	life = 50 * time.Second
	advance(2 * time.Hour)
	get()
	c.mu.Lock()
	left := c.tok.expiresAt.Sub(c.refreshAt)
	c.mu.Unlock()
	if left != 10*time.Second {
		t.Fatalf("refresh %v before expiry, want 10s", left)
	}
}

func TestBadAnswers(t *testing.T) {
	ctx := context.Background()
	var answer func(w http.ResponseWriter, r *http.Request)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/metadata/") {
			writeJSON(w, 200, map[string]any{"access_token": "t", "expires_in": 3600})
			return
		}
		if r.Header.Get("Authorization") == "" {
			w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net"`)
			vaultErr(w, 401, "Unauthorized", "no token")
			return
		}
		answer(w, r)
	}))
	defer srv.Close()
	f := newFakeVault(t) // for its CA file: httptest servers share one certificate
	c := NewConfig()
	c.VaultURL = srv.URL
	c.TLS.CAFile = f.CAFile
	c.Auth.Method = MethodManagedIdentity
	c.Auth.IdentityEndpoint = f.Token.URL + "/metadata/identity/oauth2/token"
	k, err := New(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	goodEDEK := appendEDEK(nil, "KEK-a", "00112233445566778899aabbccddeeff", algRSAOAEP256, make([]byte, 256))
	rsaKey := func(kid string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/wrapkey") {
				writeJSON(w, 200, map[string]string{"kid": kid, "value": base64.RawURLEncoding.EncodeToString(make([]byte, 256))})
				return
			}
			writeJSON(w, 200, map[string]any{"key": map[string]any{"kid": "https://x/keys/KEK-a/00112233445566778899aabbccddeeff", "kty": "RSA"}})
		}
	}
	tests := map[string]struct {
		answer func(w http.ResponseWriter, r *http.Request)
		call   func() error
		want   string
	}{
		"kid of another key": {
			func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, map[string]any{"key": map[string]any{"kid": "https://x/keys/KEK-b/00112233445566778899aabbccddeeff", "kty": "RSA"}})
			},
			func() error { _, err := k.ResolveKEK(ctx, "KEK-a"); return err }, "not a version of key KEK-a",
		},
		"wrap answered by another version": {
			rsaKey("https://x/keys/KEK-a/ffffffffffffffffffffffffffffffff"),
			func() error { _, err := k.GenerateDEK(ctx, kms.KEKRef{ID: "KEK-a"}); return err }, "another key or version",
		},
		"unwrap result not 32 bytes": {
			func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, map[string]string{"value": base64.RawURLEncoding.EncodeToString(make([]byte, 16))})
			},
			func() error { _, err := k.DecryptDEK(ctx, goodEDEK); return err }, "not a 32-byte key",
		},
		"not JSON": {
			func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) },
			func() error { _, err := k.ResolveKEK(ctx, "KEK-a"); return err }, "decoding the answer",
		},
		"huge answer": {
			func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte(" "), maxResponse+10)) },
			func() error { _, err := k.ResolveKEK(ctx, "KEK-a"); return err }, "larger than",
		},
		"odd RSA size": {
			func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, map[string]any{"key": map[string]any{"kid": "https://x/keys/KEK-a/v1", "kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 128))}})
			},
			func() error { _, err := k.ResolveKEK(ctx, "KEK-a"); return err }, "RSA-1024",
		},
		"error text with control characters": {
			func(w http.ResponseWriter, r *http.Request) {
				vaultErr(w, 403, "Forbidden", "line1\nlevel=ERROR forged")
			},
			func() error { _, err := k.ResolveKEK(ctx, "KEK-a"); return err }, "line1?level=ERROR forged",
		},
	}
	for name, tt := range tests {
		answer = tt.answer
		err := tt.call()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
	}
}

func TestProxyBypassesIMDS(t *testing.T) {
	proxy, _ := url.Parse("http://proxy.example:3128")
	defer func(old func(*http.Request) (*url.URL, error)) { envProxy = old }(envProxy)
	envProxy = func(*http.Request) (*url.URL, error) { return proxy, nil }
	for target, direct := range map[string]bool{
		"http://169.254.169.254/metadata/identity/oauth2/token": true,
		"https://kv1.vault.azure.net/keys/a":                    false,
	} {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		u, err := proxyFor(req)
		if err != nil || (u == nil) != direct {
			t.Errorf("proxyFor(%s) = %v, %v; direct=%v", target, u, err, direct)
		}
	}
}

func TestDescribeEDEK(t *testing.T) {
	k := &KMS{}
	e := appendEDEK(nil, "KEK-orders", "0123456789abcdef0123456789abcdef", algRSAOAEP256, make([]byte, 256))
	info, err := k.DescribeEDEK(e)
	if err != nil || info.KEK != "KEK-orders" || info.Version != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("DescribeEDEK = %+v, %v", info, err)
	}
	if _, err := k.DescribeEDEK(e[:20]); err == nil {
		t.Fatal("truncated EDEK described")
	}
}

func BenchmarkParseEDEK(b *testing.B) {
	e := appendEDEK(nil, "KEK-orders", "0123456789abcdef0123456789abcdef", algRSAOAEP256, make([]byte, 256))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseEDEK(e); err != nil {
			b.Fatal(err)
		}
	}
}

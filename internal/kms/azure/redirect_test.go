package azure

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// spy is a server on its own port that must never be reached: it counts
// requests and notes whether one carried a credential.
type spy struct {
	*httptest.Server
	hits, creds atomic.Int32
}

func newSpy(t *testing.T, tlsServer bool) *spy {
	s := &spy{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		r.ParseForm()
		if r.Header.Get("Authorization") != "" || r.PostForm.Get("client_secret") != "" {
			s.creds.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	})
	if tlsServer {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

// redirector answers every request with a 307 (which keeps method and
// body) to target.
func redirector(t *testing.T, tlsServer bool, target string) *httptest.Server {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
	var s *httptest.Server
	if tlsServer {
		s = httptest.NewTLSServer(h)
	} else {
		s = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

// The bearer token, and the client secret of the token request, never
// follow a redirect to another server: neither Key Vault nor the token
// endpoints redirect, so every redirect is refused.
func TestRedirectsNeverCarryCredentials(t *testing.T) {
	f := newFakeVault(t)
	ctx := context.Background()
	check := func(t *testing.T, s *spy, err error) {
		t.Helper()
		if !errors.Is(err, kms.ErrRedirectRefused) {
			t.Errorf("err = %v, want kms.ErrRedirectRefused", err)
		}
		if errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("a refused redirect is neither an outage nor a missing key: %v", err)
		}
		if n := s.hits.Load(); n != 0 {
			t.Errorf("the other server got %d requests (%d with a credential)", n, s.creds.Load())
		}
	}

	t.Run("vault", func(t *testing.T) {
		s := newSpy(t, true)
		k := openFake(t, f, func(c *Config) { c.VaultURL = redirector(t, true, s.URL).URL })
		_, err := k.ResolveKEK(ctx, "KEK-orders")
		check(t, s, err)
		_, err = k.DecryptDEK(ctx, appendEDEK(nil, "KEK-orders", "0123456789abcdef0123456789abcdef", algA256KW, make([]byte, aesWrappedSize)))
		check(t, s, err)
	})
	t.Run("vault, same origin", func(t *testing.T) {
		// Not followed either: Key Vault never redirects.
		s := newSpy(t, true)
		var hits atomic.Int32
		var srv *httptest.Server
		srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Redirect(w, r, srv.URL+"/elsewhere", http.StatusTemporaryRedirect)
		}))
		defer srv.Close()
		k := openFake(t, f, func(c *Config) { c.VaultURL = srv.URL })
		_, err := k.ResolveKEK(ctx, "KEK-orders")
		check(t, s, err)
		if hits.Load() != 1 {
			t.Errorf("%d requests, want 1", hits.Load())
		}
	})
	t.Run("managed identity endpoint", func(t *testing.T) {
		s := newSpy(t, false)
		k := openFake(t, f, func(c *Config) {
			c.Auth.IdentityEndpoint = redirector(t, false, s.URL).URL + "/metadata/identity/oauth2/token"
		})
		_, err := k.ResolveKEK(ctx, "KEK-orders")
		check(t, s, err)
	})
	t.Run("client secret endpoint", func(t *testing.T) {
		s := newSpy(t, true)
		secretFile := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(secretFile, []byte("s3cret-1\n"), 0o600)
		k := openFake(t, f, func(c *Config) {
			c.Auth = AuthConfig{
				Method:           MethodClientSecret,
				TenantID:         "contoso.onmicrosoft.com",
				ClientID:         "app-id",
				ClientSecretFile: secretFile,
				AuthorityHost:    redirector(t, true, s.URL).URL,
			}
		})
		_, err := k.ResolveKEK(ctx, "KEK-orders")
		check(t, s, err)
	})
}

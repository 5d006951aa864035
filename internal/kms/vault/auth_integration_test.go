//go:build integration

package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// TestOpenBaoAuthMethods logs in to a real OpenBao server with AppRole, JWT
// and Kubernetes auth, each role granting only the least-privilege policy of
// docs/kms-vault.md, and uses the token for Transit.
func TestOpenBaoAuthMethods(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_VAULT") == "1" {
		t.Skip("KSEAL_IT_NO_VAULT=1: skipping the real OpenBao server test")
	}
	oldMin, oldRelogin := renewMin, reloginMin
	renewMin, reloginMin = 10*time.Millisecond, 0
	t.Cleanup(func() { renewMin, reloginMin = oldMin, oldRelogin })

	srv := startOpenBao(t)
	srv.admin(t, "POST", "", "sys/namespaces/"+itNamespace, `{}`)
	srv.admin(t, "POST", itNamespace, "sys/mounts/"+itMount, `{"type":"transit"}`)
	body, _ := json.Marshal(map[string]string{"policy": leastPrivilegePolicy})
	srv.admin(t, "PUT", itNamespace, "sys/policies/acl/kseal", string(body))
	srv.admin(t, "POST", itNamespace, itMount+"/keys/KEK-orders", `{}`)
	kek := kms.KEKRef{Name: "KEK-orders", ID: "KEK-orders"}
	dir := t.TempDir()
	ctx := context.Background()

	roundTrip := func(t *testing.T, k *KMS) {
		t.Helper()
		if _, err := k.ResolveKEK(ctx, kek.Name); err != nil {
			t.Fatalf("resolve: %v", err)
		}
		d, err := k.GenerateDEK(ctx, kek)
		if err != nil {
			t.Fatalf("generate: %v", err)
		}
		if pt, err := k.DecryptDEK(ctx, d.EDEK); err != nil || string(pt) != string(d.Key) {
			t.Fatalf("decrypt: %v", err)
		}
	}

	t.Run("approle", func(t *testing.T) {
		srv.admin(t, "POST", itNamespace, "sys/auth/approle", `{"type":"approle"}`)
		// A 2 s token TTL with a 3 s max: renewal runs into the max TTL
		// within the test, so kseal must log in again.
		srv.admin(t, "POST", itNamespace, "auth/approle/role/kseal",
			`{"token_policies":["kseal"],"token_no_default_policy":true,"token_ttl":"2s","token_max_ttl":"3s"}`)
		var rid struct {
			Data struct {
				RoleID string `json:"role_id"`
			} `json:"data"`
		}
		json.Unmarshal(srv.admin(t, "GET", itNamespace, "auth/approle/role/kseal/role-id", ""), &rid)
		secret := func() string {
			var sid struct {
				Data struct {
					SecretID string `json:"secret_id"`
				} `json:"data"`
			}
			json.Unmarshal(srv.admin(t, "POST", itNamespace, "auth/approle/role/kseal/secret-id", `{}`), &sid)
			return sid.Data.SecretID
		}
		first := secret()
		roleFile := writeFile(t, dir, "role-id", rid.Data.RoleID)
		secretFile := writeFile(t, dir, "secret-id", first)
		k := srv.open(t, "", func(c *Config) {
			c.TokenFile = ""
			c.Auth = AuthConfig{Method: "approle", RoleIDFile: roleFile, SecretIDFile: secretFile}
		})
		roundTrip(t, k)
		// Past the max TTL: the first token is dead by now.
		for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if _, err := k.GenerateDEK(ctx, kek); err != nil {
				t.Fatalf("generate while the token ages: %v", err)
			}
		}
		if n := k.logins.Load(); n < 2 {
			t.Fatalf("%d logins after the max TTL passed; want a re-login", n)
		}
		// Rotate the secret id: destroy the old one, revoke the token;
		// the next request logs in again with the new file.
		second := secret()
		writeFile(t, dir, "secret-id", second)
		srv.admin(t, "POST", itNamespace, "auth/approle/role/kseal/secret-id/destroy", `{"secret_id":"`+first+`"}`)
		// Counted before the revocation: the maintenance goroutine may log
		// in by itself (the 3 s max TTL) between reading the token and
		// revoking it, and then no request needs to.
		before := k.logins.Load()
		revoked := *k.token.Load()
		srv.admin(t, "POST", itNamespace, "auth/token/revoke", `{"token":"`+revoked+`"}`)
		roundTrip(t, k)
		if k.logins.Load() == before || *k.token.Load() == revoked {
			t.Fatal("no re-login after the token was revoked")
		}
	})

	// A locally generated ES256 key stands in for an OIDC provider.
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(&signer.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))

	t.Run("jwt", func(t *testing.T) {
		srv.admin(t, "POST", itNamespace, "sys/auth/jwt", `{"type":"jwt"}`)
		cfg, _ := json.Marshal(map[string]any{"jwt_validation_pubkeys": []string{pubPEM}, "bound_issuer": "https://issuer.test"})
		srv.admin(t, "POST", itNamespace, "auth/jwt/config", string(cfg))
		srv.admin(t, "POST", itNamespace, "auth/jwt/role/kafka", `{"role_type":"jwt","user_claim":"sub",
			"bound_audiences":["kseal"],"bound_claims":{"team":"kafka"},
			"token_policies":["kseal"],"token_no_default_policy":true,"token_ttl":"1h"}`)
		claims := map[string]any{"iss": "https://issuer.test", "sub": "kseal-proxy", "aud": "kseal", "team": "kafka"}
		jwtFile := writeFile(t, dir, "jwt", mintJWT(t, signer, claims))
		k := srv.open(t, "", func(c *Config) {
			c.TokenFile = ""
			c.Auth = AuthConfig{Method: "jwt", Role: "kafka", JWTFile: jwtFile}
		})
		roundTrip(t, k)

		// A JWT without the bound claim is refused.
		claims["team"] = "payments"
		bad := writeFile(t, dir, "jwt-bad", mintJWT(t, signer, claims))
		kb := srv.open(t, "", func(c *Config) {
			c.TokenFile = ""
			c.Auth = AuthConfig{Method: "jwt", Role: "kafka", JWTFile: bad}
		})
		if _, err := kb.GenerateDEK(ctx, kek); err == nil || !strings.Contains(err.Error(), "login (jwt at auth/jwt)") {
			t.Fatalf("JWT with a wrong bound claim: %v", err)
		}
	})

	// Kubernetes auth: OpenBao's kubernetes method, with an httptest server
	// standing in for the Kubernetes API's TokenReview endpoint (no cluster
	// here): it authenticates the test's service-account JWT and echoes the
	// audiences asked for, as the API server does.
	t.Run("kubernetes", func(t *testing.T) {
		saJWT := mintJWT(t, signer, map[string]any{
			"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:kafka:kseal", "aud": []string{"https://kubernetes.default.svc"},
			"kubernetes.io": map[string]any{"namespace": "kafka", "serviceaccount": map[string]any{"name": "kseal", "uid": "0b5c7a8e-1111-2222-3333-444455556666"}},
		})
		var reviews atomic.Int32
		api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.Method != http.MethodPost {
				http.NotFound(w, r)
				return
			}
			reviews.Add(1)
			var review struct {
				Spec struct {
					Token     string   `json:"token"`
					Audiences []string `json:"audiences"`
				} `json:"spec"`
			}
			json.NewDecoder(r.Body).Decode(&review)
			t.Logf("TokenReview: audiences %q, token matches %v", review.Spec.Audiences, review.Spec.Token == saJWT)
			status := map[string]any{"authenticated": false}
			if review.Spec.Token == saJWT {
				status = map[string]any{"authenticated": true, "audiences": review.Spec.Audiences, "user": map[string]any{
					"username": "system:serviceaccount:kafka:kseal", "uid": "0b5c7a8e-1111-2222-3333-444455556666",
					"groups": []string{"system:serviceaccounts", "system:serviceaccounts:kafka"}}}
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
		}))
		defer api.Close()
		srv.admin(t, "POST", itNamespace, "sys/auth/kubernetes", `{"type":"kubernetes"}`)
		apiCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}))
		kcfg, _ := json.Marshal(map[string]any{"kubernetes_host": api.URL, "kubernetes_ca_cert": apiCA, "disable_local_ca_jwt": true})
		srv.admin(t, "POST", itNamespace, "auth/kubernetes/config", string(kcfg))
		srv.admin(t, "POST", itNamespace, "auth/kubernetes/role/kseal", `{"bound_service_account_names":["kseal"],
			"bound_service_account_namespaces":["kafka"],"token_policies":["kseal"],"token_no_default_policy":true,"token_ttl":"1h"}`)
		jwtFile := writeFile(t, dir, "sa-token", saJWT)
		k := srv.open(t, "", func(c *Config) {
			c.TokenFile = ""
			c.Auth = AuthConfig{Method: "kubernetes", Role: "kseal", JWTFile: jwtFile}
		})
		if _, err := k.GenerateDEK(ctx, kek); err != nil {
			logTail, _ := os.ReadFile(filepath.Join(srv.dir, "bao.log"))
			if len(logTail) > 4000 {
				logTail = logTail[len(logTail)-4000:]
			}
			t.Fatalf("kubernetes log-in: %v (TokenReview calls: %d)\nbao.log:\n%s", err, reviews.Load(), logTail)
		}
		roundTrip(t, k)
		if reviews.Load() == 0 {
			t.Fatal("OpenBao never asked the fake TokenReview endpoint")
		}
	})
}

// mintJWT signs claims with ES256 (plus iat, nbf and a 10-minute exp).
func mintJWT(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	now := time.Now().Unix()
	c := map[string]any{"iat": now, "nbf": now - 5, "exp": now + 600}
	for k, v := range claims {
		c[k] = v
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT"})
	body, _ := json.Marshal(c)
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig)
}

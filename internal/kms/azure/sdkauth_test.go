package azure

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// writeCertificate writes a self-signed certificate and its key as PEM.
func writeCertificate(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kseal-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "client.pem")
	b := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// tokenForms returns the forms of the token requests recorded.
func tokenForms(f *fakeVault) []url.Values {
	var out []url.Values
	for _, r := range f.Recorded() {
		if strings.HasSuffix(r.Path, "/oauth2/v2.0/token") {
			form, _ := url.ParseQuery(string(r.Body))
			out = append(out, form)
		}
	}
	return out
}

// clientCertificate goes through azidentity: a signed client assertion to
// the configured authority, for the configured audience.
func TestClientCertificateFlow(t *testing.T) {
	f := newFakeVault(t)
	certFile := writeCertificate(t)
	k := openFake(t, f, func(c *Config) {
		c.Auth = AuthConfig{Method: MethodClientCertificate, TenantID: "contoso.onmicrosoft.com", ClientID: "app-id",
			ClientCertificateFile: certFile, AuthorityHost: f.Entra.URL, IdentityEndpoint: DefaultIdentityEndpoint}
	})
	createKey(t, k, "KEK-a", "RSA", 2048)
	ctx := context.Background()
	d, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.DecryptDEK(ctx, d.EDEK); err != nil {
		t.Fatal(err)
	}
	forms := tokenForms(f)
	if len(forms) != 1 {
		t.Fatalf("%d token requests, want 1", len(forms))
	}
	form := forms[0]
	if form.Get("grant_type") != "client_credentials" || form.Get("client_id") != "app-id" ||
		form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
		strings.Count(form.Get("client_assertion"), ".") != 2 || form.Get("client_secret") != "" ||
		!strings.Contains(form.Get("scope"), "https://vault.azure.net/.default") {
		t.Fatalf("token request form %v", form)
	}
	// The file is read again for a new token: a broken one shows.
	os.WriteFile(certFile, []byte("not a certificate"), 0o600)
	k.tokens.invalidate(mustToken(t, k))
	if _, err := k.tokens.get(ctx); err == nil || !strings.Contains(err.Error(), "auth.clientCertificateFile") {
		t.Fatalf("broken certificate file: %v", err)
	}
	// And at startup, as is a key that is not RSA.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	cert, _ := os.ReadFile(writeCertificate(t))
	ecFile := filepath.Join(t.TempDir(), "ec.pem")
	os.WriteFile(ecFile, append(cert[:strings.Index(string(cert), "-----BEGIN PRIVATE KEY")], pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})...), 0o600)
	c0 := fakeConfig(f)
	c0.Auth = AuthConfig{Method: MethodClientCertificate, TenantID: "t1", ClientID: "app", ClientCertificateFile: ecFile, IdentityEndpoint: DefaultIdentityEndpoint, AuthorityHost: DefaultAuthorityHost}
	if _, err := New(ctx, c0, nil); err == nil || !strings.Contains(err.Error(), "RSA") {
		t.Fatalf("New with an EC key: %v", err)
	}
	c := fakeConfig(f)
	c.Auth = AuthConfig{Method: MethodClientCertificate, TenantID: "t1", ClientID: "app", ClientCertificateFile: certFile, IdentityEndpoint: DefaultIdentityEndpoint, AuthorityHost: DefaultAuthorityHost}
	if _, err := New(ctx, c, nil); err == nil || !strings.Contains(err.Error(), "auth.clientCertificateFile") {
		t.Fatalf("New with a broken certificate: %v", err)
	}
}

// workloadIdentity: the federated token file (AKS mounts it and sets the
// AZURE_* variables) is the client assertion, read again for each token;
// a token the vault stops accepting is replaced, not served again from
// the credential's cache.
func TestWorkloadIdentityFlow(t *testing.T) {
	f := newFakeVault(t)
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	os.WriteFile(tokenFile, []byte("federated-1"), 0o600)
	t.Setenv("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
	t.Setenv("AZURE_CLIENT_ID", "wi-client")
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", tokenFile)
	k := openFake(t, f, func(c *Config) {
		c.Auth = AuthConfig{Method: MethodWorkloadIdentity, AuthorityHost: f.Entra.URL, IdentityEndpoint: DefaultIdentityEndpoint}
	})
	createKey(t, k, "KEK-a", "RSA", 2048)
	ctx := context.Background()
	if _, err := k.ResolveKEK(ctx, "KEK-a"); err != nil {
		t.Fatal(err)
	}
	forms := tokenForms(f)
	if len(forms) != 1 || forms[0].Get("client_assertion") != "federated-1" || forms[0].Get("client_id") != "wi-client" {
		t.Fatalf("token requests %v", forms)
	}
	// Revocation: the vault forgets the token; the next call gets a new
	// one with the rotated federated token.
	os.WriteFile(tokenFile, []byte("federated-2"), 0o600)
	f.Mu.Lock()
	f.Tokens = map[string]bool{}
	f.Mu.Unlock()
	f.ResetRecorded()
	if _, err := k.ResolveKEK(ctx, "KEK-a"); err != nil {
		t.Fatalf("after the vault refused the token: %v", err)
	}
	if forms := tokenForms(f); len(forms) != 1 || forms[0].Get("client_assertion") != "federated-2" {
		t.Fatalf("token requests after a refusal: %v", forms)
	}
	// Entra ID refusing: configuration; down: unavailable.
	for status, transient := range map[int]bool{400: false, 503: true} {
		f.TokenFail.Store(int32(status))
		k.tokens.invalidate(k.tokens.tok.value)
		_, err := k.tokens.get(ctx)
		if err == nil || errors.Is(err, kms.ErrUnavailable) != transient || strings.Contains(err.Error(), "\n") {
			t.Errorf("token endpoint HTTP %d: %v (want transient=%v, one line)", status, err, transient)
		}
		if !transient && !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("token endpoint HTTP %d: %q lacks Entra ID's code", status, err)
		}
	}
	f.TokenFail.Store(0)

	// Without the variables or the keys, New says which key is missing.
	t.Setenv("AZURE_FEDERATED_TOKEN_FILE", "")
	c := fakeConfig(f)
	c.Auth = AuthConfig{Method: MethodWorkloadIdentity, AuthorityHost: DefaultAuthorityHost, IdentityEndpoint: DefaultIdentityEndpoint}
	if _, err := New(ctx, c, nil); err == nil || !strings.Contains(err.Error(), "auth.tokenFile") || !strings.Contains(err.Error(), "AZURE_FEDERATED_TOKEN_FILE") {
		t.Fatalf("New without a token file: %v", err)
	}
	c.Auth.TokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := New(ctx, c, nil); err == nil || !strings.Contains(err.Error(), "auth.tokenFile") {
		t.Fatalf("New with a missing token file: %v", err)
	}
}

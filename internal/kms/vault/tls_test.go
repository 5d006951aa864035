package vault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/kseal/kseal/internal/kms"
)

// testPKI is a CA with a server certificate (127.0.0.1 and vault.internal)
// and a client certificate, written to dir as ca.crt, server.crt,
// server.key, client.crt, client.key and client.p12 (password in
// client.p12.pass) — the names scripts/openbao.sh --tls-dir expects.
type testPKI struct {
	dir        string
	caPool     *x509.CertPool
	serverCert tls.Certificate
}

func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kseal test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (*ecdsa.PrivateKey, *x509.Certificate) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips, DNSNames: dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return key, cert
	}
	srvKey, srvCert := issue(2, "vault.internal", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"vault.internal"})
	cliKey, cliCert := issue(3, "kseal", x509.ExtKeyUsageClientAuth, nil, nil)

	write := func(name string, blockType string, der []byte) {
		b := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	write("ca.crt", "CERTIFICATE", caDER)
	write("server.crt", "CERTIFICATE", srvCert.Raw)
	write("server.key", "PRIVATE KEY", keyDER(srvKey))
	write("client.crt", "CERTIFICATE", cliCert.Raw)
	write("client.key", "PRIVATE KEY", keyDER(cliKey))
	// client.p12 as OpenSSL 3 writes it; the others as older tools and
	// newer ones do.
	for name, enc := range map[string]*pkcs12.Encoder{
		"client.p12": pkcs12.Modern2023, "client-rc2.p12": pkcs12.LegacyRC2,
		"client-des.p12": pkcs12.LegacyDES, "client-2026.p12": pkcs12.Modern2026,
	} {
		p12, err := enc.Encode(cliKey, cliCert, []*x509.Certificate{ca}, "p12 secret")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), p12, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p12, err := pkcs12.Passwordless.Encode(cliKey, cliCert, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client-nopass.p12"), p12, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client.p12.pass"), []byte("p12 secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{dir: dir, caPool: pool,
		serverCert: tls.Certificate{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}}
}

func (p *testPKI) path(name string) string { return filepath.Join(p.dir, name) }

// mtlsServer serves fake over TLS, requiring a client certificate from the
// test CA.
func (p *testPKI) mtlsServer(t *testing.T, fake *fakeTransit) *httptest.Server {
	srv := httptest.NewUnstartedServer(fake)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point of some tests
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{p.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.caPool,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestTLSClientIdentities(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	fake := newFakeTransit(t, "transit", testToken)
	fake.addKey("KEK-a")
	srv := pki.mtlsServer(t, fake)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	t.Setenv("KSEAL_TEST_P12_PASSWORD", "p12 secret")

	for _, tc := range []struct {
		name string
		addr string
		tls  TLSConfig
	}{
		{"pem", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"), CertFile: pki.path("client.crt"), KeyFile: pki.path("client.key")}},
		{"pkcs12 password file", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"), PKCS12File: pki.path("client.p12"), PKCS12PasswordFile: pki.path("client.p12.pass")}},
		{"pkcs12 password env", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"), PKCS12File: pki.path("client.p12"), PKCS12PasswordEnv: "KSEAL_TEST_P12_PASSWORD"}},
		{"pkcs12 legacy RC2", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"), PKCS12File: pki.path("client-rc2.p12"), PKCS12PasswordFile: pki.path("client.p12.pass")}},
		{"pkcs12 legacy 3DES", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"), PKCS12File: pki.path("client-des.p12"), PKCS12PasswordFile: pki.path("client.p12.pass")}},
		{"pkcs12 modern 2026", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"), PKCS12File: pki.path("client-2026.p12"), PKCS12PasswordFile: pki.path("client.p12.pass")}},
		{"pkcs12 without password", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"), PKCS12File: pki.path("client-nopass.p12")}},
		{"server name override", "https://localhost:" + port, TLSConfig{CAFile: pki.path("ca.crt"), ServerName: "vault.internal",
			CertFile: pki.path("client.crt"), KeyFile: pki.path("client.key")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := openTest(t, tc.addr, func(c *Config) { c.TLS = tc.tls })
			dek, err := k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-a"})
			if err != nil {
				t.Fatalf("GenerateDEK: %v", err)
			}
			if _, err := k.DecryptDEK(context.Background(), dek.EDEK); err != nil {
				t.Fatalf("DecryptDEK: %v", err)
			}
		})
	}
}

func TestTLSFailuresArePlainErrors(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	other := newTestPKI(t, t.TempDir()) // a CA the server does not know
	fake := newFakeTransit(t, "transit", testToken)
	fake.addKey("KEK-a")
	srv := pki.mtlsServer(t, fake)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	for _, tc := range []struct {
		name, addr string
		tls        TLSConfig
		want       string
	}{
		{"no client certificate", srv.URL, TLSConfig{CAFile: pki.path("ca.crt")}, "client certificate"},
		{"client certificate from another CA", srv.URL, TLSConfig{CAFile: pki.path("ca.crt"),
			CertFile: other.path("client.crt"), KeyFile: other.path("client.key")}, "client certificate"},
		{"untrusted server", srv.URL, TLSConfig{CAFile: other.path("ca.crt"),
			CertFile: pki.path("client.crt"), KeyFile: pki.path("client.key")}, "server certificate not accepted"},
		{"wrong host name", "https://localhost:" + port, TLSConfig{CAFile: pki.path("ca.crt"),
			CertFile: pki.path("client.crt"), KeyFile: pki.path("client.key")}, "server certificate not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := openTest(t, tc.addr, func(c *Config) { c.TLS = tc.tls })
			_, err := k.ResolveKEK(context.Background(), "KEK-a")
			if err == nil || errors.Is(err, kms.ErrUnavailable) || errors.Is(err, kms.ErrKeyNotFound) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a plain error mentioning %q", err, tc.want)
			}
		})
	}

	// https to a plain http server.
	plain := httptest.NewServer(fake)
	defer plain.Close()
	k, _ := openTest(t, strings.Replace(plain.URL, "http:", "https:", 1), func(c *Config) { c.TLS.CAFile = pki.path("ca.crt") })
	if _, err := k.ResolveKEK(context.Background(), "KEK-a"); err == nil || errors.Is(err, kms.ErrUnavailable) || !strings.Contains(err.Error(), "did not answer TLS") {
		t.Fatalf("https to http: err = %v", err)
	}
}

func TestTLSOpenErrors(t *testing.T) {
	pki := newTestPKI(t, t.TempDir())
	notPEM := filepath.Join(t.TempDir(), "x")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"missing CA file", TLSConfig{CAFile: pki.path("nope")}, "tls.caFile"},
		{"CA file not PEM", TLSConfig{CAFile: notPEM}, "no PEM certificate"},
		{"key does not match", TLSConfig{CertFile: pki.path("client.crt"), KeyFile: pki.path("server.key")}, "tls.certFile/keyFile"},
		{"wrong p12 password", TLSConfig{PKCS12File: pki.path("client.p12"), PKCS12PasswordEnv: "KSEAL_TEST_WRONG_P12"}, "tls.pkcs12File"},
		{"p12 password env unset", TLSConfig{PKCS12File: pki.path("client.p12"), PKCS12PasswordEnv: "KSEAL_TEST_UNSET_P12"}, "not set"},
		{"p12 not p12", TLSConfig{PKCS12File: notPEM}, "tls.pkcs12File"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KSEAL_TEST_WRONG_P12", "WrongPass42")
			cfg := NewConfig()
			cfg.Address = "https://127.0.0.1:8200"
			cfg.TokenEnv = "KSEAL_TEST_WRONG_P12"
			cfg.TLS = tc.tls
			_, err := New(context.Background(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "p12 secret") || strings.Contains(err.Error(), "WrongPass42") {
				t.Fatalf("error shows a password: %v", err)
			}
		})
	}
}

package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/config"
)

type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	pool   *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kseal test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return p
}

// issue writes a leaf certificate for names (DNS names or IPs) and returns
// the cert and key file paths and the tls.Certificate.
func (p *testPKI) issue(t *testing.T, name string, names ...string) (string, string, tls.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	cf, kf := filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+".key")
	os.WriteFile(cf, certPEM, 0o600)
	os.WriteFile(kf, keyPEM, 0o600)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cf, kf, c
}

func startProxyYAML(t *testing.T, doc string) *Server {
	t.Helper()
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

func roundTrip(t *testing.T, opts ...kgo.Opt) error {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics("t1"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RequestRetries(1), kgo.RetryTimeout(3*time.Second))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t1", Value: []byte("over tls")}).FirstErr(); err != nil {
		return err
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		return err
	}
	if len(fs.Records()) == 0 || string(fs.Records()[0].Value) != "over tls" {
		return fmt.Errorf("consumed %v", fs.Records())
	}
	return nil
}

func TestMutualTLSBothSides(t *testing.T) {
	pki := newPKI(t)
	_, _, brokerCert := pki.issue(t, "broker", "127.0.0.1")
	fake, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(2, "t1"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{brokerCert}}))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	proxyCert, proxyKey, _ := pki.issue(t, "proxy", "127.0.0.1")
	_, _, clientCert := pki.issue(t, "client")
	base := freePortRange(t, 6)
	srv := startProxyYAML(t, fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream:
      bootstrapServers: [%q]
      tls: {enabled: true, caFile: %q}
    gateway:
      bindAddress: 127.0.0.1
      advertisedHost: 127.0.0.1
      bootstrapPort: %d
      brokerPortStart: %d
      brokerPortCount: 4
      tls: {certFile: %q, keyFile: %q, clientAuth: require, clientCaFile: %q}
`, fake.ListenAddrs()[0], pki.caFile, base, base+1, proxyCert, proxyKey, pki.caFile))
	bootstrap := srv.BootstrapAddr("test")

	good := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{clientCert}}
	if err := roundTrip(t, kgo.SeedBrokers(bootstrap), kgo.DialTLSConfig(good)); err != nil {
		t.Fatalf("mTLS round trip: %v", err)
	}
	// Without a client certificate the proxy refuses the handshake.
	if err := roundTrip(t, kgo.SeedBrokers(bootstrap), kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool})); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	// A plaintext client gets nowhere either.
	if err := roundTrip(t, kgo.SeedBrokers(bootstrap)); err == nil {
		t.Fatal("a plaintext client got through")
	}
}

func TestSNIRouting(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, "t1"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	pki := newPKI(t)
	cert, key, _ := pki.issue(t, "proxy", "*.kseal.test", "bootstrap.kseal.test")
	port := freePortRange(t, 1)
	srv := startProxyYAML(t, fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%q]}
    gateway:
      bindAddress: 127.0.0.1
      bootstrapPort: %d
      tls: {certFile: %q, keyFile: %q}
      sni: {bootstrapHost: bootstrap.kseal.test, brokerHostPattern: 'broker-$(nodeId).kseal.test', advertisedPort: 443}
`, fake.ListenAddrs()[0], port, cert, key))
	_ = srv
	// Every *.kseal.test:443 name resolves to the one proxy port, as a load
	// balancer in front would make it.
	var mu sync.Mutex
	dialed := map[string]bool{}
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		name, p, _ := net.SplitHostPort(host)
		if p != "443" || !strings.HasSuffix(name, ".kseal.test") {
			return nil, fmt.Errorf("client dialed %s: not an SNI address", host)
		}
		mu.Lock()
		dialed[name] = true
		mu.Unlock()
		d := &tls.Dialer{Config: &tls.Config{RootCAs: pki.pool, ServerName: name}}
		return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", port))
	}
	if err := roundTrip(t, kgo.SeedBrokers("bootstrap.kseal.test:443"), kgo.Dialer(dial)); err != nil {
		t.Fatalf("SNI round trip: %v", err)
	}
	cl, _ := kgo.NewClient(kgo.SeedBrokers("bootstrap.kseal.test:443"), kgo.Dialer(dial))
	defer cl.Close()
	md, err := kadm.NewClient(cl).BrokerMetadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range md.Brokers {
		if b.Host != fmt.Sprintf("broker-%d.kseal.test", b.NodeID) || b.Port != 443 {
			t.Errorf("broker %d advertised as %s:%d", b.NodeID, b.Host, b.Port)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !dialed["broker-0.kseal.test"] && !dialed["broker-1.kseal.test"] && !dialed["broker-2.kseal.test"] {
		t.Errorf("no broker reached by its SNI name: %v", dialed)
	}
	// An unknown server name is refused.
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: pki.pool, ServerName: "evil.kseal.test"})
	if err == nil {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("connection with an unknown server name stayed open")
		}
		c.Close()
	}
}

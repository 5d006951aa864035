package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/filter"
)

// saslExchange runs one SASL request and its response through the
// identity filter on s.
func saslExchange(t *testing.T, s *filter.Standalone, req kmsg.Request, resp kmsg.Response) {
	t.Helper()
	saslExchangeWith(t, identityFilter{}, s, req, resp)
}

func saslExchangeWith(t *testing.T, f identityFilter, s *filter.Standalone, req kmsg.Request, resp kmsg.Response) {
	t.Helper()
	key, v := req.Key(), req.GetVersion()
	flexible := key == int16(kmsg.SASLAuthenticate) && v >= 2
	fr := appendRequestHeader(nil, key, v, 1, "t", flexible)
	hlen := len(fr)
	fr = req.AppendTo(fr)
	rf := []byte{0, 0, 0, 1}
	if flexible {
		rf = append(rf, 0)
	}
	rhl := len(rf)
	resp.SetVersion(v)
	rf = resp.AppendTo(rf)
	x := s.Exchange(key, v, fr, hlen, nil, 0)
	if err := f.OnRequest(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	x.Response, x.RespHeaderLen = rf, rhl
	if err := f.OnResponse(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	s.Done(x)
}

func handshake(t *testing.T, s *filter.Standalone, v int16, mech string, code int16) {
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.SetVersion(v)
	req.Mechanism = mech
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.ErrorCode = code
	saslExchange(t, s, req, resp)
}

func authenticate(t *testing.T, s *filter.Standalone, v int16, msg string, code int16, server string) {
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.SetVersion(v)
	req.SASLAuthBytes = []byte(msg)
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	resp.ErrorCode = code
	resp.SASLAuthBytes = []byte(server)
	saslExchange(t, s, req, resp)
}

func unsignedJWT(payload string) string {
	e := base64.RawURLEncoding
	return e.EncodeToString([]byte(`{"alg":"none"}`)) + "." + e.EncodeToString([]byte(payload)) + "."
}

// The identity filter adopts a claimed name only after the broker's
// SaslAuthenticate response accepted the login, for each mechanism.
func TestIdentityFilterAdoptsOnlyAccepted(t *testing.T) {
	const failed = 58 // SASL_AUTHENTICATION_FAILED
	oauth := "n,,\x01auth=Bearer " + unsignedJWT(`{"sub":"svc-a"}`) + "\x01\x01"
	cases := []struct {
		name string
		run  func(t *testing.T, s *filter.Standalone)
		want string
	}{
		{"plain", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "PLAIN", 0)
			authenticate(t, s, 2, "\x00alice\x00pw", 0, "")
		}, "User:alice"},
		{"plain v0 authenticate", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "PLAIN", 0)
			authenticate(t, s, 0, "\x00alice\x00pw", 0, "")
		}, "User:alice"},
		{"plain refused", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "PLAIN", 0)
			authenticate(t, s, 2, "\x00alice\x00bad", failed, "")
		}, ""},
		{"handshake refused", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "PLAIN", 33)
			authenticate(t, s, 2, "\x00alice\x00pw", 0, "")
		}, ""},
		{"no handshake", func(t *testing.T, s *filter.Standalone) {
			authenticate(t, s, 2, "\x00alice\x00pw", 0, "")
		}, ""},
		{"handshake v0 (raw frames follow)", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 0, "PLAIN", 0)
			authenticate(t, s, 2, "\x00alice\x00pw", 0, "")
		}, ""},
		{"scram", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "SCRAM-SHA-512", 0)
			authenticate(t, s, 2, "n,,n=bob,r=abc", 0, "r=abcdef,s=c2FsdA==,i=4096")
			authenticate(t, s, 2, "c=biws,r=abcdef,p=cHJvb2Y=", 0, "v=c2ln")
		}, "User:bob"},
		{"scram first round only", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "SCRAM-SHA-256", 0)
			authenticate(t, s, 2, "n,,n=bob,r=abc", 0, "r=abcdef,s=c2FsdA==,i=4096")
		}, ""},
		{"scram proof refused", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "SCRAM-SHA-256", 0)
			authenticate(t, s, 2, "n,,n=bob,r=abc", 0, "r=abcdef,s=c2FsdA==,i=4096")
			authenticate(t, s, 2, "c=biws,r=abcdef,p=YmFk", failed, "")
		}, ""},
		{"scram server error message", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "SCRAM-SHA-256", 0)
			authenticate(t, s, 2, "n,,n=bob,r=abc", 0, "r=abcdef,s=c2FsdA==,i=4096")
			authenticate(t, s, 2, "c=biws,r=abcdef,p=YmFk", 0, "e=invalid-proof")
		}, ""},
		{"scram final without first", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "SCRAM-SHA-256", 0)
			authenticate(t, s, 2, "c=biws,r=abcdef,p=cHJvb2Y=", 0, "v=c2ln")
		}, ""},
		{"scram delegation token", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "SCRAM-SHA-256", 0)
			authenticate(t, s, 2, "n,,n=tokenid,r=abc,tokenauth=true", 0, "r=abcdef,s=c2FsdA==,i=4096")
			authenticate(t, s, 2, "c=biws,r=abcdef,p=cHJvb2Y=", 0, "v=c2ln")
		}, ""},
		{"oauthbearer", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "OAUTHBEARER", 0)
			authenticate(t, s, 2, oauth, 0, "")
		}, "User:svc-a"},
		{"oauthbearer error challenge", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "OAUTHBEARER", 0)
			authenticate(t, s, 2, oauth, 0, `{"status":"invalid_token"}`)
			authenticate(t, s, 2, "\x01", failed, "")
		}, ""},
		{"unobserved mechanism", func(t *testing.T, s *filter.Standalone) {
			handshake(t, s, 1, "GSSAPI", 0)
			authenticate(t, s, 2, "\x00alice\x00pw", 0, "")
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &filter.Standalone{}
			c.run(t, s)
			got := ""
			if s.Identity != nil {
				got = s.Identity.Principal()
			}
			if got != c.want {
				t.Fatalf("principal %q, want %q", got, c.want)
			}
		})
	}
}

// gateway.oauthbearerSubClaim names the claim an OAUTHBEARER identity is
// taken from.
func TestIdentityFilterOAuthClaim(t *testing.T) {
	cfg := config.VirtualCluster{Name: "t"}
	cfg.Gateway.OAuthBearerSubClaim = "client_id"
	f := identityFilter{vc: &virtualCluster{name: "t", cfg: cfg, srv: &Server{metrics: NewMetrics(nil)}}}
	s := &filter.Standalone{}
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.SetVersion(1)
	hs.Mechanism = "OAUTHBEARER"
	saslExchangeWith(t, f, s, hs, kmsg.NewPtrSASLHandshakeResponse())
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.SetVersion(2)
	au.SASLAuthBytes = []byte("n,,\x01auth=Bearer " + unsignedJWT(`{"sub":"u-123","client_id":"orders-app"}`) + "\x01\x01")
	saslExchangeWith(t, f, s, au, kmsg.NewPtrSASLAuthenticateResponse())
	if s.Identity == nil || s.Identity.Principal() != "User:orders-app" {
		t.Fatalf("identity %v, want User:orders-app", s.Identity)
	}
	if n := testutil.ToFloat64(f.vc.srv.metrics.identities.WithLabelValues("t", "OAUTHBEARER")); n != 1 {
		t.Errorf("kseal_client_identities_total{OAUTHBEARER} = %v", n)
	}
}

// A re-authentication replaces the principal; certificate names stay.
func TestIdentityFilterReauthentication(t *testing.T) {
	s := &filter.Standalone{Identity: filter.NewIdentity([]string{"CN=c"}, "", "")}
	handshake(t, s, 1, "PLAIN", 0)
	authenticate(t, s, 2, "\x00alice\x00pw", 0, "")
	handshake(t, s, 1, "SCRAM-SHA-256", 0)
	authenticate(t, s, 2, "n,,n=alice2,r=abc", 0, "r=abcdef,s=c2FsdA==,i=4096")
	authenticate(t, s, 2, "c=biws,r=abcdef,p=cHJvb2Y=", 0, "v=c2ln")
	if got := s.Identity.Names(); !slices.Equal(got, []string{"CN=c", "User:alice2"}) || s.Identity.Mechanism() != "SCRAM-SHA-256" {
		t.Fatalf("names %q (%s)", got, s.Identity.Mechanism())
	}
	// A failed re-authentication leaves the last accepted one (the broker
	// closes the connection).
	handshake(t, s, 1, "PLAIN", 0)
	authenticate(t, s, 2, "\x00mallory\x00pw", 58, "")
	if got := s.Identity.Principal(); got != "User:alice2" {
		t.Fatalf("principal %q after a refused re-authentication", got)
	}
}

func TestCertNames(t *testing.T) {
	u, _ := url.Parse("spiffe://prod.example/ns/orders/sa/app")
	c := &x509.Certificate{
		DNSNames: []string{"app.example", "bad\nname"}, URIs: []*url.URL{u},
		EmailAddresses: []string{"ops@example.com"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)},
	}
	subject := pkix.Name{CommonName: "app", Organization: []string{"Example, Inc."}, Country: []string{"DE"}}
	raw, err := asn1.Marshal(subject.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	c.RawSubject = raw
	want := []string{`CN=app,O=Example\, Inc.,C=DE`, "SAN:DNS:app.example", "SAN:URI:spiffe://prod.example/ns/orders/sa/app",
		"SAN:EMAIL:ops@example.com", "SAN:IP:10.0.0.1"}
	if got := certNames(c); !slices.Equal(got, want) {
		t.Fatalf("certNames = %q\nwant        %q", got, want)
	}
	// Unverified: nothing.
	if got := certIdentity(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}); got != nil {
		t.Fatalf("unverified certificate gave %q", got)
	}
}

// identityProbe records the identity of every Metadata and Produce request.
type identityProbe struct {
	filter.NopFilter
	mu   sync.Mutex
	seen [][]string
}

func (*identityProbe) APIKeys() []int16 { return []int16{int16(kmsg.Metadata), int16(kmsg.Produce)} }

func (p *identityProbe) OnRequest(_ context.Context, x *filter.Exchange) error {
	p.mu.Lock()
	p.seen = append(p.seen, slices.Clone(x.Identity().Names()))
	p.mu.Unlock()
	return nil
}

func (p *identityProbe) last() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) == 0 {
		return nil
	}
	return p.seen[len(p.seen)-1]
}

func startProbed(t *testing.T, doc string) (*Server, *identityProbe, *Metrics) {
	t.Helper()
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	probe := &identityProbe{}
	m := NewMetrics(nil)
	srv, err := New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), m, map[string]ClusterOptions{"test": {Filters: []filter.Filter{probe}}})
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
	return srv, probe, m
}

// Through the proxy, against a broker that verifies SASL: the principal of
// each mechanism's accepted login reaches the filters, and KIP-368
// re-authentications adopt it again.
func TestIdentityThroughProxySASL(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t1"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", "admin"), kfake.User("PLAIN", "alice", "pw-a"),
		kfake.User("SCRAM-SHA-256", "bob", "pw-b"), kfake.User("SCRAM-SHA-512", "carol", "pw-c"),
		kfake.BrokerConfigs(map[string]string{"connections.max.reauth.ms": "700"}))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	base := freePortRange(t, 3)
	srv, probe, m := startProbed(t, fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%q]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 2}
`, fake.ListenAddrs()[0], base, base+1))
	for _, c := range []struct {
		mech kgo.Opt
		name string
		want string
	}{
		{kgo.SASL(plain.Auth{User: "alice", Pass: "pw-a"}.AsMechanism()), "PLAIN", "User:alice"},
		{kgo.SASL(scram.Auth{User: "bob", Pass: "pw-b"}.AsSha256Mechanism()), "SCRAM-SHA-256", "User:bob"},
		{kgo.SASL(scram.Auth{User: "carol", Pass: "pw-c"}.AsSha512Mechanism()), "SCRAM-SHA-512", "User:carol"},
	} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(srv.BootstrapAddr("test")), c.mech)
		if err != nil {
			t.Fatal(err)
		}
		var logins float64
		for i := 0; i < 2; i++ {
			if i == 1 {
				logins = testutil.ToFloat64(m.identities.WithLabelValues("test", c.name))
				time.Sleep(time.Second) // past the session lifetime: the client re-authenticates
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t1", Value: []byte("v")}).FirstErr()
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := probe.last(); !slices.Equal(got, []string{c.want}) {
				t.Fatalf("%s: request seen with identity %q, want [%s]", c.name, got, c.want)
			}
		}
		cl.Close()
		if n := testutil.ToFloat64(m.identities.WithLabelValues("test", c.name)); n <= logins || logins == 0 {
			t.Errorf("%s: kseal_client_identities_total %v after the login, %v after the re-authentication", c.name, logins, n)
		}
	}
	// A wrong password: the broker refuses, nothing is adopted (the client
	// gets no further than the login).
	before := testutil.ToFloat64(m.identities.WithLabelValues("test", "PLAIN"))
	cl, _ := kgo.NewClient(kgo.SeedBrokers(srv.BootstrapAddr("test")), kgo.SASL(plain.Auth{User: "alice", Pass: "wrong"}.AsMechanism()),
		kgo.RequestRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	if _, err := kadm.NewClient(cl).BrokerMetadata(ctx); err == nil {
		t.Error("a wrong password got through")
	}
	cancel()
	cl.Close()
	if after := testutil.ToFloat64(m.identities.WithLabelValues("test", "PLAIN")); after != before {
		t.Errorf("a refused login was adopted (%v -> %v)", before, after)
	}
}

// Through the proxy with mutual TLS: the verified client certificate's
// subject and SANs are the connection's identity.
func TestIdentityThroughProxyTLS(t *testing.T) {
	pki := newPKI(t)
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t1"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	proxyCert, proxyKey, _ := pki.issue(t, "proxy", "127.0.0.1")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://prod/app")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "app", Organization: []string{"Example"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"app.example"}, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.ca, &key.PublicKey, pki.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	clientCert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	base := freePortRange(t, 3)
	srv, probe, _ := startProbed(t, fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%q]}
    gateway:
      bindAddress: 127.0.0.1
      advertisedHost: 127.0.0.1
      bootstrapPort: %d
      brokerPortStart: %d
      brokerPortCount: 2
      tls: {certFile: %q, keyFile: %q, clientAuth: request, clientCaFile: %q}
`, fake.ListenAddrs()[0], base, base+1, proxyCert, proxyKey, pki.caFile))
	for _, c := range []struct {
		certs []tls.Certificate
		want  []string
	}{
		{[]tls.Certificate{clientCert}, []string{"CN=app,O=Example", "SAN:DNS:app.example", "SAN:URI:spiffe://prod/app"}},
		{nil, nil}, // clientAuth: request lets it in, with no identity
	} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(srv.BootstrapAddr("test")),
			kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: c.certs}))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
		cancel()
		cl.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := probe.last(); !slices.Equal(got, c.want) {
			t.Fatalf("identity %q, want %q", got, c.want)
		}
	}
}

// FuzzIdentityFilter drives the identity filter with hostile SASL request
// and response bodies: it never fails the connection or panics, and any
// principal it adopts is a "User:" name kseal can log.
func FuzzIdentityFilter(f *testing.F) {
	f.Add([]byte{0, 5, 'P', 'L', 'A', 'I', 'N'}, []byte{0, 0, 0, 0, 0, 0}, []byte{0, 0, 0, 11, 0, 'a', 0, 'b', 0, 'c', 0, 'd', 0, 'e', 0}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, int16(1))
	f.Add([]byte{0, 13, 'S', 'C', 'R', 'A', 'M', '-', 'S', 'H', 'A', '-', '2', '5', '6'}, []byte{0, 0, 0, 0, 0, 0},
		append([]byte{17}, "n,,n=alice,r=abc\x00"...), []byte{0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, int16(2))
	f.Fuzz(func(t *testing.T, hsReq, hsResp, authReq, authResp []byte, version int16) {
		s := &filter.Standalone{}
		run := func(key int16, v int16, req, resp []byte) {
			fr := appendRequestHeader(nil, key, v, 1, "", false)
			hl := len(fr)
			fr = append(fr, req...)
			x := s.Exchange(key, v, fr, hl, nil, 0)
			if err := (identityFilter{}).OnRequest(context.Background(), x); err != nil {
				t.Fatal(err)
			}
			x.Response, x.RespHeaderLen = append([]byte{0, 0, 0, 1}, resp...), 4
			if err := (identityFilter{}).OnResponse(context.Background(), x); err != nil {
				t.Fatal(err)
			}
			s.Done(x)
		}
		for i := 0; i < 2; i++ {
			run(int16(kmsg.SASLHandshake), 1, hsReq, hsResp)
			run(int16(kmsg.SASLAuthenticate), version, authReq, authResp)
			run(int16(kmsg.SASLAuthenticate), version, authReq, authResp)
		}
		if id := s.Identity; id != nil {
			p := id.Principal()
			if len(p) <= len("User:") || p[:5] != "User:" || !printableName(p) {
				t.Fatalf("adopted %q", p)
			}
		}
	})
}

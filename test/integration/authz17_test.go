//go:build integration

package integration

// Issue 17, proof 2: who may decrypt. A rule's `access` allow-lists
// (`decrypt`, `produce`) name client identities kseal observes itself:
// the subject of an mTLS client certificate, the SASL/SCRAM user the broker
// accepted. With franz-go, librdkafka (confluent-kafka) and the Java
// client, over mTLS with two client certificates and over SASL/SCRAM with
// two users, one allowed each: the allowed reader gets plaintext; the other
// gets the records exactly as stored (onDenied: CIPHERTEXT) or
// TOPIC_AUTHORIZATION_FAILED (onDenied: ERROR), never plaintext; the
// allowed producer writes (sealed), the other is refused with
// TOPIC_AUTHORIZATION_FAILED and writes nothing. Refusals are counted per
// topic in kseal_access_denied_total.

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
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/testenv"
)

// The identities of the proof: one allowed, one not, per kind.
const (
	p17CertOK   = "p17-reader-ok"
	p17CertNo   = "p17-reader-no"
	p17SASLNo   = "p17mallory"
	p17SASLNoPw = "p17mallory-secret"
	// kseal's own principal on the SASL listener (upstream.sasl).
	p17SASLKseal   = "p17kseal"
	p17SASLKsealPw = "p17kseal-secret"
)

// p17PKI writes a CA, a server certificate (127.0.0.1, localhost) and
// client certificates for names (CN=name, O=kseal-it) into dir, in the
// file names e2ePKI uses (ca.pem, server.pem, server.key,
// server-keystore.pem; NAME.pem, NAME.key, NAME-keystore.pem), and returns
// an e2ePKI for them (e2eStartSecureBroker takes one).
func p17PKI(t *testing.T, names ...string) (*e2ePKI, map[string]tls.Certificate) {
	t.Helper()
	p := &e2ePKI{dir: e2eWorkDir(t), pool: x509.NewCertPool()}
	serial := int64(100)
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	sign := func(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	certPEM := func(c *x509.Certificate) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	keyPEM := func(k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	caKey := newKey()
	ca := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "kseal p17 CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, caKey, nil, nil)
	p.pool.AddCert(ca)
	p17WriteFile(t, p.dir, "ca.pem", certPEM(ca))
	sk := newKey()
	server := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "kseal p17 server"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, sk, ca, caKey)
	p17WriteFile(t, p.dir, "server.pem", certPEM(server)+certPEM(ca))
	p17WriteFile(t, p.dir, "server.key", keyPEM(sk))
	p17WriteFile(t, p.dir, "server-keystore.pem", keyPEM(sk)+certPEM(server)+certPEM(ca))
	certs := map[string]tls.Certificate{}
	for _, n := range names {
		k := newKey()
		c := sign(&x509.Certificate{Subject: pkix.Name{CommonName: n, Organization: []string{"kseal-it"}},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, k, ca, caKey)
		p17WriteFile(t, p.dir, n+".pem", certPEM(c)+certPEM(ca))
		p17WriteFile(t, p.dir, n+".key", keyPEM(k))
		p17WriteFile(t, p.dir, n+"-keystore.pem", keyPEM(k)+certPEM(c)+certPEM(ca))
		pair, err := tls.LoadX509KeyPair(p.path(n+".pem"), p.path(n+".key"))
		if err != nil {
			t.Fatal(err)
		}
		certs[n] = pair
	}
	return p, certs
}

// p17AccessRules are the rules of the authorization proof: topics
// it-p17azc-* answer a reader not allowed with the ciphertext, it-p17aze-*
// with TOPIC_AUTHORIZATION_FAILED. The allowed identities: the SASL user
// alice, and the certificate with CN=p17-reader-ok.
func p17AccessSection(k *e2eLocalKMS) string {
	allowed := fmt.Sprintf("['User:%s', '*CN=%s*']", e2eSASLUser, p17CertOK)
	return "    encryption:\n" + k.section() + fmt.Sprintf(`      policy:
        rules:
          - topicPrefix: 'it-p17azc-'
            kek: 'KEK-$(topicName)'
            access: {decrypt: %[1]s, produce: %[1]s, onDenied: CIPHERTEXT}
          - topicPrefix: 'it-p17aze-'
            kek: 'KEK-$(topicName)'
            access: {decrypt: %[1]s, produce: %[1]s, onDenied: ERROR}
        unresolvedKeyPolicy: REJECT
`, allowed)
}

// p17Ident is one client identity in the three clients' terms.
type p17Ident struct {
	name    string
	allowed bool
	franz   []kgo.Opt
	java    map[string]string // Java client properties
	rdkafka map[string]string // librdkafka properties
}

// p17AuthzEnv is one transport of the proof (mTLS or SASL).
type p17AuthzEnv struct {
	name      string
	p         *p17Proxy
	raw       string // the brokers, directly (plaintext)
	ct, er    string // the CIPHERTEXT and ERROR topics
	ok, no    p17Ident
	newTopic  func(t *testing.T, name string)
	endOffset func(t *testing.T, topic string) int64
}

func TestDecryptAuthorization(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	k := newE2ELocalKMS(t)
	pki, certs := p17PKI(t, p17CertOK, p17CertNo)
	// Topics and their KEKs, made before kseal starts.
	names := map[string]string{}
	for _, n := range []string{"mtls-c", "mtls-e", "sasl-c", "sasl-e"} {
		prefix := "it-p17azc-"
		if strings.HasSuffix(n, "-e") {
			prefix = "it-p17aze-"
		}
		names[n] = uniq(prefix + n)
		k.create(t, "KEK-"+names[n])
	}

	t.Run("mtls", func(t *testing.T) {
		t.Parallel()
		gw, err := testenv.NewGateway()
		if err != nil {
			t.Fatal(err)
		}
		cfg := e2eConfig(gw, cluster.Bootstrap[0], "",
			fmt.Sprintf("      tls: {certFile: %q, keyFile: %q, clientAuth: require, clientCaFile: %q}\n",
				pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"))) + p17AccessSection(k)
		ident := func(cn string) p17Ident {
			return p17Ident{name: "CN=" + cn, allowed: cn == p17CertOK,
				franz: []kgo.Opt{kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{certs[cn]}})},
				java: map[string]string{"security.protocol": "SSL", "ssl.truststore.type": "PEM", "ssl.truststore.location": pki.path("ca.pem"),
					"ssl.keystore.type": "PEM", "ssl.keystore.location": pki.path(cn + "-keystore.pem")},
				rdkafka: map[string]string{"security.protocol": "ssl", "ssl.ca.location": pki.path("ca.pem"),
					"ssl.certificate.location": pki.path(cn + ".pem"), "ssl.key.location": pki.path(cn + ".key")},
			}
		}
		e := &p17AuthzEnv{name: "mTLS", p: p17StartCfg(t, cfg), raw: cluster.BootstrapString(),
			ct: names["mtls-c"], er: names["mtls-e"], ok: ident(p17CertOK), no: ident(p17CertNo),
			newTopic:  func(t *testing.T, name string) { e2eCreateTopic(t, name, 1, nil) },
			endOffset: func(t *testing.T, topic string) int64 { return e2eEndOffsets(t, topic)[0] },
		}
		testAuthz(t, e)
	})

	t.Run("sasl", func(t *testing.T) {
		t.Parallel()
		b := e2eStartSecureBroker(t, pki)
		adm := kadm.NewClient(testenv.Kgo(t, []string{b.internal}))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A second SCRAM user, not allowed by the rules, and kseal's own
		// (it reads and writes its key topic: first encrypted offsets).
		res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{
			{User: p17SASLNo, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: p17SASLNoPw},
			{User: p17SASLKseal, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: p17SASLKsealPw}})
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			t.Fatalf("add SCRAM user %s: %v", p17SASLNo, err)
		}
		gw, err := testenv.NewGateway()
		if err != nil {
			t.Fatal(err)
		}
		pw := p17WriteFile(t, e2eWorkDir(t), "kseal-password", p17SASLKsealPw+"\n")
		cfg := e2eConfig(gw, b.sasl, fmt.Sprintf("      sasl: {mechanism: SCRAM-SHA-512, username: %s, passwordFile: %q}\n", p17SASLKseal, pw), "") +
			p17AccessSection(k)
		jaas := func(user, pass string) string {
			return fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, user, pass)
		}
		ident := func(user, pass string) p17Ident {
			return p17Ident{name: "User:" + user, allowed: user == e2eSASLUser,
				franz: []kgo.Opt{kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())},
				java:  map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512", "sasl.jaas.config": jaas(user, pass)},
				rdkafka: map[string]string{"security.protocol": "sasl_plaintext", "sasl.mechanisms": "SCRAM-SHA-512",
					"sasl.username": user, "sasl.password": pass},
			}
		}
		e := &p17AuthzEnv{name: "SASL/SCRAM", p: p17StartCfg(t, cfg), raw: b.internal,
			ct: names["sasl-c"], er: names["sasl-e"], ok: ident(e2eSASLUser, e2eSASLPassword), no: ident(p17SASLNo, p17SASLNoPw),
			newTopic: func(t *testing.T, name string) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := adm.CreateTopic(ctx, 1, 1, nil, name)
				if err == nil {
					err = r.Err
				}
				if err != nil {
					t.Fatalf("create %s: %v", name, err)
				}
			},
			endOffset: func(t *testing.T, topic string) int64 { return e2eSecureEnd(t, b, topic)[0] },
		}
		testAuthz(t, e)
	})
}

// p17Seeds is how many records each topic holds before the clients run.
const p17Seeds = 3

func testAuthz(t *testing.T, e *p17AuthzEnv) {
	e.newTopic(t, e.ct)
	e.newTopic(t, e.er)
	canary := uniq("authz-canary")
	seeds := map[string][]testenv.BinRecord{}
	okFranz := testenv.Kgo(t, []string{e.p.Bootstrap}, e.ok.franz...)
	for _, topic := range []string{e.ct, e.er} {
		for i := range p17Seeds {
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(fmt.Sprintf("seed %d %s", i, canary)),
				Headers: []kgo.RecordHeader{{Key: "h", Value: []byte(fmt.Sprint(i))}}}
			if err := okFranz.ProduceSync(t.Context(), r).FirstErr(); err != nil {
				t.Fatalf("%s: seed produce as %s through kseal: %v", e.name, e.ok.name, err)
			}
			seeds[topic] = append(seeds[topic], testenv.BinFromKgo(r))
		}
	}
	// What is stored, read on the brokers' plaintext listener.
	stored := map[string]map[int64]testenv.BinRecord{}
	for _, topic := range []string{e.ct, e.er} {
		stored[topic] = map[int64]testenv.BinRecord{}
		raw := e2eMustConsume(t, "direct", e.raw, p17Seeds, []string{topic})
		e2eAssertSealed(t, raw, canary)
		for _, r := range raw {
			stored[topic][r.Offset] = testenv.BinFromKgo(r)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// checkRead checks what one client, as one identity, got from one
	// topic: records (by offset) and its error text.
	checkRead := func(client string, id p17Ident, topic string, recs []testenv.BinRecord, errText string, denied bool) {
		t.Helper()
		who := fmt.Sprintf("%s %s as %s reading %s", e.name, client, id.name, topic)
		for _, r := range recs {
			if strings.Contains(string(r.Value), canary) && !id.allowed {
				t.Errorf("%s: got PLAINTEXT at offset %d: %q", who, r.Offset, r.Value)
			}
		}
		switch {
		case id.allowed:
			if errText != "" || len(recs) != p17Seeds {
				t.Errorf("%s (allowed): %d records, error %q; want the %d records in clear", who, len(recs), errText, p17Seeds)
			}
			for _, r := range recs {
				if r.Offset < p17Seeds && r.Content() != seeds[topic][r.Offset].Content() {
					t.Errorf("%s (allowed) @%d:\n got  %s\n want %s", who, r.Offset, r.Content(), seeds[topic][r.Offset].Content())
				}
			}
		case topic == e.ct:
			if errText != "" || len(recs) != p17Seeds {
				t.Errorf("%s (CIPHERTEXT): %d records, error %q; want the %d records as stored", who, len(recs), errText, p17Seeds)
			}
			for _, r := range recs {
				if want := stored[topic][r.Offset]; r.Content() != want.Content() {
					t.Errorf("%s (CIPHERTEXT) @%d: not as stored:\n got  %s\n want %s", who, r.Offset, r.Content(), want.Content())
				}
			}
		default:
			if len(recs) != 0 || !denied {
				t.Errorf("%s (ERROR): %d records, error %q; want TOPIC_AUTHORIZATION_FAILED and no records", who, len(recs), errText)
			}
		}
	}

	var wg sync.WaitGroup
	// franz-go.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, id := range []p17Ident{e.ok, e.no} {
			for _, topic := range []string{e.ct, e.er} {
				got, errs := p17Partition(t, e.p.Bootstrap, topic, 0, 0, p17Seeds, true, 15*time.Second, id.franz...)
				var bin []testenv.BinRecord
				for _, r := range got {
					if r.Offset < p17Seeds {
						bin = append(bin, testenv.BinFromKgo(r))
					}
				}
				errText := ""
				if len(errs) > 0 {
					errText = p17Errs(errs)
				}
				t.Logf("%s franz-go as %s reading %s: %d records, errors %q", e.name, id.name, topic, len(bin), errText)
				checkRead("franz-go", id, topic, bin, errText, p17AnyErr(errs, kerr.TopicAuthorizationFailed))
			}
		}
	}()
	// librdkafka and Java: one process each for all steps.
	type probeRun struct {
		client string
		props  func(p17Ident) map[string]string
		run    func([]testenv.ProbeStep) []testenv.ProbeResult
		denied func(string) bool
	}
	probes := []probeRun{
		{"librdkafka", func(i p17Ident) map[string]string { return i.rdkafka },
			func(s []testenv.ProbeStep) []testenv.ProbeResult { return testenv.RdkafkaProbe(t, s) },
			func(s string) bool { return strings.Contains(s, "TOPIC_AUTHORIZATION_FAILED") }},
		{"java", func(i p17Ident) map[string]string { return i.java },
			func(s []testenv.ProbeStep) []testenv.ProbeResult { return testenv.JavaProbe(t, cluster, s) },
			func(s string) bool { return strings.Contains(s, "TopicAuthorizationException") }},
	}
	produced := make([][]testenv.BinRecord, len(probes))
	for pi, pr := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var steps []testenv.ProbeStep
			for _, id := range []p17Ident{e.ok, e.no} {
				for _, topic := range []string{e.ct, e.er} {
					steps = append(steps, testenv.ProbeStep{Consume: true, Bootstrap: e.p.Bootstrap, Props: pr.props(id),
						Topic: topic, Partition: 0, Offset: 0, N: p17Seeds, Timeout: 15 * time.Second})
				}
			}
			for _, id := range []p17Ident{e.ok, e.no} {
				steps = append(steps, testenv.ProbeStep{Bootstrap: e.p.Bootstrap, Props: pr.props(id), Topic: e.ct,
					Record: testenv.BinRecord{Partition: 0, Key: []byte(pr.client), Value: []byte(fmt.Sprintf("by %s as %s %s", pr.client, id.name, canary))}})
			}
			res := pr.run(steps)
			for i, r := range res {
				t.Logf("%s %s step %d (%s as %s): %d records, position %d@%d, error %q", e.name, pr.client, i,
					steps[i].Topic, map[bool]string{true: "consume", false: "produce"}[steps[i].Consume], len(r.Records), r.Partition, r.Offset, r.Err)
			}
			for i, s := range steps[:4] {
				id := e.ok
				if i >= 2 {
					id = e.no
				}
				var recs []testenv.BinRecord
				for _, r := range res[i].Records {
					if r.Offset < p17Seeds {
						recs = append(recs, r)
					}
				}
				checkRead(pr.client, id, s.Topic, recs, res[i].Err, pr.denied(res[i].Err))
			}
			if r := res[4]; r.Err != "" {
				t.Errorf("%s %s produce as %s (allowed): %s", e.name, pr.client, e.ok.name, r.Err)
			} else {
				produced[pi] = append(produced[pi], steps[4].Record)
			}
			if r := res[5]; !pr.denied(r.Err) {
				t.Errorf("%s %s produce as %s (not allowed): error %q, want TOPIC_AUTHORIZATION_FAILED", e.name, pr.client, e.no.name, r.Err)
			}
		}()
	}
	wg.Wait()

	// franz-go produce: allowed writes, the other is refused.
	allowedRec := &kgo.Record{Topic: e.ct, Key: []byte("franz-go"), Value: []byte("by franz-go as " + e.ok.name + " " + canary)}
	if err := okFranz.ProduceSync(t.Context(), allowedRec).FirstErr(); err != nil {
		t.Errorf("%s franz-go produce as %s (allowed): %v", e.name, e.ok.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	noFranz := testenv.Kgo(t, []string{e.p.Bootstrap}, append(e.no.franz, kgo.RecordRetries(0))...)
	err := noFranz.ProduceSync(ctx, &kgo.Record{Topic: e.ct, Value: []byte("by franz-go as " + e.no.name + " " + canary)}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("%s franz-go produce as %s (not allowed): %v, want TOPIC_AUTHORIZATION_FAILED", e.name, e.no.name, err)
	}

	// Exactly the allowed records were written, sealed.
	want := p17Seeds + 1
	for _, p := range produced {
		want += len(p)
	}
	if n := e.endOffset(t, e.ct); n != int64(want) {
		t.Errorf("%s: %s holds %d records, want %d (seeds and one per allowed producer; none of the refused)", e.name, e.ct, n, want)
	}
	e2eAssertSealed(t, e2eMustConsume(t, "direct", e.raw, want, []string{e.ct}), canary)
	for _, r := range e2eMustConsume(t, "allowed", e.p.Bootstrap, want, []string{e.ct}, e.ok.franz...) {
		if !strings.Contains(string(r.Value), canary) || strings.Contains(string(r.Value), e.no.name) {
			t.Errorf("%s: allowed reader got %q at offset %d", e.name, r.Value, r.Offset)
		}
	}

	// Refusals are counted per topic: reads by the other identity on both
	// topics (three clients each), produce on the CIPHERTEXT topic.
	if !e.p.metricExists(t, "kseal_access_denied_total") {
		t.Errorf("%s: /metrics has no kseal_access_denied_total", e.name)
	}
	for _, c := range []struct {
		topic, op string
		min       float64
	}{{e.ct, "fetch", 3}, {e.ct, "produce", 3}, {e.er, "fetch", 3}, {e.er, "produce", 0}} {
		n := e.p.metric(t, "kseal_access_denied_total", map[string]string{"topic": c.topic, "operation": c.op})
		if n < c.min || c.min == 0 && n != 0 {
			t.Errorf("%s: kseal_access_denied_total{topic=%q,operation=%q} = %v, want %s %v", e.name, c.topic, c.op, n,
				map[bool]string{true: "exactly", false: "at least"}[c.min == 0], c.min)
		}
	}
	if t.Failed() {
		_ = os.WriteFile(filepath.Join(e2eWorkDir(t), "metrics.txt"), []byte(hostileScrape(t, e.p.admin)), 0o600)
	}
}

//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/testenv"
)

// TestAccessRules: kseal's own authorization (docs/authorization.md) in
// front of a SASL_PLAINTEXT listener. kseal observes alice's SCRAM login
// (the broker verifies it) and applies each rule's access section: alice
// reads the topic that allows her in plaintext, gets
// TOPIC_AUTHORIZATION_FAILED on the one that allows only bob (onDenied
// ERROR) and the stored envelopes on the other (CIPHERTEXT), and may not
// produce to a topic whose produce list names only bob. The denials are
// counted in kseal_access_denied_total. (The three-client proofs with mTLS
// and two SCRAM users are proofs17's.)
func TestAccessRules(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	pki := e2eNewPKI(t)
	b := e2eStartSecureBroker(t, pki)
	k := newE2ELocalKMS(t)
	k.create(t, "KEK-authz")
	ok, denied, ct, wo := b.topic(t, "authz-ok"), b.topic(t, "authz-deny"), b.topic(t, "authz-ct"), b.topic(t, "authz-wo")
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	cfg := fmt.Sprintf("admin: {listen: %q}\n", admin) + e2eConfig(gw, b.sasl, "", "") + "    encryption:\n" + k.section() +
		fmt.Sprintf(`      policy:
        rules:
          - topics: [%s]
            kek: KEK-authz
            access: {decrypt: ['User:%s'], produce: ['User:%[2]s']}
          - topics: [%s]
            kek: KEK-authz
            access: {decrypt: ['User:bob']}
          - topics: [%s]
            kek: KEK-authz
            access: {decrypt: ['User:bob', 'CN=*'], onDenied: CIPHERTEXT}
          - topics: [%s]
            kek: KEK-authz
            access: {produce: ['User:bob']}
`, ok, e2eSASLUser, denied, ct, wo)
	p := e2eStartKseal(t, cfg)
	alice := kgo.SASL(scram.Auth{User: e2eSASLUser, Pass: e2eSASLPassword}.AsSha512Mechanism())

	recs := map[string][]testenv.Record{}
	for _, topic := range []string{ok, denied, ct} {
		recs[topic] = e2eConnRecords(topic, "alice", 3)
		testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}, alice), recs[topic])
	}
	// Stored encrypted, whoever may read them.
	for topic, want := range recs {
		for _, r := range e2eMustConsume(t, "direct "+topic, b.internal, len(want), []string{topic}) {
			if _, n := e2eMarker(r); n != 1 || bytes.Contains(r.Value, []byte("alice ")) {
				t.Fatalf("%s: a stored record is not encrypted", topic)
			}
		}
	}

	// Allowed: plaintext.
	var got []testenv.Record
	for _, r := range e2eMustConsume(t, "alice on "+ok, p.Bootstrap, len(recs[ok]), []string{ok}, alice) {
		got = append(got, testenv.FromKgo(r))
	}
	assertSameRecords(t, "alice on the topic allowing her", got, recs[ok])
	// librdkafka and Java log in their own way (SaslAuthenticate v1 and
	// v2): kseal observes both.
	rdSCRAM := map[string]string{"security.protocol": "sasl_plaintext", "sasl.mechanisms": "SCRAM-SHA-512",
		"sasl.username": e2eSASLUser, "sasl.password": e2eSASLPassword}
	assertSameRecords(t, "librdkafka as alice", testenv.RdkafkaConsume(t, p.Bootstrap, ok, len(recs[ok]), rdSCRAM), recs[ok])
	javaProps := filepath.Join(e2eWorkDir(t), "alice.properties")
	if err := os.WriteFile(javaProps, []byte(fmt.Sprintf("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"+
		"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"%s\" password=\"%s\";\n",
		e2eSASLUser, e2eSASLPassword)), 0o600); err != nil {
		t.Fatal(err)
	}
	assertSameRecords(t, "java as alice", testenv.JavaConsume(t, cluster, p.Bootstrap, ok, len(recs[ok]), "--command-config", javaProps), recs[ok])

	// Denied, onDenied ERROR: the partition error, no records.
	rs, errs := e2eConsume(t, p.Bootstrap, 1, 10*time.Second, []string{denied}, alice)
	if len(rs) != 0 {
		t.Fatalf("alice got %d records of %s", len(rs), denied)
	}
	authzErr := false
	for _, err := range errs {
		authzErr = authzErr || errors.Is(err, kerr.TopicAuthorizationFailed)
	}
	if !authzErr {
		t.Fatalf("alice on %s: errors %v, want TOPIC_AUTHORIZATION_FAILED", denied, errs)
	}

	// Denied, onDenied CIPHERTEXT: the records exactly as stored.
	raw := e2eMustConsume(t, "direct "+ct, b.internal, len(recs[ct]), []string{ct})
	viaKseal := e2eMustConsume(t, "alice on "+ct, p.Bootstrap, len(recs[ct]), []string{ct}, alice)
	for i := range raw {
		if !bytes.Equal(raw[i].Value, viaKseal[i].Value) || !bytes.Equal(raw[i].Key, viaKseal[i].Key) {
			t.Fatalf("%s record %d: kseal delivered something other than the stored ciphertext", ct, i)
		}
		if _, n := e2eMarker(viaKseal[i]); n != 1 {
			t.Fatalf("%s record %d: the marker header is missing", ct, i)
		}
	}

	// Produce refused: alice is not on the produce list.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := testenv.Kgo(t, []string{p.Bootstrap}, alice, kgo.RecordRetries(2))
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: wo, Value: []byte("not allowed")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice producing to %s: %v, want TOPIC_AUTHORIZATION_FAILED", wo, err)
	}
	if n := e2eSum(e2eSecureEnd(t, b, wo)); n != 0 {
		t.Fatalf("%d records reached %s", n, wo)
	}

	for topic, op := range map[string]string{denied: "fetch", ct: "fetch", wo: "produce"} {
		if n := e2eMetric(t, admin, "kseal_access_denied_total", map[string]string{"topic": topic, "operation": op}); n < 1 {
			t.Errorf("kseal_access_denied_total{topic=%s,operation=%s} = %v", topic, op, n)
		}
	}
	if n := e2eMetric(t, admin, "kseal_client_identities_total", map[string]string{"source": "SCRAM-SHA-512"}); n < 1 {
		t.Errorf("kseal_client_identities_total{source=SCRAM-SHA-512} = %v", n)
	}

	testAccessMTLS(t, pki, b, k)
}

// testAccessMTLS: the identity of a client certificate kseal verifies
// (mutual TLS on its client listener, TLS with kseal's own certificate to
// the broker's SSL listener) is matched by subject DN.
func testAccessMTLS(t *testing.T, pki *e2ePKI, b *e2eSecureBroker, k *e2eLocalKMS) {
	ok, denied := b.topic(t, "authz-tls-ok"), b.topic(t, "authz-tls-deny")
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	cfg := e2eConfig(gw, b.ssl,
		fmt.Sprintf("      tls: {enabled: true, caFile: %q, certFile: %q, keyFile: %q}\n",
			pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key")),
		fmt.Sprintf("      tls: {certFile: %q, keyFile: %q, clientAuth: require, clientCaFile: %q}\n",
			pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"))) +
		"    encryption:\n" + k.section() + fmt.Sprintf(`      policy:
        rules:
          - topics: [%s]
            kek: KEK-authz
            access: {decrypt: ['CN=kseal e2e client'], produce: ['CN=kseal e2e *']}
          - topics: [%s]
            kek: KEK-authz
            access: {decrypt: ['CN=someone else', 'User:*']}
`, ok, denied)
	p := e2eStartKseal(t, cfg)
	tlsOpt := kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}})
	recs := map[string][]testenv.Record{ok: e2eConnRecords(ok, "cert", 3), denied: e2eConnRecords(denied, "cert", 3)}
	for _, r := range recs {
		testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}, tlsOpt), r)
	}
	var got []testenv.Record
	for _, r := range e2eMustConsume(t, "certificate on "+ok, p.Bootstrap, len(recs[ok]), []string{ok}, tlsOpt) {
		got = append(got, testenv.FromKgo(r))
	}
	assertSameRecords(t, "certificate on the topic allowing it", got, recs[ok])
	rs, errs := e2eConsume(t, p.Bootstrap, 1, 10*time.Second, []string{denied}, tlsOpt)
	authzErr := false
	for _, err := range errs {
		authzErr = authzErr || errors.Is(err, kerr.TopicAuthorizationFailed)
	}
	if len(rs) != 0 || !authzErr {
		t.Fatalf("certificate on %s: %d records, errors %v; want TOPIC_AUTHORIZATION_FAILED", denied, len(rs), errs)
	}
}

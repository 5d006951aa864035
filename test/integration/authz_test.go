//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
}

//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
)

// TestFormatV2KeysAndHeaders is the minimal end-to-end check of format v2
// (the wiring branch's; branch proofs has the full proof): kseal writing v2
// with a rule encrypting value, key and every header; franz-go produces
// keyed records with headers through it (the client's partitioner hashing
// the plaintext keys), reads them back through kseal byte for byte on the
// partitions the client chose, and a direct read shows no plaintext key,
// header name or header value at the broker, only v2 markers.
func TestFormatV2KeysAndHeaders(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	k := newE2ELocalKMS(t)
	topic := uniq("it-v2")
	k.create(t, "KEK-"+topic)
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	section := "    encryption:\n" + k.section() + fmt.Sprintf(`      format: {writeVersion: 2}
      policy:
        rules:
          - topics: [%s]
            kek: 'KEK-$(topicName)'
            encrypt: {value: true, key: true, headers: ['*']}
`, topic)
	p := e2eStartKseal(t, testenv.KsealConfig(cluster.Bootstrap, gw, section))
	e2eCreateTopic(t, topic, 3, nil)

	canary := uniq("cust")
	var sent []*kgo.Record
	for i := range 12 {
		sent = append(sent, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("%s-key-%d", canary, i%4)),
			Value: []byte(fmt.Sprintf("%s-value-%d", canary, i)),
			Headers: []kgo.RecordHeader{{Key: canary + "-hdr", Value: []byte(canary + "-hv1")}, {Key: "dup", Value: []byte("a")},
				{Key: "dup", Value: []byte("b")}, {Key: "nullv", Value: nil}}})
	}
	sent = append(sent,
		&kgo.Record{Topic: topic, Key: []byte(canary + "-key-0"), Value: nil}, // tombstone: key sealed, value stays null
		&kgo.Record{Topic: topic, Key: nil, Value: []byte(canary + "-nullkey")},
		&kgo.Record{Topic: topic, Key: []byte{}, Value: []byte(canary + "-emptykey")},
		&kgo.Record{Topic: topic, Key: []byte{0, 0xff, 1}, Value: []byte{}, Headers: []kgo.RecordHeader{{Key: canary + "-bin", Value: []byte{0}}}})
	cl := testenv.Kgo(t, []string{p.Bootstrap})
	res := cl.ProduceSync(context.Background(), sent...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce through kseal: %v", err)
	}
	// ProduceSync fills in each record's partition and offset.
	at := map[string]*kgo.Record{}
	for _, r := range sent {
		at[fmt.Sprintf("%d@%d", r.Partition, r.Offset)] = r
	}

	raw := e2eRaw(t, len(sent), topic)
	sealedKeys := map[string]string{}
	for _, r := range raw {
		pos := fmt.Sprintf("%d@%d", r.Partition, r.Offset)
		orig := at[pos]
		if orig == nil {
			t.Fatalf("stored record at %s was not produced there", pos)
		}
		m, n := e2eMarker(r)
		if n != 1 || len(m) < 2 || m[0] != recordcrypt.Version2 {
			t.Errorf("stored record %s: marker %x (%d), want one of version 2", pos, m, n)
		}
		if bytes.Contains(r.Key, []byte(canary)) || bytes.Contains(r.Value, []byte(canary)) {
			t.Errorf("stored record %s: plaintext key or value at the broker", pos)
		}
		for _, h := range r.Headers {
			if bytes.Contains([]byte(h.Key), []byte(canary)) || bytes.Contains(h.Value, []byte(canary)) || h.Key == "dup" {
				t.Errorf("stored record %s: header %q in clear at the broker", pos, h.Key)
			}
		}
		if (orig.Key == nil) != (r.Key == nil) || orig.Value == nil && r.Value != nil {
			t.Errorf("stored record %s: null key or value not kept null", pos)
		}
		if orig.Key != nil {
			// Equal plaintext keys of the topic are equal at the broker.
			if s, ok := sealedKeys[string(orig.Key)]; ok && s != string(r.Key) {
				t.Errorf("stored record %s: key %q sealed to other bytes than before", pos, orig.Key)
			}
			sealedKeys[string(orig.Key)] = string(r.Key)
		}
	}
	e2eAssertNotOnDisk(t, canary)

	got := e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, len(sent), []string{topic})
	for _, r := range got {
		pos := fmt.Sprintf("%d@%d", r.Partition, r.Offset)
		want := at[pos]
		if want == nil {
			t.Errorf("consumed a record at %s that was not produced there", pos)
			continue
		}
		if !nullEqual(r.Key, want.Key) || !nullEqual(r.Value, want.Value) || len(r.Headers) != len(want.Headers) {
			t.Errorf("record %s: key %q value %q %d headers, want %q %q %d", pos, r.Key, r.Value, len(r.Headers), want.Key, want.Value, len(want.Headers))
			continue
		}
		for i, h := range want.Headers {
			if r.Headers[i].Key != h.Key || !nullEqual(r.Headers[i].Value, h.Value) {
				t.Errorf("record %s header %d: %q=%q, want %q=%q", pos, i, r.Headers[i].Key, r.Headers[i].Value, h.Key, h.Value)
			}
		}
	}
}

func nullEqual(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

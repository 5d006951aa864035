//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
	"github.com/kseal/kseal/internal/tools"
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

// TestReencryptToV2 moves a topic written in format v1 (values only) to
// format v2 with its keys and headers encrypted: kseal is reloaded with
// writeVersion 2 and a rule encrypting keys and headers, `kseal reencrypt
// --format 2` copies the topic through it, and inspect shows every record
// of the destination in v2 with its key sealed, while audit reports the
// source's clear keys.
func TestReencryptToV2(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	k := newE2ELocalKMS(t)
	src := uniq("it-v1to2")
	dst := src + "-v2"
	k.create(t, "KEK-"+src)
	k.create(t, "KEK-"+dst)
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	section := func(version int, encrypt string) string {
		return "    encryption:\n" + k.section() + fmt.Sprintf(`      format: {writeVersion: %d}
      policy:
        rules:
          - topicPrefix: %s
            kek: 'KEK-$(topicName)'%s
`, version, src, encrypt)
	}
	p := e2eStartKseal(t, testenv.KsealConfig(cluster.Bootstrap, gw, section(1, "")))
	e2eCreateTopic(t, src, 2, nil)
	canary := uniq("v1key")
	var sent []*kgo.Record
	for i := range 10 {
		sent = append(sent, &kgo.Record{Topic: src, Key: []byte(fmt.Sprintf("%s-%d", canary, i%3)), Value: []byte(fmt.Sprintf("value-%d", i)),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte(canary)}}})
	}
	cl := testenv.Kgo(t, []string{p.Bootstrap})
	if err := cl.ProduceSync(context.Background(), sent...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for _, r := range e2eRaw(t, len(sent), src) {
		if m, _ := e2eMarker(r); len(m) != 1 || m[0] != recordcrypt.Version1 {
			t.Fatalf("writeVersion 1 wrote marker %x", m)
		}
	}

	p.reload(t, testenv.KsealConfig(cluster.Bootstrap, gw, section(2, "\n            encrypt: {key: true, headers: ['*']}")))
	p.waitLog(t, "reloaded encryption policy and KMS settings", 1, 15*time.Second)
	code, out, errOut := runKseal(t, "reencrypt", "--config", p.cfgPath, "--source", src, "--dest", dst, "--proxy", p.Bootstrap, "--format", "2", "--json")
	if code != 0 {
		t.Fatalf("reencrypt --format 2: exit %d\n%s\n%s", code, out, errOut)
	}
	var res tools.ReencryptResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("reencrypt --json: %v\n%s", err, out)
	}
	if res.Check == nil || !res.Check.OK || !res.Check.FormatOK || res.Check.DestFormats["2"] != int64(len(sent)) || len(res.Check.DestFormats) != 1 {
		t.Fatalf("reencrypt result: %s", out)
	}

	code, out, errOut = runKseal(t, "inspect", "--config", p.cfgPath, "--topic", dst, "--json")
	if code != 0 {
		t.Fatalf("inspect: exit %d\n%s", code, errOut)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var info tools.RecordInfo
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			t.Fatalf("inspect --json line %q: %v", line, err)
		}
		if info.Format != 2 || info.Parts == nil || !info.Parts.Key || !info.Parts.Headers || !info.Parts.Value || info.KeyID == "" {
			t.Errorf("inspect: %s", line)
		}
		n++
	}
	if n != len(sent) {
		t.Errorf("inspect showed %d records, want %d", n, len(sent))
	}
	for _, r := range e2eRaw(t, len(sent), dst) {
		if bytes.Contains(r.Key, []byte(canary)) {
			t.Errorf("destination record %d@%d: plaintext key", r.Partition, r.Offset)
		}
	}
	// The source still holds its keys and headers in clear: audit says so.
	code, out, _ = runKseal(t, "audit", "--config", p.cfgPath, "--topics", src, "--json")
	if code == 0 || !strings.Contains(out, `"clear_key"`) || !strings.Contains(out, `"clear_headers"`) {
		t.Errorf("audit of the v1 source: exit %d\n%s", code, out)
	}
	// Through kseal the copy reads as the original.
	got := e2eMustConsume(t, "through kseal", p.Bootstrap, len(sent), []string{dst})
	want := map[string]int{}
	for _, r := range sent {
		want[string(r.Key)+"="+string(r.Value)]++
	}
	for _, r := range got {
		want[string(r.Key)+"="+string(r.Value)]--
		if len(r.Headers) != 1 || string(r.Headers[0].Value) != canary {
			t.Errorf("copied record %d@%d: headers %v", r.Partition, r.Offset, r.Headers)
		}
	}
	for kv, c := range want {
		if c != 0 {
			t.Errorf("record %s: %d missing", kv, c)
		}
	}
}

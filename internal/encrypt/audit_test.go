package encrypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/policy"
)

// auditBuffer collects the audit stream's JSON lines.
type auditBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *auditBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// auditedFilter returns a filter whose audit events go through a real
// writer; done closes it and returns the lines, parsed, and the raw text.
func auditedFilter(t *testing.T, rules []policy.RuleConfig, keks []string) (*Filter, func() ([]map[string]any, string)) {
	t.Helper()
	out := &auditBuffer{}
	w := audit.NewWriter(out, 0, nil)
	f := newFilter(t, rules, keks, func(o *Options) { o.Audit = audit.ForCluster(w, "vc1") })
	return f, func() ([]map[string]any, string) {
		w.Close()
		raw := out.buf.String()
		var evs []map[string]any
		for _, line := range strings.Split(strings.TrimSuffix(raw, "\n"), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not JSON: %q: %v", line, err)
			}
			evs = append(evs, m)
		}
		return evs, raw
	}
}

// noSecrets fails if raw holds any of secrets, as bytes, hex or base64.
func noSecrets(t *testing.T, raw string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range []string{string(s), hex.EncodeToString(s), base64.StdEncoding.EncodeToString(s)} {
			if strings.Contains(raw, form) {
				t.Fatalf("audit stream holds %q:\n%s", form, raw)
			}
		}
	}
}

func TestAuditProduceRefusals(t *testing.T) {
	f, done := auditedFilter(t, mixedRules, []string{"KEK-enc-a"})
	secret := []byte("secret-value-of-a-control-batch")
	ctrl := plainBatch([][]byte{secret})
	ctrl[22] |= 0x20 // attributes: control
	setCRC(ctrl)
	for range 3 { // rate-limited: one event per topic-partition
		produceThrough(t, f, -1, []producePart{{"enc-a", 4, ctrl}}).wantCodes(t, map[string]*kerr.Error{"enc-a/4": kerr.InvalidRecord})
	}
	// An invalid topic name never reaches the event.
	produceThrough(t, f, -1, []producePart{{"bad\xffname", 0, plainBatch([][]byte{secret})}})
	// REJECT: a topic without a KEK is a policy refusal.
	pol, err := policy.Compile(&policy.Config{Rules: mixedRules, UnresolvedKeyPolicy: policy.Reject})
	if err != nil {
		t.Fatal(err)
	}
	f.Swap(pol, f.state.Load().keys)
	produceThrough(t, f, -1, []producePart{{"enc-nokek", 1, plainBatch([][]byte{secret})}}).wantCodes(t, map[string]*kerr.Error{"enc-nokek/1": kerr.PolicyViolation})

	evs, raw := done()
	noSecrets(t, raw, secret, []byte("bad\xffname"), []byte(`bad\ufffd`))
	if len(evs) != 3 {
		t.Fatalf("want 3 events, got:\n%s", raw)
	}
	want := []map[string]any{
		{"type": "input_refused", "reason": "control_batch", "topic": "enc-a", "partition": 4.0, "error_code": 87.0, "error_name": "INVALID_RECORD", "virtual_cluster": "vc1"},
		{"type": "input_refused", "reason": "invalid_topic", "error_code": 17.0, "error_name": "INVALID_TOPIC_EXCEPTION"},
		{"type": "produce_refused", "reason": "rejected", "topic": "enc-nokek", "partition": 1.0, "error_code": 44.0, "error_name": "POLICY_VIOLATION"},
	}
	for i, w := range want {
		for k, v := range w {
			if evs[i][k] != v {
				t.Fatalf("event %d: %s = %v, want %v\n%s", i, k, evs[i][k], v, raw)
			}
		}
		if evs[i]["version"] != 1.0 || evs[i]["time"] == nil {
			t.Fatalf("event %d lacks version or time: %v", i, evs[i])
		}
	}
	if _, ok := evs[1]["topic"]; ok {
		t.Fatalf("invalid topic name in the event: %v", evs[1])
	}
}

func TestAuditDecryptRefused(t *testing.T) {
	f, done := auditedFilter(t, []policy.RuleConfig{{TopicRegex: ".*", KEK: "KEK-$(topicName)"}}, []string{"KEK-orders"})
	one, vals := bigPartition(t, f, "orders", 1, 4, 64)
	tamperLast(one)
	for range 3 { // a consumer stuck on the record: one event
		resp := fetchThrough(t, f, []fetchPart{{topic: "orders", partition: 7, set: one}})
		if resp.Topics[0].Partitions[0].ErrorCode != kerr.CorruptMessage.Code {
			t.Fatal("tampered partition not refused")
		}
	}
	evs, raw := done()
	noSecrets(t, raw, vals...)
	if len(evs) != 1 {
		t.Fatalf("want 1 event, got:\n%s", raw)
	}
	e := evs[0]
	if e["type"] != "decrypt_refused" || e["topic"] != "orders" || e["partition"] != 7.0 || e["reason"] != "tampered" ||
		e["error_code"] != 2.0 || e["offset"] != 3.0 || len(e["edek_fingerprint"].(string)) != 16 {
		t.Fatalf("event %v", e)
	}
}

func TestAuditOffIsNil(t *testing.T) {
	f := newMixedFilter(t, nil)
	b := plainBatch([][]byte{[]byte("x")})
	b[22] |= 0x20
	setCRC(b)
	// No emitter: nothing to panic on.
	produceThrough(t, f, -1, []producePart{{"enc-a", 0, b}})
}

// A panic while decrypting a partition is a panic_recovered event (and the
// partition a decrypt_refused one), without the panic's text.
func TestAuditDecryptPanic(t *testing.T) {
	f, done := auditedFilter(t, []policy.RuleConfig{{TopicRegex: ".*", KEK: "KEK-$(topicName)"}}, []string{"KEK-orders"})
	set, _ := bigPartition(t, f, "orders", 1, 2, 16)
	cur := f.state.Load()
	f.Swap(cur.policy, panicKeys{cur.keys})
	fetchThrough(t, f, []fetchPart{{topic: "orders", partition: 1, set: set}})
	evs, raw := done()
	if len(evs) != 2 || evs[0]["type"] != "panic_recovered" || evs[0]["where"] != "decrypt" ||
		evs[1]["type"] != "decrypt_refused" || evs[1]["reason"] != "panic" || evs[1]["partition"] != 1.0 {
		t.Fatalf("events:\n%s", raw)
	}
	if strings.Contains(raw, "decryptor bug") {
		t.Fatalf("the panic's text is in the stream:\n%s", raw)
	}
}

// Produce v0-v2 closes the connection: an input_refused event, rate-limited.
func TestAuditLegacyProduceVersion(t *testing.T) {
	f, done := auditedFilter(t, mixedRules, nil)
	frame, hlen := produceFrame(-1, []producePart{{"enc-a", 0, plainBatch([][]byte{[]byte("x")})}})
	for range 3 {
		var s filter.Standalone
		if err := f.OnRequest(context.Background(), s.Exchange(int16(kmsg.Produce), 2, frame, hlen, nil, 0)); err == nil {
			t.Fatal("produce v2 not refused")
		}
	}
	evs, raw := done()
	if len(evs) != 1 || evs[0]["type"] != "input_refused" || evs[0]["reason"] != "legacy_produce_version" {
		t.Fatalf("events:\n%s", raw)
	}
}

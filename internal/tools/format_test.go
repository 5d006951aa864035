package tools

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
)

// inspect --json: one line per record with its envelope fields, never the
// key, value or EDEK bytes.
func TestInspectJSONEnvelopeFields(t *testing.T) {
	describe, _ := kms.LookupDescriber("local")
	edek := localEDEK("KEK-a", 7)
	value := sealed(t, edek, "plaintext-canary")
	rec := &kgo.Record{Topic: "orders", Partition: 3, Offset: 42, Timestamp: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC),
		Key: []byte("key-canary"), Value: value, Headers: []kgo.RecordHeader{marker(1)}}
	var out bytes.Buffer
	if err := NewInspectJSON(&out)(NewClassifier(describe).Classify(rec)); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(out.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", out.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	env, _ := got["envelope"].(map[string]any)
	want := map[string]any{"topic": "orders", "partition": 3.0, "offset": 42.0, "state": "encrypted",
		"keySize": 10.0, "valueSize": float64(len(value)), "headers": 1.0}
	wantEnv := map[string]any{"format": 1.0, "keyBound": true, "kek": "KEK-a", "kekVersion": "7",
		"edekSize": float64(len(edek)), "cipher": "AES-256-GCM", "counter": 0.0, "plaintextSize": float64(len("plaintext-canary"))}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k, v := range wantEnv {
		if env[k] != v {
			t.Errorf("envelope.%s = %v, want %v", k, env[k], v)
		}
	}
	if dek, _ := env["dek"].(string); len(dek) != 16 {
		t.Errorf("envelope.dek = %v", env["dek"])
	}
	s := out.String()
	for _, secret := range [][]byte{[]byte("key-canary"), value, edek, []byte("plaintext-canary")} {
		for _, form := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)} {
			if strings.Contains(s, form) {
				t.Fatalf("inspect JSON holds %q: %s", form, s)
			}
		}
	}
}

// audit --json carries totals over every topic.
func TestAuditJSONTotals(t *testing.T) {
	rep := &AuditReport{Cluster: "c", Topics: []TopicReport{
		{Topic: "a", Records: 10, Encrypted: 6, Plaintext: 3, Tombstones: 1,
			Violations: []Finding{{Kind: "plaintext", Count: 3}}},
		{Topic: "b", Records: 5, Encrypted: 4, Malformed: 1, Violations: []Finding{{Kind: "malformed", Count: 1}}},
	}, Disagreements: 2}
	rep.Totals = totals(rep.Topics)
	var out bytes.Buffer
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Disagreements int            `json:"disagreements"`
		Totals        map[string]int `json:"totals"`
	}
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"topics": 2, "records": 15, "encrypted": 10, "plaintext": 3, "tombstones": 1, "malformed": 1, "violations": 4}
	for k, v := range want {
		if back.Totals[k] != v {
			t.Errorf("totals.%s = %d, want %d (%s)", k, back.Totals[k], v, out.String())
		}
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "2 topics, 15 records scanned") {
		t.Errorf("text report: %s", text.String())
	}
}

// reencrypt --json: one document with the counts, and the error of a
// failed run.
func TestReencryptJSON(t *testing.T) {
	res := &ReencryptResult{Source: "s", Dest: "d", Group: "g", Partitions: 2, Copied: 7, Complete: true,
		Check: &CountCheck{In: 7, Out: 7, OK: true}}
	var out bytes.Buffer
	if err := res.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	check, _ := back["check"].(map[string]any)
	if back["copied"] != 7.0 || back["complete"] != true || check["in"] != 7.0 || check["ok"] != true {
		t.Fatalf("JSON %s", out.String())
	}
	if _, ok := back["error"]; ok {
		t.Fatalf("error in a successful run: %s", out.String())
	}
	res.Error = errors.New("count check failed").Error()
	out.Reset()
	res.WriteJSON(&out)
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["error"] != "count check failed" {
		t.Fatalf("JSON %s: %v", out.String(), err)
	}
}

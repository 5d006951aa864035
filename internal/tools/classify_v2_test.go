package tools

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
	"github.com/kseal/kseal/internal/siv"
)

// sealedV2 seals a record in format v2 with parts, as the produce filter
// does, and returns it as a consumer of the broker reads it.
func sealedV2(t testing.TB, edek []byte, parts recordcrypt.Parts, key, value []byte, headers ...kgo.RecordHeader) *kgo.Record {
	t.Helper()
	block, _ := aes.NewCipher(make([]byte, 32))
	aead, _ := cipher.NewGCM(block)
	a, err := siv.New(make([]byte, siv.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	dk := &recordcrypt.DetKey{ID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, AEAD: a}
	r := records.Record{Key: key, Value: value}
	for _, h := range headers {
		r.Headers = append(r.Headers, records.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	var s recordcrypt.Sealer
	if _, err := s.SealV2(&fixedKey{aead: aead, edek: edek}, dk, "t", parts, nil, &r); err != nil {
		t.Fatal(err)
	}
	out := &kgo.Record{Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: string(h.Key), Value: h.Value})
	}
	return out
}

func TestClassifyV2(t *testing.T) {
	describe, _ := kms.LookupDescriber("local")
	c := NewClassifier(describe)
	edek := localEDEK("KEK-a", 3)
	h := kgo.RecordHeader{Key: "h", Value: []byte("v")}
	for _, tc := range []struct {
		name     string
		rec      *kgo.Record
		parts    string
		envelope bool
	}{
		{"value key headers", sealedV2(t, edek, recordcrypt.PartValue|recordcrypt.PartKey|recordcrypt.PartHeaders, []byte("k"), []byte("v"), h), "value+key+headers", true},
		{"key only", sealedV2(t, edek, recordcrypt.PartKey, []byte("k"), []byte("v")), "key", false},
		{"tombstone with headers", sealedV2(t, edek, recordcrypt.PartValue|recordcrypt.PartHeaders, []byte("k"), nil, h), "headers", true},
		{"value only", sealedV2(t, edek, recordcrypt.PartValue, nil, []byte("v")), "value", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Classify(tc.rec)
			if got.State != Encrypted || got.Format != 2 || got.Parts.String() != tc.parts || (got.Envelope != nil) != tc.envelope {
				t.Fatalf("%+v (parts %s), want encrypted v2 %s envelope %v", got, got.Parts, tc.parts, tc.envelope)
			}
			if got.Parts.Key != (got.KeyID == hex.EncodeToString([]byte{1, 2, 3, 4, 5, 6, 7, 8})) {
				t.Fatalf("key id %q with parts %s", got.KeyID, got.Parts)
			}
			if e := got.Envelope; e != nil && (e.Format != 2 || e.KEKLabel() != "KEK-a v3" || !e.KeyBound) {
				t.Fatalf("envelope %+v", e)
			}
			var b strings.Builder
			if err := NewInspectText(&b).Write(got); err != nil || !strings.Contains(b.String(), " "+tc.parts+" ") {
				t.Fatalf("inspect line lacks the parts %q:\n%s", tc.parts, b.String())
			}
		})
	}
	// A v2 marker that does not agree with the record is malformed.
	bad := sealedV2(t, edek, recordcrypt.PartKey, []byte("k"), []byte("v"))
	bad.Key = bad.Key[:10]
	if got := c.Classify(bad); got.State != Malformed || !strings.Contains(got.Problem, "sealed key") {
		t.Fatalf("truncated sealed key: %+v", got)
	}
}

// The audit tells records holding in clear a part the rule encrypts,
// v1 records on a topic whose rule now encrypts keys included.
func TestAuditClearParts(t *testing.T) {
	pol, err := policy.Compile(&policy.Config{WriteVersion: policy.WriteV2, Rules: []policy.RuleConfig{
		{Topics: []string{"kh"}, KEK: "KEK-a", Encrypt: &policy.EncryptConfig{Key: true, Headers: []string{"x-*"}}},
		{Topics: []string{"k"}, KEK: "KEK-a", Encrypt: &policy.EncryptConfig{Value: new(bool), Key: true}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	edek := localEDEK("KEK-a", 1)
	v1 := &kgo.Record{Key: []byte("k"), Value: sealed(t, edek, "v"), Headers: []kgo.RecordHeader{{Key: "x-a"}, marker(1)}}
	all := sealedV2(t, edek, recordcrypt.PartValue|recordcrypt.PartKey|recordcrypt.PartHeaders, []byte("k"), []byte("v"), kgo.RecordHeader{Key: "x-a"})
	plainNoKey := &kgo.Record{Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "other"}}}
	c := NewClassifier(nil)
	for _, tc := range []struct {
		topic string
		rec   *kgo.Record
		kinds string
	}{
		{"kh", v1, "clear_key,clear_headers"},
		{"kh", all, ""},
		{"kh", plainNoKey, "plaintext"},
		{"k", plainNoKey, ""}, // the rule encrypts keys only, and there is none
		{"k", &kgo.Record{Key: []byte("k"), Value: []byte("v")}, "clear_key"},
	} {
		acc := &topicAcc{rep: &TopicReport{Policy: policyInfo(pol, tc.topic)}, keks: map[kekKey]*KEKUsage{}, findings: map[string]*Finding{}}
		acc.add(c.Classify(tc.rec), tc.rec)
		acc.finish()
		var kinds []string
		for _, v := range acc.rep.Violations {
			kinds = append(kinds, v.Kind)
		}
		if got := strings.Join(kinds, ","); got != tc.kinds {
			t.Errorf("%s: findings %q, want %q", tc.topic, got, tc.kinds)
		}
	}
}

// --format N is checked against the writeVersion of kseal's config before
// anything is read or written.
func TestReencryptFormatNeedsWriteVersion(t *testing.T) {
	for _, tc := range []struct {
		format, write int
		want          string
	}{
		{2, 1, "kseal's config writes format 1"},
		{3, 2, "format 3: kseal writes format 1 or 2"},
		{1, 2, "kseal's config writes format 2"},
	} {
		_, err := Reencrypt(t.Context(), ReencryptOptions{Source: "a", Dest: "b", Format: tc.format, WriteVersion: tc.write})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("format %d, writeVersion %d: %v, want %q", tc.format, tc.write, err, tc.want)
		}
	}
}

// The audit reports records in clear after a partition's first envelope
// as injected (kseal refuses them on Fetch), not those before it.
func TestAuditInjected(t *testing.T) {
	pol, err := policy.Compile(&policy.Config{Rules: []policy.RuleConfig{
		{Topics: []string{"t"}, KEK: "KEK-a"},
		{Topics: []string{"off"}, KEK: "KEK-a", RequireEncrypted: new(bool)},
		{Topics: []string{"early"}, KEK: "KEK-a", RequireEncryptedFrom: policy.FromEarliest},
	}})
	if err != nil {
		t.Fatal(err)
	}
	edek := localEDEK("KEK-a", 1)
	c := NewClassifier(nil)
	for topic, want := range map[string]int64{"t": 1, "off": 0, "early": 2} {
		acc := &topicAcc{rep: &TopicReport{Policy: policyInfo(pol, topic)}, keks: map[kekKey]*KEKUsage{}, findings: map[string]*Finding{}}
		recs := []*kgo.Record{
			{Value: []byte("old"), Offset: 0},
			{Value: sealed(t, edek, "v"), Headers: []kgo.RecordHeader{marker(1)}, Offset: 1},
			{Value: []byte("evil"), Offset: 2},
			{Value: nil, Key: []byte("tombstone"), Offset: 3},
		}
		for _, r := range recs {
			acc.add(c.Classify(r), r)
		}
		acc.finish()
		var got int64
		for _, v := range acc.rep.Violations {
			if v.Kind == "injected" {
				got = v.Count
			}
		}
		if got != want {
			t.Errorf("%s: %d injected, want %d", topic, got, want)
		}
	}
}

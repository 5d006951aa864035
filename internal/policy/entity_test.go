package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/kseal/kseal/internal/records"
)

func entityPolicy(t *testing.T, rules ...RuleConfig) *Policy {
	t.Helper()
	p, err := Compile(&Config{Rules: rules, WriteVersion: WriteV2})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hdrs(kv ...string) []records.RecordHeader {
	var h []records.RecordHeader
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, records.RecordHeader{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return h
}

func TestEntityKEK(t *testing.T) {
	p := entityPolicy(t,
		RuleConfig{TopicRegex: `orders-(.*)`, KEK: `KEK-$1-$(header:tenant)`},
		RuleConfig{Topics: []string{"users"}, KEK: `user-$(key)`, OnDestroyedKek: "NULL_VALUE"},
		RuleConfig{Topics: []string{"events"}, KEK: `ev-$(key:([a-z0-9]+)/(?:x|(y))/.*)-$(topicName)`},
		RuleConfig{Topics: []string{"plain"}, KEK: `KEK-plain`},
	)
	cases := []struct {
		topic   string
		key     []byte
		headers []records.RecordHeader
		want    string
		wantErr string
	}{
		{"orders-eu", nil, hdrs("x", "1", "tenant", "acme", "tenant", "other"), "KEK-eu-acme", ""},
		{"orders-eu", nil, hdrs("x", "1"), "", "no such header"},
		{"orders-eu", nil, []records.RecordHeader{{Key: []byte("tenant")}}, "", "null"},
		{"orders-eu", nil, hdrs("tenant", ""), "", "empty"},
		{"orders-eu", nil, hdrs("tenant", "a/b"), "", "0x2f"},
		{"orders-eu", nil, hdrs("tenant", strings.Repeat("a", MaxEntityLen+1)), "", "more than 128"},
		{"orders-eu", nil, hdrs("tenant", strings.Repeat("a", MaxEntityLen)), "KEK-eu-" + strings.Repeat("a", MaxEntityLen), ""},
		{"users", []byte("u-42"), nil, "user-u-42", ""},
		{"users", nil, nil, "", "key is null"},
		{"events", []byte("acme/x/123"), nil, "ev-acme-events", ""},
		{"events", []byte("acme/y/123"), nil, "ev-acme-events", ""},
		{"events", []byte("Acme/x/123"), nil, "", "does not match"},
		{"events", []byte("pre:acme/x/123"), nil, "", "does not match"}, // whole key
		{"plain", nil, nil, "KEK-plain", ""},
	}
	for _, c := range cases {
		s := p.Select(c.topic)
		got, err := s.AppendKEK(nil, c.key, c.headers)
		if c.wantErr != "" {
			var ee *EntityError
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "encryption.policy.rules[") {
				t.Errorf("%s %q %v: err %v, want one containing %q", c.topic, c.key, c.headers, err, c.wantErr)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%s %q: got %q, %v; want %q", c.topic, c.key, got, err, c.want)
		}
	}
	if s := p.Select("orders-eu"); !s.Entity() || s.KEK != "KEK-eu-$(header:tenant)" || s.OnDestroyedKek() != DestroyedError {
		t.Errorf("orders-eu: %+v", s)
	}
	if s := p.Select("users"); s.OnDestroyedKek() != DestroyedNullValue {
		t.Errorf("users: onDestroyedKek %s", s.OnDestroyedKek())
	}
	if s := p.Select("plain"); s.Entity() || s.OnDestroyedKek() != DestroyedError {
		t.Errorf("plain: %+v", s)
	}
	if pt, tot := p.MaxKeks(); pt != DefaultMaxKeksPerTopic || tot != DefaultMaxKeks {
		t.Errorf("MaxKeks defaults: %d %d", pt, tot)
	}
}

func TestOnDestroyedKekWithoutEntity(t *testing.T) {
	p := entityPolicy(t, RuleConfig{Topics: []string{"a"}, KEK: "KEK-a", OnDestroyedKek: "NULL_VALUE"})
	s := p.Select("a")
	if s.Entity() || s.OnDestroyedKek() != DestroyedNullValue || s.KEK != "KEK-a" {
		t.Fatalf("%+v", s)
	}
}

func TestEntityErrors(t *testing.T) {
	yes := true
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "$(header:tenant)"}}}, "rules[0].kek: a KEK template with $(header:...) or $(key...) needs fixed text"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(header:)"}}}, "names no header"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(header:ten ant)"}}}, "printable ASCII"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(header:kseal)"}}}, "kseal's own headers"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(header:tenant"}}}, "unclosed $(header:"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(key:(a)"}}}, "unclosed $(key:"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(key:a+)"}}}, "needs a capture group"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(key:)"}}}, "empty regex"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(key:(a[)"}}}, "unclosed"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(keys)"}}}, "rules[0].kek"},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k", OnDestroyedKek: "DROP"}}}, `rules[0].onDestroyedKek: "DROP" is neither`},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, Passthrough: true, OnDestroyedKek: "ERROR"}}}, "rules[0].onDestroyedKek: a passthrough rule"},
		{Config{WriteVersion: 2, Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(key)", Encrypt: &EncryptConfig{Key: true}}}}, "whole record key into the KEK name"},
		{Config{WriteVersion: 2, Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(header:t)", Encrypt: &EncryptConfig{Headers: []string{"*"}}}}}, `header "t" names the entity KEK`},
		{Config{Rules: []RuleConfig{{Topics: []string{"a"}, KEK: "k-$(key)", Encrypt: &EncryptConfig{Key: true}}}}, "format v2 only"},
		{Config{Replicas: []ReplicaConfig{{TopicRegex: "s\\.(.*)", OriginTopic: "$1-$(key)"}}}, "replicas[0].originTopic: $(header:...) and $(key...) are for rules' kek only"},
		{Config{MaxKeksPerTopic: -1}, "maxKeksPerTopic: -1 is negative"},
		{Config{MaxKeks: -1}, "maxKeks: -1 is negative"},
		{Config{MaxKeks: 10, MaxKeksPerTopic: 20}, "maxKeks: 10 is less than maxKeksPerTopic (20)"},
	}
	for _, c := range cases {
		_, err := Compile(&c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.cfg, err, c.want)
		}
	}
	// Allowed: a regex part of an encrypted key; parentheses and classes in the regex.
	_ = yes
	for _, kek := range []string{`k-$(key:([a-z]+)\).*)`, `k-$(key:([)]+)-(.*))`, `k-$(key:(?P<t>[^-]+)-.*)`} {
		if _, err := Compile(&Config{WriteVersion: 2, Rules: []RuleConfig{{Topics: []string{"a"}, KEK: kek, Encrypt: &EncryptConfig{Key: true}}}}); err != nil {
			t.Errorf("%s: %v", kek, err)
		}
	}
}

// The steady state of entity KEK rendering allocates nothing for headers
// and whole keys.
func TestAppendKEKNoAllocation(t *testing.T) {
	p := entityPolicy(t,
		RuleConfig{Topics: []string{"h"}, KEK: `KEK-$(topicName)-$(header:tenant)`},
		RuleConfig{Topics: []string{"k"}, KEK: `KEK-$(key)`},
	)
	h := hdrs("a", "b", "tenant", "acme")
	buf := make([]byte, 0, 256)
	key := []byte("cust-1")
	for _, topic := range []string{"h", "k"} {
		topicB := []byte(topic)
		if n := testing.AllocsPerRun(100, func() {
			s := p.SelectBytes(topicB)
			var err error
			if buf, err = s.AppendKEK(buf[:0], key, h); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per record", topic, n)
		}
	}
}

// FuzzEntityTemplate parses templates and renders them from record bytes:
// no panic, and whatever renders is the fixed text plus valid entities.
func FuzzEntityTemplate(f *testing.F) {
	f.Add("KEK-$(header:tenant)", []byte("k"), []byte("tenant"), []byte("acme"))
	f.Add("u-$(key)", []byte("u-1"), []byte(""), []byte(""))
	f.Add("e-$(key:([a-z]+)/.*)-$(topicName)", []byte("abc/def"), []byte("x"), []byte("y"))
	f.Add("e-$(key:(()))", []byte(""), []byte("x"), []byte("y"))
	f.Add("e-$(key:[)](.))", []byte("]a"), []byte("x"), []byte("y"))
	f.Add("e-$(key:\\)(.))", []byte(")a"), []byte("x"), []byte("y"))
	f.Fuzz(func(t *testing.T, kek string, key, hname, hvalue []byte) {
		p, err := Compile(&Config{Rules: []RuleConfig{{Topics: []string{"t"}, KEK: kek}}})
		if err != nil {
			return
		}
		s := p.Select("t")
		out, err := s.AppendKEK(nil, key, []records.RecordHeader{{Key: hname, Value: hvalue}})
		if err != nil {
			var ee *EntityError
			if !errors.As(err, &ee) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if !s.Entity() {
			if string(out) != s.KEK {
				t.Fatalf("static KEK %q rendered as %q", s.KEK, out)
			}
			return
		}
		if len(out) == 0 {
			t.Fatal("empty KEK name")
		}
		for _, seg := range s.ent.segs {
			if seg.ref == nil && !strings.Contains(string(out), seg.lit) {
				t.Fatalf("%q lacks the fixed text %q", out, seg.lit)
			}
		}
	})
}

func TestEntityOf(t *testing.T) {
	p := entityPolicy(t,
		RuleConfig{TopicRegex: `orders-(.*)`, KEK: `KEK-$1-$(header:tenant)-x`},
		RuleConfig{Topics: []string{"two"}, KEK: `k-$(header:a)-$(header:b)`},
		RuleConfig{Topics: []string{"plain"}, KEK: `KEK-plain`},
	)
	s := p.Select("orders-eu")
	for kek, want := range map[string]string{"KEK-eu-acme-x": "acme", "KEK-eu--x": "", "KEK-us-acme-x": "", "KEK-eu-a/b-x": ""} {
		got, ok := s.EntityOf(kek)
		if got != want || ok != (want != "") {
			t.Errorf("EntityOf(%q) = %q, %v; want %q", kek, got, ok, want)
		}
	}
	if _, ok := p.Select("two").EntityOf("k-a-b"); ok {
		t.Error("two references: an entity")
	}
	if _, ok := p.Select("plain").EntityOf("KEK-plain"); ok {
		t.Error("no reference: an entity")
	}
}

// An entity rule matching every topic draws no PASSTHROUGH warning: its
// records are refused, never passed through, when their KEK is missing.
func TestEntityRuleNoPassthroughWarning(t *testing.T) {
	p, err := Compile(&Config{UnresolvedKeyPolicy: PassthroughUnencrypted,
		Rules: []RuleConfig{{TopicRegex: ".*", KEK: "tenant-$(header:tenant)"}}})
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Fatalf("warnings %v", w)
	}
}

func TestKEKForEntity(t *testing.T) {
	p := entityPolicy(t,
		RuleConfig{TopicRegex: `orders-(.*)`, KEK: `KEK-$1-$(header:tenant)-x`},
		RuleConfig{Topics: []string{"two"}, KEK: `k-$(header:a)-$(key)`},
		RuleConfig{Topics: []string{"plain"}, KEK: `KEK-plain`},
	)
	s := p.Select("orders-eu")
	if k, err := s.KEKForEntity("acme"); err != nil || k != "KEK-eu-acme-x" {
		t.Fatalf("KEKForEntity = %q, %v", k, err)
	}
	if e, ok := s.EntityOf("KEK-eu-acme-x"); !ok || e != "acme" {
		t.Fatalf("EntityOf(KEKForEntity) = %q", e)
	}
	for _, c := range []struct {
		topic, entity string
	}{{"orders-eu", "a/b"}, {"orders-eu", ""}, {"two", "a"}, {"plain", "a"}} {
		if k, err := p.Select(c.topic).KEKForEntity(c.entity); err == nil {
			t.Errorf("%s %q: %q, want an error", c.topic, c.entity, k)
		}
	}
}

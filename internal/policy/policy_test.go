package policy

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

func mustCompile(t testing.TB, src string) *Policy {
	t.Helper()
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	p, err := Compile(&cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

const example = `
rules:
  - topics: [orders, payments]
    kek: KEK-core
  - topicPrefix: public.
    passthrough: true
  - topicRegex: 'tenant-(?P<tenant>[a-z0-9]+)\..*'
    kek: 'KEK-tenant-${tenant}'
  - topicRegex: '(dev|test)-(.+)'
    kek: 'KEK-$1-$(topicName)-$$'
  - topicPrefix: audit.
    kek: KEK-audit
  - topicRegex: 'opt(-x)?'
    kek: '$1'
  - topicRegex: 'ord.*'
    kek: 'KEK-$(topicName)'
unresolvedKeyPolicy: REJECT
replicas:
  - topicRegex: 'source\.(.*)'
    originTopic: '$1'
  - topicRegex: '(?P<origin>.+)\.replica'
    originTopic: '${origin}'
`

func TestSelect(t *testing.T) {
	p := mustCompile(t, example)
	for _, tc := range []struct {
		topic string
		want  Selection
	}{
		{"orders", Selection{Action: Encrypt, KEK: "KEK-core", Rule: 0, Parts: PartValue}},
		{"payments", Selection{Action: Encrypt, KEK: "KEK-core", Rule: 0, Parts: PartValue}},
		{"public.news", Selection{Action: Passthrough, KEK: "", Rule: 1}},
		{"public.", Selection{Action: Passthrough, KEK: "", Rule: 1}},
		{"tenant-acme.orders", Selection{Action: Encrypt, KEK: "KEK-tenant-acme", Rule: 2, Parts: PartValue}},
		{"tenant-ACME.orders", Selection{Action: Unresolved, KEK: "", Rule: -1}}, // regex is case-sensitive
		{"dev-orders", Selection{Action: Encrypt, KEK: "KEK-dev-dev-orders-$", Rule: 3, Parts: PartValue}},
		{"audit.log", Selection{Action: Encrypt, KEK: "KEK-audit", Rule: 4, Parts: PartValue}},
		{"opt", Selection{Action: Unresolved, KEK: "", Rule: 5}}, // unmatched optional group -> empty name
		{"opt-x", Selection{Action: Encrypt, KEK: "-x", Rule: 5, Parts: PartValue}},
		{"orders2", Selection{Action: Encrypt, KEK: "KEK-orders2", Rule: 6, Parts: PartValue}}, // exact rule does not match, regex does
		{"my-orders", Selection{Action: Unresolved, KEK: "", Rule: -1}},                        // regexes match whole names
		{"other", Selection{Action: Unresolved, KEK: "", Rule: -1}},
		{"", Selection{Action: Unresolved, KEK: "", Rule: -1}},
	} {
		for pass := range 2 { // the second pass is served by the cache
			if got := p.Select(tc.topic); got != tc.want {
				t.Errorf("pass %d: Select(%q) = %+v, want %+v", pass, tc.topic, got, tc.want)
			}
			if got := p.SelectBytes([]byte(tc.topic)); got != tc.want {
				t.Errorf("pass %d: SelectBytes(%q) = %+v, want %+v", pass, tc.topic, got, tc.want)
			}
		}
	}
	if p.UnresolvedKeyPolicy() != Reject {
		t.Errorf("UnresolvedKeyPolicy = %s", p.UnresolvedKeyPolicy())
	}
}

func TestFirstMatchWins(t *testing.T) {
	p := mustCompile(t, `
rules:
  - topicPrefix: a
    kek: first
  - topics: [abc]
    kek: second
`)
	if got := p.Select("abc"); got.KEK != "first" || got.Rule != 0 {
		t.Fatalf("Select(abc) = %+v, want rule 0", got)
	}
}

func TestDefaults(t *testing.T) {
	p := mustCompile(t, `{}`)
	if p.UnresolvedKeyPolicy() != Reject {
		t.Errorf("default UnresolvedKeyPolicy = %q, want REJECT (fail closed)", p.UnresolvedKeyPolicy())
	}
	if got := p.Select("x"); got != (Selection{Action: Unresolved, KEK: "", Rule: -1}) {
		t.Errorf("Select with no rules = %+v", got)
	}
	if got := p.AADTopic("source.x"); got != "source.x" {
		t.Errorf("AADTopic with no replicas = %q", got)
	}
}

func TestAADTopic(t *testing.T) {
	p := mustCompile(t, example)
	for _, tc := range []struct{ topic, want string }{
		{"source.orders", "orders"},
		{"source.", "source."}, // empty origin: the topic itself
		{"orders.replica", "orders"},
		{"source.orders.replica", "orders.replica"}, // first rule wins, one step only
		{"orders", "orders"},
		{"xsource.orders", "xsource.orders"},
	} {
		for pass := range 2 {
			if got := p.AADTopic(tc.topic); got != tc.want {
				t.Errorf("pass %d: AADTopic(%q) = %q, want %q", pass, tc.topic, got, tc.want)
			}
			if got := p.AADTopicBytes([]byte(tc.topic)); got != tc.want {
				t.Errorf("pass %d: AADTopicBytes(%q) = %q, want %q", pass, tc.topic, got, tc.want)
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"bad regex", "rules: [{topicRegex: 'a(', kek: k}]", []string{"rules[0].topicRegex: error parsing regexp: missing closing ): `a(`"}},
		{"escaping the anchors", "rules: [{topicRegex: 'a)|(b', kek: k}]", []string{"rules[0].topicRegex: error parsing regexp"}},
		{"no matcher", "rules: [{kek: k}]", []string{"rules[0]: set exactly one of topics, topicPrefix, topicRegex"}},
		{"two matchers", "rules: [{topics: [a], topicPrefix: b, kek: k}]", []string{"rules[0]: set exactly one"}},
		{"no action", "rules: [{topics: [a]}]", []string{"rules[0].kek: required"}},
		{"two actions", "rules: [{topics: [a], kek: k, passthrough: true}]", []string{"rules[0]: set either kek or passthrough"}},
		{"empty topics", "rules: [{topics: [], kek: k}]", []string{"rules[0].topics: empty list"}},
		{"bad topic name", "rules: [{topics: [ok, 'or ders'], kek: k}]", []string{`rules[0].topics[1]: "or ders" has ' '`}},
		{"bad prefix", "rules: [{topicPrefix: 'a*', kek: k}]", []string{`rules[0].topicPrefix: "a*" has '*'`}},
		{"group without regex", "rules: [{topicPrefix: a, kek: 'K-$1'}]", []string{"rules[0].kek: $1 refers to a capture group, which only topicRegex rules have"}},
		{"group out of range", "rules: [{topicRegex: '(a)', kek: 'K-$2'}]", []string{"rules[0].kek: $2 refers to a group the regex does not have (it has 1)"}},
		{"unknown group name", "rules: [{topicRegex: '(?P<x>a)', kek: 'K-${y}'}]", []string{"rules[0].kek: ${y} names no group"}},
		{"unclosed brace", "rules: [{topicRegex: '(a)', kek: 'K-${1'}]", []string{"rules[0].kek: unclosed ${"}},
		{"stray dollar", "rules: [{topics: [a], kek: 'K-$x'}]", []string{"rules[0].kek: unknown $ reference at offset 2"}},
		{"bad unresolved", "unresolvedKeyPolicy: reject", []string{`unresolvedKeyPolicy: "reject" is neither PASSTHROUGH_UNENCRYPTED nor REJECT`}},
		{"replica without origin", "replicas: [{topicRegex: 's\\.(.*)'}]", []string{"replicas[0].originTopic: required"}},
		{"replica bad group", "replicas: [{topicRegex: 's\\.(.*)', originTopic: '$3'}]", []string{"replicas[0].originTopic: $3 refers to a group"}},
		{"replica no regex", "replicas: [{originTopic: x}]", []string{"replicas[0].topicRegex: required"}},
		{"negative cache", "cacheSize: -1", []string{"cacheSize: -1 is negative"}},
		{"all reported", "rules: [{kek: k}, {topics: [a]}]\nunresolvedKeyPolicy: X", []string{"rules[0]:", "rules[1].kek:", "unresolvedKeyPolicy:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg Config
			if err := yaml.Unmarshal([]byte(tc.yaml), &cfg); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestUnknownKeyRejectedByStrictDecode(t *testing.T) {
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader("rules: [{topic: a, kek: k}]"))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err == nil {
		t.Fatal("strict decoding accepted the unknown key `topic`")
	}
}

func TestCacheBounded(t *testing.T) {
	p := mustCompile(t, "rules: [{topicRegex: 't-(.*)', kek: 'K-$1'}]\nreplicas: [{topicRegex: 's\\.(.*)', originTopic: '$1'}]\ncacheSize: 32")
	for i := range 5000 {
		topic := fmt.Sprintf("t-%d", i)
		if got := p.Select(topic); got.KEK != "K-"+topic[2:] {
			t.Fatalf("Select(%s) = %+v", topic, got)
		}
		p.AADTopic("s." + topic)
	}
	if n := p.kekCache.len(); n > 32 || n == 0 {
		t.Fatalf("KEK cache holds %d entries, bound 32", n)
	}
	if n := p.aadCache.len(); n > 32 || n == 0 {
		t.Fatalf("AAD cache holds %d entries, bound 32", n)
	}
	long := "t-" + strings.Repeat("x", 300)
	p.Select(long)
	if _, ok := p.kekCache.get(long); ok {
		t.Fatal("a 302-byte topic name was cached")
	}
}

// TestCacheDoesNotAliasCallerBytes: topics given as bytes may live in
// buffers that are reused for the next request.
func TestCacheDoesNotAliasCallerBytes(t *testing.T) {
	p := mustCompile(t, "rules: [{topicRegex: '.*', kek: 'K-$(topicName)'}]\nreplicas: [{topicRegex: 'zz(.*)', originTopic: 'o$1'}]")
	buf := []byte("aaaa")
	p.SelectBytes(buf)
	p.AADTopicBytes(buf)
	copy(buf, "bbbb")
	if got := p.Select("aaaa"); got.KEK != "K-aaaa" {
		t.Fatalf("after reusing the buffer, Select(aaaa) = %+v", got)
	}
	if got := p.SelectBytes(buf); got.KEK != "K-bbbb" {
		t.Fatalf("SelectBytes(bbbb) = %+v", got)
	}
	if got := p.AADTopic("aaaa"); got != "aaaa" {
		t.Fatalf("AADTopic(aaaa) = %q", got)
	}
}

func TestNoAllocationOnCacheHit(t *testing.T) {
	p := mustCompile(t, example)
	topic, topicB := "tenant-acme.orders", []byte("tenant-acme.orders")
	replica, replicaB := "source.orders", []byte("source.orders")
	p.Select(topic)
	p.AADTopic(replica)
	for name, f := range map[string]func(){
		"Select":        func() { p.Select(topic) },
		"SelectBytes":   func() { p.SelectBytes(topicB) },
		"AADTopic":      func() { p.AADTopic(replica) },
		"AADTopicBytes": func() { p.AADTopicBytes(replicaB) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per cache hit", name, n)
		}
	}
}

func TestConcurrentSelect(t *testing.T) {
	p := mustCompile(t, "rules: [{topicRegex: 't-(.*)', kek: 'K-$1'}]\ncacheSize: 64")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				topic := fmt.Sprintf("t-%d", (i*7+g)%300)
				if got := p.Select(topic); got.KEK != "K-"+topic[2:] {
					t.Errorf("Select(%s) = %+v", topic, got)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkSelectHit(b *testing.B) {
	p := mustCompile(b, example)
	topic := []byte("tenant-acme.orders")
	p.SelectBytes(topic)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.SelectBytes(topic)
		}
	})
}

func BenchmarkSelectMissRegex(b *testing.B) {
	p := mustCompile(b, example)
	b.ReportAllocs()
	for b.Loop() {
		p.evaluate("tenant-acme.orders")
	}
}

func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		n    int
	}{
		{"rules: [{topicRegex: '.*', kek: 'KEK-$(topicName)'}]", 0}, // REJECT by default
		{"unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\nrules: [{topicRegex: '.*', kek: 'KEK-$(topicName)'}]", 1},
		{"unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\nrules: [{topicRegex: '.+', kek: 'KEK-all'}]", 1},
		{"unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\nrules: [{topicRegex: 'orders.*', kek: 'KEK-$(topicName)'}]", 0},
		{"unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\nrules: [{topicRegex: '.*', passthrough: true}]", 0},
		{"unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\nrules: [{topicPrefix: 'a', kek: 'k'}]", 0},
	} {
		p := mustCompile(t, tc.yaml)
		if w := p.Warnings(); len(w) != tc.n {
			t.Errorf("%s: warnings %q, want %d", tc.yaml, w, tc.n)
		}
	}
}

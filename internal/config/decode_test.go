package config

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// goTypeName matches what a message must never show: Go type names and
// yaml.v3's own wording.
var goTypeName = regexp.MustCompile(`\bconfig\.[A-Z]|time\.Duration|\[\]string|\bu?int(8|16|32|64)?\b|float64|\bstruct\b|map\[|!!(str|int|bool|map|seq|float)|unmarshal|in a \w+ section`)

// problemsOf returns err's problems, failing the test if err is not a
// list of them.
func problemsOf(t *testing.T, err error) []*Problem {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is not a list of problems: %v", err)
	}
	var out []*Problem
	for _, e := range errs {
		var p *Problem
		if !errors.As(e, &p) {
			t.Fatalf("problem %q is not a Problem", e)
		}
		out = append(out, p)
	}
	return out
}

// want is one expected problem: its line in the document, its key path and
// words its message contains.
type want struct {
	line int
	path string
	msg  string
}

func checkProblems(t *testing.T, err error, wants []want) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted")
	}
	got := problemsOf(t, err)
	for _, w := range wants {
		found := false
		for _, p := range got {
			if p.Line == w.line && p.Path == w.path && strings.Contains(p.Msg, w.msg) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no problem at line %d, %s, saying %q in:\n%v", w.line, w.path, w.msg, err)
		}
	}
	for i, p := range got {
		if goTypeName.MatchString(p.Error()) {
			t.Errorf("message names a Go type or yaml.v3 internals: %q", p.Error())
		}
		if i > 0 && p.Line != 0 && (got[i-1].Line == 0 || got[i-1].Line > p.Line) {
			t.Errorf("problems not sorted by line: %q before %q", got[i-1], p)
		}
	}
}

// Every problem of a file is reported at once, each with its key path, its
// line in the file and plain words: one bad value hides nothing.
func TestEveryProblemAtOnce(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		wants []want
	}{
		{"top level", `log:
  level: loud
  colour: true
drainTimeout: soon
admin: {listen: nope, profiling: sometimes}
limits:
  maxRewriteBytes: lots
lmits: {}
virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["127.0.0.1:9092"]}
    gateway: {bootstrapPort: 19092}
`, []want{
			{2, "log.level", `"loud" is not one of debug, info, warn, error`},
			{3, "log.colour", "unknown key (this section has: level, format)"},
			{4, "drainTimeout", `"soon" is not a duration like 30s`},
			{5, "admin.listen", `"nope" is not host:port`},
			{5, "admin.profiling", `expected true or false, got "sometimes"`},
			{7, "limits.maxRewriteBytes", `expected a whole number, got "lots"`},
			{8, "lmits", "unknown key (did you mean limits?)"},
		}},
		{"virtual cluster", `virtualClusters:
  - name: a
    upstream:
      bootstrapServers: "127.0.0.1:9092"
      dialTimeout: 30
      sasl: {mechanism: plain, username: u, password: x}
    gateway:
      bootstrapPort: 19092
      advertisedHots: x
      tls: {certFile: c}
    limits:
      idleTimeout: 1ms
      maxConnections: 1.5
      maxFrameBytes: 99999999999999999999
    encryption:
      kms: {}
  - upstream: {bootstrapServers: [nohost]}
    gateway: [19200]
    extra: 1
`, []want{
			{4, "virtualClusters[0].upstream.bootstrapServers", `expected a list of strings, got "127.0.0.1:9092"`},
			{5, "virtualClusters[0].upstream.dialTimeout", `"30" is not a duration like 30s, 5m or 1h30m (a number needs a unit)`},
			{6, "virtualClusters[0].upstream.sasl.mechanism", `"plain" is not one of PLAIN`},
			{6, "virtualClusters[0].upstream.sasl.password", "unknown key (this section has: mechanism, username, passwordFile, passwordEnv)"},
			{9, "virtualClusters[0].gateway.advertisedHots", "unknown key (did you mean advertisedHost?)"},
			{10, "virtualClusters[0].gateway.tls", "certFile and keyFile go together"},
			{12, "virtualClusters[0].limits.idleTimeout", "1ms is too short (minimum 100ms)"},
			{13, "virtualClusters[0].limits.maxConnections", `expected a whole number, got "1.5"`},
			{14, "virtualClusters[0].limits.maxFrameBytes", "99999999999999999999 is too large"},
			{16, "virtualClusters[0].encryption.kms.type", "is required"},
			{17, "virtualClusters[1].name", "is required"},
			{17, "virtualClusters[1].upstream.bootstrapServers[0]", `"nohost" is not host:port`},
			{18, "virtualClusters[1].gateway", "expected a mapping (key: value), got a list"},
			{19, "virtualClusters[1].extra", "unknown key (this section has: name, upstream, gateway, limits, encryption)"},
		}},
		{"yaml syntax", "log:\n  level: info\n bad: [\n", []want{{2, "", "not valid YAML"}}},
		{"not a mapping", "- a\n- b\n", []want{{1, "", "expected a mapping (key: value), got a list"}}},
		{"duplicate key", "log: {level: info}\nlog: {level: debug}\n", []want{{2, "log", "key written twice (first on line 1)"}}},
		{"two documents", "log: {level: info}\n---\nlog: {level: debug}\n", []want{{2, "", "a second YAML document"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			checkProblems(t, err, tc.wants)
		})
	}
}

// A value that could not be decoded is reported once: validation does not
// add what it thinks of the default left in its place.
func TestDecodeProblemNotRepeated(t *testing.T) {
	_, err := Parse([]byte("virtualClusters:\n  - name: a\n    upstream: {bootstrapServers: [\"h:1\"]}\n    gateway: {bootstrapPort: abc}\n"))
	got := problemsOf(t, err)
	if len(got) != 1 || got[0].Path != "virtualClusters[0].gateway.bootstrapPort" || got[0].Line != 4 {
		t.Errorf("want only the bootstrapPort problem on line 4, got:\n%v", err)
	}
}

// Anchors, aliases and merge keys decode as yaml.v3 decodes them; a merged
// mapping's keys give way to the mapping's own.
func TestAliasesAndMerges(t *testing.T) {
	c, err := Parse([]byte(`virtualClusters:
  - name: a
    upstream: &up {bootstrapServers: ["h:1"], dialTimeout: 3s}
    gateway: {bootstrapPort: 19092}
    limits: &lim {maxConnections: 7, idleTimeout: 1m}
  - name: b
    upstream: *up
    gateway: {bootstrapPort: 19200}
    limits:
      <<: *lim
      maxConnections: 9
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.VirtualClusters[1]
	if b.Upstream.BootstrapServers[0] != "h:1" || b.Upstream.DialTimeout.Std().Seconds() != 3 {
		t.Errorf("alias not decoded: %+v", b.Upstream)
	}
	if b.Limits.MaxConnections != 9 || b.Limits.IdleTimeout.Std().Minutes() != 1 {
		t.Errorf("merge not applied: %+v", b.Limits)
	}
}

// A few lines of nested aliases can stand for billions of values; decoding
// stops early with a problem instead of expanding them.
func TestAliasExpansionBounded(t *testing.T) {
	doc := "servers: &s [" + strings.Repeat(`"h:1", `, 1000) + "]\n" +
		"cluster: &c {name: a, upstream: {bootstrapServers: *s}}\n" +
		"virtualClusters: [" + strings.Repeat("*c, ", 300) + "]\n"
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "too many values") {
		t.Fatalf("want the expansion refused, got %v", err)
	}
}

// Problems found by a section's own validation, relative to that section,
// get the section's path and the line of their key.
func TestSubAndSettle(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("sec:\n  a: 1\n  b:\n    c: x\n"), &n); err != nil {
		t.Fatal(err)
	}
	var v struct {
		Sec struct {
			A int `yaml:"a"`
			B struct {
				C string `yaml:"c"`
			} `yaml:"b"`
		} `yaml:"sec"`
	}
	var pos Positions
	if errs := DecodeNode(&n, &v, "root", &pos); len(errs) != 0 {
		t.Fatal(errs)
	}
	valid := Sub("root.sec", errors.Join(errors.New("b.c: is wrong"), errors.New("d: is missing"), errors.New("the section as a whole")))
	got := Settle(nil, valid, &pos)
	want := []string{"line 1: root.sec: the section as a whole", "line 1: root.sec.d: is missing", "line 4: root.sec.b.c: is wrong"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].Error() != want[i] {
			t.Errorf("problem %d = %q, want %q", i, got[i], want[i])
		}
	}
}

package policy

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const partsExample = `
rules:
  - topics: [plain-v]
    kek: K
  - topics: [all]
    kek: K
    encrypt: {key: true, headers: ['*']}
  - topics: [keyonly]
    kek: K
    encrypt: {value: false, key: true}
  - topics: [hdrs]
    kek: K
    encrypt: {value: false, headers: ['x-*-id', 'trace', 'a*b*c']}
  - topics: [empty]
    kek: K
    encrypt: {headers: []}
  - topics: [pt]
    passthrough: true
`

func compileV(t *testing.T, src string, version int) (*Policy, error) {
	t.Helper()
	cfg := decodeConfig(t, src)
	cfg.WriteVersion = version
	return Compile(&cfg)
}

func TestSelectParts(t *testing.T) {
	p, err := compileV(t, partsExample, WriteV2)
	if err != nil {
		t.Fatal(err)
	}
	if p.WriteVersion() != WriteV2 {
		t.Fatalf("WriteVersion %d", p.WriteVersion())
	}
	for _, tc := range []struct {
		topic string
		parts Parts
	}{
		{"plain-v", PartValue},
		{"all", PartValue | PartKey | PartHeaders},
		{"keyonly", PartKey},
		{"hdrs", PartHeaders},
		{"empty", PartValue},
		{"pt", 0},
		{"unmatched", 0},
	} {
		for pass := range 2 {
			if got := p.Select(tc.topic).Parts; got != tc.parts {
				t.Errorf("pass %d: Select(%q).Parts = %v, want %v", pass, tc.topic, got, tc.parts)
			}
		}
	}
	for _, tc := range []struct {
		topic, header string
		want          bool
	}{
		{"all", "anything", true},
		{"all", "", true},
		{"plain-v", "x", false},
		{"keyonly", "x", false},
		{"hdrs", "trace", true},
		{"hdrs", "traces", false},
		{"hdrs", "x-user-id", true},
		{"hdrs", "x--id", true},
		{"hdrs", "x-id", false},
		{"hdrs", "abc", true},
		{"hdrs", "a-b-b-c", true},
		{"hdrs", "a-b-b-c-", false},
		{"hdrs", "acb", false},
		{"unmatched", "trace", false},
	} {
		if got := p.SelectBytes([]byte(tc.topic)).EncryptHeader([]byte(tc.header)); got != tc.want {
			t.Errorf("%s: EncryptHeader(%q) = %v, want %v", tc.topic, tc.header, got, tc.want)
		}
	}
}

func TestWriteVersionDefault(t *testing.T) {
	p, err := compileV(t, "rules: [{topics: [a], kek: K}]", 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.WriteVersion() != WriteV1 || p.Select("a").Parts != PartValue {
		t.Fatalf("version %d parts %v", p.WriteVersion(), p.Select("a").Parts)
	}
	if _, err := compileV(t, "rules: [{topics: [a], kek: K}]", 3); err == nil || !strings.Contains(err.Error(), "write version 3") {
		t.Fatalf("version 3: %v", err)
	}
}

func TestPartsErrors(t *testing.T) {
	for _, tc := range []struct {
		version int
		src     string
		want    []string
	}{
		{WriteV1, "rules: [{topics: [a], kek: K, encrypt: {key: true}}]",
			[]string{"rules[0].encrypt.key: record keys are encrypted in format v2 only: set encryption.format.writeVersion: 2"}},
		{WriteV1, "rules: [{topics: [a], kek: K, encrypt: {headers: [h]}}]",
			[]string{"rules[0].encrypt.headers: headers are encrypted in format v2 only"}},
		{WriteV2, "rules: [{topics: [a], passthrough: true, encrypt: {}}]",
			[]string{"rules[0].encrypt: a passthrough rule encrypts nothing"}},
		{WriteV2, "rules: [{topics: [a], kek: K, encrypt: {value: false}}]",
			[]string{"rules[0].encrypt: encrypts nothing"}},
		{WriteV2, "rules: [{topics: [a], kek: K, encrypt: {value: false, key: false, headers: []}}]",
			[]string{"rules[0].encrypt: encrypts nothing"}},
		{WriteV2, "rules: [{topics: [a], kek: K, encrypt: {headers: ['', 'a**b', h, h, \"\\x01\"]}}]",
			[]string{"rules[0].encrypt.headers[0]: empty pattern", "rules[0].encrypt.headers[1]: \"a**b\" has '**'",
				"rules[0].encrypt.headers[3]: \"h\" is listed twice", "rules[0].encrypt.headers[4]: \"\\x01\" has the control character U+0001"}},
		{WriteV2, "rules: [{topics: [a], kek: K, encrypt: {headers: ['*', h]}}]",
			[]string{"rules[0].encrypt.headers: '*' matches every header"}},
		{WriteV2, "rules: [{topics: [a], kek: K, encrypt: {headers: ['" + strings.Repeat("h", 1025) + "']}}]",
			[]string{"rules[0].encrypt.headers[0]: 1025 bytes, longer than 1024"}},
	} {
		_, err := compileV(t, tc.src, tc.version)
		if err == nil {
			t.Errorf("%s: accepted", tc.src)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%.80s: %v\nlacks %q", tc.src, err, w)
			}
		}
		if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
			t.Errorf("%.80s: %d problems, want %d: %v", tc.src, n, len(tc.want), err)
		}
	}
}

func TestUnknownPartRejectedByStrictDecode(t *testing.T) {
	var cfg Config
	if err := strictDecode("rules: [{topics: [a], kek: K, encrypt: {values: true}}]", &cfg); err == nil {
		t.Fatal("unknown part key accepted")
	}
}

func TestEncryptHeaderNoAllocation(t *testing.T) {
	p, err := compileV(t, partsExample, WriteV2)
	if err != nil {
		t.Fatal(err)
	}
	topic, name := []byte("hdrs"), []byte("x-customer-id")
	p.SelectBytes(topic)
	n := testing.AllocsPerRun(100, func() {
		s := p.SelectBytes(topic)
		if !s.EncryptHeader(name) || s.EncryptHeader(topic) {
			t.Fatal("wrong match")
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"a", "a", true},
		{"a", "", false},
		{"", "", true},
		{"a*", "a", true},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"*a*b", "xxaxxbxb", true},
		{"a*b*c", "abcabd", false},
		{"*?", "x?", true},
		{"a*a*a*a*b", strings.Repeat("a", 200), false},
	} {
		if got := globMatch([]byte(tc.pattern), []byte(tc.name)); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
}

func FuzzGlobMatch(f *testing.F) {
	f.Add("a*b", "axxb")
	f.Add("*", "")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 64 || len(name) > 256 {
			return
		}
		// Reference: the naive recursive definition.
		var ref func(p, n string) bool
		ref = func(p, n string) bool {
			if p == "" {
				return n == ""
			}
			if p[0] == '*' {
				for i := 0; i <= len(n); i++ {
					if ref(p[1:], n[i:]) {
						return true
					}
				}
				return false
			}
			return n != "" && p[0] == n[0] && ref(p[1:], n[1:])
		}
		if strings.Count(pattern, "*") > 4 {
			return // the reference is exponential
		}
		if got, want := globMatch([]byte(pattern), []byte(name)), ref(pattern, name); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, want %v", pattern, name, got, want)
		}
	})
}

func strictDecode(src string, cfg *Config) error {
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	return dec.Decode(cfg)
}

func decodeConfig(t *testing.T, src string) Config {
	t.Helper()
	var cfg Config
	if err := strictDecode(src, &cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return cfg
}

package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Parts says which parts of a record a rule encrypts. The bits are those of
// the format v2 marker (docs/format.md, "Version 2"): internal/recordcrypt's
// Parts has the same values.
type Parts uint8

const (
	// PartValue: the record value.
	PartValue Parts = 1 << 0
	// PartKey: the record key, sealed deterministically (compaction-safe).
	PartKey Parts = 1 << 1
	// PartHeaders: the headers whose names the rule's patterns match.
	PartHeaders Parts = 1 << 2
)

func (p Parts) String() string {
	if p == 0 {
		return "none"
	}
	var s []string
	if p&PartValue != 0 {
		s = append(s, "value")
	}
	if p&PartKey != 0 {
		s = append(s, "key")
	}
	if p&PartHeaders != 0 {
		s = append(s, "headers")
	}
	if p&^(PartValue|PartKey|PartHeaders) != 0 {
		s = append(s, fmt.Sprintf("%#02x", uint8(p&^(PartValue|PartKey|PartHeaders))))
	}
	return strings.Join(s, "+")
}

// Format versions of `encryption.format.writeVersion`.
const (
	WriteV1 = 1 // values only, the original format (the default)
	WriteV2 = 2 // values, keys and headers
)

// EncryptConfig is a rule's `encrypt` section: which parts of a matching
// topic's records are encrypted.
type EncryptConfig struct {
	// Value encrypts record values (default true).
	Value *bool `yaml:"value"`
	// Key seals record keys deterministically (needs writeVersion 2).
	Key bool `yaml:"key"`
	// Headers are header-name patterns (`*` matches any run of bytes); the
	// headers they match are encrypted (needs writeVersion 2).
	Headers []string `yaml:"headers"`
}

// maxHeaderPattern bounds one header-name pattern.
const maxHeaderPattern = 1024

// headerMatcher is a rule's compiled header-name patterns.
type headerMatcher struct {
	all      bool // a pattern is "*"
	patterns [][]byte
}

// compileHeaders checks patterns (paths relative to the rule) and compiles
// them; nil when there are none.
func compileHeaders(path string, patterns []string, bad func(string, error)) *headerMatcher {
	if len(patterns) == 0 {
		return nil
	}
	m := &headerMatcher{}
	seen := map[string]bool{}
	for i, p := range patterns {
		pp := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case p == "":
			bad(pp, errors.New("empty pattern (use '*' for every header)"))
			continue
		case len(p) > maxHeaderPattern:
			bad(pp, fmt.Errorf("%d bytes, longer than %d", len(p), maxHeaderPattern))
			continue
		case !utf8.ValidString(p):
			bad(pp, errors.New("not valid UTF-8"))
			continue
		case strings.Contains(p, "**"):
			bad(pp, fmt.Errorf("%q has '**': one '*' already matches any run of characters", p))
			continue
		case seen[p]:
			bad(pp, fmt.Errorf("%q is listed twice", p))
			continue
		}
		for _, r := range p {
			if r < 0x20 || r == 0x7f {
				bad(pp, fmt.Errorf("%q has the control character %U", p, r))
				break
			}
		}
		seen[p] = true
		if p == "*" {
			m.all = true
		}
		m.patterns = append(m.patterns, []byte(p))
	}
	if m.all && len(patterns) > 1 {
		bad(path, errors.New("'*' matches every header: the other patterns add nothing"))
	}
	return m
}

// match reports whether name matches one of the patterns. It allocates
// nothing.
func (m *headerMatcher) match(name []byte) bool {
	if m == nil {
		return false
	}
	if m.all {
		return true
	}
	for _, p := range m.patterns {
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// globMatch matches name against pattern, where '*' stands for any run of
// bytes (possibly empty) and every other byte for itself. Linear-time
// backtracking over the last star: O(len(pattern)·len(name)) at worst. It
// takes strings or byte slices (header names, identities) without
// converting them.
func globMatch[P, N ~string | ~[]byte](pattern P, name N) bool {
	pi, ni := 0, 0
	star, mark := -1, 0
	for ni < len(name) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, ni
			pi++
		case pi < len(pattern) && pattern[pi] == name[ni]:
			pi++
			ni++
		case star >= 0:
			pi = star + 1
			mark++
			ni = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// EncryptHeader reports whether the rule encrypts a header of this name.
// It allocates nothing.
func (s Selection) EncryptHeader(name []byte) bool {
	return s.headers.match(name)
}

// compileEncrypt checks a rule's encrypt section (path "rules[i]") and
// returns the parts and header matcher.
func compileEncrypt(path string, rc *RuleConfig, writeVersion int, bad func(string, error)) (Parts, *headerMatcher) {
	e := rc.Encrypt
	if e == nil {
		return PartValue, nil
	}
	p := path + ".encrypt"
	if rc.Passthrough {
		bad(p, errors.New("a passthrough rule encrypts nothing: remove encrypt or passthrough"))
		return 0, nil
	}
	var parts Parts
	if e.Value == nil || *e.Value {
		parts |= PartValue
	}
	if e.Key {
		parts |= PartKey
		if writeVersion < WriteV2 {
			bad(p+".key", errors.New("record keys are encrypted in format v2 only: set encryption.format.writeVersion: 2 (after every kseal reading these topics runs a version that reads v2)"))
		}
	}
	m := compileHeaders(p+".headers", e.Headers, bad)
	if m != nil {
		parts |= PartHeaders
		if writeVersion < WriteV2 {
			bad(p+".headers", errors.New("headers are encrypted in format v2 only: set encryption.format.writeVersion: 2 (after every kseal reading these topics runs a version that reads v2)"))
		}
	}
	if parts == 0 {
		bad(p, errors.New("encrypts nothing (value: false, key: false, no headers): use passthrough: true to leave the topic unencrypted"))
	}
	return parts, m
}

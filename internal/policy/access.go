package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// AccessConfig is a rule's `access` section: which client identities
// (docs/authorization.md) may read its topics' records decrypted and
// produce to them through kseal. An absent list allows everyone.
type AccessConfig struct {
	// Decrypt lists the identities that get plaintext on Fetch and
	// ShareFetch; others get what OnDenied says. [] allows nobody.
	Decrypt []string `yaml:"decrypt"`
	// Produce lists the identities that may produce; others get
	// TOPIC_AUTHORIZATION_FAILED. [] allows nobody.
	Produce []string `yaml:"produce"`
	// OnDenied is what a reader not in Decrypt gets: ERROR (default) or
	// CIPHERTEXT.
	OnDenied OnDenied `yaml:"onDenied"`
}

// OnDenied is what a reader that may not decrypt gets.
type OnDenied string

const (
	// DeniedError answers the partition with TOPIC_AUTHORIZATION_FAILED.
	DeniedError OnDenied = "ERROR"
	// DeniedCiphertext delivers the records exactly as stored (envelopes
	// and markers), never decrypted.
	DeniedCiphertext OnDenied = "CIPHERTEXT"
)

// maxIdentityPattern bounds one identity pattern (bytes).
const maxIdentityPattern = 1024

// Access is a rule's compiled access section; nil allows everyone
// everything.
type Access struct {
	decrypt, produce *identityMatcher
	onDenied         OnDenied
}

// identityMatcher is one list of identity patterns; nil allows everyone,
// an empty one nobody.
type identityMatcher struct {
	patterns []string
}

func (m *identityMatcher) allows(names []string) bool {
	if m == nil {
		return true
	}
	for _, n := range names {
		for _, p := range m.patterns {
			if globMatchString(p, n) {
				return true
			}
		}
	}
	return false
}

// globMatchString is globMatch on strings (no conversion: identity checks
// run per partition).
func globMatchString(pattern, name string) bool { return globMatch(pattern, name) }

// Access returns the selection's access rules (nil: everyone may do
// everything).
func (s Selection) Access() *Access { return s.access }

// MayDecrypt reports whether a client with these identity names may read
// the topic's records decrypted.
func (a *Access) MayDecrypt(names []string) bool {
	return a == nil || a.decrypt.allows(names)
}

// MayProduce reports whether a client with these identity names may
// produce to the topic.
func (a *Access) MayProduce(names []string) bool {
	return a == nil || a.produce.allows(names)
}

// OnDenied is what a reader that may not decrypt gets.
func (a *Access) OnDenied() OnDenied {
	if a == nil {
		return DeniedError
	}
	return a.onDenied
}

// compileAccess checks and compiles rc.Access (paths relative to the
// rule): nil when the rule has none.
func compileAccess(path string, rc *RuleConfig, bad func(string, error)) *Access {
	ac := rc.Access
	if ac == nil {
		return nil
	}
	path += ".access"
	if rc.Passthrough {
		bad(path, errors.New("a passthrough rule has nothing to decrypt or encrypt: access applies to rules with a kek"))
		return nil
	}
	if ac.Decrypt == nil && ac.Produce == nil {
		bad(path, errors.New("set decrypt or produce (or both); without either, remove access"))
		return nil
	}
	a := &Access{onDenied: ac.OnDenied}
	switch ac.OnDenied {
	case "":
		a.onDenied = DeniedError
	case DeniedError, DeniedCiphertext:
	default:
		bad(path+".onDenied", fmt.Errorf("%q is neither %s nor %s", ac.OnDenied, DeniedError, DeniedCiphertext))
	}
	if ac.OnDenied != "" && ac.Decrypt == nil {
		bad(path+".onDenied", errors.New("applies to readers not in decrypt, and decrypt is not set"))
	}
	a.decrypt = compileIdentities(path+".decrypt", ac.Decrypt, bad)
	a.produce = compileIdentities(path+".produce", ac.Produce, bad)
	return a
}

func compileIdentities(path string, patterns []string, bad func(string, error)) *identityMatcher {
	if patterns == nil {
		return nil
	}
	m := &identityMatcher{patterns: []string{}}
	seen := map[string]bool{}
	for i, p := range patterns {
		pp := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case p == "":
			bad(pp, errors.New("empty pattern"))
			continue
		case len(p) > maxIdentityPattern:
			bad(pp, fmt.Errorf("%d bytes, longer than %d", len(p), maxIdentityPattern))
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
				bad(pp, fmt.Errorf("%q holds a control character", p))
				break
			}
		}
		seen[p] = true
		m.patterns = append(m.patterns, p)
	}
	if seen["*"] && len(patterns) > 1 {
		// '*' alone means "any client with an identity" (not anonymous).
		bad(path, errors.New("'*' already matches every identity: list it alone"))
	}
	return m
}

package policy

import (
	"strings"
	"testing"
)

func TestAccessValidation(t *testing.T) {
	rule := func(a *AccessConfig) RuleConfig { return RuleConfig{Topics: []string{"t"}, KEK: "K", Access: a} }
	cases := []struct {
		name string
		rule RuleConfig
		want string // "" = valid
	}{
		{"decrypt", rule(&AccessConfig{Decrypt: []string{"User:alice", "CN=*,O=Example", "SAN:URI:spiffe://prod/*"}}), ""},
		{"produce only", rule(&AccessConfig{Produce: []string{"User:writer"}}), ""},
		{"nobody", rule(&AccessConfig{Decrypt: []string{}}), ""},
		{"star alone", rule(&AccessConfig{Decrypt: []string{"*"}, OnDenied: DeniedCiphertext}), ""},
		{"onDenied error", rule(&AccessConfig{Decrypt: []string{"User:a"}, OnDenied: DeniedError}), ""},
		{"empty", rule(&AccessConfig{}), "rules[0].access: set decrypt or produce"},
		{"passthrough", RuleConfig{Topics: []string{"t"}, Passthrough: true, Access: &AccessConfig{Decrypt: []string{"User:a"}}},
			"rules[0].access: a passthrough rule"},
		{"bad onDenied", rule(&AccessConfig{Decrypt: []string{"User:a"}, OnDenied: "ciphertext"}),
			`rules[0].access.onDenied: "ciphertext" is neither ERROR nor CIPHERTEXT`},
		{"onDenied without decrypt", rule(&AccessConfig{Produce: []string{"User:a"}, OnDenied: DeniedCiphertext}),
			"rules[0].access.onDenied: applies to readers not in decrypt"},
		{"empty pattern", rule(&AccessConfig{Decrypt: []string{"User:a", ""}}), "rules[0].access.decrypt[1]: empty pattern"},
		{"double star", rule(&AccessConfig{Produce: []string{"User:**"}}), "rules[0].access.produce[0]: \"User:**\" has '**'"},
		{"duplicate", rule(&AccessConfig{Decrypt: []string{"User:a", "User:a"}}), "rules[0].access.decrypt[1]: \"User:a\" is listed twice"},
		{"star with others", rule(&AccessConfig{Decrypt: []string{"*", "User:a"}}), "rules[0].access.decrypt: '*' already matches"},
		{"control", rule(&AccessConfig{Decrypt: []string{"User:a\n"}}), "rules[0].access.decrypt[0]: \"User:a\\n\" holds a control character"},
		{"long", rule(&AccessConfig{Decrypt: []string{strings.Repeat("a", 1025)}}), "rules[0].access.decrypt[0]: 1025 bytes"},
	}
	for _, c := range cases {
		_, err := Compile(&Config{Rules: []RuleConfig{c.rule}})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestAccessMatching(t *testing.T) {
	p, err := Compile(&Config{Rules: []RuleConfig{
		{Topics: []string{"a"}, KEK: "K", Access: &AccessConfig{
			Decrypt: []string{"User:alice", "CN=svc-*,O=Example", "SAN:URI:spiffe://prod/*"},
			Produce: []string{}}},
		{Topics: []string{"any"}, KEK: "K", Access: &AccessConfig{Decrypt: []string{"*"}}},
		{TopicRegex: ".*", KEK: "K"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a := p.Select("a").Access()
	for _, c := range []struct {
		names []string
		want  bool
	}{
		{[]string{"User:alice"}, true},
		{[]string{"User:alice2"}, false},
		{[]string{"User:Alice"}, false},
		{[]string{"CN=svc-orders,O=Example"}, true},
		{[]string{"CN=svc-orders,O=Example,C=US"}, false},
		{[]string{"CN=other,O=Example", "SAN:URI:spiffe://prod/ns/orders"}, true},
		{[]string{"SAN:URI:spiffe://dev/x"}, false},
		{nil, false},
	} {
		if got := a.MayDecrypt(c.names); got != c.want {
			t.Errorf("MayDecrypt(%q) = %v, want %v", c.names, got, c.want)
		}
	}
	if a.MayProduce([]string{"User:alice"}) {
		t.Error("produce: [] allows alice")
	}
	if a.OnDenied() != DeniedError {
		t.Errorf("default onDenied %q", a.OnDenied())
	}
	any := p.Select("any").Access()
	if !any.MayDecrypt([]string{"User:x"}) || any.MayDecrypt(nil) {
		t.Error("'*' must allow every identity and no anonymous client")
	}
	if !any.MayProduce(nil) {
		t.Error("an absent produce list must allow everyone")
	}
	if o := p.Select("other").Access(); o != nil || !o.MayDecrypt(nil) || !o.MayProduce(nil) {
		t.Error("a rule without access must allow everyone")
	}
}

func TestGlobMatchStringAgrees(t *testing.T) {
	for _, c := range [][2]string{{"*", ""}, {"a*b", "ab"}, {"a*b", "axxb"}, {"a*b", "axxbc"}, {"*x*", "yyxyy"}, {"a", "b"}, {"", ""}, {"**", "q"}} {
		if globMatchString(c[0], c[1]) != globMatch([]byte(c[0]), []byte(c[1])) {
			t.Errorf("%q %q disagree", c[0], c[1])
		}
	}
}

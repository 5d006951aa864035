package policy

import (
	"errors"
	"fmt"
)

// RequireFrom says from which offset of each partition a rule with
// requireEncrypted accepts only encrypted records on Fetch
// (docs/policy.md, "Encrypted topics accept only encrypted records").
type RequireFrom string

const (
	// FromFirstEncrypted (the default): from the offset of the first batch
	// kseal encrypted into the partition, as kseal recorded it in its key
	// topic. Records written before (the topic's plaintext past) stay
	// readable; a partition kseal never encrypted into is not checked.
	FromFirstEncrypted RequireFrom = "first-encrypted"
	// FromEarliest: every record of the partition, from offset 0.
	FromEarliest RequireFrom = "earliest"
)

// Requirement is what a rule demands of the records consumers read through
// kseal (the zero value demands nothing).
type Requirement struct {
	// On: a record that has something the rule encrypts must be a valid
	// kseal envelope under a KEK the rule allows.
	On bool
	// Earliest: from offset 0 (FromEarliest); otherwise from the
	// partition's first encrypted offset (FromFirstEncrypted).
	Earliest bool
}

// compileIntegrity checks a rule's requireEncrypted, requireEncryptedFrom
// and allowedKeks (path "rules[i]") and stores them in r.
func compileIntegrity(path string, rc *RuleConfig, r *rule, bad func(string, error)) {
	encrypting := !rc.Passthrough
	switch {
	case rc.RequireEncrypted == nil:
		r.require.On = encrypting
	case *rc.RequireEncrypted && !encrypting:
		bad(path+".requireEncrypted", errors.New("a passthrough rule encrypts nothing, so nothing can be required: remove requireEncrypted or passthrough"))
	default:
		r.require.On = *rc.RequireEncrypted
	}
	switch rc.RequireEncryptedFrom {
	case "", FromFirstEncrypted:
	case FromEarliest:
		r.require.Earliest = true
	default:
		bad(path+".requireEncryptedFrom", fmt.Errorf("%q is neither %s nor %s", rc.RequireEncryptedFrom, FromFirstEncrypted, FromEarliest))
	}
	if rc.RequireEncryptedFrom != "" && !r.require.On {
		bad(path+".requireEncryptedFrom", errors.New("set only with requireEncrypted (true, the default for rules that encrypt)"))
	}
	if len(rc.AllowedKEKs) > 0 && !r.require.On {
		bad(path+".allowedKeks", errors.New("set only with requireEncrypted (true, the default for rules that encrypt)"))
	}
	seen := map[string]bool{}
	for i, s := range rc.AllowedKEKs {
		p := fmt.Sprintf("%s.allowedKeks[%d]", path, i)
		switch {
		case s == "":
			bad(p, errors.New("empty KEK name"))
			continue
		case seen[s]:
			bad(p, fmt.Errorf("%q is listed twice", s))
			continue
		case rc.TopicRegex != "" && r.re == nil:
			continue // the regex failed; its groups are unknown
		}
		seen[s] = true
		t, err := parseTemplate(s, r.re)
		if err != nil {
			bad(p, err)
			continue
		}
		r.allowed = append(r.allowed, t)
	}
}

// Require returns what the rule of sel (a Selection of p) demands of
// fetched records: the zero Requirement unless sel.Action is Encrypt.
func (p *Policy) Require(sel Selection) Requirement {
	if sel.Action != Encrypt || sel.Rule < 0 || sel.Rule >= len(p.rules) {
		return Requirement{}
	}
	return p.rules[sel.Rule].require
}

// KEKAllowed reports whether records of topic (selected as sel) may be
// under the KEK named name on Fetch: the KEK sel names, the KEK the rules
// select for the binding topic of a replica topic (AADTopic), or one of the
// rule's allowedKeks templates expanded for topic. It allocates (template
// expansion): callers remember the answer per EDEK.
func (p *Policy) KEKAllowed(topic string, sel Selection, name string) bool {
	if sel.Action != Encrypt || name == "" {
		return false
	}
	if name == sel.KEK {
		return true
	}
	if origin := p.AADTopic(topic); origin != topic {
		if o := p.Select(origin); o.Action == Encrypt && o.KEK == name {
			return true
		}
	}
	if sel.Rule < 0 || sel.Rule >= len(p.rules) {
		return false
	}
	r := &p.rules[sel.Rule]
	if len(r.allowed) == 0 {
		return false
	}
	var match []int
	if r.re != nil {
		if match = r.re.FindStringSubmatchIndex(topic); match == nil {
			return false
		}
	}
	for _, t := range r.allowed {
		if t.expand(topic, match) == name {
			return true
		}
	}
	return false
}

// AllowedKEKNames returns the names KEKAllowed accepts for topic besides
// sel.KEK (for log lines and tools).
func (p *Policy) AllowedKEKNames(topic string, sel Selection) []string {
	out := []string{}
	if sel.Action != Encrypt {
		return out
	}
	out = append(out, sel.KEK)
	if origin := p.AADTopic(topic); origin != topic {
		if o := p.Select(origin); o.Action == Encrypt && o.KEK != sel.KEK {
			out = append(out, o.KEK)
		}
	}
	if sel.Rule < 0 || sel.Rule >= len(p.rules) {
		return out
	}
	r := &p.rules[sel.Rule]
	var match []int
	if r.re != nil {
		if match = r.re.FindStringSubmatchIndex(topic); match == nil {
			return out
		}
	}
	for _, t := range r.allowed {
		out = append(out, t.expand(topic, match))
	}
	return out
}

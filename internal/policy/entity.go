package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/kseal/kseal/internal/records"
)

// Entity KEKs (crypto-shredding per entity, docs/shredding.md): a rule's
// kek template may use parts of each record besides the topic name —
//
//	$(header:NAME)  the value of the FIRST header named NAME
//	$(key)          the whole record key
//	$(key:REGEX)    capture group 1 of REGEX (RE2), which must match the WHOLE key
//
// so that each entity (tenant, customer) of a topic has its own KEK, and
// deleting that KEK makes exactly its records unreadable. Text taken from a
// record must be a valid entity (1 to MaxEntityLen bytes of [A-Za-z0-9._-]);
// a record whose reference is missing, null or invalid is refused, never
// encrypted under some other key.

// MaxEntityLen bounds the text one entity reference takes from a record.
const MaxEntityLen = 128

// Defaults of encryption.policy.maxKeksPerTopic and maxKeks.
const (
	DefaultMaxKeksPerTopic = 1000
	DefaultMaxKeks         = 10000
)

// OnDestroyedKek is a rule's `onDestroyedKek`: what a consumer gets for a
// record whose KEK was destroyed on purpose (`kseal shred`).
type OnDestroyedKek string

const (
	// DestroyedError answers the partition with the error of a missing KEK
	// (RESOURCE_NOT_FOUND), as for any KEK that is gone (the default).
	DestroyedError OnDestroyedKek = "ERROR"
	// DestroyedNullValue delivers the record with a null value (and a null
	// key if its key was sealed) and the header kseal.shredded.
	DestroyedNullValue OnDestroyedKek = "NULL_VALUE"
)

// entityKind is what an entity reference takes from a record.
type entityKind uint8

const (
	entityHeader entityKind = iota + 1
	entityKey
	entityKeyRegex
)

// entityRef is one $(header:NAME), $(key) or $(key:REGEX) of a template.
type entityRef struct {
	kind   entityKind
	header []byte
	re     *regexp.Regexp
	text   string // as written, for messages
}

// entityPart marks a template part that is an entity reference.
const entityPart = -3

// maxEntityHeaderName bounds NAME in $(header:NAME).
const maxEntityHeaderName = 255

// parseEntityRef parses an entity reference at rest (the text after '$',
// starting with '('), returning it and the bytes it takes. A REGEX may hold
// parentheses: they are balanced, skipping escaped characters and
// character classes.
func parseEntityRef(rest string) (*entityRef, int, error) {
	switch {
	case strings.HasPrefix(rest, "(key)"):
		return &entityRef{kind: entityKey, text: "$(key)"}, len("(key)"), nil
	case strings.HasPrefix(rest, "(header:"):
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return nil, 0, errors.New("unclosed $(header:NAME) reference")
		}
		name := rest[len("(header:"):end]
		switch {
		case name == "":
			return nil, 0, errors.New("$(header:) names no header")
		case len(name) > maxEntityHeaderName:
			return nil, 0, fmt.Errorf("$(header:...) names a header of %d bytes, more than %d", len(name), maxEntityHeaderName)
		case name == "kseal" || strings.HasPrefix(name, "kseal."):
			return nil, 0, fmt.Errorf("$(header:%s): kseal's own headers cannot name an entity", name)
		}
		for _, c := range []byte(name) {
			if c < 0x21 || c > 0x7e {
				return nil, 0, fmt.Errorf("$(header:%q): header names here are printable ASCII without spaces", name)
			}
		}
		return &entityRef{kind: entityHeader, header: []byte(name), text: "$(header:" + name + ")"}, end + 1, nil
	case strings.HasPrefix(rest, "(key:"):
		expr, n, ok := balanced(rest[len("(key:"):])
		if !ok {
			return nil, 0, errors.New("unclosed $(key:REGEX) reference (parentheses of the regex must balance)")
		}
		if expr == "" {
			return nil, 0, errors.New("$(key:) has an empty regex (use $(key) for the whole key)")
		}
		re, err := compileWhole(expr)
		if err != nil {
			return nil, 0, fmt.Errorf("$(key:%s): %w", expr, err)
		}
		if re.NumSubexp() < 1 {
			return nil, 0, fmt.Errorf("$(key:%s): the regex needs a capture group: group 1 is the entity", expr)
		}
		return &entityRef{kind: entityKeyRegex, re: re, text: "$(key:" + expr + ")"}, len("(key:") + n, nil
	}
	return nil, 0, errors.New("not an entity reference")
}

// balanced reads s up to the ')' that closes an already open '(' and
// returns the text before it and the bytes taken (with the ')').
func balanced(s string) (string, int, bool) {
	depth := 1
	class := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case class:
			if c == ']' {
				class = false
			}
		case c == '[':
			class = true
			// A ']' right after '[' or '[^' is literal.
			if i+1 < len(s) && s[i+1] == '^' {
				i++
			}
			if i+1 < len(s) && s[i+1] == ']' {
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth == 0 {
				return s[:i], i + 1, true
			}
		}
	}
	return "", 0, false
}

// hasEntity reports whether the template takes text from records.
func (t template) hasEntity() bool {
	for _, p := range t.parts {
		if p.group == entityPart {
			return true
		}
	}
	return false
}

// entitySel is what a Selection of a rule with entity references or an
// onDestroyedKek carries: the rule's onDestroyedKek and, for entity rules,
// the template with everything but the entity references already expanded
// for the topic.
type entitySel struct {
	onDestroyed OnDestroyedKek
	segs        []entitySeg // nil: the KEK does not depend on records
	rule        int
}

// entitySeg is literal text or an entity reference.
type entitySeg struct {
	lit string
	ref *entityRef
}

// compileShred checks a rule's onDestroyedKek and its template's entity
// references (path "rules[i]").
func compileShred(path string, rc *RuleConfig, t template, parts Parts, h *headerMatcher, bad func(string, error)) OnDestroyedKek {
	od := OnDestroyedKek(rc.OnDestroyedKek)
	switch od {
	case "":
		od = DestroyedError
	case DestroyedError, DestroyedNullValue:
		if rc.Passthrough {
			bad(path+".onDestroyedKek", errors.New("a passthrough rule encrypts nothing: remove onDestroyedKek or passthrough"))
		}
	default:
		bad(path+".onDestroyedKek", fmt.Errorf("%q is neither %s nor %s", rc.OnDestroyedKek, DestroyedError, DestroyedNullValue))
	}
	if !t.hasEntity() {
		return od
	}
	fixed := false
	for _, p := range t.parts {
		switch {
		case p.group == -1 && p.lit != "":
			fixed = true
		case p.group == entityPart && p.ent.kind == entityKey && parts&PartKey != 0:
			bad(path+".kek", errors.New("$(key) puts the whole record key into the KEK name, which every envelope carries in clear: "+
				"with encrypt.key the key would not be hidden; use $(key:REGEX) for the part that names the entity, or a header"))
		case p.group == entityPart && p.ent.kind == entityHeader && h.match(p.ent.header):
			bad(path+".kek", fmt.Errorf("header %q names the entity KEK, whose name every envelope carries in clear, "+
				"and encrypt.headers would encrypt it: leave it out of encrypt.headers", p.ent.header))
		}
	}
	if !fixed {
		bad(path+".kek", errors.New("a KEK template with $(header:...) or $(key...) needs fixed text too (e.g. 'tenant-$(header:tenant)'), "+
			"so that a record cannot name just any KEK of the KMS"))
	}
	return od
}

// entitySelection builds the entitySel of rule r (index i) for topic.
func (r *rule) entitySelection(i int, topic string, match []int) *entitySel {
	if !r.kek.hasEntity() {
		if r.onDestroyed == DestroyedNullValue {
			return &entitySel{onDestroyed: r.onDestroyed, rule: i}
		}
		return nil
	}
	es := &entitySel{onDestroyed: r.onDestroyed, rule: i}
	var lit strings.Builder
	for _, p := range r.kek.parts {
		if p.group == entityPart {
			if lit.Len() > 0 {
				es.segs = append(es.segs, entitySeg{lit: lit.String()})
				lit.Reset()
			}
			es.segs = append(es.segs, entitySeg{ref: p.ent})
			continue
		}
		lit.WriteString(template{parts: []part{p}}.expand(topic, match))
	}
	if lit.Len() > 0 {
		es.segs = append(es.segs, entitySeg{lit: lit.String()})
	}
	return es
}

// displayKEK is the template of an entity rule as a KEK "name" for messages
// and tools: its topic parts expanded, its entity references as written.
func (es *entitySel) displayKEK() string {
	var b strings.Builder
	for _, s := range es.segs {
		if s.ref != nil {
			b.WriteString(s.ref.text)
		} else {
			b.WriteString(s.lit)
		}
	}
	return b.String()
}

// Entity reports whether the selected rule's KEK depends on each record
// (AppendKEK gives it); Selection.KEK then only shows the template.
func (s Selection) Entity() bool { return s.ent != nil && s.ent.segs != nil }

// OnDestroyedKek is the selected rule's onDestroyedKek (ERROR when it has
// none, or no rule matched).
func (s Selection) OnDestroyedKek() OnDestroyedKek {
	if s.ent == nil {
		return DestroyedError
	}
	return s.ent.onDestroyed
}

// EntityError is a record whose entity reference cannot be rendered: the
// record is refused (INVALID_RECORD).
type EntityError struct {
	Rule int    // index of the rule
	Ref  string // the reference as written
	Why  string
}

func (e *EntityError) Error() string {
	return fmt.Sprintf("encryption.policy.rules[%d] kek %s: %s", e.Rule, e.Ref, e.Why)
}

// AppendKEK appends the KEK name of a record with this key and these headers
// to dst, for a Selection of an entity rule (Entity). It allocates nothing
// for $(header:NAME) and $(key); $(key:REGEX) costs the regexp package's
// match (one small allocation). Errors are *EntityError.
func (s Selection) AppendKEK(dst []byte, key []byte, headers []records.RecordHeader) ([]byte, error) {
	if !s.Entity() {
		return append(dst, s.KEK...), nil
	}
	for i := range s.ent.segs {
		seg := &s.ent.segs[i]
		if seg.ref == nil {
			dst = append(dst, seg.lit...)
			continue
		}
		v, err := seg.ref.value(key, headers)
		if err != nil {
			return dst, &EntityError{Rule: s.ent.rule, Ref: seg.ref.text, Why: err.Error()}
		}
		dst = append(dst, v...)
	}
	return dst, nil
}

var (
	errNoHeader   = errors.New("the record has no such header")
	errNullHeader = errors.New("the header's value is null")
	errNullKey    = errors.New("the record key is null")
	errNoMatch    = errors.New("the record key does not match the regex (or group 1 did not take part)")
)

// value is the text the reference takes from a record, checked.
func (e *entityRef) value(key []byte, headers []records.RecordHeader) ([]byte, error) {
	var v []byte
	switch e.kind {
	case entityHeader:
		found := false
		for i := range headers {
			if string(headers[i].Key) == string(e.header) {
				v, found = headers[i].Value, true
				break
			}
		}
		switch {
		case !found:
			return nil, errNoHeader
		case v == nil:
			return nil, errNullHeader
		}
	case entityKey:
		if key == nil {
			return nil, errNullKey
		}
		v = key
	case entityKeyRegex:
		if key == nil {
			return nil, errNullKey
		}
		m := e.re.FindSubmatchIndex(key)
		if m == nil || m[2] < 0 {
			return nil, errNoMatch
		}
		v = key[m[2]:m[3]]
	}
	if err := CheckEntity(v); err != nil {
		return nil, err
	}
	return v, nil
}

// CheckEntity reports whether v can name an entity: 1 to MaxEntityLen bytes
// of [A-Za-z0-9._-] (so it fits any KMS's key names). It allocates nothing
// unless v is invalid.
func CheckEntity(v []byte) error {
	if len(v) == 0 {
		return errors.New("the entity is empty")
	}
	if len(v) > MaxEntityLen {
		return fmt.Errorf("the entity is %d bytes, more than %d", len(v), MaxEntityLen)
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("the entity holds the byte %#02x: entities are [A-Za-z0-9._-]", c)
		}
	}
	return nil
}

// MaxKeks returns encryption.policy.maxKeksPerTopic and maxKeks
// (defaulted): the distinct entity KEKs one topic, and the process, may use.
func (p *Policy) MaxKeks() (perTopic, total int) { return p.maxKeksPerTopic, p.maxKeks }

// compileBounds checks maxKeksPerTopic and maxKeks.
func (p *Policy) compileBounds(cfg *Config, bad func(string, error)) {
	p.maxKeksPerTopic, p.maxKeks = cfg.MaxKeksPerTopic, cfg.MaxKeks
	switch {
	case p.maxKeksPerTopic < 0:
		bad("maxKeksPerTopic", fmt.Errorf("%d is negative", p.maxKeksPerTopic))
	case p.maxKeksPerTopic == 0:
		p.maxKeksPerTopic = DefaultMaxKeksPerTopic
	}
	switch {
	case p.maxKeks < 0:
		bad("maxKeks", fmt.Errorf("%d is negative", p.maxKeks))
	case p.maxKeks == 0:
		p.maxKeks = DefaultMaxKeks
	}
	if p.maxKeks < p.maxKeksPerTopic && cfg.MaxKeks != 0 && cfg.MaxKeksPerTopic != 0 {
		bad("maxKeks", fmt.Errorf("%d is less than maxKeksPerTopic (%d)", p.maxKeks, p.maxKeksPerTopic))
	}
}

// EntityOf returns the entity a KEK name of the selected entity rule holds:
// the text of its one entity reference, the fixed text around it removed
// (for audits: which entity's records a KEK sealed). ok is false for rules
// with no or several references, and for names of another shape.
func (s Selection) EntityOf(kek string) (entity string, ok bool) {
	if !s.Entity() {
		return "", false
	}
	ref := -1
	for i, seg := range s.ent.segs {
		if seg.ref != nil {
			if ref >= 0 {
				return "", false
			}
			ref = i
		}
	}
	rest := kek
	for _, seg := range s.ent.segs[:ref] {
		var found bool
		if rest, found = strings.CutPrefix(rest, seg.lit); !found {
			return "", false
		}
	}
	for i := len(s.ent.segs) - 1; i > ref; i-- {
		var found bool
		if rest, found = strings.CutSuffix(rest, s.ent.segs[i].lit); !found {
			return "", false
		}
	}
	if CheckEntity([]byte(rest)) != nil {
		return "", false
	}
	return rest, true
}

// KEKForEntity is the KEK name the selected entity rule gives records of
// entity (the inverse of EntityOf), for `kseal shred --topic T --entity E`.
// The rule must have exactly one entity reference.
func (s Selection) KEKForEntity(entity string) (string, error) {
	if !s.Entity() {
		return "", errors.New("the topic's rule does not take its KEK from records ($(header:...), $(key...))")
	}
	if err := CheckEntity([]byte(entity)); err != nil {
		return "", err
	}
	var b strings.Builder
	refs := 0
	for _, seg := range s.ent.segs {
		if seg.ref != nil {
			refs++
			b.WriteString(entity)
			continue
		}
		b.WriteString(seg.lit)
	}
	if refs != 1 {
		return "", fmt.Errorf("the topic's KEK template %s has %d entity references: give the KEK name", s.KEK, refs)
	}
	return b.String(), nil
}

package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A template builds a name from a topic: literal text with $(topicName) for
// the whole topic name and, after a topicRegex match, $1 / ${1} / ${name}
// for capture groups. $$ is a literal $. It is parsed once at config time so
// that a reference to a group the regex lacks is a config error, not an
// empty string at run time.
type template struct {
	parts []part
}

type part struct {
	lit   string
	group int        // capture group; -1 for a literal, -2 for the topic name, -3 (entityPart) for ent
	ent   *entityRef // an entity reference (entity.go)
}

const topicPart = -2

// parseTemplate parses s. re is the rule's regex, nil for rules without one.
func parseTemplate(s string, re *regexp.Regexp) (template, error) {
	var t template
	lit := strings.Builder{}
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{lit: lit.String(), group: -1})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			i++
			continue
		}
		rest := s[i+1:]
		switch {
		case strings.HasPrefix(rest, "$"):
			lit.WriteByte('$')
			i += 2
		case strings.HasPrefix(rest, "(topicName)"):
			flush()
			t.parts = append(t.parts, part{group: topicPart})
			i += 1 + len("(topicName)")
		case len(rest) > 0 && '0' <= rest[0] && rest[0] <= '9':
			n := 0
			for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
				n++
			}
			g, err := groupIndex(rest[:n], re)
			if err != nil {
				return template{}, err
			}
			flush()
			t.parts = append(t.parts, part{group: g})
			i += 1 + n
		case strings.HasPrefix(rest, "{"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return template{}, fmt.Errorf("unclosed ${ at offset %d", i)
			}
			g, err := groupIndex(rest[1:end], re)
			if err != nil {
				return template{}, err
			}
			flush()
			t.parts = append(t.parts, part{group: g})
			i += 1 + end + 1
		case strings.HasPrefix(rest, "(header:") || strings.HasPrefix(rest, "(key"):
			ref, n, err := parseEntityRef(rest)
			if err != nil {
				return template{}, fmt.Errorf("at offset %d: %w", i, err)
			}
			flush()
			t.parts = append(t.parts, part{group: entityPart, ent: ref})
			i += 1 + n
		default:
			return template{}, fmt.Errorf("unknown $ reference at offset %d: use $(topicName), $1, ${name}, $(header:NAME), $(key), $(key:REGEX), or $$ for a literal $", i)
		}
	}
	flush()
	return t, nil
}

// groupIndex resolves a group reference by number or name against re.
func groupIndex(ref string, re *regexp.Regexp) (int, error) {
	if re == nil {
		return 0, fmt.Errorf("$%s refers to a capture group, which only topicRegex rules have", ref)
	}
	if n, err := strconv.Atoi(ref); err == nil {
		if n < 0 || n > re.NumSubexp() {
			return 0, fmt.Errorf("$%s refers to a group the regex does not have (it has %d)", ref, re.NumSubexp())
		}
		return n, nil
	}
	if g := re.SubexpIndex(ref); g > 0 {
		return g, nil
	}
	return 0, fmt.Errorf("${%s} names no group of the regex", ref)
}

// static reports whether the template is plain text, and returns it.
func (t template) static() (string, bool) {
	switch len(t.parts) {
	case 0:
		return "", true
	case 1:
		return t.parts[0].lit, t.parts[0].group == -1
	}
	return "", false
}

// expand builds the name for topic; match holds the regex's submatch
// indexes (nil for rules without a regex). An unmatched optional group
// expands to nothing, and so does an entity reference (Selection.AppendKEK
// renders those per record).
func (t template) expand(topic string, match []int) string {
	if s, ok := t.static(); ok {
		return s
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.group == -1:
			b.WriteString(p.lit)
		case p.group == topicPart:
			b.WriteString(topic)
		case p.group < 0:
			// An entity reference: per record (Selection.AppendKEK).
		case 2*p.group+1 < len(match) && match[2*p.group] >= 0:
			b.WriteString(topic[match[2*p.group]:match[2*p.group+1]])
		}
	}
	return b.String()
}

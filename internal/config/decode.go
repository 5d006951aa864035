package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a config file: the key path it is at
// ("virtualClusters[0].gateway.bootstrapPort"), the line of the file it is
// on (0 when the file does not say), and what is wrong, in words.
type Problem struct {
	Path string
	Line int
	Msg  string

	// badValue: the value at Path could not be decoded (it was left at its
	// default), as opposed to a key that should not be there.
	badValue bool
}

func (p *Problem) Error() string {
	s := p.Msg
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Line > 0 {
		s = "line " + strconv.Itoa(p.Line) + ": " + s
	}
	return s
}

// Positions remembers the line of the file each key path is written at, so
// problems found after decoding (by validation) can be given a line.
type Positions struct {
	lines map[string]int
}

func (p *Positions) set(path string, line int) {
	if p == nil || line <= 0 {
		return
	}
	if p.lines == nil {
		p.lines = map[string]int{}
	}
	if _, ok := p.lines[path]; !ok {
		p.lines[path] = line
	}
}

// Line returns the line path is written at or, for a key the file does not
// set, the line of its nearest enclosing key; 0 when none is known.
func (p *Positions) Line(path string) int {
	if p == nil {
		return 0
	}
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last ".key" or "[i]" of a key path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Merge adds q's positions to p's (p's own win).
func (p *Positions) Merge(q *Positions) {
	if q == nil {
		return
	}
	for k, v := range q.lines {
		p.set(k, v)
	}
}

// keyPath matches the key path a sub-package's message starts with
// ("rules[0].kek: ...", "tls.keyFile: ...").
var keyPath = regexp.MustCompile(`^[A-Za-z0-9_-]+(\[[0-9]+\])*(\.[A-Za-z0-9_-]+(\[[0-9]+\])*)*$`)

// Sub turns the error of a section's own validation into problems with
// full key paths: err's messages (several when it was made by errors.Join)
// name their key relative to the section at prefix ("keyFile: required"),
// or none, in which case the section itself is named.
func Sub(prefix string, err error) Errors {
	if err == nil {
		return nil
	}
	var out Errors
	if p, ok := err.(*Problem); ok {
		return Errors{p}
	}
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range m.Unwrap() {
			out = append(out, Sub(prefix, e)...)
		}
		return out
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, subProblem(prefix, line))
		}
	}
	return out
}

// SubStrings is Sub for messages given as strings.
func SubStrings(prefix string, msgs []string) Errors {
	var out Errors
	for _, m := range msgs {
		out = append(out, subProblem(prefix, m))
	}
	return out
}

func subProblem(prefix, msg string) *Problem {
	if key, rest, ok := strings.Cut(msg, ": "); ok && keyPath.MatchString(key) {
		if prefix != "" {
			key = prefix + "." + key
		}
		return &Problem{Path: key, Msg: rest}
	}
	return &Problem{Path: prefix, Msg: msg}
}

// asProblem returns err as a new Problem, taking a leading key path out of
// a plain error's message.
func asProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		q := *p
		return &q
	}
	return subProblem("", err.Error())
}

// Settle prepares the problems of one config for reporting: validation
// problems (valid) at or under a key that could not be decoded (decoded
// holds those) are dropped, as they would only repeat that problem about a
// value left at its default; lines are filled in from pos; and the problems
// are sorted by line (those without one last), then path.
func Settle(decoded, valid Errors, pos *Positions) Errors {
	var out Errors
	for _, e := range decoded {
		out = append(out, asProblem(e))
	}
	for _, e := range valid {
		p := asProblem(e)
		if !underAny(p.Path, decoded) {
			out = append(out, p)
		}
	}
	seen := map[Problem]bool{}
	kept := out[:0]
	for _, e := range out {
		p := e.(*Problem)
		if p.Line == 0 {
			p.Line = pos.Line(p.Path)
		}
		if !seen[*p] { // the same problem found twice (by two checks) is said once
			seen[*p] = true
			kept = append(kept, p)
		}
	}
	out = kept
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].(*Problem), out[j].(*Problem)
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Path < b.Path
	})
	if len(out) > maxProblems {
		more := len(out) - maxProblems
		out = append(out[:maxProblems:maxProblems], &Problem{Msg: fmt.Sprintf("and %d more problems", more)})
	}
	return out
}

// maxProblems bounds the problems reported of one file: past a few hundred,
// more say nothing new.
const maxProblems = 500

func underAny(path string, decoded Errors) bool {
	for _, e := range decoded {
		bad := asProblem(e).Path
		if bad == "" {
			continue
		}
		if path == bad || strings.HasPrefix(path, bad+".") || strings.HasPrefix(path, bad+"[") {
			return true
		}
		// What the section holding a value left at its default says of
		// itself is about that default too ("set one of topics, ..." when
		// topics was there, of the wrong kind).
		if p, ok := e.(*Problem); ok && p.badValue && path == parentPath(bad) {
			return true
		}
	}
	return false
}

// maxDecodeSteps bounds the values one document may expand to through
// aliases (a few kilobytes of anchors can otherwise stand for billions).
const maxDecodeSteps = 1 << 18

// DecodeNode decodes n into v (a pointer) as yaml.v3 does with KnownFields
// (yaml tags, inline structs, anchors, aliases and merge keys), but does
// not stop at the first problem: every unknown key, duplicate key, value of
// the wrong kind and bad duration is reported, with its full key path under
// prefix and its line in the file n was parsed from, in plain words. Values
// with a problem keep what v held, and so do keys written with no value
// (yaml.v3 empties lists and pointed-to sections there). Whole numbers must be written as such (yaml.v3
// would truncate 1.5 to 1). yaml.Node fields get the file's node as it is,
// for a later DecodeNode. The line of every key decoded is recorded in pos
// (which may be nil).
func DecodeNode(n *yaml.Node, v any, prefix string, pos *Positions) Errors {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("config.DecodeNode: v must be a non-nil pointer")
	}
	if n == nil || n.Kind == 0 {
		return nil
	}
	d := &decoder{pos: pos, active: map[*yaml.Node]bool{}}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	d.value(n, rv.Elem(), prefix)
	return d.errs
}

type decoder struct {
	pos    *Positions
	errs   Errors
	steps  int
	active map[*yaml.Node]bool // aliases being expanded
	over   bool
}

func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// failValue reports a value that could not be decoded.
func (d *decoder) failValue(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...), badValue: true})
}

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	durationType    = reflect.TypeFor[Duration]()
	stdDurationType = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.steps++; d.steps > maxDecodeSteps {
		if !d.over {
			d.over = true
			d.fail(path, n.Line, "the document expands to too many values (aliases)")
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || d.active[n] {
			d.fail(path, n.Line, "alias *%s refers to a value that contains it", n.Value)
			return
		}
		d.active[n] = true
		d.value(n.Alias, v, path)
		delete(d.active, n)
		return
	}
	t := v.Type()
	if t == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value keeps the default
	}
	if t.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	}
	if t == durationType || t == stdDurationType {
		d.duration(n, v, path)
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textType) {
		d.custom(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.list(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.scalar(n, v, path)
	default:
		d.custom(n, v, path)
	}
}

// got says in words what the file has where a value of another kind was
// expected.
func got(n *yaml.Node) string {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 60 {
			v = v[:57] + "..."
		}
		return strconv.Quote(v)
	}
	return "something else"
}

// wantWords says in words what kind of value t is.
func wantWords(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType || t == stdDurationType:
		return "a duration like 30s, 5m or 1h30m"
	case t == nodeType:
		return "a value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number (0 or more)"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping (key: value)"
	case reflect.Slice:
		e := t.Elem()
		for e.Kind() == reflect.Pointer {
			e = e.Elem()
		}
		switch {
		case e == durationType || e == stdDurationType:
			return "a list of durations"
		case e.Kind() == reflect.String:
			return "a list of strings"
		case e.Kind() == reflect.Struct || e.Kind() == reflect.Map:
			return "a list of mappings (key: value)"
		case e.Kind() == reflect.Bool:
			return "a list of true/false values"
		case e.Kind() >= reflect.Int && e.Kind() <= reflect.Float64:
			return "a list of numbers"
		}
		return "a list"
	}
	return "another kind of value"
}

func (d *decoder) wrongKind(n *yaml.Node, t reflect.Type, path string) {
	d.failValue(path, n.Line, "expected %s, got %s", wantWords(t), got(n))
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.wrongKind(n, v.Type(), path)
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		hint := "a duration like 30s, 5m or 1h30m"
		if _, numErr := strconv.ParseFloat(n.Value, 64); numErr == nil {
			hint += " (a number needs a unit)"
		}
		d.failValue(path, n.Line, "%s is not %s", got(n), hint)
		return
	}
	v.SetInt(int64(dur))
}

// bigInt is a whole number too large for yaml.v3 to read as one.
var bigInt = regexp.MustCompile(`^[-+]?[0-9][0-9_]*$`)

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if n.Kind != yaml.ScalarNode {
		d.wrongKind(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// yaml.v3 would truncate 1.5 to 1; a count with a fraction is a
		// mistake.
		if n.ShortTag() != "!!int" {
			if bigInt.MatchString(n.Value) {
				d.failValue(path, n.Line, "%s is too large", n.Value)
			} else {
				d.wrongKind(n, t, path)
			}
			return
		}
	}
	tmp := reflect.New(t)
	if err := n.Decode(tmp.Interface()); err != nil {
		if n.ShortTag() == "!!int" && t.Kind() != reflect.String && t.Kind() != reflect.Bool {
			if strings.HasPrefix(n.Value, "-") && t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
				d.failValue(path, n.Line, "%s must not be negative", n.Value)
			} else {
				d.failValue(path, n.Line, "%s is too large", n.Value)
			}
			return
		}
		d.wrongKind(n, t, path)
		return
	}
	v.Set(tmp.Elem())
}

// custom decodes a type with its own YAML or text decoding; its error, if
// any, is reported without yaml.v3's wording.
func (d *decoder) custom(n *yaml.Node, v reflect.Value, path string) {
	tmp := reflect.New(v.Type())
	tmp.Elem().Set(v)
	if err := n.Decode(tmp.Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			d.wrongKind(n, v.Type(), path)
			return
		}
		d.failValue(path, n.Line, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	v.Set(tmp.Elem())
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if n.Kind != yaml.SequenceNode {
		d.wrongKind(n, t, path)
		return
	}
	s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		d.pos.set(p, item.Line)
		d.value(item, s.Index(i), p)
	}
	v.Set(s)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.custom(n, v, path)
		return
	}
	pairs, ok := d.pairs(n, path, t)
	if !ok {
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(t, len(pairs)))
	}
	for _, kv := range pairs {
		p := join(path, kv.key.Value)
		d.pos.set(p, kv.key.Line)
		e := reflect.New(t.Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(kv.key.Value).Convert(t.Key())); old.IsValid() {
			e.Set(old)
		}
		d.value(kv.val, e, p)
		v.SetMapIndex(reflect.ValueOf(kv.key.Value).Convert(t.Key()), e)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type pair struct{ key, val *yaml.Node }

// pairs lists a mapping's entries in order, with YAML merge keys ("<<")
// applied (the mapping's own keys win) and duplicate keys reported.
func (d *decoder) pairs(n *yaml.Node, path string, t reflect.Type) ([]pair, bool) {
	if n.Kind != yaml.MappingNode {
		d.wrongKind(n, t, path)
		return nil, false
	}
	var out []pair
	index := map[string]int{}
	put := func(kv pair) {
		if i, ok := index[kv.key.Value]; ok {
			out[i] = kv
			return
		}
		index[kv.key.Value] = len(out)
		out = append(out, kv)
	}
	isMerge := func(k *yaml.Node) bool { return k.Value == "<<" && k.ShortTag() == "!!merge" }
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && isMerge(k) {
			for _, kv := range d.merge(n.Content[i+1], path, t) {
				put(kv)
			}
		}
	}
	own := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(path, k.Line, "a key must be a plain name, not %s", got(k))
			continue
		}
		if isMerge(k) {
			continue
		}
		if first, dup := own[k.Value]; dup {
			d.fail(join(path, k.Value), k.Line, "key written twice (first on line %d)", first)
			continue
		}
		own[k.Value] = k.Line
		put(pair{k, val})
	}
	return out, true
}

// merge returns the entries a merge key's value brings: a mapping, an alias
// of one, or a list of those.
func (d *decoder) merge(val *yaml.Node, path string, t reflect.Type) []pair {
	if d.steps++; d.steps > maxDecodeSteps {
		return nil
	}
	switch val.Kind {
	case yaml.AliasNode:
		if val.Alias == nil || d.active[val] {
			d.fail(path, val.Line, "alias *%s refers to a value that contains it", val.Value)
			return nil
		}
		d.active[val] = true
		defer delete(d.active, val)
		return d.merge(val.Alias, path, t)
	case yaml.MappingNode:
		ps, _ := d.pairs(val, path, t)
		return ps
	case yaml.SequenceNode:
		var out []pair
		for _, item := range val.Content {
			out = append(out, d.merge(item, path, t)...)
		}
		return out
	}
	d.fail(path, val.Line, "<< must merge a mapping or a list of mappings, not %s", got(val))
	return nil
}

// field is one key of a struct: the index path of its Go field (inline
// structs included).
type field struct {
	index []int
}

type structInfo struct {
	fields map[string]field
	names  []string // in declaration order, for messages
}

var structCache sync.Map // reflect.Type -> *structInfo

func fieldsOf(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{fields: map[string]field{}}
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := si.fields[name]; !dup {
				si.fields[name] = field{index: idx}
				si.names = append(si.names, name)
			}
		}
	}
	walk(t, nil)
	v, _ := structCache.LoadOrStore(t, si)
	return v.(*structInfo)
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	pairs, ok := d.pairs(n, path, t)
	if !ok {
		return
	}
	si := fieldsOf(t)
	for _, kv := range pairs {
		p := join(path, kv.key.Value)
		f, ok := si.fields[kv.key.Value]
		if !ok {
			d.fail(p, kv.key.Line, "%s", unknownKey(kv.key.Value, si.names))
			continue
		}
		d.pos.set(p, kv.key.Line)
		d.value(kv.val, v.FieldByIndex(f.index), p)
	}
}

// unknownKey words the problem of a key the section does not have, with
// the likeliest intended key or the list of keys it has.
func unknownKey(key string, names []string) string {
	// A near miss: one edit in a short key, two in a longer one.
	best, bestDist := "", min(2, max(1, len(key)/4))+1
	for _, n := range names {
		if strings.EqualFold(n, key) {
			best, bestDist = n, 0
			break
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key (did you mean %s?)", best)
	}
	if len(names) == 0 {
		return "unknown key (this section has no keys)"
	}
	return "unknown key (this section has: " + strings.Join(names, ", ") + ")"
}

// editDistance is the number of single-byte insertions, deletions,
// substitutions and swaps of neighbours that turn a into b (keys are
// ASCII), bounded to short keys.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

package validate

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// metricInfo is one metric family kseal exports.
type metricInfo struct {
	labels    []string // sorted
	histogram bool
}

// readmeMetrics reads the metrics table of kseal's README: rows whose first
// cell names one or more `kseal_...` metrics and whose second cell lists
// their labels.
func readmeMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := parseMetricsTable(string(data))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	return out
}

// parseMetricsTable reads the README's metrics table out of its text.
func parseMetricsTable(data string) (map[string]metricInfo, error) {
	tick := regexp.MustCompile("`([^`]*)`")
	out := map[string]metricInfo{}
	for line := range strings.Lines(data) {
		if !strings.HasPrefix(line, "| `kseal_") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			return nil, fmt.Errorf("metrics row %q: want | metric | labels | meaning |", line)
		}
		var labels []string
		for _, m := range tick.FindAllStringSubmatch(cells[2], -1) {
			labels = append(labels, m[1])
		}
		slices.Sort(labels)
		hist := strings.HasPrefix(strings.TrimSpace(cells[3]), "histogram")
		for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
			if _, dup := out[m[1]]; dup {
				return nil, fmt.Errorf("%s listed twice", m[1])
			}
			out[m[1]] = metricInfo{labels: labels, histogram: hist}
		}
	}
	if len(out) < 10 {
		return nil, fmt.Errorf("found only %d metrics in its table", len(out))
	}
	return out, nil
}

// metricConstructors are client_golang's functions that define a metric:
// where its name and its label names are among the arguments.
var metricConstructors = map[string]struct {
	labelsArg int // index of the []string of label names; -1: none
	histogram bool
}{
	"NewCounterVec": {1, false}, "NewGaugeVec": {1, false}, "NewHistogramVec": {1, true}, "NewSummaryVec": {1, false},
	"NewCounter": {-1, false}, "NewGauge": {-1, false}, "NewHistogram": {-1, true}, "NewSummary": {-1, false},
	"NewCounterFunc": {-1, false}, "NewGaugeFunc": {-1, false},
	"NewDesc": {2, false},
}

// codeMetrics finds every metric defined in kseal's non-test Go code under
// internal/ and cmd/, by parsing it: the calls of client_golang's
// constructors with a "kseal_..." name. Any other "kseal_..." string literal
// fails the test, so a metric defined another way cannot slip past.
func codeMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	out := map[string]metricInfo{}
	fset := token.NewFileSet()
	seen := map[*ast.BasicLit]bool{}
	for _, dir := range []string{"internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "prometheus" {
					return true
				}
				c, ok := metricConstructors[sel.Sel.Name]
				if !ok || len(call.Args) == 0 {
					return true
				}
				lit := metricName(call.Args[0])
				if lit == nil {
					return true
				}
				name, _ := strconv.Unquote(lit.Value)
				if !strings.HasPrefix(name, "kseal_") {
					return true
				}
				seen[lit] = true
				info := metricInfo{histogram: c.histogram}
				if c.labelsArg >= 0 && c.labelsArg < len(call.Args) {
					labels, ok := stringSlice(call.Args[c.labelsArg])
					if !ok {
						t.Errorf("%s: %s: label names are not a []string literal", fset.Position(call.Pos()), name)
					}
					info.labels = labels
				}
				if _, dup := out[name]; dup {
					t.Errorf("%s: %s defined twice", fset.Position(call.Pos()), name)
				}
				out[name] = info
				return true
			})
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && !seen[lit] {
					if s, _ := strconv.Unquote(lit.Value); regexp.MustCompile(`^kseal_[a-z0-9_]+$`).MatchString(s) {
						t.Errorf("%s: %q looks like a metric defined in a way this test does not read", fset.Position(lit.Pos()), s)
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metrics in kseal's code", len(out))
	}
	return out
}

// metricName is the string literal naming a metric: NewDesc's first
// argument, or the Name field of an Opts literal.
func metricName(arg ast.Expr) *ast.BasicLit {
	if u, ok := arg.(*ast.UnaryExpr); ok {
		arg = u.X
	}
	switch a := arg.(type) {
	case *ast.BasicLit:
		if a.Kind == token.STRING {
			return a
		}
	case *ast.CompositeLit:
		for _, e := range a.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok {
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
					if lit, ok := kv.Value.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						return lit
					}
				}
			}
		}
	}
	return nil
}

// stringSlice reads a []string{...} literal (nil: no labels).
func stringSlice(e ast.Expr) ([]string, bool) {
	if id, ok := e.(*ast.Ident); ok && id.Name == "nil" {
		return nil, true
	}
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, false
	}
	var out []string
	for _, el := range cl.Elts {
		lit, ok := el.(*ast.BasicLit)
		if !ok {
			return nil, false
		}
		s, _ := strconv.Unquote(lit.Value)
		out = append(out, s)
	}
	slices.Sort(out)
	return out, true
}

// clusterLabel is the label app.clusterRegisterer adds to the metrics of
// one virtual cluster (prometheus.WrapRegistererWith), so it is in the
// README's label list but not in the metric's own definition.
const clusterLabel = "virtual_cluster"

// TestMetricsTable: the README's metrics table lists exactly the metrics the
// code defines, with their labels (the code's, plus virtual_cluster where
// the metric is registered per virtual cluster) and histograms marked. The
// dashboard test relies on this table.
func TestMetricsTable(t *testing.T) {
	for _, p := range compareMetrics(readmeMetrics(t), codeMetrics(t)) {
		t.Error(p)
	}
}

// compareMetrics lists the differences between the README's table and the
// metrics the code defines.
func compareMetrics(doc, code map[string]metricInfo) []string {
	var problems []string
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for name, c := range code {
		d, ok := doc[name]
		if !ok {
			errorf("%s (labels %v) is exported but missing from README.md's metrics table", name, c.labels)
			continue
		}
		extra := slices.DeleteFunc(slices.Clone(d.labels), func(l string) bool { return slices.Contains(c.labels, l) })
		if missing := slices.DeleteFunc(slices.Clone(c.labels), func(l string) bool { return slices.Contains(d.labels, l) }); len(missing) > 0 {
			errorf("%s: README.md lists labels %v; the code also has %v", name, d.labels, missing)
		}
		if len(extra) > 1 || len(extra) == 1 && extra[0] != clusterLabel {
			errorf("%s: README.md lists labels %v; the code has only %v (and may add %s)", name, d.labels, c.labels, clusterLabel)
		}
		if d.histogram != c.histogram {
			errorf("%s: histogram in the code %v, in README.md %v", name, c.histogram, d.histogram)
		}
		if strings.HasSuffix(name, "_total") && c.histogram {
			errorf("%s: a histogram named like a counter", name)
		}
	}
	for name := range doc {
		if _, ok := code[name]; !ok {
			errorf("README.md lists %s, which the code does not define", name)
		}
	}
	slices.Sort(problems)
	return problems
}

// TestMetricsTableChecksCatch: a README that drifted from the code fails.
// (The table is changed after parsing, so that edits to its rows elsewhere
// do not break this test.)
func TestMetricsTableChecksCatch(t *testing.T) {
	code := codeMetrics(t)
	if _, err := parseMetricsTable("| `kseal_x_total` | `a` |\n"); err == nil {
		t.Error("parseMetricsTable accepted a row without the meaning column")
	}
	for _, tc := range []struct {
		name   string
		mutate func(doc map[string]metricInfo)
		want   string
	}{
		{"row missing", func(doc map[string]metricInfo) { delete(doc, "kseal_panics_total") }, "kseal_panics_total (labels"},
		{"row for no metric", func(doc map[string]metricInfo) { doc["kseal_nothing_total"] = metricInfo{} }, "does not define"},
		{"label missing", func(doc map[string]metricInfo) {
			m := doc["kseal_requests_total"]
			m.labels = []string{"virtual_cluster"}
			doc["kseal_requests_total"] = m
		}, "the code also has [api]"},
		{"label extra", func(doc map[string]metricInfo) {
			m := doc["kseal_requests_total"]
			m.labels = append(slices.Clone(m.labels), "topic")
			doc["kseal_requests_total"] = m
		}, "has only"},
		{"histogram unmarked", func(doc map[string]metricInfo) {
			m := doc["kseal_kms_operation_duration_seconds"]
			m.histogram = false
			doc["kseal_kms_operation_duration_seconds"] = m
		}, "histogram in the code true"},
	} {
		doc := readmeMetrics(t)
		tc.mutate(doc)
		problems := compareMetrics(doc, code)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
			t.Errorf("%s: no problem mentions %q; got %q", tc.name, tc.want, problems)
		}
	}
}

// exportedSeries maps each series name a Prometheus scrape of kseal can
// hold (histograms as _bucket, _sum, _count) to its labels.
func exportedSeries(t *testing.T) map[string]seriesInfo {
	t.Helper()
	out := map[string]seriesInfo{}
	for name, m := range readmeMetrics(t) {
		switch {
		case m.histogram:
			out[name+"_bucket"] = seriesInfo{labels: append(slices.Clone(m.labels), "le"), kind: kindCounter}
			out[name+"_sum"] = seriesInfo{labels: m.labels, kind: kindCounter}
			out[name+"_count"] = seriesInfo{labels: m.labels, kind: kindCounter}
		case strings.HasSuffix(name, "_total"):
			out[name] = seriesInfo{labels: m.labels, kind: kindCounter}
		default:
			out[name] = seriesInfo{labels: m.labels, kind: kindGauge}
		}
	}
	return out
}

type seriesKind int

const (
	kindGauge seriesKind = iota
	kindCounter
)

type seriesInfo struct {
	labels []string
	kind   seriesKind
}

func (s seriesInfo) String() string { return fmt.Sprint(s.labels) }

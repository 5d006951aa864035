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
	tick := regexp.MustCompile("`([^`]*)`")
	out := map[string]metricInfo{}
	for line := range strings.Lines(string(data)) {
		if !strings.HasPrefix(line, "| `kseal_") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Fatalf("README metrics row %q: want | metric | labels | meaning |", line)
		}
		var labels []string
		for _, m := range tick.FindAllStringSubmatch(cells[2], -1) {
			labels = append(labels, m[1])
		}
		slices.Sort(labels)
		hist := strings.HasPrefix(strings.TrimSpace(cells[3]), "histogram")
		for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
			if _, dup := out[m[1]]; dup {
				t.Errorf("README lists %s twice", m[1])
			}
			out[m[1]] = metricInfo{labels: labels, histogram: hist}
		}
	}
	if len(out) < 10 {
		t.Fatalf("README.md: found only %d metrics in its table", len(out))
	}
	return out
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
	doc, code := readmeMetrics(t), codeMetrics(t)
	for name, c := range code {
		d, ok := doc[name]
		if !ok {
			t.Errorf("%s (labels %v) is exported but missing from README.md's metrics table", name, c.labels)
			continue
		}
		extra := slices.DeleteFunc(slices.Clone(d.labels), func(l string) bool { return slices.Contains(c.labels, l) })
		if missing := slices.DeleteFunc(slices.Clone(c.labels), func(l string) bool { return slices.Contains(d.labels, l) }); len(missing) > 0 {
			t.Errorf("%s: README.md lists labels %v; the code also has %v", name, d.labels, missing)
		}
		if len(extra) > 1 || len(extra) == 1 && extra[0] != clusterLabel {
			t.Errorf("%s: README.md lists labels %v; the code has only %v (and may add %s)", name, d.labels, c.labels, clusterLabel)
		}
		if d.histogram != c.histogram {
			t.Errorf("%s: histogram in the code %v, in README.md %v", name, c.histogram, d.histogram)
		}
		if counter := strings.HasSuffix(name, "_total"); counter && c.histogram {
			t.Errorf("%s: a histogram named like a counter", name)
		}
	}
	for name := range doc {
		if _, ok := code[name]; !ok {
			t.Errorf("README.md lists %s, which the code does not define", name)
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

package validate

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboardFile is kseal's Grafana dashboard.
const dashboardFile = "../grafana/kseal.json"

// scrapeLabels are the labels Prometheus adds to every series it scrapes
// (the target's), which the dashboard filters by.
var scrapeLabels = []string{"job", "instance"}

// The dashboard's filter variables: every selector of a kseal metric must
// use them, so that picking a job, instance or virtual cluster narrows every
// panel.
var dashboardFilters = map[string]string{
	"job":             `job=~"$job"`,
	"instance":        `instance=~"$instance"`,
	"virtual_cluster": `virtual_cluster=~"$virtual_cluster"`,
}

// dashboard is the part of Grafana's dashboard JSON model that holds
// queries.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
}

// query is one PromQL expression of the dashboard, where it is, and the
// legend that names its series.
type query struct{ where, expr, legend string }

func loadDashboard(t *testing.T) (dashboard, []query) {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Expr, tg.LegendFormat})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if json.Unmarshal(v.Query, &s) != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
			q.Query = s
		}
		qs = append(qs, query{"variable " + v.Name, q.Query, ""})
	}
	return d, qs
}

// selector is one metric name in an expression, with the label names of
// its matchers and the function directly around it.
type selector struct {
	metric   string
	matchers map[string]string // label -> "label op value" as written
	fn       string            // e.g. rate; "" at the top level or in an aggregation
}

// parsedQuery is what the dashboard test needs from an expression.
type parsedQuery struct {
	selectors []selector
	grouping  []string // labels of by/without/on/ignoring/group_left/group_right
}

var promKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true, "inf": true, "nan": true,
}

var promAggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "stddev": true, "stdvar": true,
	"topk": true, "bottomk": true, "quantile": true, "count_values": true, "group": true,
}

// promToken is a lexical token of PromQL: an identifier, a string, or one
// punctuation or operator character (numbers, durations and Grafana
// variables outside strings come out as identifiers or are skipped).
type promToken struct {
	kind byte // 'i' identifier, 's' string, else the character itself
	text string
}

func lexPromQL(expr string) ([]promToken, error) {
	var toks []promToken
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			toks = append(toks, promToken{'s', expr[i+1 : j]})
			i = j + 1
		case c == '$': // a Grafana variable: $name, ${name}, $__rate_interval
			j := i + 1
			if j < len(expr) && expr[j] == '{' {
				for j < len(expr) && expr[j] != '}' {
					j++
				}
				j++
			} else {
				for j < len(expr) && isIdentChar(expr[j]) {
					j++
				}
			}
			toks = append(toks, promToken{'v', expr[i:j]})
			i = j
		case isIdentChar(c) || c == ':' || c == '.':
			j := i
			for j < len(expr) && (isIdentChar(expr[j]) || expr[j] == ':' || expr[j] == '.') {
				j++
			}
			toks = append(toks, promToken{'i', expr[i:j]})
			i = j
		default:
			toks = append(toks, promToken{c, string(c)})
			i++
		}
	}
	return toks, nil
}

func isIdentChar(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

var metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// parsePromQL finds the metric selectors and grouping labels of expr. It is
// not a full PromQL parser, only enough to know which metrics and labels a
// query names: identifiers that are neither functions (followed by "("),
// keywords, numbers nor durations are metric names; "{...}" after one holds
// its matchers; "by (...)" and the like hold label names.
func parsePromQL(expr string) (parsedQuery, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return parsedQuery{}, err
	}
	var pq parsedQuery
	var fnStack []string // the function name of each open "("
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := func(k int) promToken {
			if i+k < len(toks) {
				return toks[i+k]
			}
			return promToken{}
		}
		switch tk.kind {
		case '[': // a range or subquery duration
			for i < len(toks) && toks[i].kind != ']' {
				i++
			}
		case '(':
			fnStack = append(fnStack, "")
		case ')':
			if len(fnStack) == 0 {
				return pq, fmt.Errorf("unbalanced )")
			}
			fnStack = fnStack[:len(fnStack)-1]
		case '{':
			return pq, fmt.Errorf("a selector without a metric name")
		case 'i':
			if promAggregations[tk.text] && (next(1).text == "by" || next(1).text == "without") {
				// sum by (a) (...): the grouping first (next token), then
				// the argument.
				continue
			}
			switch {
			case promKeywords[tk.text] && next(1).kind == '(' &&
				tk.text != "and" && tk.text != "or" && tk.text != "unless" && tk.text != "atan2":
				// by (a, b): label names up to ")"
				i += 2
				for ; i < len(toks) && toks[i].kind != ')'; i++ {
					if toks[i].kind == 'i' {
						pq.grouping = append(pq.grouping, toks[i].text)
					} else if toks[i].kind != ',' {
						return pq, fmt.Errorf("%s (...): unexpected %q", tk.text, toks[i].text)
					}
				}
			case promKeywords[tk.text]:
			case next(1).kind == '(':
				name := tk.text
				if promAggregations[name] {
					name = "" // an aggregation does not change a series' kind
				}
				fnStack = append(fnStack, name)
				i++
			case !metricNameRE.MatchString(tk.text) || tk.text[0] >= '0' && tk.text[0] <= '9':
				// a number
			default:
				sel := selector{metric: tk.text, matchers: map[string]string{}}
				for k := len(fnStack) - 1; k >= 0; k-- {
					if fnStack[k] != "" {
						sel.fn = fnStack[k]
						break
					}
				}
				if next(1).kind == '{' {
					i += 2
					for ; i < len(toks) && toks[i].kind != '}'; i++ {
						if toks[i].kind == ',' {
							continue
						}
						if toks[i].kind != 'i' {
							return pq, fmt.Errorf("%s{...}: unexpected %q", sel.metric, toks[i].text)
						}
						label, op := toks[i].text, ""
						for i+1 < len(toks) && strings.ContainsRune("=!~", rune(toks[i+1].kind)) {
							op += toks[i+1].text
							i++
						}
						if op != "=" && op != "!=" && op != "=~" && op != "!~" || i+1 >= len(toks) || toks[i+1].kind != 's' {
							return pq, fmt.Errorf("%s{...}: matcher of %s is not label op \"value\"", sel.metric, label)
						}
						i++
						sel.matchers[label] = label + op + `"` + toks[i].text + `"`
					}
					if i >= len(toks) {
						return pq, fmt.Errorf("%s{: unterminated", sel.metric)
					}
				}
				pq.selectors = append(pq.selectors, sel)
			}
		}
	}
	if len(fnStack) != 0 {
		return pq, fmt.Errorf("unbalanced (")
	}
	return pq, nil
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// selectorExpr is the PromQL of q: label_values(EXPR, label) of a template
// variable gives EXPR and label.
func (q query) selectorExpr() (expr, label string) {
	if m := labelValuesRE.FindStringSubmatch(q.expr); m != nil {
		return m[1], m[2]
	}
	return q.expr, ""
}

// checkQuery reports what is wrong with one dashboard expression, given
// the series kseal exports.
func checkQuery(q query, exported map[string]seriesInfo) []string {
	var problems []string
	errorf := func(format string, args ...any) {
		problems = append(problems, q.where+": "+fmt.Sprintf(format, args...))
	}
	expr, variableLabel := q.selectorExpr()
	pq, err := parsePromQL(expr)
	if err != nil {
		return []string{fmt.Sprintf("%s: %q: %v", q.where, q.expr, err)}
	}
	if len(pq.selectors) == 0 {
		errorf("%q names no metric", q.expr)
	}
	has := func(info seriesInfo, label string) bool {
		return slices.Contains(info.labels, label) || slices.Contains(scrapeLabels, label)
	}
	for _, s := range pq.selectors {
		info, ok := exported[s.metric]
		if !ok {
			errorf("%s is not a metric kseal exports (README.md's metrics table)", s.metric)
			continue
		}
		for label := range s.matchers {
			if !has(info, label) {
				errorf("%s has no label %s (it has %v)", s.metric, label, info.labels)
			}
		}
		for _, label := range pq.grouping {
			if !has(info, label) {
				errorf("%s has no label %s to group by (it has %v)", s.metric, label, info.labels)
			}
		}
		if variableLabel != "" && !has(info, variableLabel) {
			errorf("label_values: %s has no label %s", s.metric, variableLabel)
		}
		// The filters narrow every panel: each applies to every selector
		// with that label, except in the variable query that defines it
		// (and those after it, which may use only the earlier ones).
		for label, want := range dashboardFilters {
			if !has(info, label) {
				continue
			}
			if got, ok := s.matchers[label]; ok && got != want {
				errorf("%s: matcher %s, want %s", s.metric, got, want)
			} else if !ok && !strings.HasPrefix(q.where, "variable ") {
				errorf("%s: no %s filter", s.metric, want)
			}
		}
		switch {
		case info.kind == kindCounter && s.fn != "rate" && s.fn != "increase" && s.fn != "irate" && variableLabel == "":
			errorf("%s is a counter: use it in rate() or increase(), not %q", s.metric, s.fn)
		case info.kind == kindGauge && (s.fn == "rate" || s.fn == "increase" || s.fn == "irate"):
			errorf("%s is a gauge: %s() of it means nothing", s.metric, s.fn)
		}
		if strings.HasSuffix(s.metric, "_bucket") && !strings.Contains(expr, "histogram_quantile(") {
			errorf("%s outside histogram_quantile", s.metric)
		}
	}
	// A legend's {{label}} must be a label of the result: one it is grouped
	// by, or with no grouping one of the metric's.
	for _, m := range legendLabel.FindAllStringSubmatch(q.legend, -1) {
		ok := slices.Contains(pq.grouping, m[1])
		if len(pq.grouping) == 0 {
			ok = len(pq.selectors) > 0
			for _, s := range pq.selectors {
				ok = ok && has(exported[s.metric], m[1])
			}
		}
		if !ok {
			errorf("legend %q: the result has no label %s", q.legend, m[1])
		}
	}
	if strings.Contains(expr, "histogram_quantile(") && !slices.Contains(pq.grouping, "le") {
		errorf("histogram_quantile without le in its grouping: %q", q.expr)
	}
	return problems
}

// TestDashboard: every query of the Grafana dashboard names only metrics
// kseal exports (README.md's table, which TestMetricsTable checks against
// the code and TestMetricsScrape against a running kseal), with labels those
// metrics have, filtered by the dashboard's variables, counters through
// rate() or increase(); and the dashboard covers every metric.
func TestDashboard(t *testing.T) {
	exported := exportedSeries(t)
	d, qs := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard: title %q uid %q", d.Title, d.UID)
	}
	if len(qs) < 20 {
		t.Fatalf("only %d queries found in %s", len(qs), dashboardFile)
	}
	used := map[string]bool{}
	for _, q := range qs {
		for _, p := range checkQuery(q, exported) {
			t.Error(p)
		}
		expr, _ := q.selectorExpr()
		if pq, err := parsePromQL(expr); err == nil {
			for _, s := range pq.selectors {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s.metric, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	for name := range readmeMetrics(t) {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	// Panel ids are unique (Grafana links and alerts refer to them).
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside Grafana's 24 columns", p.Title, p.GridPos)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
}

// TestDashboardChecksCatch: the query checks fail on broken queries.
func TestDashboardChecksCatch(t *testing.T) {
	exported := exportedSeries(t)
	f := `job=~"$job",instance=~"$instance",virtual_cluster=~"$virtual_cluster"`
	for _, tc := range []struct{ expr, legend, want string }{
		{`sum(rate(kseal_no_such_total{` + f + `}[5m]))`, "", "not a metric"},
		{`sum by (topic) (rate(kseal_requests_total{` + f + `}[5m]))`, "", "no label topic"},
		{`sum(rate(kseal_requests_total{` + f + `,apii="Produce"}[5m]))`, "", "no label apii"},
		{`sum(kseal_requests_total{` + f + `})`, "", "is a counter"},
		{`rate(kseal_client_connections{` + f + `}[5m])`, "", "is a gauge"},
		{`sum(rate(kseal_requests_total{job=~"$job",instance=~"$instance"}[5m]))`, "", "no virtual_cluster"},
		{`histogram_quantile(0.99, sum by (api) (rate(kseal_proxy_added_latency_seconds_bucket{` + f + `}[5m])))`, "", "without le"},
		{`kseal_rewrite_budget_bytes{job="x",instance=~"$instance"}`, "", "matcher job"},
		{`sum(rate(kseal_requests_total{` + f + `}[5m])`, "", "unbalanced"},
		{`label_values(kseal_rewrite_budget_limit_bytes, virtual_cluster)`, "", "label_values"},
		{`sum by (api) (rate(kseal_requests_total{` + f + `}[5m]))`, "{{topic}}", "no label topic"},
	} {
		problems := checkQuery(query{"test", tc.expr, tc.legend}, exported)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
			t.Errorf("%s: no problem mentions %q; got %q", tc.expr, tc.want, problems)
		}
	}
	// And a good one passes.
	good := `histogram_quantile(0.99, sum by (le, api) (rate(kseal_proxy_added_latency_seconds_bucket{` + f + `}[$__rate_interval])))`
	if p := checkQuery(query{"test", good, "p99 {{api}}"}, exported); len(p) > 0 {
		t.Errorf("%s: %q", good, p)
	}
}

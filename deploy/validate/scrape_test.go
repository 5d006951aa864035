package validate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scrapeKseal runs the kseal binary the image would hold (`kseal run`, with
// the local KMS and an upstream that refuses connections) and returns its
// /metrics text. Without a Kafka cluster and clients only some labelled
// metrics have series yet (the DEK cache's, the records and budget
// counters); those it has must match README's table.
func scrapeKseal(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	admin, bootstrap, broker, dead := freePort(t), freePort(t), freePort(t), freePort(t) // dead: nothing listens
	cfg := fmt.Sprintf(`admin: {listen: "127.0.0.1:%d"}
virtualClusters:
  - name: main
    upstream: {bootstrapServers: ["127.0.0.1:%d"]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: localhost, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 1}
    encryption:
      kms:
        type: local
        config: {keyStore: %q, masterKeyFile: %q}
      policy:
        rules: [{topicRegex: '.*', kek: 'KEK-$(topicName)'}]
        unresolvedKeyPolicy: REJECT
`, admin, dead, bootstrap, broker, filepath.Join(dir, "keys.json"), filepath.Join(dir, "master.key"))
	path := filepath.Join(dir, "kseal.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := ksealBinary(t)
	if out, err := exec.Command(bin, "kms", "init", "--config", path).CombinedOutput(); err != nil {
		t.Fatalf("kseal kms init: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "run", "--config", path)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)
	get := func() (string, error) {
		resp, err := http.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
		return string(b), err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		body, err := get()
		if err == nil && strings.Contains(body, "kseal_dek_cache_hits_total{") {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kseal_dek_cache_hits_total on %s after 20 s (last error %v); kseal's log:\n%s\nscrape:\n%s", url, err, logs.String(), body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)

// TestMetricsScrape: every kseal_ series a real kseal serves on /metrics is
// one the README (and so the dashboard test) knows, with exactly its labels,
// and its TYPE agrees (histograms, counters named _total).
func TestMetricsScrape(t *testing.T) {
	exported := exportedSeries(t)
	doc := readmeMetrics(t)
	body := scrapeKseal(t)
	seen := 0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE kseal_"); ok {
			name, typ, _ := strings.Cut(f, " ")
			name = "kseal_" + name
			m, ok := doc[name]
			switch {
			case !ok:
				t.Errorf("kseal serves %s, which README.md's metrics table lacks", name)
			case m.histogram != (typ == "histogram"):
				t.Errorf("%s is a %s; README.md says histogram: %v", name, typ, m.histogram)
			case typ == "counter" && !strings.HasSuffix(name, "_total"), typ == "gauge" && strings.HasSuffix(name, "_total"):
				t.Errorf("%s is a %s", name, typ)
			}
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(m[1], "kseal_") {
			continue
		}
		seen++
		want, ok := exported[m[1]]
		if !ok {
			t.Errorf("kseal serves %s, unknown to README.md's metrics table", m[1])
			continue
		}
		var got []string
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			got = append(got, p[1])
		}
		slices.Sort(got)
		w := slices.Sorted(slices.Values(want.labels))
		if !slices.Equal(got, w) {
			t.Errorf("%s: served with labels %v, README.md lists %v", line, got, w)
		}
	}
	if seen < 10 {
		t.Errorf("only %d kseal_ series served:\n%s", seen, body)
	}
}

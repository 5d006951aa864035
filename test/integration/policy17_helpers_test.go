//go:build integration

package integration

// Helpers of the issue-17 proofs (policy per record and per reader:
// crypto-shredding per entity, who may decrypt, no injected plaintext), in
// shred17_test.go, authz17_test.go and inject17_test.go. Every name starts
// with p17 so it cannot collide with the other integration tests' helpers.
//
// The config keys used here are those of V17.md and docs/policy.md:
// per rule `kek: 'KEK-$(header:tenant)'`, `onDestroyedKek`, `access:
// {decrypt, produce, onDenied}`, `requireEncrypted`; `kseal shred`.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
)

// p17Dek is the DEK section of the proofs: unwrapped DEKs are forgotten
// 1-2s after use and KEKs are checked every second, so a KEK destroyed in
// the KMS (or a KMS taken away) shows within a few seconds.
const p17Dek = "      dek: {refreshAfterWrite: 1s, expireAfterWrite: 2s, decryptCacheTtl: 1s, decryptCacheMaxAge: 2s, notFoundTtl: 500ms, kekCheckInterval: 1s}\n"

// p17Proxy is a kseal with an admin listener (for /metrics).
type p17Proxy struct {
	*e2eProxy
	admin string
}

// p17Start runs kseal in front of upstream with the encryption section enc
// (4-space indented, as testenv.KsealConfig's extra) and an admin listener.
func p17Start(t *testing.T, upstream []string, enc string) *p17Proxy {
	t.Helper()
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	cfg := fmt.Sprintf("admin: {listen: %q}\n", admin) + testenv.KsealConfig(upstream, gw, enc)
	return &p17Proxy{e2eProxy: e2eStartKseal(t, cfg), admin: admin}
}

// p17StartCfg runs kseal with a full config built by the caller (TLS
// gateways), adding the admin listener.
func p17StartCfg(t *testing.T, cfg string) *p17Proxy {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	return &p17Proxy{e2eProxy: e2eStartKseal(t, fmt.Sprintf("admin: {listen: %q}\n", admin)+cfg), admin: admin}
}

// metric sums the samples of name with the given labels.
func (p *p17Proxy) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return e2eMetric(t, p.admin, name, labels)
}

// metricExists reports whether kseal's /metrics names metric: a renamed
// metric must not pass as "0". (A labelled metric shows once it has a
// sample.)
func (p *p17Proxy) metricExists(t *testing.T, name string) bool {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return bytes.Contains(body, []byte("# TYPE "+name+" "))
}

// p17Partition reads one partition of topic through bootstrap with
// franz-go from offset, until n records arrived, an error was reported
// (when stopOnErr) or timeout passed. Every fetch error is kept, retriable
// ones too.
func p17Partition(t *testing.T, bootstrap, topic string, partition int32, offset int64, n int, stopOnErr bool, timeout time.Duration, opts ...kgo.Opt) ([]*kgo.Record, []error) {
	t.Helper()
	cl := testenv.Kgo(t, strings.Split(bootstrap, ","), append([]kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}}),
		kgo.KeepRetryableFetchErrors(), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	var errs []error
	for len(recs) < n && !(stopOnErr && len(errs) > 0) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", tp, p, err))
			}
		})
		recs = append(recs, fs.Records()...)
	}
	cl.Close()
	return recs, errs
}

// p17KgoHeader is the value of the first header of r named name (nil,
// false when there is none).
func p17KgoHeader(r *kgo.Record, name string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Key == name {
			return h.Value, true
		}
	}
	return nil, false
}

// p17EDEK is the EDEK of a stored record of format v1 or v2 (nil when it
// has no envelope).
func p17EDEK(r *kgo.Record) []byte {
	m, _ := e2eMarker(r)
	if len(m) == 1 && m[0] == recordcrypt.Version1 {
		env, err := recordcrypt.Parse(r.Value)
		if err != nil {
			return nil
		}
		return env.EDEK
	}
	st, err := v2Inspect(testenv.BinFromKgo(r))
	if err != nil {
		return nil
	}
	return st.EDEK
}

// p17Errs renders errors for a message.
func p17Errs(errs []error) string {
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		if i == 5 {
			fmt.Fprintf(&b, "... (%d in all)", len(errs))
			break
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// p17Kseal runs the kseal binary with args and returns its exit code and
// combined output.
func p17Kseal(t *testing.T, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2eKsealBin(t), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("kseal %v: %v\n%s", args, err, out)
	return -1, ""
}

// p17WriteFile writes content into dir/name and returns the path.
func p17WriteFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

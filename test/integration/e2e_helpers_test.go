//go:build integration

package integration

// Helpers of the end-to-end tests for encryption, the external KMSs,
// connectivity (TLS, SNI, SASL) and reload. Every name starts with e2e so
// it cannot collide with the helpers of the other integration tests.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
)

// e2eSkipDirect skips tests that only make sense with kseal in front of the
// cluster (KSEAL_IT_DIRECT=1 bypasses it).
func e2eSkipDirect(t *testing.T) {
	t.Helper()
	if direct() {
		t.Skip("KSEAL_IT_DIRECT=1: this test checks what kseal itself does")
	}
}

// e2eWorkDir is a fresh folder under test/.work, removed at cleanup unless
// the test failed (then it is kept for a post-mortem).
func e2eWorkDir(t *testing.T) string {
	t.Helper()
	work, err := testenv.WorkDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(work, "e2e-"+strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return dir
}

// e2eFreePort is a free TCP port on 127.0.0.1.
func e2eFreePort(t *testing.T) int {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// e2eKsealBin is the kseal binary the tests run.
func e2eKsealBin(t *testing.T) string {
	t.Helper()
	bin, err := testenv.BuildKseal()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// e2eLocalKMS is a key store of kseal's built-in KMS, managed with the
// `kseal kms` commands the way an operator would, while kseal runs.
type e2eLocalKMS struct {
	keyStore, masterKey string
	cfgPath             string // a config naming this store, for `kseal kms --config`
}

// newE2ELocalKMS initialises an empty key store (`kseal kms init`).
func newE2ELocalKMS(t *testing.T) *e2eLocalKMS {
	t.Helper()
	dir := e2eWorkDir(t)
	k := &e2eLocalKMS{
		keyStore:  filepath.Join(dir, "keys.json"),
		masterKey: filepath.Join(dir, "master.key"),
		cfgPath:   filepath.Join(dir, "kms.yaml"),
	}
	// `kseal kms` reads the config file kseal run reads; only the KMS
	// section matters to it, the rest must merely be valid.
	gw := testenv.Gateway{Host: "127.0.0.1", BootstrapPort: 19999, BrokerPortStart: 20000, BrokerPortCount: 4}
	cfg := testenv.KsealConfig(cluster.Bootstrap, gw, "    encryption:\n"+k.section()+
		"      policy:\n        rules:\n          - {topicRegex: '.*', kek: 'KEK-$(topicName)'}\n")
	if err := os.WriteFile(k.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	k.run(t, "init")
	return k
}

// section is the `kms:` block of an encryption section (6-space indent).
// The running kseal re-reads the store every 200ms, so KEKs created,
// rotated or deleted by a test take effect quickly.
func (k *e2eLocalKMS) section() string {
	return fmt.Sprintf("      kms:\n        type: local\n        config: {keyStore: %q, masterKeyFile: %q, reloadInterval: 200ms}\n",
		k.keyStore, k.masterKey)
}

// run runs `kseal kms <sub> --config <cfg> [args]` and fails the test on a
// non-zero exit.
func (k *e2eLocalKMS) run(t *testing.T, sub string, args ...string) string {
	t.Helper()
	cmd := exec.Command(e2eKsealBin(t), append([]string{"kms", sub, "--config", k.cfgPath}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kseal kms %s %v: %v\n%s", sub, args, err, out)
	}
	return string(out)
}

func (k *e2eLocalKMS) create(t *testing.T, kek string) { t.Helper(); k.run(t, "create", kek) }
func (k *e2eLocalKMS) rotate(t *testing.T, kek string) { t.Helper(); k.run(t, "rotate", kek) }
func (k *e2eLocalKMS) remove(t *testing.T, kek string) { t.Helper(); k.run(t, "delete", kek) }

// e2eProxy is a running kseal with what the tests need beyond testenv's
// handle: the config file it reads on SIGHUP and its process id.
type e2eProxy struct {
	*testenv.Kseal
	cfgPath string
}

// e2eStartKseal starts kseal with cfgYAML (testenv.StartKseal: stopped and
// checked for a clean exit at cleanup).
func e2eStartKseal(t *testing.T, cfgYAML string) *e2eProxy {
	t.Helper()
	k := testenv.StartKseal(t, cfgYAML)
	// StartKseal writes the config next to the log.
	return &e2eProxy{Kseal: k, cfgPath: filepath.Join(filepath.Dir(k.LogPath), "kseal.yaml")}
}

// pid finds the kseal process reading this proxy's config file: testenv
// does not export it, and the config path is unique to this proxy. Only a
// child of this test process qualifies.
func (p *e2eProxy) pid(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) != 4 || args[1] != "run" || args[2] != "--config" || args[3] != p.cfgPath {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// stat: pid (comm) state ppid ...; comm may hold spaces, so
		// split after its closing parenthesis.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			return pid
		}
	}
	t.Fatalf("no kseal process runs with --config %s", p.cfgPath)
	return 0
}

// reload writes cfgYAML over the running config and sends SIGHUP.
func (p *e2eProxy) reload(t *testing.T, cfgYAML string) {
	t.Helper()
	if err := os.WriteFile(p.cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.pid(t), syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP kseal: %v", err)
	}
}

// waitLog waits until kseal's log holds substr at least n times.
func (p *e2eProxy) waitLog(t *testing.T, substr string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(p.Logs(), substr) < n {
		if time.Now().After(deadline) {
			t.Fatalf("kseal did not log %q %d times within %v", substr, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// e2eTopic creates a topic directly on the cluster with parts partitions,
// replication 3 and configs, and waits until every partition has a leader
// and a full ISR.
func e2eTopic(t *testing.T, prefix string, parts int32, configs map[string]string) string {
	t.Helper()
	name := uniq("it-" + prefix)
	e2eCreateTopic(t, name, parts, configs)
	return name
}

// e2eCreateTopic creates topic name like e2eTopic.
func e2eCreateTopic(t *testing.T, name string, parts int32, configs map[string]string) {
	t.Helper()
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfgs := map[string]*string{}
	for k, v := range configs {
		cfgs[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, parts, replication, cfgs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	for {
		md, err := adm.Metadata(ctx, name)
		if err == nil {
			td := md.Topics[name]
			ready := td.Err == nil && len(td.Partitions) == int(parts)
			for _, p := range td.Partitions {
				ready = ready && p.Err == nil && p.Leader >= 0 && len(p.ISR) == replication
			}
			if ready {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s not ready after 60s (last error %v)", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// e2eEndOffsets are the topic's end offsets per partition, asked of the
// brokers directly.
func e2eEndOffsets(t *testing.T, topic string) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		t.Fatalf("ListEndOffsets %s: %v", topic, err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// e2eSum adds up end offsets: the number of offsets a topic has used.
func e2eSum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// e2eConsume reads topics from the start through bootstrap until n records
// arrived or timeout passed, and returns the records and the fetch errors
// it saw (the caller asserts; with kgo.KeepRetryableFetchErrors among opts
// it sees every error kseal answers, retriable or not).
func e2eConsume(t *testing.T, bootstrap string, n int, timeout time.Duration, topics []string, opts ...kgo.Opt) ([]*kgo.Record, []error) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.MetadataMinAge(250 * time.Millisecond), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	var errs []error
	for len(recs) < n {
		fs := cl.PollRecords(ctx, n-len(recs))
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", topic, p, err))
			}
		})
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs, errs
}

// e2eMustConsume is e2eConsume that fails the test on any fetch error or
// when fewer than n records arrive within 60s.
func e2eMustConsume(t *testing.T, who, bootstrap string, n int, topics []string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	recs, errs := e2eConsume(t, bootstrap, n, 60*time.Second, topics, opts...)
	if len(errs) > 0 {
		t.Fatalf("%s: fetch errors: %v", who, errs)
	}
	if len(recs) != n {
		t.Fatalf("%s: consumed %d records, want %d", who, len(recs), n)
	}
	return recs
}

// e2eRaw reads n records of topics straight from the brokers: what is
// stored.
func e2eRaw(t *testing.T, n int, topics ...string) []*kgo.Record {
	t.Helper()
	return e2eMustConsume(t, "direct consumer", cluster.BootstrapString(), n, topics)
}

// e2eMarker returns the value of a record's kseal marker header.
func e2eMarker(r *kgo.Record) ([]byte, int) {
	var v []byte
	n := 0
	for _, h := range r.Headers {
		if h.Key == recordcrypt.HeaderKey {
			v = h.Value
			n++
		}
	}
	return v, n
}

// e2eAssertSealed checks that records read from the broker are stored
// encrypted: exactly one marker header with the format version, a value
// that parses as an envelope, and none of the plaintexts inside it. It
// returns the envelopes.
func e2eAssertSealed(t *testing.T, recs []*kgo.Record, plaintexts ...string) []recordcrypt.Envelope {
	t.Helper()
	envs := make([]recordcrypt.Envelope, len(recs))
	for i, r := range recs {
		m, n := e2eMarker(r)
		if n != 1 || len(m) != 1 || m[0] != recordcrypt.Version1 {
			t.Errorf("stored record %s[%d]@%d: %d marker headers (value %x), want one with version 1",
				r.Topic, r.Partition, r.Offset, n, m)
			continue
		}
		env, err := recordcrypt.Parse(r.Value)
		if err != nil {
			t.Errorf("stored record %s[%d]@%d: value is no envelope: %v", r.Topic, r.Partition, r.Offset, err)
			continue
		}
		for _, p := range plaintexts {
			if p != "" && bytes.Contains(r.Value, []byte(p)) {
				t.Errorf("stored record %s[%d]@%d holds plaintext %q", r.Topic, r.Partition, r.Offset, p)
			}
		}
		envs[i] = env
	}
	return envs
}

// e2eAssertNotOnDisk fails if needle appears in any segment file of the
// cluster (also inside compressed batches).
func e2eAssertNotOnDisk(t *testing.T, needle string) {
	t.Helper()
	hits, err := cluster.GrepSegments([]byte(needle))
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) > 0 {
		t.Errorf("plaintext %q found on disk in %v", needle, hits)
	}
}

// e2eAssertOnDisk fails unless needle is in exactly n segment files.
func e2eAssertOnDisk(t *testing.T, needle string, n int) {
	t.Helper()
	hits, err := cluster.GrepSegments([]byte(needle))
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != n {
		t.Errorf("%q found in %d segment files, want %d: %v", needle, len(hits), n, hits)
	}
}

// e2eRecord is a client-neutral record with what a consumer can see:
// position, timestamp, key, value and headers (nil-ness of key and value
// kept).
type e2eRecord struct {
	Partition int32
	Offset    int64
	Timestamp int64 // milliseconds
	Key       *string
	Value     *string
	Headers   []testenv.Header
}

func e2eStr(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// e2eFromKgo converts a franz-go record, leaving out the kseal marker
// (consumers through kseal never see it; raw records are compared without
// it).
func e2eFromKgo(r *kgo.Record) e2eRecord {
	out := e2eRecord{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(),
		Key: e2eStr(r.Key), Value: e2eStr(r.Value)}
	for _, h := range r.Headers {
		if h.Key != recordcrypt.HeaderKey {
			out.Headers = append(out.Headers, testenv.H(h.Key, string(h.Value)))
		}
	}
	return out
}

func (r e2eRecord) pos() string { return fmt.Sprintf("%d@%d", r.Partition, r.Offset) }

// meta is everything but the value, for comparing a consumed record with
// the stored one.
func (r e2eRecord) meta() string {
	s := func(p *string) string {
		if p == nil {
			return "<null>"
		}
		return strconv.Quote(*p)
	}
	return fmt.Sprintf("%s ts=%d key=%s headers=%v", r.pos(), r.Timestamp, s(r.Key), r.Headers)
}

// e2eKcat runs kcat with a time limit and returns its stdout, stderr and
// error (not failing the test: some tests expect kcat to fail).
func e2eKcat(t *testing.T, timeout time.Duration, stdin string, args ...string) (string, string, error) {
	t.Helper()
	return e2eRun(t, timeout, stdin, nil, "kcat", args...)
}

// e2eRun runs a command with a time limit, killed with this test process.
func e2eRun(t *testing.T, timeout time.Duration, stdin string, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: killed after %v: %w", name, timeout, ctx.Err())
	}
	return stdout.String(), stderr.String(), err
}

// e2eKcatConsume reads topic through bootstrap with kcat -C -J from the
// start to the end (-e) and returns the records with their timestamps.
// extra are more kcat arguments. A kcat failure fails the test.
func e2eKcatConsume(t *testing.T, bootstrap, topic string, extra ...string) []e2eRecord {
	t.Helper()
	args := append([]string{"-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q"}, extra...)
	out, errOut, err := e2eKcat(t, 60*time.Second, "", args...)
	if err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, errOut)
	}
	return e2eParseKcat(t, out)
}

func e2eParseKcat(t *testing.T, out string) []e2eRecord {
	t.Helper()
	var recs []e2eRecord
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m struct {
			Partition int32    `json:"partition"`
			Offset    int64    `json:"offset"`
			TS        int64    `json:"ts"`
			Headers   []string `json:"headers"`
			Key       *string  `json:"key"`
			Payload   *string  `json:"payload"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("kcat -J line %q: %v", line, err)
		}
		r := e2eRecord{Partition: m.Partition, Offset: m.Offset, Timestamp: m.TS, Key: m.Key, Value: m.Payload}
		for i := 0; i+1 < len(m.Headers); i += 2 {
			r.Headers = append(r.Headers, testenv.H(m.Headers[i], m.Headers[i+1]))
		}
		recs = append(recs, r)
	}
	return recs
}

// e2eJava runs a main class of the cluster's Kafka jars with extra JVM
// options (testenv.Java has none), returning stdout, stderr and the error
// without failing the test.
func e2eJava(t *testing.T, jvm []string, stdin, mainClass string, args ...string) (string, string, error) {
	t.Helper()
	full := []string{"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(cluster.Home, "config", "tools-log4j2.properties")}
	full = append(append(full, jvm...), "-cp", cluster.Libs+"/*", mainClass)
	return e2eRun(t, 120*time.Second, stdin, nil, "java", append(full, args...)...)
}

// e2eJavaConsume runs the console consumer through bootstrap until it has
// n records or 15s pass without one, printing timestamps, partitions,
// offsets, headers and keys. extra are more console consumer arguments.
func e2eJavaConsume(t *testing.T, jvm []string, bootstrap, topic string, n int, extra ...string) []e2eRecord {
	t.Helper()
	args := append([]string{"--bootstrap-server", bootstrap, "--topic", topic, "--from-beginning",
		"--max-messages", strconv.Itoa(n), "--timeout-ms", "15000",
		"--formatter-property", "print.timestamp=true",
		"--formatter-property", "print.partition=true",
		"--formatter-property", "print.offset=true",
		"--formatter-property", "print.headers=true",
		"--formatter-property", "print.key=true",
	}, extra...)
	out, errOut, err := e2eJava(t, jvm, "", testenv.JavaConsoleConsumer, args...)
	if err != nil {
		t.Fatalf("java console consumer: %v\nstderr:\n%s", err, tailLines(errOut, 30))
	}
	return e2eParseConsole(t, out)
}

// e2eParseConsole reads DefaultMessageFormatter lines:
// "CreateTime:T<TAB>Partition:P<TAB>Offset:O<TAB>headers<TAB>key<TAB>value".
func e2eParseConsole(t *testing.T, out string) []e2eRecord {
	t.Helper()
	var recs []e2eRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 6)
		if len(f) != 6 || !strings.HasPrefix(f[0], "CreateTime:") || !strings.HasPrefix(f[1], "Partition:") || !strings.HasPrefix(f[2], "Offset:") {
			t.Fatalf("console consumer line %q: want CreateTime, Partition, Offset, headers, key, value", line)
		}
		ts, err1 := strconv.ParseInt(strings.TrimPrefix(f[0], "CreateTime:"), 10, 64)
		p, err2 := strconv.ParseInt(strings.TrimPrefix(f[1], "Partition:"), 10, 32)
		o, err3 := strconv.ParseInt(strings.TrimPrefix(f[2], "Offset:"), 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("console consumer line %q: bad number", line)
		}
		r := e2eRecord{Partition: int32(p), Offset: o, Timestamp: ts}
		// The formatter prints null as "null": the tests never use that
		// string as a key or value.
		if f[4] != "null" {
			r.Key = &f[4]
		}
		if f[5] != "null" {
			r.Value = &f[5]
		}
		if f[3] != "NO_HEADERS" {
			for _, kv := range strings.Split(f[3], ",") {
				k, v, _ := strings.Cut(kv, ":")
				r.Headers = append(r.Headers, testenv.H(k, v))
			}
		}
		recs = append(recs, r)
	}
	return recs
}

// e2eMetric scrapes kseal's /metrics at addr and sums the samples of name
// whose labels include every label in want.
func e2eMetric(t *testing.T, addr, name string, want map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape /metrics: HTTP %d, %v", resp.StatusCode, err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // another metric whose name starts with name
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(","+labels+",", ","+k+"="+strconv.Quote(v)+",") {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// e2eEventually polls cond every interval until it holds or timeout
// passes, then fails with what.
func e2eEventually(t *testing.T, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

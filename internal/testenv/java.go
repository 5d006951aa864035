package testenv

import (
	"bufio"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Main classes of the Java tools in the Kafka 4.3 jars.
const (
	JavaConsoleProducer = "org.apache.kafka.tools.ConsoleProducer"
	JavaConsoleConsumer = "org.apache.kafka.tools.consumer.ConsoleConsumer"
	JavaTopicCommand    = "org.apache.kafka.tools.TopicCommand"
	JavaConfigCommand   = "kafka.admin.ConfigCommand"
	JavaGroupCommand    = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
	JavaBrokerVersions  = "org.apache.kafka.tools.BrokerApiVersionsCommand"
)

// javaOpts keep client JVMs small and quick to start: they live for a few
// seconds, so the C1 compiler alone is the faster choice.
var javaOpts = []string{"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"}

// Java runs a main class from the cluster's Kafka jars with stdin and
// returns stdout; a non-zero exit or 120s passing fails the test.
func Java(t testing.TB, c *Cluster, stdin, mainClass string, args ...string) string {
	t.Helper()
	return javaCP(t, c, c.Libs+"/*", stdin, mainClass, args...)
}

func javaCP(t testing.TB, c *Cluster, cp, stdin, mainClass string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	full := append(append([]string{}, javaOpts...),
		"-Dlog4j2.configurationFile="+filepath.Join(c.Home, "config", "tools-log4j2.properties"),
		"-cp", cp, mainClass)
	cmd := exec.CommandContext(ctx, "java", append(full, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := runLogged(cmd)
	if err != nil {
		t.Fatalf("java %s: %v\nstdout:\n%s", mainClass, err, tail(string(out), 8<<10))
	}
	return string(out)
}

// JavaProduce produces recs with the console producer, one line each:
// "headers<TAB>key<TAB>value" where headers are "k:v,k:v". The console
// producer picks partitions itself (Partition is ignored), and either all
// records have headers or none. extra are more console producer arguments,
// e.g. "--compression-codec", "zstd" (it overrides compression.type with
// this option's default, so a property does not work) or
// "--command-property", "enable.idempotence=true".
func JavaProduce(t testing.TB, c *Cluster, bootstrap, topic string, recs []Record, extra ...string) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	withHeaders := len(recs[0].Headers) > 0
	var in strings.Builder
	for _, r := range recs {
		if (len(r.Headers) > 0) != withHeaders {
			t.Fatalf("JavaProduce: either all records have headers or none: %v", r)
		}
		if strings.ContainsAny(r.Key+r.Value, "\t\n") {
			t.Fatalf("JavaProduce: key or value holds a tab or newline: %v", r)
		}
		if withHeaders {
			for i, h := range r.Headers {
				if strings.ContainsAny(h.Key+h.Value, ",:\t\n") {
					t.Fatalf("JavaProduce: header %q holds a separator", h)
				}
				if i > 0 {
					in.WriteByte(',')
				}
				in.WriteString(h.Key + ":" + h.Value)
			}
			in.WriteByte('\t')
		}
		in.WriteString(r.Key + "\t" + r.Value + "\n")
	}
	args := []string{"--bootstrap-server", bootstrap, "--topic", topic,
		"--reader-property", "parse.key=true",
		"--reader-property", "parse.headers=" + strconv.FormatBool(withHeaders),
		"--command-property", "acks=all"}
	Java(t, c, in.String(), JavaConsoleProducer, append(args, extra...)...)
}

// JavaConsume runs the console consumer until it has n records or 20s pass
// without a new one, and returns what it printed. extra are more console
// consumer arguments (e.g. "--group", g or "--isolation-level",
// "read_committed"); without --group it reads from the beginning.
func JavaConsume(t testing.TB, c *Cluster, bootstrap, topic string, n int, extra ...string) []Record {
	t.Helper()
	args := []string{"--bootstrap-server", bootstrap, "--topic", topic,
		"--max-messages", strconv.Itoa(n), "--timeout-ms", "20000",
		"--formatter-property", "print.partition=true",
		"--formatter-property", "print.offset=true",
		"--formatter-property", "print.headers=true",
		"--formatter-property", "print.key=true",
	}
	fromBeginning := true
	for _, e := range extra {
		if e == "--group" {
			fromBeginning = false
		}
	}
	if fromBeginning {
		args = append(args, "--from-beginning")
	}
	args = append(args, extra...)
	// On --timeout-ms the 4.x console consumer exits 0 with what it had, so
	// a short read is the caller's to assert.
	return parseConsoleConsumer(t, topic, Java(t, c, "", JavaConsoleConsumer, args...))
}

// parseConsoleConsumer reads DefaultMessageFormatter lines:
// "Partition:P<TAB>Offset:O<TAB>headers<TAB>key<TAB>value" with headers
// "k:v,k:v" or "NO_HEADERS".
func parseConsoleConsumer(t testing.TB, topic, out string) []Record {
	t.Helper()
	var recs []Record
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 5)
		if len(f) != 5 || !strings.HasPrefix(f[0], "Partition:") || !strings.HasPrefix(f[1], "Offset:") {
			t.Fatalf("console consumer line %q: want Partition:P, Offset:O, headers, key, value", line)
		}
		p, err1 := strconv.ParseInt(strings.TrimPrefix(f[0], "Partition:"), 10, 32)
		o, err2 := strconv.ParseInt(strings.TrimPrefix(f[1], "Offset:"), 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("console consumer line %q: bad partition or offset", line)
		}
		r := Record{Topic: topic, Partition: int32(p), Offset: o, Key: f[3], Value: f[4]}
		if r.Key == "null" {
			r.Key = ""
		}
		if f[2] != "NO_HEADERS" {
			for _, kv := range strings.Split(f[2], ",") {
				k, v, _ := strings.Cut(kv, ":")
				r.Headers = append(r.Headers, Header{k, v})
			}
		}
		recs = append(recs, r)
	}
	return recs
}

//go:embed java/KsealTxn.java
var ksealTxnSource []byte

var txnClasses = struct {
	sync.Mutex
	dir map[string]string // libs folder -> compiled classes folder
}{dir: map[string]string{}}

// compileTxn compiles KsealTxn.java against the cluster's kafka-clients
// into .cache/java/<hash of source and jars folder>, once: later runs
// reuse the classes.
func compileTxn(c *Cluster) (string, error) {
	txnClasses.Lock()
	defer txnClasses.Unlock()
	if d, ok := txnClasses.dir[c.Libs]; ok {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(ksealTxnSource)
	h.Write([]byte(c.Libs))
	d := filepath.Join(root, ".cache", "java", hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(d, "KsealTxn.class")); err != nil {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return "", err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(d), "build-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		src := filepath.Join(tmp, "KsealTxn.java")
		if err := os.WriteFile(src, ksealTxnSource, 0o644); err != nil {
			return "", err
		}
		if _, err := runLogged(exec.Command("javac", "-nowarn", "-cp", c.Libs+"/*", "-d", tmp, src)); err != nil {
			return "", fmt.Errorf("testenv: compile KsealTxn.java: %w", err)
		}
		// Another test binary may have won the race; its classes are
		// the same.
		if err := os.Rename(tmp, d); err != nil {
			if _, statErr := os.Stat(filepath.Join(d, "KsealTxn.class")); statErr != nil {
				return "", fmt.Errorf("testenv: install compiled KsealTxn: %w", err)
			}
		}
	}
	txnClasses.dir[c.Libs] = d
	return d, nil
}

// JavaTxn runs a transactional Java KafkaProducer (java/KsealTxn.java) with
// transactional.id txnID and the given script (lines "begin", "send topic
// partition key value", "commit", "abort"). props are producer properties
// ("k=v").
func JavaTxn(t testing.TB, c *Cluster, bootstrap, txnID, script string, props ...string) string {
	t.Helper()
	d, err := compileTxn(c)
	if err != nil {
		t.Fatal(err)
	}
	return javaCP(t, c, d+string(os.PathListSeparator)+c.Libs+"/*", script, "KsealTxn",
		append([]string{bootstrap, txnID}, props...)...)
}

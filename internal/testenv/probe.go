package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A probe is a script of client steps run by one Java or librdkafka
// process, each step with its own client properties (TLS, SASL), reporting
// what the client saw, errors included, instead of failing the test: for
// tests whose expected outcome is an error (an authorization refusal, a
// record that is not delivered). One process runs every step, so a script
// costs one JVM start.

// ProbeStep is one step of a probe script.
type ProbeStep struct {
	// Consume: read from Partition at Offset until N records arrived, the
	// client reported an error, or Timeout passed (assigned, no group
	// offsets). Produce: send Record (its Partition; -1 lets the
	// producer's partitioner choose) and wait for the answer.
	Consume   bool
	Bootstrap string
	// Props are client properties in the client's own names (Java's
	// security.protocol, ssl.keystore.location...; librdkafka's
	// sasl.mechanisms, ssl.ca.location...).
	Props     map[string]string
	Topic     string
	Partition int32
	Offset    int64
	N         int
	Timeout   time.Duration
	Record    BinRecord
}

// ProbeResult is what a step saw: the records consumed, the produced
// record's position, and the client's error text ("" for none).
type ProbeResult struct {
	Records   []BinRecord
	Partition int32
	Offset    int64
	Err       string
}

func (s ProbeStep) line(javaProps bool) string {
	keys := make([]string, 0, len(s.Props))
	for k := range s.Props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var props strings.Builder
	for _, k := range keys {
		v := s.Props[k]
		if javaProps {
			// java.util.Properties.load reads backslashes as escapes.
			v = strings.ReplaceAll(v, `\`, `\\`)
		}
		props.WriteString(k + "=" + v + "\n")
	}
	ph := hex.EncodeToString([]byte(props.String()))
	if s.Consume {
		to := s.Timeout
		if to <= 0 {
			to = 15 * time.Second
		}
		return fmt.Sprintf("consume\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", s.Bootstrap, ph, s.Topic, s.Partition, s.Offset, s.N, to.Milliseconds())
	}
	r := s.Record
	return fmt.Sprintf("produce\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Bootstrap, ph, s.Topic, r.Partition,
		encBytes(r.Key), encBytes(r.Value), encHeaders(r.Headers))
}

// parseProbe reads the probe output lines into one result per step.
func parseProbe(t testing.TB, who string, steps []ProbeStep, out []byte) []ProbeResult {
	t.Helper()
	res := make([]ProbeResult, len(steps))
	ended := make([]bool, len(steps))
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 3 {
			t.Fatalf("%s probe: line %q", who, line)
		}
		i, err := strconv.Atoi(f[1])
		if err != nil || i < 0 || i >= len(steps) {
			t.Fatalf("%s probe: line %q: bad step", who, line)
		}
		switch {
		case f[0] == "R" && len(f) == 7:
			p, err1 := strconv.ParseInt(f[2], 10, 32)
			o, err2 := strconv.ParseInt(f[3], 10, 64)
			k, err3 := decBytes(f[4])
			v, err4 := decBytes(f[5])
			hs, err5 := decHeaders(f[6])
			for _, err := range []error{err1, err2, err3, err4, err5} {
				if err != nil {
					t.Fatalf("%s probe: line %q: %v", who, line, err)
				}
			}
			res[i].Records = append(res[i].Records, BinRecord{Topic: steps[i].Topic, Partition: int32(p), Offset: o, Key: k, Value: v, Headers: hs})
		case f[0] == "P" && len(f) == 4:
			p, err1 := strconv.ParseInt(f[2], 10, 32)
			o, err2 := strconv.ParseInt(f[3], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s probe: line %q: bad position", who, line)
			}
			res[i].Partition, res[i].Offset = int32(p), o
		case f[0] == "E":
			res[i].Err = strings.Join(f[2:], " ")
			ended[i] = true
		case f[0] == "D":
			ended[i] = true
		default:
			t.Fatalf("%s probe: line %q", who, line)
		}
	}
	for i, e := range ended {
		if !e {
			t.Fatalf("%s probe: step %d (%s) never ended; output:\n%s", who, i, strings.TrimSpace(steps[i].line(false)), out)
		}
	}
	return res
}

func probeInput(steps []ProbeStep, javaProps bool) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString(s.line(javaProps))
	}
	return b.String()
}

//go:embed java/KsealProbe.java
var ksealProbeSource []byte

var probeClasses = struct {
	sync.Mutex
	dir map[string]string
}{dir: map[string]string{}}

// compileProbe compiles KsealProbe.java against the cluster's
// kafka-clients into .cache/java/<hash>, once.
func compileProbe(c *Cluster) (string, error) {
	probeClasses.Lock()
	defer probeClasses.Unlock()
	if d, ok := probeClasses.dir[c.Libs]; ok {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	sum.Write(ksealProbeSource)
	sum.Write([]byte(c.Libs))
	d := filepath.Join(root, ".cache", "java", hex.EncodeToString(sum.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(d, "KsealProbe.class")); err != nil {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return "", err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(d), "build-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		src := filepath.Join(tmp, "KsealProbe.java")
		if err := os.WriteFile(src, ksealProbeSource, 0o644); err != nil {
			return "", err
		}
		if _, err := runLogged(exec.Command("javac", "-nowarn", "-cp", c.Libs+"/*", "-d", tmp, src)); err != nil {
			return "", fmt.Errorf("testenv: compile KsealProbe.java: %w", err)
		}
		if err := os.Rename(tmp, d); err != nil {
			if _, statErr := os.Stat(filepath.Join(d, "KsealProbe.class")); statErr != nil {
				return "", fmt.Errorf("testenv: install compiled KsealProbe: %w", err)
			}
		}
	}
	probeClasses.dir[c.Libs] = d
	return d, nil
}

// JavaProbe runs steps with the Java client (KsealProbe.java) in one JVM
// and returns one result per step. Only a failure to run the JVM fails the
// test; client errors are in the results.
func JavaProbe(t testing.TB, c *Cluster, steps []ProbeStep) []ProbeResult {
	t.Helper()
	d, err := compileProbe(c)
	if err != nil {
		t.Fatal(err)
	}
	out := javaCP(t, c, d+string(os.PathListSeparator)+c.Libs+"/*", probeInput(steps, true), "KsealProbe")
	return parseProbe(t, "java", steps, []byte(out))
}

// probeClient is KsealProbe.java with confluent-kafka's librdkafka.
const probeClient = `
import sys, time, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
def dec(s):
    return None if s == "-" else bytes.fromhex(s[1:])
def enc(b):
    return "-" if b is None else ":" + b.hex()
def out(s):
    sys.stdout.write(s + "\n"); sys.stdout.flush()
def props(bootstrap, h):
    conf = {}
    for l in bytes.fromhex(h).decode().split("\n"):
        if l:
            k, v = l.split("=", 1)
            conf[k] = v
    conf["bootstrap.servers"] = bootstrap
    return conf
def consume(step, f):
    conf = props(f[1], f[2])
    conf.update({"group.id": "probe-" + str(uuid.uuid4()), "enable.auto.commit": False})
    c = Consumer(conf)
    c.assign([TopicPartition(f[3], int(f[4]), int(f[5]))])
    n, deadline, got = int(f[6]), time.time() + int(f[7]) / 1000.0, 0
    try:
        while got < n and time.time() < deadline:
            m = c.poll(0.3)
            if m is None:
                continue
            if m.error():
                out("E\t%d\t%s" % (step, str(m.error()).replace("\t", " ").replace("\n", " ")))
                return
            hs = ",".join("%s=%s" % (name.encode().hex(), enc(v)) for name, v in (m.headers() or []))
            out("R\t%d\t%d\t%d\t%s\t%s\t%s" % (step, m.partition(), m.offset(), enc(m.key()), enc(m.value()), hs))
            got += 1
        out("D\t%d\t%d" % (step, got))
    finally:
        c.close()
def produce(step, f):
    conf = props(f[1], f[2])
    conf.update({"acks": "all", "message.timeout.ms": 20000, "retries": 0})
    p = Producer(conf)
    res = []
    kw = {"key": dec(f[5]), "value": dec(f[6]), "on_delivery": lambda err, msg: res.append((err, msg))}
    if f[7]:
        kw["headers"] = [(bytes.fromhex(it.split("=", 1)[0]).decode(), dec(it.split("=", 1)[1])) for it in f[7].split(",")]
    if int(f[4]) >= 0:
        kw["partition"] = int(f[4])
    p.produce(f[3], **kw)
    p.flush(30)
    if not res:
        out("E\t%d\tno delivery report after 30s" % step)
    elif res[0][0]:
        out("E\t%d\t%s" % (step, str(res[0][0]).replace("\t", " ").replace("\n", " ")))
    else:
        out("P\t%d\t%d\t%d" % (step, res[0][1].partition(), res[0][1].offset()))
        out("D\t%d\t1" % step)
for step, line in enumerate(l.rstrip("\n") for l in sys.stdin if l.strip()):
    f = line.split("\t")
    try:
        (consume if f[0] == "consume" else produce)(step, f)
    except Exception as e:
        out("E\t%d\t%s: %s" % (step, type(e).__name__, str(e).replace("\t", " ").replace("\n", " ")))
`

// RdkafkaProbe runs steps with confluent-kafka's librdkafka in one Python
// process and returns one result per step, like JavaProbe.
func RdkafkaProbe(t testing.TB, steps []ProbeStep) []ProbeResult {
	t.Helper()
	py, err := confluentPython()
	if err != nil {
		t.Fatalf("confluent-kafka: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", probeClient)
	cmd.Stdin = strings.NewReader(probeInput(steps, false))
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("librdkafka probe: %v\nstdout:\n%s\nstderr:\n%s", err, tail(string(out), 8<<10), tail(errOut.String(), 8<<10))
	}
	return parseProbe(t, "librdkafka", steps, out)
}

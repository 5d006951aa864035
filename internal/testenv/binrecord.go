package testenv

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BinHeader is a record header whose value may be null (nil) or empty.
type BinHeader struct {
	Key   string
	Value []byte
}

// BinRecord is a client-neutral record that keeps bytes exactly: a nil Key
// or Value is null, an empty non-nil one is empty. Record (record.go) is
// text only and cannot tell null from empty; BinRecord is for tests that
// must.
type BinRecord struct {
	Topic     string
	Partition int32 // -1: the producer's partitioner chooses
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []BinHeader
}

// Content renders key, value and headers (not the position), with null
// and empty told apart, for byte-exact comparisons.
func (r BinRecord) Content() string {
	var b strings.Builder
	fmt.Fprintf(&b, "key=%s value=%s headers=[", encBytes(r.Key), encBytes(r.Value))
	for i, h := range r.Headers {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%q=%s", h.Key, encBytes(h.Value))
	}
	b.WriteByte(']')
	return b.String()
}

func (r BinRecord) String() string {
	return fmt.Sprintf("%s[%d]@%d %s", r.Topic, r.Partition, r.Offset, r.Content())
}

// encBytes is the line format's bytes field: "-" for null, ":" and hex.
func encBytes(b []byte) string {
	if b == nil {
		return "-"
	}
	return ":" + hex.EncodeToString(b)
}

func decBytes(s string) ([]byte, error) {
	if s == "-" {
		return nil, nil
	}
	if !strings.HasPrefix(s, ":") {
		return nil, fmt.Errorf("bytes field %q: want - or :hex", s)
	}
	b, err := hex.DecodeString(s[1:])
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

func encHeaders(hs []BinHeader) string {
	var b strings.Builder
	for i, h := range hs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(hex.EncodeToString([]byte(h.Key)) + "=" + encBytes(h.Value))
	}
	return b.String()
}

func decHeaders(s string) ([]BinHeader, error) {
	if s == "" {
		return nil, nil
	}
	var out []BinHeader
	for _, item := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("header item %q", item)
		}
		n, err := hex.DecodeString(name)
		if err != nil {
			return nil, err
		}
		v, err := decBytes(val)
		if err != nil {
			return nil, err
		}
		out = append(out, BinHeader{Key: string(n), Value: v})
	}
	return out, nil
}

// binProduceInput renders recs as the produce input lines of KsealKeys.java
// and binClient: "partition key value headers".
func binProduceInput(recs []BinRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%d\t%s\t%s\t%s\n", r.Partition, encBytes(r.Key), encBytes(r.Value), encHeaders(r.Headers))
	}
	return b.String()
}

// parseBinPositions reads the "partition offset" lines a producer prints,
// one per produced record, into recs' Partition and Offset.
func parseBinPositions(t testing.TB, who string, out []byte, recs []BinRecord) {
	t.Helper()
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) != 2*len(recs) {
		t.Fatalf("%s produce: %d fields of positions for %d records:\n%s", who, len(lines), len(recs), out)
	}
	for i := range recs {
		p, err1 := strconv.ParseInt(lines[2*i], 10, 32)
		o, err2 := strconv.ParseInt(lines[2*i+1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s produce: bad position %q %q", who, lines[2*i], lines[2*i+1])
		}
		recs[i].Partition, recs[i].Offset = int32(p), o
	}
}

// parseBinRecords reads "partition offset key value headers" lines.
func parseBinRecords(t testing.TB, who, topic string, out []byte) []BinRecord {
	t.Helper()
	var recs []BinRecord
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			t.Fatalf("%s consume: line %q: want 5 fields", who, line)
		}
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		k, err3 := decBytes(f[2])
		v, err4 := decBytes(f[3])
		hs, err5 := decHeaders(f[4])
		for _, err := range []error{err1, err2, err3, err4, err5} {
			if err != nil {
				t.Fatalf("%s consume: line %q: %v", who, line, err)
			}
		}
		recs = append(recs, BinRecord{Topic: topic, Partition: int32(p), Offset: o, Key: k, Value: v, Headers: hs})
	}
	return recs
}

// BinFromKgo converts a franz-go record, keeping null and empty apart.
func BinFromKgo(r *kgo.Record) BinRecord {
	out := BinRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, BinHeader{Key: h.Key, Value: h.Value})
	}
	return out
}

// BinToKgo converts to a franz-go record (nil stays null).
func BinToKgo(r BinRecord) *kgo.Record {
	out := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return out
}

//go:embed java/KsealKeys.java
var ksealKeysSource []byte

var keysClasses = struct {
	sync.Mutex
	dir map[string]string // libs folder -> compiled classes folder
}{dir: map[string]string{}}

// compileKeys compiles KsealKeys.java against the cluster's kafka-clients
// into .cache/java/<hash of source and jars folder>, once.
func compileKeys(c *Cluster) (string, error) {
	keysClasses.Lock()
	defer keysClasses.Unlock()
	if d, ok := keysClasses.dir[c.Libs]; ok {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(ksealKeysSource)
	h.Write([]byte(c.Libs))
	d := filepath.Join(root, ".cache", "java", hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(d, "KsealKeys.class")); err != nil {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return "", err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(d), "build-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		src := filepath.Join(tmp, "KsealKeys.java")
		if err := os.WriteFile(src, ksealKeysSource, 0o644); err != nil {
			return "", err
		}
		if _, err := runLogged(exec.Command("javac", "-nowarn", "-cp", c.Libs+"/*", "-d", tmp, src)); err != nil {
			return "", fmt.Errorf("testenv: compile KsealKeys.java: %w", err)
		}
		if err := os.Rename(tmp, d); err != nil {
			if _, statErr := os.Stat(filepath.Join(d, "KsealKeys.class")); statErr != nil {
				return "", fmt.Errorf("testenv: install compiled KsealKeys: %w", err)
			}
		}
	}
	keysClasses.dir[c.Libs] = d
	return d, nil
}

func javaKeys(t testing.TB, c *Cluster, stdin string, args ...string) []byte {
	t.Helper()
	d, err := compileKeys(c)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(javaCP(t, c, d+string(os.PathListSeparator)+c.Libs+"/*", stdin, "KsealKeys", args...))
}

// JavaBinProduce produces recs with the Java producer (KsealKeys.java,
// acks=all, the default partitioner for Partition -1) and sets each
// record's Partition and Offset to what the producer reported.
func JavaBinProduce(t testing.TB, c *Cluster, bootstrap, topic string, recs []BinRecord) {
	t.Helper()
	out := javaKeys(t, c, binProduceInput(recs), "produce", bootstrap, topic)
	parseBinPositions(t, "java", out, recs)
}

// JavaBinConsume reads n records of topic from the start as a member of
// group with the Java consumer; fewer within 60s fails the test.
func JavaBinConsume(t testing.TB, c *Cluster, bootstrap, topic, group string, n int) []BinRecord {
	t.Helper()
	return parseBinRecords(t, "java", topic, javaKeys(t, c, "", "consume", bootstrap, topic, strconv.Itoa(n), group))
}

// JavaAggregate runs KsealKeys.java's aggregation: a consumer of group
// reads n records of topic from the start, sums their (decimal) values per
// key and commits. The result maps encBytes(key) to "sum count".
func JavaAggregate(t testing.TB, c *Cluster, bootstrap, topic, group string, n int) map[string]string {
	t.Helper()
	out := javaKeys(t, c, "", "aggregate", bootstrap, topic, strconv.Itoa(n), group)
	res := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		k, rest, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("java aggregate: line %q", line)
		}
		res[k] = strings.ReplaceAll(rest, "\t", " ")
	}
	return res
}

// AggregateKey is how JavaAggregate names a key.
func AggregateKey(key []byte) string { return encBytes(key) }

// binClient is KsealKeys.java's produce and consume modes with
// confluent-kafka's librdkafka.
const binClient = `
import json, sys
from confluent_kafka import Consumer, Producer, KafkaException
def dec(s):
    return None if s == "-" else bytes.fromhex(s[1:])
def enc(b):
    return "-" if b is None else ":" + b.hex()
mode, bootstrap, topic, n, conf = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
conf["bootstrap.servers"] = bootstrap
if mode == "produce":
    conf["acks"] = "all"
    p = Producer(conf)
    lines = [l.rstrip("\n") for l in sys.stdin if l.strip()]
    res = [None] * len(lines)
    def cb(i):
        def f(err, msg):
            res[i] = (err, msg.partition(), msg.offset())
        return f
    for i, line in enumerate(lines):
        part, k, v, h = line.split("\t")
        kw = {"key": dec(k), "value": dec(v), "on_delivery": cb(i)}
        if h:
            kw["headers"] = [(bytes.fromhex(it.split("=", 1)[0]).decode(), dec(it.split("=", 1)[1])) for it in h.split(",")]
        if int(part) >= 0:
            kw["partition"] = int(part)
        p.produce(topic, **kw)
    left = p.flush(30)
    errs = [str(r[0]) for r in res if r is None or r[0]]
    if errs or left:
        sys.exit("produce failed: %s, %d undelivered" % (errs, left))
    for r in res:
        print("%d\t%d" % (r[1], r[2]))
else:
    conf.update({"group.id": sys.argv[6], "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c = Consumer(conf)
    c.subscribe([topic])
    got = 0
    while got < n:
        m = c.poll(30)
        if m is None:
            sys.exit("consume: %d of %d records after 30s" % (got, n))
        if m.error():
            raise KafkaException(m.error())
        hs = ",".join("%s=%s" % (name.encode().hex(), enc(v)) for name, v in (m.headers() or []))
        print("%d\t%d\t%s\t%s\t%s" % (m.partition(), m.offset(), enc(m.key()), enc(m.value()), hs))
        got += 1
    c.close()
`

func rdkafkaBin(t testing.TB, stdin string, args ...string) []byte {
	t.Helper()
	if args[4] == "null" {
		args[4] = "{}"
	}
	py, err := confluentPython()
	if err != nil {
		t.Fatalf("confluent-kafka: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"-c", binClient}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := runLogged(cmd)
	if err != nil {
		t.Fatalf("confluent-kafka %s: %v", args[0], err)
	}
	return out
}

// RdkafkaBinProduce produces recs with confluent-kafka's librdkafka
// (acks=all; conf is more librdkafka configuration, e.g. "partitioner")
// and sets each record's Partition and Offset to the delivery report's.
func RdkafkaBinProduce(t testing.TB, bootstrap, topic string, recs []BinRecord, conf map[string]string) {
	t.Helper()
	c, _ := json.Marshal(conf)
	out := rdkafkaBin(t, binProduceInput(recs), "produce", bootstrap, topic, "0", string(c))
	parseBinPositions(t, "librdkafka", out, recs)
}

// RdkafkaBinConsume reads n records of topic from the start as a member of
// group with confluent-kafka's librdkafka.
func RdkafkaBinConsume(t testing.TB, bootstrap, topic, group string, n int, conf map[string]string) []BinRecord {
	t.Helper()
	c, _ := json.Marshal(conf)
	return parseBinRecords(t, "librdkafka", topic, rdkafkaBin(t, "", "consume", bootstrap, topic, strconv.Itoa(n), string(c), group))
}

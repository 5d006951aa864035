package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// confluentPython installs confluent-kafka (a librdkafka newer than kcat's,
// bundled in its wheel) with scripts/confluent-kafka.sh, once per test
// binary, and returns the venv's python.
var confluentPython = sync.OnceValues(func() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "confluent-kafka.sh"))
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/confluent-kafka.sh: %w\n%s", err, errOut.String())
	}
	return strings.TrimSpace(string(out)), nil
})

// rdkafkaClient produces the records given on stdin (one JSON object per
// line: key, value) or consumes n records from the beginning, printing them
// the way kcat -J does. conf is librdkafka configuration (JSON object).
const rdkafkaClient = `
import json, sys
from confluent_kafka import Consumer, Producer, KafkaException
mode, bootstrap, topic, n, conf = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
conf["bootstrap.servers"] = bootstrap
if mode == "produce":
    conf["acks"] = "all"
    errs = []
    p = Producer(conf)
    for line in sys.stdin:
        r = json.loads(line)
        p.produce(topic, key=r["key"], value=r["value"], on_delivery=lambda err, msg: err and errs.append(str(err)))
    left = p.flush(30)
    if errs or left:
        sys.exit("produce failed: %s, %d undelivered" % (errs, left))
else:
    conf.update({"group.id": "rdkafka-" + topic, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c = Consumer(conf)
    c.subscribe([topic])
    got = 0
    while got < n:
        m = c.poll(30)
        if m is None:
            sys.exit("consume: %d of %d records after 30s" % (got, n))
        if m.error():
            raise KafkaException(m.error())
        print(json.dumps({"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
            "key": m.key().decode(), "payload": m.value().decode(), "headers": []}))
        got += 1
    c.close()
`

// rdkafka runs rdkafkaClient with confluent-kafka's librdkafka.
func rdkafka(t testing.TB, stdin string, args ...string) []byte {
	t.Helper()
	py, err := confluentPython()
	if err != nil {
		t.Fatalf("confluent-kafka: %v", err)
	}
	cmd := exec.Command(py, append([]string{"-c", rdkafkaClient}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		err = <-done
	}
	if err != nil {
		t.Fatalf("confluent-kafka %s: %v\n%s", args[0], err, tailString(errOut.String(), 20))
	}
	return out.Bytes()
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RdkafkaProduce produces recs (key and value only) to topic with
// confluent-kafka's bundled librdkafka (>= 2.6.1, unlike Debian's kcat) and
// acks=all. conf is extra librdkafka configuration, e.g. SASL settings.
func RdkafkaProduce(t testing.TB, bootstrap, topic string, recs []Record, conf map[string]string) {
	t.Helper()
	var in strings.Builder
	for _, r := range recs {
		b, _ := json.Marshal(map[string]string{"key": r.Key, "value": r.Value})
		in.Write(append(b, '\n'))
	}
	c, _ := json.Marshal(conf)
	rdkafka(t, in.String(), "produce", bootstrap, topic, "0", string(c))
}

// RdkafkaConsume reads n records of topic from the beginning in a consumer
// group of its own, with confluent-kafka's librdkafka.
func RdkafkaConsume(t testing.TB, bootstrap, topic string, n int, conf map[string]string) []Record {
	t.Helper()
	c, _ := json.Marshal(conf)
	return parseKcatJSON(t, rdkafka(t, "", "consume", bootstrap, topic, strconv.Itoa(n), string(c)))
}

package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Kcat runs kcat (librdkafka) with args and stdin, with a 60s limit, and
// returns its stdout; a non-zero exit fails the test.
func Kcat(t testing.TB, stdin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := runLogged(cmd)
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	return out
}

// KcatProduce produces recs with kcat -P, one message a line with the key
// before a tab. kcat sets the same headers on every message of a run, so
// each record's Headers must equal the first's; a Partition >= 0 (also
// taken from the first record) is passed as -p. extra are more kcat
// arguments (e.g. "-z", "gzip", "-X", "enable.idempotence=true").
func KcatProduce(t testing.TB, bootstrap, topic string, recs []Record, extra ...string) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	args := []string{"-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "acks=all"}
	if p := recs[0].Partition; p >= 0 {
		args = append(args, "-p", strconv.Itoa(int(p)))
	}
	for _, h := range recs[0].Headers {
		args = append(args, "-H", h.Key+"="+h.Value)
	}
	var in strings.Builder
	for _, r := range recs {
		if r.Partition != recs[0].Partition || fmt.Sprint(r.Headers) != fmt.Sprint(recs[0].Headers) {
			t.Fatalf("KcatProduce: records differ in partition or headers from the first: %v", r)
		}
		if strings.ContainsAny(r.Key+r.Value, "\t\n") {
			t.Fatalf("KcatProduce: key or value holds a tab or newline: %v", r)
		}
		in.WriteString(r.Key + "\t" + r.Value + "\n")
	}
	Kcat(t, in.String(), append(args, extra...)...)
}

// kcatMessage is one line of kcat -C -J.
type kcatMessage struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Headers   []string `json:"headers"` // name, value, name, value...
	Key       *string  `json:"key"`
	Payload   *string  `json:"payload"`
}

// KcatConsume reads topic from the beginning to its end (-e) with kcat -C
// and returns the records. extra are more kcat arguments (e.g. "-X",
// "isolation.level=read_committed").
func KcatConsume(t testing.TB, bootstrap, topic string, extra ...string) []Record {
	t.Helper()
	args := append([]string{"-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q"}, extra...)
	return parseKcatJSON(t, Kcat(t, "", args...))
}

// KcatGroupConsume consumes up to n records as a member of group (-G) and
// exits; librdkafka commits what it delivered when it closes.
func KcatGroupConsume(t testing.TB, bootstrap, group, topic string, n int, extra ...string) []Record {
	t.Helper()
	args := append([]string{"-b", bootstrap, "-G", group, "-c", strconv.Itoa(n), "-J", "-q",
		"-X", "auto.offset.reset=earliest"}, extra...)
	return parseKcatJSON(t, Kcat(t, "", append(args, topic)...))
}

func parseKcatJSON(t testing.TB, out []byte) []Record {
	t.Helper()
	var recs []Record
	for _, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m kcatMessage
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("kcat -J output line %q: %v", line, err)
		}
		r := Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		if m.Key != nil {
			r.Key = *m.Key
		}
		if m.Payload != nil {
			r.Value = *m.Payload
		}
		for i := 0; i+1 < len(m.Headers); i += 2 {
			r.Headers = append(r.Headers, Header{m.Headers[i], m.Headers[i+1]})
		}
		recs = append(recs, r)
	}
	return recs
}

// KcatBroker is one broker of kcat -L -J.
type KcatBroker struct {
	ID   int32  `json:"id"`
	Name string `json:"name"` // host:port
}

// KcatMetadata is kcat -L -J's answer.
type KcatMetadata struct {
	OriginatingBroker struct {
		ID   int32  `json:"id"`
		Name string `json:"name"`
	} `json:"originating_broker"`
	ControllerID int32        `json:"controllerid"`
	Brokers      []KcatBroker `json:"brokers"`
	Topics       []struct {
		Topic      string `json:"topic"`
		Error      string `json:"error"`
		Partitions []struct {
			Partition int32                `json:"partition"`
			Leader    int32                `json:"leader"`
			Replicas  []struct{ ID int32 } `json:"replicas"`
			ISRs      []struct{ ID int32 } `json:"isrs"`
		} `json:"partitions"`
	} `json:"topics"`
	Raw []byte `json:"-"`
}

// KcatList runs kcat -L -J (extra e.g. "-t", topic) and parses it.
func KcatList(t testing.TB, bootstrap string, extra ...string) KcatMetadata {
	t.Helper()
	out := Kcat(t, "", append([]string{"-L", "-J", "-b", bootstrap, "-m", "10"}, extra...)...)
	var md KcatMetadata
	if err := json.Unmarshal(out, &md); err != nil {
		t.Fatalf("kcat -L -J output %q: %v", out, err)
	}
	md.Raw = out
	return md
}

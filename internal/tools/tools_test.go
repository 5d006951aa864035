package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/recordcrypt"
)

// mix writes a known mix to "orders": 5 records under KEK-orders v1, 4 under
// v2, 3 plaintext written around the proxy, 1 tombstone; 2 plaintext
// records to the passthrough topic "plain"; and one record with a forged
// marker to "tampered".
func mix(t *testing.T, e *env) {
	t.Helper()
	p := e.proxy(t)
	d := e.direct(t)
	produce(t, p, rec("orders", 0, "a0", "v1-a0"), rec("orders", 0, "a1", "v1-a1"), rec("orders", 0, "a2", "v1-a2"),
		rec("orders", 1, "b0", "v1-b0"), rec("orders", 1, "b1", "v1-b1"))
	e.rotate(t)
	time.Sleep(20 * time.Millisecond) // v2 records are strictly newer
	produce(t, p, rec("orders", 0, "a3", "v2-a3"), rec("orders", 0, "a4", "v2-a4"),
		rec("orders", 2, "c0", "v2-c0"), rec("orders", 2, "c1", "v2-c1"))
	produce(t, d, rec("orders", 1, "b2", "plain-b2"), rec("orders", 1, "b3", "plain-b3"), rec("orders", 2, "c2", "plain-c2"))
	produce(t, p, rec("orders", 2, "c3", ""))
	produce(t, d, rec("plain", 0, "x", "y"), rec("plain", 1, "x", "y"))
	forged := rec("tampered", 0, "k", "not an envelope at all")
	forged.Headers = []kgo.RecordHeader{{Key: recordcrypt.HeaderKey, Value: []byte{1}}}
	produce(t, d, forged)
}

func TestInspect(t *testing.T) {
	e := startEnv(t)
	mix(t, e)
	ctx := context.Background()
	var got []RecordInfo
	sum, err := Inspect(ctx, InspectOptions{Conn: e.cluster.Direct, Topic: "orders", Describe: e.cluster.Describer()},
		func(r RecordInfo) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 13 || sum.States[Encrypted] != 9 || sum.States[Plaintext] != 3 || sum.States[Tombstone] != 1 || sum.States[Malformed] != 0 {
		t.Fatalf("summary %+v", sum)
	}
	want := []struct {
		p      int32
		off    int64
		state  State
		kekVer string
	}{
		{0, 0, Encrypted, "1"}, {0, 1, Encrypted, "1"}, {0, 2, Encrypted, "1"}, {0, 3, Encrypted, "2"}, {0, 4, Encrypted, "2"},
		{1, 0, Encrypted, "1"}, {1, 1, Encrypted, "1"}, {1, 2, Plaintext, ""}, {1, 3, Plaintext, ""},
		{2, 0, Encrypted, "2"}, {2, 1, Encrypted, "2"}, {2, 2, Plaintext, ""}, {2, 3, Tombstone, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	deks := map[string]string{} // KEK version -> DEK id
	for i, w := range want {
		g := got[i]
		if g.Partition != w.p || g.Offset != w.off || g.State != w.state {
			t.Errorf("record %d: p%d@%d %s, want p%d@%d %s", i, g.Partition, g.Offset, g.State, w.p, w.off, w.state)
			continue
		}
		if w.state != Encrypted {
			if g.Envelope != nil {
				t.Errorf("record %d: envelope on a %s record", i, g.State)
			}
			continue
		}
		env := g.Envelope
		if env.KEK != "KEK-orders" || env.KEKVersion != w.kekVer || env.Format != 1 || !env.KeyBound || len(env.DEK) != 16 {
			t.Errorf("record %d: envelope %+v, want KEK-orders v%s", i, env, w.kekVer)
		}
		if env.PlaintextSize != len("v1-a0") || g.ValueSize != env.PlaintextSize+env.EDEKSize+recordcrypt.Overhead(0, env.Counter) {
			t.Errorf("record %d: sizes value %d plaintext %d edek %d", i, g.ValueSize, env.PlaintextSize, env.EDEKSize)
		}
		if prev, ok := deks[w.kekVer]; ok && prev != env.DEK {
			t.Errorf("record %d: DEK %s, earlier v%s records had %s", i, env.DEK, w.kekVer, prev)
		}
		deks[w.kekVer] = env.DEK
	}
	if deks["1"] == deks["2"] {
		t.Errorf("v1 and v2 records share DEK %s", deks["1"])
	}

	t.Run("range and formats", func(t *testing.T) {
		var text, js bytes.Buffer
		tw := NewInspectText(&text)
		jw := NewInspectJSON(&js)
		sum, err := Inspect(ctx, InspectOptions{Conn: e.cluster.Direct, Topic: "orders", Partitions: []int32{0}, From: -3, To: -1, Count: 2,
			Describe: e.cluster.Describer()}, func(r RecordInfo) error {
			if err := tw.Write(r); err != nil {
				return err
			}
			return jw(r)
		})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Records != 2 {
			t.Fatalf("%d records, want 2 (offsets 2 and 3 of partition 0)", sum.Records)
		}
		var lines []RecordInfo
		sc := bufio.NewScanner(&js)
		for sc.Scan() {
			var r RecordInfo
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("JSON line %q: %v", sc.Text(), err)
			}
			lines = append(lines, r)
		}
		if len(lines) != 2 || lines[0].Offset != 2 || lines[1].Offset != 3 || lines[1].Envelope.KEKVersion != "2" {
			t.Fatalf("JSON lines %+v", lines)
		}
		out := text.String()
		for _, want := range []string{"PARTITION", "KEK-orders v1", "KEK-orders v2", lines[0].Envelope.DEK} {
			if !strings.Contains(out, want) {
				t.Errorf("text output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "v1-a") || strings.Contains(out, "v2-a") {
			t.Errorf("text output shows a key or value:\n%s", out)
		}
	})

	t.Run("without a describer", func(t *testing.T) {
		var got []RecordInfo
		if _, err := Inspect(ctx, InspectOptions{Conn: e.cluster.Direct, Topic: "orders", Partitions: []int32{0}, To: -1, Count: 1},
			func(r RecordInfo) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Envelope == nil || got[0].Envelope.KEK != "" || got[0].Envelope.DEK != deks["1"] {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		var got []RecordInfo
		if _, err := Inspect(ctx, InspectOptions{Conn: e.cluster.Direct, Topic: "tampered", To: -1, Describe: e.cluster.Describer()},
			func(r RecordInfo) error { got = append(got, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].State != Malformed || got[0].Problem == "" {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("unknown partition", func(t *testing.T) {
		_, err := Inspect(ctx, InspectOptions{Conn: e.cluster.Direct, Topic: "orders", Partitions: []int32{7}, To: -1},
			func(RecordInfo) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "no partition 7") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestAudit(t *testing.T) {
	e := startEnv(t)
	mix(t, e)
	ctx := context.Background()
	rep, err := Audit(ctx, AuditOptions{Conn: e.cluster.Direct, Cluster: "test", Policy: e.cluster.Policy, Describe: e.cluster.Describer()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Disagreements != 2 || rep.Incomplete != 0 {
		t.Fatalf("OK %v, disagreements %d, incomplete %d; want 2 disagreements", rep.OK(), rep.Disagreements, rep.Incomplete)
	}
	topics := map[string]TopicReport{}
	for _, tr := range rep.Topics {
		topics[tr.Topic] = tr
	}
	o := topics["orders"]
	if o.Records != 13 || o.Encrypted != 9 || o.Plaintext != 3 || o.Tombstones != 1 || o.Malformed != 0 {
		t.Fatalf("orders: %+v", o)
	}
	if o.EncryptedShare == nil || *o.EncryptedShare != 0.75 {
		t.Errorf("orders: encrypted share %v, want 0.75", o.EncryptedShare)
	}
	if !o.Policy.MustEncrypt || o.Policy.KEK != "KEK-orders" {
		t.Errorf("orders: policy %+v", o.Policy)
	}
	if len(o.KEKs) != 2 {
		t.Fatalf("orders: KEKs %+v", o.KEKs)
	}
	v1, v2 := o.KEKs[0], o.KEKs[1]
	if v1.KEK != "KEK-orders" || v1.Version != "1" || v1.Records != 5 || v1.DEKs != 1 || !v1.PolicyKEK ||
		v2.Version != "2" || v2.Records != 4 || v2.DEKs != 1 {
		t.Errorf("orders: KEK usage %+v", o.KEKs)
	}
	if !v1.Oldest.Timestamp.Before(v2.Oldest.Timestamp) || v1.Newest.Timestamp.After(v2.Oldest.Timestamp) {
		t.Errorf("orders: v1 %v..%v, v2 from %v", v1.Oldest.Timestamp, v1.Newest.Timestamp, v2.Oldest.Timestamp)
	}
	// The plaintext records were produced straight to the brokers after
	// envelopes in their partitions: injected too (requireEncrypted).
	if len(o.Violations) != 2 || o.Violations[0].Kind != "plaintext" || o.Violations[0].Count != 3 || len(o.Violations[0].Examples) != 3 ||
		o.Violations[1].Kind != "injected" || o.Violations[1].Count != 3 {
		t.Errorf("orders: violations %+v", o.Violations)
	}
	if p := topics["plain"]; p.Records != 2 || p.Plaintext != 2 || len(p.Violations) != 0 || p.Policy.Action != "passthrough" {
		t.Errorf("plain: %+v", p)
	}
	if tp := topics["tampered"]; tp.Malformed != 1 || len(tp.Violations) != 1 || tp.Violations[0].Kind != "malformed" {
		t.Errorf("tampered: %+v", tp)
	}

	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"KEK-orders v1", "KEK-orders v2", "DISAGREES: 3 plaintext records", "FAIL: policy and stored records disagree on 2 topic(s)"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back AuditReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Topics) != 3 || back.Disagreements != 2 {
		t.Fatalf("JSON report: %v\n%s", err, js.String())
	}

	t.Run("pattern", func(t *testing.T) {
		rep, err := Audit(ctx, AuditOptions{Conn: e.cluster.Direct, Topics: regexp.MustCompile("^(?:pla.*)$"), Policy: e.cluster.Policy})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || len(rep.Topics) != 1 || rep.Topics[0].Topic != "plain" {
			t.Fatalf("report %+v", rep)
		}
	})
}

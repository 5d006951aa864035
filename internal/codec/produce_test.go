package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func pTags(key uint32, val string) kmsg.Tags {
	var t kmsg.Tags
	t.Set(key, []byte(val))
	return t
}

func pStr(s string) *string { return &s }

func pTopicID(b byte) [16]byte {
	var id [16]byte
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// produceFixture builds a request with several topics, null, empty and
// non-empty records and, in flexible versions, unknown tags at every level.
func produceFixture(version int16) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.TransactionID = pStr("txn-1")
	req.Acks = -1
	req.TimeoutMillis = 30000
	for ti, name := range []string{"orders", "payments", "audit"} {
		t := kmsg.NewProduceRequestTopic()
		t.Topic = name
		t.TopicID = pTopicID(byte(ti * 16))
		for p := 0; p < 3; p++ {
			part := kmsg.NewProduceRequestTopicPartition()
			part.Partition = int32(p * 7)
			switch p {
			case 0:
				part.Records = bytes.Repeat([]byte{byte(ti), byte(p)}, 40)
			case 1:
				part.Records = nil
			case 2:
				part.Records = []byte{}
			}
			if version >= 9 && p == 0 {
				part.UnknownTags = pTags(9, "pt")
			}
			t.Partitions = append(t.Partitions, part)
		}
		if version >= 9 && ti == 1 {
			t.UnknownTags = pTags(3, "tt")
		}
		req.Topics = append(req.Topics, t)
	}
	if version >= 9 {
		req.UnknownTags = pTags(4, "top")
	}
	if version < 3 {
		req.TransactionID = nil
	}
	return req
}

func TestProduceRequestEveryVersion(t *testing.T) {
	for v := int16(0); v <= ProduceMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			fix := produceFixture(v)
			body := fix.AppendTo(nil)
			var req ProduceRequest
			if err := req.Parse(body, v); err != nil {
				t.Fatal(err)
			}
			if ProduceLegacyVersion(v) != (v < 3) {
				t.Fatalf("legacy = %v", ProduceLegacyVersion(v))
			}
			if req.Acks != -1 || req.TimeoutMillis != 30000 {
				t.Fatalf("acks %d timeout %d", req.Acks, req.TimeoutMillis)
			}
			if v >= 3 && string(req.TransactionalID) != "txn-1" || v < 3 && req.TransactionalID != nil {
				t.Fatalf("transactional id %q", req.TransactionalID)
			}
			if len(req.Topics) != len(fix.Topics) {
				t.Fatalf("%d topics", len(req.Topics))
			}
			for i, ft := range fix.Topics {
				got := &req.Topics[i]
				if v >= 13 && (got.ID != ft.TopicID || got.Name != nil) || v < 13 && string(got.Name) != ft.Topic {
					t.Fatalf("topic %d: name %q id %x", i, got.Name, got.ID)
				}
				if len(got.Partitions) != len(ft.Partitions) {
					t.Fatalf("topic %d: %d partitions", i, len(got.Partitions))
				}
				for j, fp := range ft.Partitions {
					gp := &got.Partitions[j]
					if gp.Partition != fp.Partition || !bytes.Equal(gp.Records, fp.Records) || (gp.Records == nil) != (fp.Records == nil) {
						t.Fatalf("topic %d partition %d: %d %x", i, j, gp.Partition, gp.Records)
					}
				}
			}
			if req.Changed() {
				t.Fatal("changed before any edit")
			}
			if out := req.AppendTo(nil); !bytes.Equal(out, body) {
				t.Fatal("unchanged AppendTo differs from the body")
			}

			// Replace records everywhere (including null <-> non-null),
			// reject one partition of one topic and every partition of
			// another: the result must equal kmsg's encoding of the same
			// edits.
			want := produceFixture(v)
			for i := range req.Topics {
				for j := range req.Topics[i].Partitions {
					nr := []byte(fmt.Sprintf("new-%d-%d", i, j))
					if j == 2 {
						nr = nil
					}
					req.Topics[i].Partitions[j].Replace(nr)
					want.Topics[i].Partitions[j].Records = nr
				}
			}
			req.Topics[0].Partitions[1].Reject(87, "no key")
			want.Topics[0].Partitions = append(want.Topics[0].Partitions[:1], want.Topics[0].Partitions[2:]...)
			for j := range req.Topics[2].Partitions {
				req.Topics[2].Partitions[j].Reject(87, "")
			}
			want.Topics = want.Topics[:2]
			if fwd, rej := req.Counts(); fwd != 5 || rej != 4 {
				t.Fatalf("counts %d, %d", fwd, rej)
			}
			got := req.AppendTo([]byte("prefix"))
			if !bytes.Equal(got[6:], want.AppendTo(nil)) || string(got[:6]) != "prefix" {
				t.Fatalf("rebuilt body\n got %x\nwant %x", got[6:], want.AppendTo(nil))
			}
		})
	}
}

func TestProduceRequestMalformed(t *testing.T) {
	v9 := produceFixture(9).AppendTo(nil)
	v3 := produceFixture(3).AppendTo(nil)
	tests := []struct {
		name    string
		body    []byte
		version int16
		wantErr error
	}{
		{"unknown version", v9, 14, ErrUnknownVersion},
		{"negative version", v9, -1, ErrUnknownVersion},
		{"empty", nil, 3, ErrMalformed},
		{"truncated v9", v9[:len(v9)-1], 9, ErrMalformed},
		{"truncated v3", v3[:len(v3)-1], 3, ErrMalformed},
		{"trailing byte", append(append([]byte{}, v3...), 0), 3, ErrMalformed},
		{"v3 read as v9", v3, 9, ErrMalformed},
		{"null topics", []byte{0xff, 0xff, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, 3, ErrMalformed},
		{"topic count past end", []byte{0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9}, 3, ErrMalformed},
		{"records past end", []byte{0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'a', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1}, 3, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req ProduceRequest
			err := req.Parse(tt.body, tt.version)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(req.Topics) != 0 {
				t.Fatalf("%d topics left after error", len(req.Topics))
			}
		})
	}
}

// TestProduceHugeTagCountRejectedFast is the regression test for kmsg's
// unbounded tag loops: a Produce v9 body announcing 2^32-1 tagged fields,
// at the top level or inside a partition, is rejected at once.
func TestProduceHugeTagCountRejectedFast(t *testing.T) {
	huge := kbin.AppendUvarint(nil, 0xffffffff)
	top := append([]byte{0, 0xff, 0xff, 0, 0, 0, 0, 1}, huge...) // null txn, acks, timeout, 0 topics
	part := []byte{0, 0xff, 0xff, 0, 0, 0, 0, 2, 2, 'a', 2, 0, 0, 0, 1, 1}
	part = append(part, huge...)
	for name, body := range map[string][]byte{"top level": top, "partition": part} {
		var req ProduceRequest
		const tries = 100
		start := time.Now()
		for i := 0; i < tries; i++ {
			if err := req.Parse(body, 9); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: err = %v", name, err)
			}
		}
		if avg := time.Since(start) / tries; avg > time.Millisecond {
			t.Fatalf("%s: rejecting took %v per try", name, avg)
		}
	}
}

// One request of many empty partitions would parse into about 20 times its
// size; past MaxProducePartitions it is refused before that.
func TestProduceTooManyPartitions(t *testing.T) {
	build := func(n int) []byte {
		b := []byte{0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'a'} // null txn, acks, timeout, 1 topic "a"
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		for i := range n {
			b = binary.BigEndian.AppendUint32(b, uint32(i))
			b = append(b, 0xff, 0xff, 0xff, 0xff) // null records
		}
		return b
	}
	var req ProduceRequest
	if err := req.Parse(build(MaxProducePartitions), 3); err != nil {
		t.Fatal(err)
	}
	if err := req.Parse(build(MaxProducePartitions+1), 3); !errors.Is(err, ErrTooManyPartitions) {
		t.Fatalf("err = %v, want ErrTooManyPartitions", err)
	}
}

func TestProduceParseReuseAllocatesNothing(t *testing.T) {
	body := produceFixture(9).AppendTo(nil)
	var req ProduceRequest
	if err := req.Parse(body, 9); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := req.Parse(body, 9); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per reused parse", allocs)
	}
	dst := make([]byte, 0, 4096)
	req.Topics[1].Partitions[0].Replace([]byte("x"))
	allocs = testing.AllocsPerRun(100, func() { dst = req.AppendTo(dst[:0]) })
	if allocs != 0 {
		t.Fatalf("%v allocations per AppendTo into a large enough buffer", allocs)
	}
}

// kmsgErrorPartition is what a broker sends for a failed partition.
func kmsgErrorPartition(partition int32, code int16, msg *string) kmsg.ProduceResponseTopicPartition {
	p := kmsg.NewProduceResponseTopicPartition()
	p.Partition = partition
	p.ErrorCode = code
	p.BaseOffset = -1
	p.ErrorMessage = msg
	return p
}

func TestBuildProduceErrorResponseEveryVersion(t *testing.T) {
	for v := int16(0); v <= ProduceMaxVersion; v++ {
		fix := produceFixture(v)
		var req ProduceRequest
		if err := req.Parse(fix.AppendTo(nil), v); err != nil {
			t.Fatal(err)
		}
		got := BuildProduceErrorResponse(nil, &req, func(pt *ProduceTopic, p *ProducePartition) int16 {
			return int16(len(pt.Name)) + int16(p.Partition)
		})
		want := kmsg.NewPtrProduceResponse()
		want.Version = v
		for _, ft := range fix.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = ft.Topic, ft.TopicID
			for _, fp := range ft.Partitions {
				code := int16(len(ft.Topic)) + int16(fp.Partition)
				if v >= 13 {
					code = int16(fp.Partition)
				}
				rt.Partitions = append(rt.Partitions, kmsgErrorPartition(fp.Partition, code, nil))
			}
			want.Topics = append(want.Topics, rt)
		}
		if w := want.AppendTo(nil); !bytes.Equal(got, w) {
			t.Fatalf("v%d:\n got %x\nwant %x", v, got, w)
		}
		// The locally built response is a valid response to rewrite.
		if _, changed, err := RewriteProduceResponse(nil, got, v, nil); err != nil || changed {
			t.Fatalf("v%d: rewriting the built response: changed %v, %v", v, changed, err)
		}
	}
}

// brokerResponse builds the broker's answer to a fixture request: every
// partition of the first two topics succeeds.
func brokerResponse(v int16, nodes []kmsg.ProduceResponseBroker) *kmsg.ProduceResponse {
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = v
	resp.ThrottleMillis = 12
	fix := produceFixture(v)
	for ti, ft := range fix.Topics[:2] {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = ft.Topic, ft.TopicID
		for pi, fp := range ft.Partitions {
			if ti == 0 && pi == 1 {
				continue // rejected locally
			}
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition = fp.Partition
			p.BaseOffset = int64(100 * pi)
			if v >= 8 && pi == 2 {
				p.ErrorCode = 87
				p.ErrorRecords = []kmsg.ProduceResponseTopicPartitionErrorRecord{{RelativeOffset: 3, ErrorMessage: pStr("bad")}}
			}
			if v >= 10 && pi == 0 {
				p.CurrentLeader.LeaderID = 2
				p.CurrentLeader.LeaderEpoch = 9
			}
			if v >= 9 && pi == 2 {
				p.UnknownTags = pTags(7, "x")
			}
			rt.Partitions = append(rt.Partitions, p)
		}
		if v >= 9 {
			rt.UnknownTags = pTags(5, "tt")
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if v >= 10 {
		resp.Brokers = nodes
	}
	if v >= 9 {
		resp.UnknownTags = pTags(6, "top")
	}
	return resp
}

var produceMapper = MapperFunc(func(id int32, host string, port int32) (string, int32, bool) {
	if id == 3 {
		return "", 0, false
	}
	return fmt.Sprintf("proxy-%d", id), 9000 + id, true
})

func TestRewriteProduceResponseEveryVersion(t *testing.T) {
	nodes := []kmsg.ProduceResponseBroker{
		{NodeID: 2, Host: "broker-2.internal", Port: 9092, Rack: pStr("r1")},
		{NodeID: 3, Host: "broker-3.internal", Port: 9092},
	}
	mapped := []kmsg.ProduceResponseBroker{{NodeID: 2, Host: "proxy-2", Port: 9002, Rack: pStr("r1")}}
	for v := int16(0); v <= ProduceMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			plain := brokerResponse(v, nil).AppendTo(nil)

			// Nothing to do: unchanged, no allocation.
			allocs := testing.AllocsPerRun(50, func() {
				out, changed, err := RewriteProduceResponse(nil, plain, v, produceMapper)
				if err != nil || changed || out != nil {
					t.Fatalf("plain response: changed %v, %v", changed, err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations on the unchanged path", allocs)
			}

			// Node endpoints only.
			withNodes := brokerResponse(v, nodes).AppendTo(nil)
			out, changed, err := RewriteProduceResponse([]byte("pre"), withNodes, v, produceMapper)
			if err != nil {
				t.Fatal(err)
			}
			if v < 10 {
				if changed || string(out) != "pre" {
					t.Fatal("changed a response without node endpoints")
				}
			} else if want := brokerResponse(v, mapped).AppendTo([]byte("pre")); !changed || !bytes.Equal(out, want) {
				t.Fatalf("endpoints: changed %v\n got %x\nwant %x", changed, out, want)
			}
		})
	}
}

func TestRewriteProduceResponseErrors(t *testing.T) {
	good := brokerResponse(10, []kmsg.ProduceResponseBroker{{NodeID: 2, Host: "h", Port: 1}}).AppendTo(nil)
	tests := []struct {
		name    string
		body    []byte
		version int16
		wantErr error
	}{
		{"unknown version", good, 14, ErrUnknownVersion},
		{"truncated", good[:len(good)-1], 10, ErrMalformed},
		{"trailing", append(append([]byte{}, good...), 0), 10, ErrMalformed},
		{"huge tag count", append([]byte{1, 0, 0, 0, 0}, kbin.AppendUvarint(nil, 0xffffffff)...), 10, ErrMalformed},
		// topics: none; throttle; one tag 0 of 2 bytes holding an endpoint
		// array that claims one entry and ends.
		{"bad endpoints", []byte{1, 0, 0, 0, 0, 1, 0, 2, 2, 0}, 10, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed, err := RewriteProduceResponse([]byte("x"), tt.body, tt.version, produceMapper)
			if !errors.Is(err, tt.wantErr) || changed || string(out) != "x" {
				t.Fatalf("err = %v (want %v), changed %v, out %q", err, tt.wantErr, changed, out)
			}
		})
	}
}

func FuzzProduceRequest(f *testing.F) {
	for _, v := range []int16{2, 3, 8, 9, 13} {
		f.Add(produceFixture(v).AppendTo(nil), v)
	}
	f.Fuzz(func(t *testing.T, body []byte, version int16) {
		var req ProduceRequest
		if err := req.Parse(body, version); err != nil {
			return
		}
		if out := req.AppendTo(nil); !bytes.Equal(out, body) {
			t.Fatal("unchanged AppendTo differs")
		}
		// Replacing records with themselves rebuilds the same bytes (null
		// records are left alone: any negative length reads as null, and a
		// rewrite writes the canonical -1).
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				if p := &req.Topics[i].Partitions[j]; p.Records != nil {
					p.Replace(p.Records)
				}
			}
		}
		if out := req.AppendTo(nil); !bytes.Equal(out, body) {
			// A rebuild writes every array and records length it touches
			// minimally; a client's overlong varint (valid: Kafka reads
			// them) then comes out shorter. The rebuilt request must still
			// say exactly the same.
			var again ProduceRequest
			if err := again.Parse(out, version); err != nil {
				t.Fatalf("identity rebuild does not parse (%v):\n got %x\nwant %x", err, out, body)
			}
			if !sameProduce(&req, &again) {
				t.Fatalf("identity rebuild differs:\n got %x\nwant %x", out, body)
			}
		}
		// Rejecting every other partition leaves a valid request with the
		// others, and refusing the request gives a valid response.
		n := 0
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				if n++; n%2 == 0 {
					req.Topics[i].Partitions[j].Reject(87, "x")
				}
			}
		}
		fwd, rej := req.Counts()
		var again ProduceRequest
		if err := again.Parse(req.AppendTo(nil), version); err != nil {
			t.Fatalf("rebuilt request does not parse: %v", err)
		}
		if got, _ := again.Counts(); got != fwd {
			t.Fatalf("rebuilt request has %d partitions, want %d", got, fwd)
		}
		resp := BuildProduceErrorResponse(nil, &req, func(_ *ProduceTopic, p *ProducePartition) int16 {
			code, _, _ := p.Rejected()
			return code
		})
		if _, _, err := RewriteProduceResponse(nil, resp, version, nil); err != nil {
			t.Fatalf("refusal of a request with %d rejected partitions does not walk: %v", rej, err)
		}
	})
}

func FuzzProduceResponse(f *testing.F) {
	nodes := []kmsg.ProduceResponseBroker{{NodeID: 2, Host: "b2", Port: 9092}, {NodeID: 3, Host: "b3", Port: 9092}}
	for _, v := range []int16{0, 5, 8, 9, 10, 13} {
		f.Add(brokerResponse(v, nodes).AppendTo(nil), v)
	}
	f.Fuzz(func(t *testing.T, body []byte, version int16) {
		out, changed, err := RewriteProduceResponse(nil, body, version, produceMapper)
		if err != nil {
			return
		}
		if !changed {
			if out != nil {
				t.Fatal("unchanged with output")
			}
			return
		}
		// Mapping is idempotent: the rewritten response only holds proxy
		// addresses, which map to themselves.
		idem := MapperFunc(func(id int32, host string, port int32) (string, int32, bool) { return host, port, true })
		again, changed, err := RewriteProduceResponse(nil, out, version, idem)
		if err != nil || changed || again != nil {
			t.Fatalf("rewritten response: changed %v, %v", changed, err)
		}
	})
}

func benchRequest(topics, parts, recordSize int) []byte {
	req := kmsg.NewPtrProduceRequest()
	req.Version = 11
	req.Acks = -1
	req.TimeoutMillis = 30000
	for i := 0; i < topics; i++ {
		t := kmsg.NewProduceRequestTopic()
		t.Topic = fmt.Sprintf("topic-%d", i)
		for j := 0; j < parts; j++ {
			p := kmsg.NewProduceRequestTopicPartition()
			p.Partition = int32(j)
			p.Records = make([]byte, recordSize)
			t.Partitions = append(t.Partitions, p)
		}
		req.Topics = append(req.Topics, t)
	}
	return req.AppendTo(nil)
}

func BenchmarkProduceRequestParse(b *testing.B) {
	body := benchRequest(10, 10, 1024)
	var req ProduceRequest
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := req.Parse(body, 11); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProduceRequestRebuild(b *testing.B) {
	body := benchRequest(10, 10, 1024)
	repl := make([]byte, 1100)
	var req ProduceRequest
	var dst []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := req.Parse(body, 11); err != nil {
			b.Fatal(err)
		}
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].Replace(repl)
			}
		}
		dst = req.AppendTo(dst[:0])
	}
}

func BenchmarkProduceResponseUnchanged(b *testing.B) {
	body := brokerResponse(11, nil).AppendTo(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := RewriteProduceResponse(nil, body, 11, produceMapper); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

// sameProduce reports whether two parsed Produce requests name the same
// topics and partitions with the same records.
func sameProduce(a, b *ProduceRequest) bool {
	if a.Acks != b.Acks || len(a.Topics) != len(b.Topics) {
		return false
	}
	for i := range a.Topics {
		ta, tb := &a.Topics[i], &b.Topics[i]
		if !bytes.Equal(ta.Name, tb.Name) || ta.ID != tb.ID || len(ta.Partitions) != len(tb.Partitions) {
			return false
		}
		for j := range ta.Partitions {
			pa, pb := &ta.Partitions[j], &tb.Partitions[j]
			if pa.Partition != pb.Partition || !bytes.Equal(pa.Records, pb.Records) || (pa.Records == nil) != (pb.Records == nil) {
				return false
			}
		}
	}
	return true
}

package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchFixture is a Fetch response of version v with three topics of three
// partitions each, using every field the version has: aborted transactions,
// preferred read replica, null and non-null records, the partition tags
// (diverging epoch, current leader, snapshot id) and unknown tags at every
// level. recordSize scales the records.
func fetchFixture(v int16, recordSize int) *kmsg.FetchResponse {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = v
	resp.ThrottleMillis = 5
	resp.SessionID = 99
	for t := range 3 {
		topic := kmsg.NewFetchResponseTopic()
		topic.Topic = fmt.Sprintf("topic-%d", t)
		topic.TopicID = [16]byte{0xa0 + byte(t), 1, 2, 3}
		if v >= 12 && t == 1 {
			topic.UnknownTags = rwTags(3, "topic-tag")
		}
		for p := range 3 {
			part := kmsg.NewFetchResponseTopicPartition()
			part.Partition = int32(2*p + 1)
			part.HighWatermark = int64(1000*t + p)
			if v >= 4 {
				part.LastStableOffset = part.HighWatermark - 1
				if p == 0 {
					at := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
					at.ProducerID, at.FirstOffset = 7, 3
					if v >= 12 {
						at.UnknownTags = rwTags(1, "aborted-tag")
					}
					part.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{at}
				}
			}
			if v >= 5 {
				part.LogStartOffset = 10
			}
			if v >= 11 && t == 1 && p == 1 {
				part.PreferredReadReplica = 2
			}
			// Records are opaque to the walker; a broker may cut the last
			// batch anywhere, so arbitrary bytes are a fair stand-in.
			part.RecordBatches = bytes.Repeat([]byte{byte(16*t + p)}, recordSize+10*t+p)
			if t == 2 && p == 2 {
				part.ErrorCode = 1 // OFFSET_OUT_OF_RANGE
				part.RecordBatches = nil
			}
			if v >= 12 {
				switch {
				case t == 0 && p == 0:
					part.DivergingEpoch.Epoch, part.DivergingEpoch.EndOffset = 4, 40
				case t == 1 && p == 1:
					part.CurrentLeader.LeaderID, part.CurrentLeader.LeaderEpoch = 2, 6
				case t == 2 && p == 0:
					part.SnapshotID.EndOffset, part.SnapshotID.Epoch = 50, 5
				case t == 0 && p == 2:
					part.UnknownTags = rwTags(9, "partition-tag")
				}
			}
			topic.Partitions = append(topic.Partitions, part)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	if v >= 12 {
		resp.UnknownTags = rwTags(7, "top-tag")
	}
	return resp
}

func fetchBrokers(ids ...int32) []kmsg.FetchResponseBroker {
	var out []kmsg.FetchResponseBroker
	for _, id := range ids {
		b := kmsg.NewFetchResponseBroker()
		b.NodeID, b.Host, b.Port = id, fmt.Sprintf("b%d.internal", id), 9090+id
		if id != 2 {
			b.Rack = rwStr(fmt.Sprintf("rack-%d", id))
		}
		b.UnknownTags = rwTags(5, "broker-tag")
		out = append(out, b)
	}
	return out
}

// fetchView is what a callback saw of one partition, copied out.
type fetchView struct {
	Topic                               string
	TopicID                             [16]byte
	Partition                           int32
	ErrorCode                           int16
	HighWatermark, LastStable, LogStart int64
	PreferredReadReplica                int32
	Records                             []byte
	NullRecords                         bool
}

func viewOf(p *FetchPartition) fetchView {
	return fetchView{
		Topic: string([]byte(p.Topic)), TopicID: p.TopicID, Partition: p.Partition, ErrorCode: p.ErrorCode,
		HighWatermark: p.HighWatermark, LastStable: p.LastStableOffset, LogStart: p.LogStartOffset,
		PreferredReadReplica: p.PreferredReadReplica, Records: bytes.Clone(p.Records), NullRecords: p.Records == nil,
	}
}

// expectedViews lists what the walker must report for resp, applying the
// defaults of fields the version does not carry.
func expectedViews(resp *kmsg.FetchResponse) []fetchView {
	v := resp.Version
	var out []fetchView
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			fv := fetchView{
				Partition: p.Partition, ErrorCode: p.ErrorCode, HighWatermark: p.HighWatermark,
				LastStable: -1, LogStart: -1, PreferredReadReplica: -1,
				Records: bytes.Clone(p.RecordBatches), NullRecords: p.RecordBatches == nil,
			}
			if v >= 13 {
				fv.TopicID = t.TopicID
			} else {
				fv.Topic = t.Topic
			}
			if v >= 4 {
				fv.LastStable = p.LastStableOffset
			}
			if v >= 5 {
				fv.LogStart = p.LogStartOffset
			}
			if v >= 11 {
				fv.PreferredReadReplica = p.PreferredReadReplica
			}
			out = append(out, fv)
		}
	}
	return out
}

func TestFetchWalkEveryVersion(t *testing.T) {
	if got := (&kmsg.FetchResponse{}).MaxVersion(); got != FetchMaxVersion {
		t.Fatalf("kmsg knows Fetch v%d, walker v%d: check the new layout", got, FetchMaxVersion)
	}
	var w FetchWalker
	for v := int16(0); v <= FetchMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			resp := fetchFixture(v, 20)
			body := resp.AppendTo(nil)

			// Unchanged: every partition seen, original forwarded.
			var seen []fetchView
			out, changed, err := w.Walk(rwDst(), body, v, func(p *FetchPartition) error {
				seen = append(seen, viewOf(p))
				return nil
			})
			rwCheckUnchanged(t, out, changed, err)
			if want := expectedViews(resp); !reflect.DeepEqual(seen, want) {
				t.Fatalf("walker saw\n%+v\nwant\n%+v", seen, want)
			}
			out, changed, err = w.Walk(rwDst(), body, v, nil)
			rwCheckUnchanged(t, out, changed, err)

			// Setting an error code to the value it has is no change.
			out, changed, err = w.Walk(rwDst(), body, v, func(p *FetchPartition) error {
				p.SetErrorCode(p.ErrorCode)
				return nil
			})
			rwCheckUnchanged(t, out, changed, err)

			// Replace the middle partition of every topic, fail one
			// partition the way the decrypt stage does for a missing key,
			// and null another's records.
			out, changed, err = w.Walk(rwDst(), body, v, func(p *FetchPartition) error {
				switch {
				case p.Partition == 3: // middle partition of each topic
					p.SetRecords(bytes.Repeat([]byte("R"), 37+int(p.HighWatermark/1000)))
				case p.Partition == 1 && p.HighWatermark == 2000:
					p.SetErrorCode(91)
					p.SetRecords([]byte{})
				case p.Partition == 5 && p.HighWatermark == 2:
					p.SetRecords(nil)
				}
				return nil
			})
			if err != nil || !changed {
				t.Fatalf("replace: changed=%v err=%v", changed, err)
			}
			want := fetchFixture(v, 20)
			for ti := range want.Topics {
				want.Topics[ti].Partitions[1].RecordBatches = bytes.Repeat([]byte("R"), 37+ti)
			}
			want.Topics[2].Partitions[0].ErrorCode = 91
			want.Topics[2].Partitions[0].RecordBatches = []byte{}
			want.Topics[0].Partitions[2].RecordBatches = nil
			rwCheckAppended(t, out, want.AppendTo(nil))

			// The walker gives the same result on its own output with no
			// callback: nothing left to change.
			out2, changed, err := w.Walk(nil, out[len(rwHdr):], v, nil)
			if err != nil || changed || out2 != nil {
				t.Fatalf("walk of rewritten body: changed=%v err=%v", changed, err)
			}
		})
	}
}

func TestFetchNodeEndpoints(t *testing.T) {
	// kmsg encodes tag 0 in every flexible version; Kafka sends it from v16.
	for v := fetchFirstFlexible; v <= FetchMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			resp := fetchFixture(v, 8)
			resp.Brokers = fetchBrokers(1, 2, 3)
			body := resp.AppendTo(nil)

			m := &rwMapper{drop: map[int32]bool{2: true}}
			w := FetchWalker{Mapper: m}
			out, changed, err := w.Walk(rwDst(), body, v, nil)
			if err != nil || !changed {
				t.Fatalf("changed=%v err=%v", changed, err)
			}
			wantCalls := []rwCall{{1, "b1.internal", 9091}, {2, "b2.internal", 9092}, {3, "b3.internal", 9093}}
			if !reflect.DeepEqual(m.calls, wantCalls) {
				t.Fatalf("mapper saw %v, want %v", m.calls, wantCalls)
			}
			want := fetchFixture(v, 8)
			want.Brokers = fetchBrokers(1, 3)
			for i := range want.Brokers {
				want.Brokers[i].Host, want.Brokers[i].Port = rwProxyHost(want.Brokers[i].NodeID), rwProxyPort(want.Brokers[i].NodeID)
			}
			rwCheckAppended(t, out, want.AppendTo(nil))

			// Endpoints and a record replacement in one pass.
			out, changed, err = w.Walk(rwDst(), body, v, func(p *FetchPartition) error {
				if p.Partition == 3 {
					p.SetRecords([]byte("new"))
				}
				return nil
			})
			if err != nil || !changed {
				t.Fatalf("changed=%v err=%v", changed, err)
			}
			for ti := range want.Topics {
				want.Topics[ti].Partitions[1].RecordBatches = []byte("new")
			}
			rwCheckAppended(t, out, want.AppendTo(nil))

			// Endpoints that already are the proxy's are no change.
			w.Mapper = rwIdentity
			out, changed, err = w.Walk(rwDst(), body, v, nil)
			rwCheckUnchanged(t, out, changed, err)

			// Without a mapper every endpoint is dropped.
			w.Mapper = nil
			out, _, err = w.Walk(rwDst(), body, v, nil)
			if err != nil {
				t.Fatal(err)
			}
			want = fetchFixture(v, 8)
			want.Brokers = []kmsg.FetchResponseBroker{}
			// kmsg omits an empty tag 0; the walker keeps the tag with an
			// empty array, which clients read the same way.
			var keptTag []byte
			keptTag = kbin.AppendUvarint(keptTag, 0)
			keptTag = kbin.AppendUvarint(keptTag, 1)
			keptTag = append(keptTag, 1) // compact array of 0
			enc := want.AppendTo(nil)
			tail := kbin.AppendUvarint(nil, 1) // one unknown tag: 7
			tail = kbin.AppendUvarint(tail, 7)
			tail = kbin.AppendUvarint(tail, uint32(len("top-tag")))
			tail = append(tail, "top-tag"...)
			if !bytes.HasSuffix(enc, tail) {
				t.Fatalf("fixture tail %x", enc[len(enc)-len(tail):])
			}
			wantBody := append(bytes.Clone(enc[:len(enc)-len(tail)]), 2)
			wantBody = append(wantBody, keptTag...)
			wantBody = append(wantBody, tail[1:]...)
			rwCheckAppended(t, out, wantBody)
		})
	}
}

func TestFetchWalkErrors(t *testing.T) {
	var w FetchWalker
	if _, _, err := w.Walk(nil, nil, FetchMaxVersion+1, nil); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("err=%v, want ErrUnknownVersion", err)
	}
	stop := errors.New("decrypt failed")
	for v := int16(0); v <= FetchMaxVersion; v++ {
		resp := fetchFixture(v, 3)
		if v >= 12 {
			resp.Brokers = fetchBrokers(1)
		}
		body := resp.AppendTo(nil)

		// A callback error stops the walk and comes back wrapped, with
		// the caller's buffer as it was.
		calls := 0
		out, changed, err := w.Walk(rwDst(), body, v, func(p *FetchPartition) error {
			calls++
			p.SetRecords(nil)
			if calls == 4 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || changed || calls != 4 || string(out) != string(rwHdr) {
			t.Fatalf("v%d: callback error: err=%v changed=%v calls=%d out=%q", v, err, changed, calls, out)
		}

		// Every strict prefix is malformed, and so is trailing garbage.
		for i := 0; i < len(body); i++ {
			out, _, err := w.Walk(rwDst(), body[:i], v, func(p *FetchPartition) error {
				p.SetRecords([]byte("x"))
				return nil
			})
			if !errors.Is(err, ErrMalformed) || string(out) != string(rwHdr) {
				t.Fatalf("v%d cut at %d/%d: err=%v out=%q", v, i, len(body), err, out)
			}
		}
		if _, _, err := w.Walk(nil, append(bytes.Clone(body), 0), v, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("v%d trailing byte: err=%v", v, err)
		}
	}
}

// fetchBodyWithTags is a v12 Fetch response with one empty-records partition
// whose tagged fields are partTags, followed by top-level tags topTags.
func fetchBodyWithTags(partTags, topTags []byte) []byte {
	body := kbin.AppendInt32(nil, 0) // throttle
	body = kbin.AppendInt16(body, 0)
	body = kbin.AppendInt32(body, 0)
	body = kbin.AppendCompactArrayLen(body, 1)
	body = kbin.AppendCompactString(body, "t")
	body = kbin.AppendCompactArrayLen(body, 1)
	body = kbin.AppendInt32(body, 0)           // partition
	body = kbin.AppendInt16(body, 0)           // error
	body = kbin.AppendInt64(body, 0)           // high watermark
	body = kbin.AppendInt64(body, 0)           // last stable
	body = kbin.AppendInt64(body, 0)           // log start
	body = kbin.AppendCompactArrayLen(body, 0) // aborted
	body = kbin.AppendInt32(body, -1)          // preferred replica
	body = kbin.AppendCompactBytes(body, nil)
	body = append(body, partTags...)
	body = append(body, 0) // topic tags
	return append(body, topTags...)
}

func TestFetchEndpointTagMustBeExact(t *testing.T) {
	var w FetchWalker
	// Tag 0 holding an empty endpoint array (0x01) parses; with a byte
	// after the array it does not: the tag's size must match its content.
	ok := fetchBodyWithTags([]byte{0}, []byte{1, 0, 1, 1})
	if _, _, err := w.Walk(nil, ok, 12, nil); err != nil {
		t.Fatalf("exact tag refused: %v", err)
	}
	bad := fetchBodyWithTags([]byte{0}, []byte{1, 0, 2, 1, 0})
	if _, _, err := w.Walk(nil, bad, 12, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("tag with trailing byte: err=%v", err)
	}
}

func TestFetchHugeTagCountRejectedFast(t *testing.T) {
	var w FetchWalker
	pad := make([]byte, 4096)
	for name, body := range map[string][]byte{
		"partition": fetchBodyWithTags(append(bytes.Clone(rwHugeTagCount), pad...), []byte{0}),
		"top-level": fetchBodyWithTags([]byte{0}, append(bytes.Clone(rwHugeTagCount), pad...)),
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := w.Walk(nil, fetchBodyWithTags([]byte{0}, []byte{0}), 12, nil); err != nil {
				t.Fatalf("well-formed base body refused: %v", err)
			}
			rwFastReject(t, body, func(b []byte) error {
				_, _, err := w.Walk(nil, b, 12, nil)
				return err
			})
		})
	}
}

func TestFetchWalkAllocatesNothing(t *testing.T) {
	resp := fetchFixture(16, 1000)
	body := resp.AppendTo(nil)
	var w FetchWalker
	n := 0
	count := func(p *FetchPartition) error { n += len(p.Records); return nil }
	if allocs := testing.AllocsPerRun(100, func() {
		if _, changed, err := w.Walk(nil, body, 16, count); changed || err != nil {
			t.Fatal(changed, err)
		}
	}); allocs != 0 {
		t.Fatalf("unchanged walk: %v allocs, want 0", allocs)
	}

	repl := bytes.Repeat([]byte("d"), 900)
	replace := func(p *FetchPartition) error { p.SetRecords(repl); return nil }
	dst := make([]byte, 0, 2*len(body))
	if allocs := testing.AllocsPerRun(100, func() {
		out, changed, err := w.Walk(dst[:0], body, 16, replace)
		if !changed || err != nil || &out[0] != &dst[:1][0] {
			t.Fatal("replace did not reuse dst", changed, err)
		}
	}); allocs != 0 {
		t.Fatalf("replace walk with a reused dst: %v allocs, want 0", allocs)
	}
}

func fetchSeeds() rwSeeds {
	seeds := rwSeeds{}
	for v := int16(0); v <= FetchMaxVersion; v++ {
		resp := fetchFixture(v, 4)
		if v >= 12 {
			resp.Brokers = fetchBrokers(1, 3)
		}
		seeds[fmt.Sprintf("v%02d", v)] = struct {
			version int16
			body    []byte
		}{v, resp.AppendTo(nil)}
	}
	return seeds
}

func TestWriteFetchSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzFetchResponse", fetchSeeds())
}

func FuzzFetchResponse(f *testing.F) {
	for _, s := range fetchSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	w := FetchWalker{Mapper: rwFuzzMapper}
	again := FetchWalker{Mapper: rwFuzzMapper}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (FetchMaxVersion + 1)
		calls := 0
		out, changed, err := w.Walk(nil, body, v, func(p *FetchPartition) error {
			calls++
			switch p.Partition % 3 {
			case 0:
				p.SetRecords(p.Records[:len(p.Records)/2])
			case 1:
				p.SetErrorCode(91)
			}
			return nil
		})
		if calls > len(body)/8 { // a partition takes more than 8 bytes
			t.Fatalf("%d callbacks for %d bytes", calls, len(body))
		}
		if err != nil {
			return
		}
		if !changed {
			if out != nil {
				t.Fatal("unchanged walk returned a body")
			}
			return
		}
		out2, changed, err := again.Walk(nil, out, v, nil)
		if err != nil || changed {
			t.Fatalf("rewritten body: changed=%v err=%v (%x)", changed, err, out2)
		}
	})
}

// benchFetchBody is a v16 Fetch response with 2 topics x 3 partitions of
// 1 MiB records each.
func benchFetchBody() []byte {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 16
	for t := range 2 {
		topic := kmsg.NewFetchResponseTopic()
		topic.TopicID = [16]byte{byte(t + 1)}
		for p := range 3 {
			part := kmsg.NewFetchResponseTopicPartition()
			part.Partition = int32(p)
			part.HighWatermark, part.LastStableOffset, part.LogStartOffset = 1e6, 1e6, 0
			part.RecordBatches = bytes.Repeat([]byte{byte(p)}, 1<<20)
			topic.Partitions = append(topic.Partitions, part)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	return resp.AppendTo(nil)
}

func BenchmarkFetchWalkUnchanged(b *testing.B) {
	body := benchFetchBody()
	var w FetchWalker
	n := 0
	fn := func(p *FetchPartition) error { n += len(p.Records); return nil }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := w.Walk(nil, body, 16, fn); changed || err != nil {
			b.Fatal(changed, err)
		}
	}
}

// BenchmarkFetchWalkReplace replaces every partition's records with a
// same-sized buffer, as the decrypt stage does: the cost is the copies.
func BenchmarkFetchWalkReplace(b *testing.B) {
	body := benchFetchBody()
	repl := bytes.Repeat([]byte("p"), 1<<20)
	var w FetchWalker
	fn := func(p *FetchPartition) error { p.SetRecords(repl); return nil }
	dst := make([]byte, 0, len(body)+64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		out, changed, err := w.Walk(dst[:0], body, 16, fn)
		if !changed || err != nil {
			b.Fatal(changed, err)
		}
		dst = out
	}
}

// BenchmarkFetchWalkReplaceOne replaces one partition of six: the other five
// are copied in bulk.
func BenchmarkFetchWalkReplaceOne(b *testing.B) {
	body := benchFetchBody()
	repl := bytes.Repeat([]byte("p"), 1<<20)
	var w FetchWalker
	fn := func(p *FetchPartition) error {
		if p.TopicID[0] == 2 && p.Partition == 1 {
			p.SetRecords(repl)
		}
		return nil
	}
	dst := make([]byte, 0, len(body)+64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		out, changed, err := w.Walk(dst[:0], body, 16, fn)
		if !changed || err != nil {
			b.Fatal(changed, err)
		}
		dst = out
	}
}

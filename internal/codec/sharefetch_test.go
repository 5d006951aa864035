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

// shareFetchFixture is a ShareFetch response of version v with two topics of
// three partitions, using every field: error messages, current leader,
// null and non-null records, acquired records and unknown tags everywhere.
func shareFetchFixture(v int16, endpoints ...int32) *kmsg.ShareFetchResponse {
	resp := kmsg.NewPtrShareFetchResponse()
	resp.Version = v
	resp.ThrottleMillis = 4
	resp.ErrorMessage = rwStr("top message")
	resp.AcquisitionLockTimeoutMillis = 30000
	for t := range 2 {
		topic := kmsg.NewShareFetchResponseTopic()
		topic.TopicID = [16]byte{0xb0 + byte(t), 9}
		topic.UnknownTags = rwTags(2, "topic-tag")
		for p := range 3 {
			part := kmsg.NewShareFetchResponseTopicPartition()
			part.Partition = int32(p)
			if p == 2 {
				part.ErrorCode, part.ErrorMessage = 6, rwStr("not leader")
				part.CurrentLeader.LeaderID, part.CurrentLeader.LeaderEpoch = 3, 8
				part.CurrentLeader.UnknownTags = rwTags(1, "leader-tag")
			} else {
				part.Records = bytes.Repeat([]byte{byte(16*t + p)}, 20+t+p)
				ar := kmsg.NewShareFetchResponseTopicPartitionAcquiredRecord()
				ar.FirstOffset, ar.LastOffset, ar.DeliveryCount = 10, 20, int16(1+p)
				ar.UnknownTags = rwTags(4, "acquired-tag")
				part.AcquiredRecords = []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord{ar, ar}
			}
			part.AcknowledgeErrorCode = int16(p)
			if p == 1 {
				part.AcknowledgeErrorMessage = rwStr("ack message")
			}
			part.UnknownTags = rwTags(3, "partition-tag")
			topic.Partitions = append(topic.Partitions, part)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	for _, id := range endpoints {
		e := kmsg.NewShareFetchResponseNodeEndpoint()
		e.NodeID, e.Host, e.Port = id, fmt.Sprintf("b%d.internal", id), 9090+id
		if id != 2 {
			e.Rack = rwStr("rack")
		}
		e.UnknownTags = rwTags(6, "endpoint-tag")
		resp.NodeEndpoints = append(resp.NodeEndpoints, e)
	}
	resp.UnknownTags = rwTags(7, "top-tag")
	return resp
}

// mapShareFetchEndpoints applies rwMapper's mapping with drop to resp.
func mapShareFetchEndpoints(resp *kmsg.ShareFetchResponse, drop map[int32]bool) {
	kept := resp.NodeEndpoints[:0]
	for _, e := range resp.NodeEndpoints {
		if drop[e.NodeID] {
			continue
		}
		e.Host, e.Port = rwProxyHost(e.NodeID), rwProxyPort(e.NodeID)
		kept = append(kept, e)
	}
	resp.NodeEndpoints = kept
}

type shareFetchView struct {
	TopicID             [16]byte
	Partition           int32
	ErrorCode, AckError int16
	Records             []byte
	NullRecords         bool
}

func TestShareFetchWalkEveryVersion(t *testing.T) {
	if got := (&kmsg.ShareFetchResponse{}).MaxVersion(); got != ShareFetchMaxVersion {
		t.Fatalf("kmsg knows ShareFetch v%d, walker v%d: check the new layout", got, ShareFetchMaxVersion)
	}
	for v := int16(0); v <= ShareFetchMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			var w ShareFetchWalker
			resp := shareFetchFixture(v)
			body := resp.AppendTo(nil)

			var seen []shareFetchView
			out, changed, err := w.Walk(rwDst(), body, v, func(p *ShareFetchPartition) error {
				seen = append(seen, shareFetchView{p.TopicID, p.Partition, p.ErrorCode, p.AcknowledgeErrorCode, bytes.Clone(p.Records), p.Records == nil})
				return nil
			})
			rwCheckUnchanged(t, out, changed, err)
			var want []shareFetchView
			for _, tp := range resp.Topics {
				for _, p := range tp.Partitions {
					want = append(want, shareFetchView{tp.TopicID, p.Partition, p.ErrorCode, p.AcknowledgeErrorCode, p.Records, p.Records == nil})
				}
			}
			if !reflect.DeepEqual(seen, want) {
				t.Fatalf("walker saw\n%+v\nwant\n%+v", seen, want)
			}

			// Replace the middle partition's records in both topics and
			// fail partition 0 of the second topic.
			out, changed, err = w.Walk(rwDst(), body, v, func(p *ShareFetchPartition) error {
				switch {
				case p.Partition == 1:
					p.SetRecords([]byte(fmt.Sprintf("decrypted-%x", p.TopicID[0])))
				case p.Partition == 0 && p.TopicID[0] == 0xb1:
					p.SetErrorCode(91)
					p.SetRecords([]byte{})
				}
				return nil
			})
			if err != nil || !changed {
				t.Fatalf("replace: changed=%v err=%v", changed, err)
			}
			exp := shareFetchFixture(v)
			exp.Topics[0].Partitions[1].Records = []byte("decrypted-b0")
			exp.Topics[1].Partitions[1].Records = []byte("decrypted-b1")
			exp.Topics[1].Partitions[0].ErrorCode = 91
			exp.Topics[1].Partitions[0].Records = []byte{}
			rwCheckAppended(t, out, exp.AppendTo(nil))

			// Node endpoints are a regular field: mapped, unmapped dropped,
			// in the same pass as a record replacement.
			drop := map[int32]bool{1: true}
			m := &rwMapper{drop: drop}
			w.Mapper = m
			epBody := shareFetchFixture(v, 1, 2, 3).AppendTo(nil)
			out, changed, err = w.Walk(rwDst(), epBody, v, func(p *ShareFetchPartition) error {
				if p.Partition == 0 {
					p.SetRecords(nil)
				}
				return nil
			})
			if err != nil || !changed {
				t.Fatalf("endpoints: changed=%v err=%v", changed, err)
			}
			wantCalls := []rwCall{{1, "b1.internal", 9091}, {2, "b2.internal", 9092}, {3, "b3.internal", 9093}}
			if !reflect.DeepEqual(m.calls, wantCalls) {
				t.Fatalf("mapper saw %v, want %v", m.calls, wantCalls)
			}
			exp = shareFetchFixture(v, 1, 2, 3)
			mapShareFetchEndpoints(exp, drop)
			exp.Topics[0].Partitions[0].Records = nil
			exp.Topics[1].Partitions[0].Records = nil
			rwCheckAppended(t, out, exp.AppendTo(nil))

			again, changed, err := w.Walk(nil, out[len(rwHdr):], v, nil)
			if err != nil || changed || again != nil {
				t.Fatalf("walk of rewritten body: changed=%v err=%v", changed, err)
			}
			w.Mapper = rwIdentity
			out, changed, err = w.Walk(rwDst(), epBody, v, nil)
			rwCheckUnchanged(t, out, changed, err)
		})
	}
}

func TestShareFetchWalkErrors(t *testing.T) {
	var w ShareFetchWalker
	if _, _, err := w.Walk(nil, nil, ShareFetchMaxVersion+1, nil); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("err=%v, want ErrUnknownVersion", err)
	}
	stop := errors.New("stop")
	for v := int16(0); v <= ShareFetchMaxVersion; v++ {
		body := shareFetchFixture(v, 1).AppendTo(nil)
		out, changed, err := w.Walk(rwDst(), body, v, func(p *ShareFetchPartition) error {
			p.SetErrorCode(91)
			return stop
		})
		if !errors.Is(err, stop) || changed || string(out) != string(rwHdr) {
			t.Fatalf("v%d: callback error: err=%v changed=%v out=%q", v, err, changed, out)
		}
		for i := 0; i < len(body); i++ {
			out, _, err := w.Walk(rwDst(), body[:i], v, nil)
			if !errors.Is(err, ErrMalformed) || string(out) != string(rwHdr) {
				t.Fatalf("v%d cut at %d/%d: err=%v", v, i, len(body), err)
			}
		}
		if _, _, err := w.Walk(nil, append(bytes.Clone(body), 0), v, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("v%d trailing byte: err=%v", v, err)
		}
	}
}

func TestShareFetchHugeTagCountRejectedFast(t *testing.T) {
	body := kbin.AppendInt32(nil, 0) // throttle
	body = kbin.AppendInt16(body, 0)
	body = kbin.AppendCompactNullableString(body, nil)
	body = kbin.AppendInt32(body, 0) // acquisition lock (v1)
	body = kbin.AppendCompactArrayLen(body, 1)
	body = append(body, make([]byte, 16)...) // topic id
	body = kbin.AppendCompactArrayLen(body, 1)
	body = kbin.AppendInt32(body, 0) // partition
	body = kbin.AppendInt16(body, 0)
	body = kbin.AppendCompactNullableString(body, nil)
	body = kbin.AppendInt16(body, 0)
	body = kbin.AppendCompactNullableString(body, nil)
	body = kbin.AppendInt32(body, -1) // leader
	body = kbin.AppendInt32(body, -1)
	body = append(body, rwHugeTagCount...)
	body = append(body, make([]byte, 4096)...)
	var w ShareFetchWalker
	rwFastReject(t, body, func(b []byte) error {
		_, _, err := w.Walk(nil, b, 1, nil)
		return err
	})
}

func TestShareFetchWalkAllocatesNothing(t *testing.T) {
	body := shareFetchFixture(1).AppendTo(nil)
	var w ShareFetchWalker
	n := 0
	fn := func(p *ShareFetchPartition) error { n += len(p.Records); return nil }
	if allocs := testing.AllocsPerRun(100, func() {
		if _, changed, err := w.Walk(nil, body, 1, fn); changed || err != nil {
			t.Fatal(changed, err)
		}
	}); allocs != 0 {
		t.Fatalf("unchanged walk: %v allocs, want 0", allocs)
	}
}

func shareFetchSeeds() rwSeeds {
	seeds := rwSeeds{}
	for v := int16(0); v <= ShareFetchMaxVersion; v++ {
		seeds[fmt.Sprintf("v%d", v)] = struct {
			version int16
			body    []byte
		}{v, shareFetchFixture(v, 1, 3).AppendTo(nil)}
	}
	return seeds
}

func TestWriteShareFetchSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzShareFetchResponse", shareFetchSeeds())
}

func FuzzShareFetchResponse(f *testing.F) {
	for _, s := range shareFetchSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	w := ShareFetchWalker{Mapper: rwFuzzMapper}
	again := ShareFetchWalker{Mapper: rwFuzzMapper}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (ShareFetchMaxVersion + 1)
		calls := 0
		out, changed, err := w.Walk(nil, body, v, func(p *ShareFetchPartition) error {
			calls++
			switch p.Partition % 3 {
			case 0:
				p.SetRecords(p.Records[:len(p.Records)/2])
			case 1:
				p.SetErrorCode(91)
			}
			return nil
		})
		if calls > len(body)/8 {
			t.Fatalf("%d callbacks for %d bytes", calls, len(body))
		}
		if err != nil || !changed {
			return
		}
		out2, changed, err := again.Walk(nil, out, v, nil)
		if err != nil || changed {
			t.Fatalf("rewritten body: changed=%v err=%v (%x)", changed, err, out2)
		}
	})
}

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

func shareAckFixture(v int16, endpoints ...int32) *kmsg.ShareAcknowledgeResponse {
	resp := kmsg.NewPtrShareAcknowledgeResponse()
	resp.Version = v
	resp.ThrottleMillis = 2
	resp.AcquisitionLockTimeoutMillis = 15000
	for t := range 2 {
		topic := kmsg.NewShareAcknowledgeResponseTopic()
		topic.TopicID = [16]byte{0xc0 + byte(t)}
		topic.UnknownTags = rwTags(2, "topic-tag")
		for p := range 2 {
			part := kmsg.NewShareAcknowledgeResponseTopicPartition()
			part.Partition = int32(p)
			if p == 1 {
				part.ErrorCode, part.ErrorMessage = 6, rwStr("not leader")
				part.CurrentLeader.LeaderID, part.CurrentLeader.LeaderEpoch = 3, 9
				part.CurrentLeader.UnknownTags = rwTags(1, "leader-tag")
			}
			part.UnknownTags = rwTags(3, "partition-tag")
			topic.Partitions = append(topic.Partitions, part)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	for _, id := range endpoints {
		e := kmsg.NewShareAcknowledgeResponseNodeEndpoint()
		e.NodeID, e.Host, e.Port = id, fmt.Sprintf("b%d.internal", id), 9090+id
		e.Rack = rwStr("rack")
		e.UnknownTags = rwTags(6, "endpoint-tag")
		resp.NodeEndpoints = append(resp.NodeEndpoints, e)
	}
	resp.UnknownTags = rwTags(7, "top-tag")
	return resp
}

func TestRewriteShareAcknowledgeResponseEveryVersion(t *testing.T) {
	if got := (&kmsg.ShareAcknowledgeResponse{}).MaxVersion(); got != ShareAcknowledgeMaxVersion {
		t.Fatalf("kmsg knows ShareAcknowledge v%d, rewriter v%d: check the new layout", got, ShareAcknowledgeMaxVersion)
	}
	for v := int16(0); v <= ShareAcknowledgeMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			body := shareAckFixture(v, 1, 2, 3).AppendTo(nil)
			m := &rwMapper{drop: map[int32]bool{3: true}}
			out, changed, err := RewriteShareAcknowledgeResponse(rwDst(), body, v, m)
			if err != nil || !changed {
				t.Fatalf("changed=%v err=%v", changed, err)
			}
			wantCalls := []rwCall{{1, "b1.internal", 9091}, {2, "b2.internal", 9092}, {3, "b3.internal", 9093}}
			if !reflect.DeepEqual(m.calls, wantCalls) {
				t.Fatalf("mapper saw %v, want %v", m.calls, wantCalls)
			}
			want := shareAckFixture(v, 1, 2)
			for i := range want.NodeEndpoints {
				e := &want.NodeEndpoints[i]
				e.Host, e.Port = rwProxyHost(e.NodeID), rwProxyPort(e.NodeID)
			}
			rwCheckAppended(t, out, want.AppendTo(nil))

			_, changed, err = RewriteShareAcknowledgeResponse(rwDst(), out[len(rwHdr):], v, m)
			if err != nil || changed {
				t.Fatalf("rewrite of rewritten body: changed=%v err=%v", changed, err)
			}
			out, changed, err = RewriteShareAcknowledgeResponse(rwDst(), shareAckFixture(v).AppendTo(nil), v, m)
			rwCheckUnchanged(t, out, changed, err)
			out, changed, err = RewriteShareAcknowledgeResponse(rwDst(), body, v, rwIdentity)
			rwCheckUnchanged(t, out, changed, err)

			for i := 0; i < len(body); i++ {
				out, _, err := RewriteShareAcknowledgeResponse(rwDst(), body[:i], v, rwIdentity)
				if !errors.Is(err, ErrMalformed) || string(out) != string(rwHdr) {
					t.Fatalf("cut at %d/%d: err=%v", i, len(body), err)
				}
			}
			if _, _, err := RewriteShareAcknowledgeResponse(nil, append(bytes.Clone(body), 0), v, rwIdentity); !errors.Is(err, ErrMalformed) {
				t.Fatalf("trailing byte: err=%v", err)
			}
		})
	}
	if _, _, err := RewriteShareAcknowledgeResponse(nil, nil, ShareAcknowledgeMaxVersion+1, rwIdentity); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("err=%v, want ErrUnknownVersion", err)
	}
}

func TestShareAckHugeTagCountRejectedFast(t *testing.T) {
	body := kbin.AppendInt32(nil, 0) // throttle
	body = kbin.AppendInt16(body, 0)
	body = kbin.AppendCompactNullableString(body, nil)
	body = kbin.AppendCompactArrayLen(body, 0) // topics
	body = kbin.AppendCompactArrayLen(body, 0) // endpoints
	body = append(body, rwHugeTagCount...)
	body = append(body, make([]byte, 4096)...)
	rwFastReject(t, body, func(b []byte) error {
		_, _, err := RewriteShareAcknowledgeResponse(nil, b, 0, rwIdentity)
		return err
	})
}

func shareAckSeeds() rwSeeds {
	seeds := rwSeeds{}
	for v := int16(0); v <= ShareAcknowledgeMaxVersion; v++ {
		seeds[fmt.Sprintf("v%d", v)] = struct {
			version int16
			body    []byte
		}{v, shareAckFixture(v, 1, 3).AppendTo(nil)}
	}
	return seeds
}

func TestWriteShareAckSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzShareAckResponse", shareAckSeeds())
}

func FuzzShareAckResponse(f *testing.F) {
	for _, s := range shareAckSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (ShareAcknowledgeMaxVersion + 1)
		out, changed, err := RewriteShareAcknowledgeResponse(nil, body, v, rwFuzzMapper)
		if err != nil || !changed {
			return
		}
		again, changed, err := RewriteShareAcknowledgeResponse(nil, out, v, rwFuzzMapper)
		if err != nil || changed {
			t.Fatalf("rewritten body: changed=%v err=%v (%x)", changed, err, again)
		}
	})
}

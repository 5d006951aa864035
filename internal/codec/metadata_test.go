package codec

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metadataFixture is a Metadata response using every field of version v.
func metadataFixture(v int16, brokers []kmsg.MetadataResponseBroker) *kmsg.MetadataResponse {
	resp := kmsg.NewPtrMetadataResponse()
	resp.Version = v
	resp.ThrottleMillis = 17
	resp.Brokers = brokers
	resp.ClusterID = rwStr("cluster-a")
	resp.ControllerID = 2
	resp.AuthorizedOperations = 0x0f0f
	resp.ErrorCode = 0
	topic := kmsg.NewMetadataResponseTopic()
	topic.Topic = rwStr("orders")
	topic.TopicID = [16]byte{1, 2, 3}
	topic.IsInternal = false
	part := kmsg.NewMetadataResponseTopicPartition()
	part.Partition, part.Leader, part.LeaderEpoch = 0, 3, 5
	part.Replicas, part.ISR, part.OfflineReplicas = []int32{1, 2, 3}, []int32{1, 3}, []int32{2}
	if v >= 9 {
		part.UnknownTags = rwTags(4, "partition-tag")
		topic.UnknownTags = rwTags(5, "topic-tag")
		resp.UnknownTags = rwTags(6, "top-tag")
	}
	topic.Partitions = []kmsg.MetadataResponseTopicPartition{part}
	resp.Topics = []kmsg.MetadataResponseTopic{topic}
	return resp
}

func metadataBroker(v int16, id int32, host string, port int32) kmsg.MetadataResponseBroker {
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = id, host, port
	if v >= 1 && id != 2 { // broker 2 has no rack
		b.Rack = rwStr(fmt.Sprintf("rack-%d", id))
	}
	if v >= 9 {
		b.UnknownTags = rwTags(9, fmt.Sprintf("broker-%d", id))
	}
	return b
}

func TestRewriteMetadataEveryVersion(t *testing.T) {
	if got := (&kmsg.MetadataResponse{}).MaxVersion(); got != MetadataMaxVersion {
		t.Fatalf("kmsg knows Metadata v%d, rewriter v%d: check the new layout", got, MetadataMaxVersion)
	}
	for v := int16(0); v <= MetadataMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			upstream := []kmsg.MetadataResponseBroker{
				metadataBroker(v, 1, "b1.internal", 9092),
				metadataBroker(v, 2, "b2.internal", 9093),
				metadataBroker(v, 3, "b3.internal", 9094),
			}
			body := metadataFixture(v, upstream).AppendTo(nil)

			m := &rwMapper{drop: map[int32]bool{3: true}}
			out, changed, err := RewriteMetadata(rwDst(), body, v, m, nil)
			if err != nil || !changed {
				t.Fatalf("changed=%v err=%v", changed, err)
			}
			wantCalls := []rwCall{{1, "b1.internal", 9092}, {2, "b2.internal", 9093}, {3, "b3.internal", 9094}}
			if !reflect.DeepEqual(m.calls, wantCalls) {
				t.Fatalf("mapper saw %v, want %v", m.calls, wantCalls)
			}
			mapped := []kmsg.MetadataResponseBroker{upstream[0], upstream[1]}
			for i := range mapped {
				mapped[i].Host, mapped[i].Port = rwProxyHost(mapped[i].NodeID), rwProxyPort(mapped[i].NodeID)
			}
			rwCheckAppended(t, out, metadataFixture(v, mapped).AppendTo(nil))

			// Rewriting what the proxy sent changes nothing.
			again, changed, err := RewriteMetadata(nil, out[len(rwHdr):], v, &rwMapper{}, nil)
			if err != nil || changed || again != nil {
				t.Fatalf("second rewrite: changed=%v err=%v", changed, err)
			}

			out, changed, err = RewriteMetadata(rwDst(), body, v, rwIdentity, nil)
			rwCheckUnchanged(t, out, changed, err)

			// No mapper, no addresses.
			out, _, err = RewriteMetadata(rwDst(), body, v, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			rwCheckAppended(t, out, metadataFixture(v, nil).AppendTo(nil))
		})
	}
}

func TestRewriteMetadataErrors(t *testing.T) {
	body := metadataFixture(12, []kmsg.MetadataResponseBroker{metadataBroker(12, 1, "h", 1)}).AppendTo(nil)
	if _, _, err := RewriteMetadata(nil, body, MetadataMaxVersion+1, rwIdentity, nil); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("v%d: err=%v, want ErrUnknownVersion", MetadataMaxVersion+1, err)
	}
	if _, _, err := RewriteMetadata(nil, body, -1, rwIdentity, nil); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("v-1: err=%v, want ErrUnknownVersion", err)
	}
	// Every cut inside the throttle or brokers array is refused, and the
	// caller's dst comes back untouched.
	brokersEnd := len(body) - len(metadataFixture(12, nil).AppendTo(nil)) + 4 + 1 // + throttle, count
	for i := 0; i < brokersEnd; i++ {
		out, changed, err := RewriteMetadata(rwDst(), body[:i], 12, &rwMapper{}, nil)
		if !errors.Is(err, ErrMalformed) || changed || string(out) != string(rwHdr) {
			t.Fatalf("cut at %d: out=%q changed=%v err=%v", i, out, changed, err)
		}
	}
}

func TestMetadataHugeTagCountRejectedFast(t *testing.T) {
	body := kbin.AppendInt32(nil, 0)           // throttle
	body = kbin.AppendCompactArrayLen(body, 1) // one broker
	body = kbin.AppendInt32(body, 1)
	body = kbin.AppendCompactString(body, "h")
	body = kbin.AppendInt32(body, 9092)
	body = kbin.AppendCompactNullableString(body, nil)
	body = append(body, rwHugeTagCount...)
	body = append(body, make([]byte, 64)...)
	rwFastReject(t, body, func(b []byte) error {
		_, _, err := RewriteMetadata(nil, b, 12, rwIdentity, nil)
		return err
	})
}

func metadataSeeds() rwSeeds {
	seeds := rwSeeds{}
	for v := int16(0); v <= MetadataMaxVersion; v++ {
		brokers := []kmsg.MetadataResponseBroker{metadataBroker(v, 1, "b1", 9092), metadataBroker(v, 3, "b3", 9094)}
		seeds[fmt.Sprintf("v%02d", v)] = struct {
			version int16
			body    []byte
		}{v, metadataFixture(v, brokers).AppendTo(nil)}
	}
	return seeds
}

func TestWriteMetadataSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzMetadataResponse", metadataSeeds())
}

func FuzzMetadataResponse(f *testing.F) {
	for _, s := range metadataSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (MetadataMaxVersion + 1)
		out, changed, err := RewriteMetadata(nil, body, v, rwFuzzMapper, nil)
		if err != nil || !changed {
			return
		}
		again, changed, err := RewriteMetadata(nil, out, v, rwFuzzMapper, nil)
		if err != nil || changed {
			t.Fatalf("rewritten body: changed=%v err=%v (%x)", changed, err, again)
		}
	})
}

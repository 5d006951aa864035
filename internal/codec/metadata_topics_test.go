package codec

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestWalkMetadataTopics(t *testing.T) {
	for v := int16(0); v <= MetadataMaxVersion; v++ {
		resp := kmsg.NewPtrMetadataResponse()
		resp.SetVersion(v)
		host := "b1"
		resp.Brokers = []kmsg.MetadataResponseBroker{{NodeID: 1, Host: host, Port: 9092}}
		name1, name2 := "orders", "payments"
		resp.Topics = []kmsg.MetadataResponseTopic{
			{Topic: &name1, TopicID: [16]byte{1}, Partitions: []kmsg.MetadataResponseTopicPartition{
				{Partition: 0, Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1}, OfflineReplicas: []int32{3}},
				{Partition: 1, Leader: 2},
			}},
			{Topic: &name2, TopicID: [16]byte{2}},
			{Topic: nil, TopicID: [16]byte{3}},
		}
		body := resp.AppendTo(nil)
		got := map[string][16]byte{}
		err := WalkMetadataTopics(body, v, func(name []byte, id [16]byte) { got[string(name)] = id })
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		want := 0
		if v >= 10 {
			want = 2
		}
		if len(got) != want || (want > 0 && (got["orders"] != [16]byte{1} || got["payments"] != [16]byte{2})) {
			t.Errorf("v%d: got %v", v, got)
		}
		// Every truncation is an error, never a panic or a bogus topic.
		if v >= 10 {
			for cut := 0; cut < len(body); cut++ {
				if err := WalkMetadataTopics(body[:cut], v, func([]byte, [16]byte) {}); err == nil {
					t.Errorf("v%d cut %d: accepted", v, cut)
				}
			}
		}
	}
}

func FuzzWalkMetadataTopics(f *testing.F) {
	resp := kmsg.NewPtrMetadataResponse()
	resp.SetVersion(12)
	name := "t"
	resp.Topics = []kmsg.MetadataResponseTopic{{Topic: &name, TopicID: [16]byte{9}}}
	f.Add(resp.AppendTo(nil), int16(12))
	f.Fuzz(func(t *testing.T, body []byte, v int16) {
		n := 0
		WalkMetadataTopics(body, v, func([]byte, [16]byte) { n++ })
		if n > len(body) {
			t.Fatalf("%d topics from %d bytes", n, len(body))
		}
	})
}

// metadataOneWalk checks RewriteMetadata against RewriteMetadataResponse
// followed by WalkMetadataTopics: the same body out, the same topics seen,
// an error exactly when either of the two fails.
func metadataOneWalk(t *testing.T, body []byte, v int16, m AddressMapper) {
	t.Helper()
	type topic struct {
		name string
		id   [16]byte
	}
	var one, two []topic
	out, changed, err := RewriteMetadata([]byte("x"), body, v, m, func(name []byte, id [16]byte) {
		one = append(one, topic{string(name), id})
	})
	wantOut, wantChanged, err1 := RewriteMetadataResponse([]byte("x"), body, v, m)
	err2 := WalkMetadataTopics(body, v, func(name []byte, id [16]byte) { two = append(two, topic{string(name), id}) })
	if (err != nil) != (err1 != nil || err2 != nil) {
		t.Fatalf("v%d: one walk err=%v, two walks %v, %v", v, err, err1, err2)
	}
	if err != nil {
		if string(out) != "x" || changed {
			t.Fatalf("v%d: failed walk changed dst: %q", v, out)
		}
		return
	}
	if !bytes.Equal(out, wantOut) || changed != wantChanged || !reflect.DeepEqual(one, two) {
		t.Fatalf("v%d: one walk (changed=%v, topics %v) differs from two (changed=%v, topics %v)", v, changed, one, wantChanged, two)
	}
}

func TestRewriteMetadataOneWalk(t *testing.T) {
	for _, seed := range metadataSeeds() {
		for _, m := range []AddressMapper{rwFuzzMapper, rwIdentity, nil} {
			metadataOneWalk(t, seed.body, seed.version, m)
			for cut := 0; cut < len(seed.body); cut += 7 {
				metadataOneWalk(t, seed.body[:cut], seed.version, m)
			}
		}
	}
	// Without a callback the topics are not read, as before.
	body := metadataSeeds()["v12"].body
	if _, _, err := RewriteMetadata(nil, append(bytes.Clone(body[:len(body)-1]), 0xff), 12, rwFuzzMapper, nil); err != nil {
		t.Fatalf("topics read without a callback: %v", err)
	}
}

func FuzzRewriteMetadata(f *testing.F) {
	for _, s := range metadataSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		metadataOneWalk(t, body, int16(version)%(MetadataMaxVersion+1), rwFuzzMapper)
	})
}

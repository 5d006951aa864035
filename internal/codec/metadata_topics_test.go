package codec

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// RewriteMetadata reports the topics with a name and an id (v10 and later),
// and every truncation of such a body is an error, never a panic or a bogus
// topic.
func TestRewriteMetadataTopics(t *testing.T) {
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
		_, _, err := RewriteMetadata(nil, body, v, rwIdentity, func(name []byte, id [16]byte) { got[string(name)] = id })
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
		if v < 10 {
			continue // topics not read: a cut among them is copied
		}
		for cut := 0; cut < len(body); cut++ {
			n := 0
			if _, _, err := RewriteMetadata(nil, body[:cut], v, rwIdentity, func([]byte, [16]byte) { n++ }); err == nil {
				t.Errorf("v%d cut %d: accepted", v, cut)
			}
			if n > want {
				t.Errorf("v%d cut %d: %d topics", v, cut, n)
			}
		}
	}
}

// metadataOneWalk checks RewriteMetadata against itself without a topics
// callback followed by walkTopicsAlone: the same body out, the same topics seen,
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
	wantOut, wantChanged, err1 := RewriteMetadata([]byte("x"), body, v, m, nil)
	err2 := walkTopicsAlone(body, v, func(name []byte, id [16]byte) { two = append(two, topic{string(name), id}) })
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

// walkTopicsAlone reads the topics of a Metadata response body (versions
// 10 to MetadataMaxVersion, the ones carrying topic ids) and calls fn for
// each topic with a name and a non-zero id. Earlier versions have no ids
// and are skipped without reading. It is how kseal learns topic names for
// the messages that name topics only by id (ShareFetch). It is the
// test oracle of RewriteMetadata's topics callback: a second, separate walk
// that skips the brokers itself.
func walkTopicsAlone(body []byte, version int16, fn MetadataTopicsFunc) error {
	if version < 10 {
		return nil
	}
	if version > MetadataMaxVersion {
		return fmt.Errorf("metadata response v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, version >= metadataFirstFlexible)
	r.Int32() // throttle
	n, _ := r.arrayLen()
	for i := 0; i < n && r.Ok(); i++ { // brokers
		r.Int32()
		r.str()
		r.Int32()
		r.nullableStr()
		r.skipTags()
	}
	return walkMetadataTopics(&r, version, fn)
}

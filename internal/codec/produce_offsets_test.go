package codec

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceResponseBody encodes a Produce response of version v with two
// topics (the second with two partitions, record errors and a message).
func produceResponseBody(v int16) []byte {
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(v)
	for ti, name := range []string{"orders", "payments"} {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = name
		rt.TopicID = [16]byte{byte(ti + 1)}
		for pi := 0; pi <= ti; pi++ {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = int32(pi + 3)
			rp.BaseOffset = int64(100*ti + pi)
			if pi == 1 {
				rp.ErrorCode = 87
				msg := "bad"
				rp.ErrorMessage = &msg
				re := kmsg.NewProduceResponseTopicPartitionErrorRecord()
				re.RelativeOffset = 2
				rp.ErrorRecords = append(rp.ErrorRecords, re)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp.AppendTo(nil)
}

func TestWalkProduceOffsets(t *testing.T) {
	for v := int16(0); v <= ProduceMaxVersion; v++ {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			body := produceResponseBody(v)
			var got []string
			err := WalkProduceOffsets(body, v, func(p ProducePartitionResult) {
				name := string(p.Topic)
				if v >= produceFirstTopicID {
					name = fmt.Sprintf("id%d", p.TopicID[0])
				}
				got = append(got, fmt.Sprintf("%s/%d:%d@%d", name, p.Partition, p.ErrorCode, p.BaseOffset))
			})
			if err != nil {
				t.Fatal(err)
			}
			want := "[orders/3:0@0 payments/3:0@100 payments/4:87@101]"
			if v >= produceFirstTopicID {
				want = "[id1/3:0@0 id2/3:0@100 id2/4:87@101]"
			}
			if fmt.Sprint(got) != want {
				t.Fatalf("got %v, want %s", got, want)
			}
			// Every truncation is refused, never read past its end.
			for n := 0; n < len(body); n++ {
				if err := WalkProduceOffsets(body[:n], v, func(ProducePartitionResult) {}); !errors.Is(err, ErrMalformed) {
					t.Fatalf("truncated to %d of %d bytes: %v, want ErrMalformed", n, len(body), err)
				}
			}
		})
	}
	if err := WalkProduceOffsets(nil, ProduceMaxVersion+1, func(ProducePartitionResult) {}); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("unknown version: %v", err)
	}
}

func TestWalkProduceOffsetsZeroAllocs(t *testing.T) {
	body := produceResponseBody(9)
	n := 0
	visit := func(ProducePartitionResult) { n++ }
	if a := testing.AllocsPerRun(100, func() { _ = WalkProduceOffsets(body, 9, visit) }); a != 0 {
		t.Fatalf("%v allocations per walk", a)
	}
}

// FuzzWalkProduceOffsets: hostile response bodies never panic, and a walk
// that succeeds visited only partitions that lie inside the body.
func FuzzWalkProduceOffsets(f *testing.F) {
	for _, v := range []int16{3, 7, 8, 9, 12, 13} {
		f.Add(produceResponseBody(v), v)
	}
	f.Add([]byte{0, 0, 0, 1, 0, 1, 'a', 0x7f, 0xff, 0xff, 0xff}, int16(7))
	f.Add([]byte{2, 2, 'a', 0xff, 0xff, 0xff, 0xff, 0x0f}, int16(9))
	f.Fuzz(func(t *testing.T, body []byte, v int16) {
		n := 0
		err := WalkProduceOffsets(body, v, func(p ProducePartitionResult) {
			n++
			if len(p.Topic) > len(body) {
				t.Fatalf("topic of %d bytes from a body of %d", len(p.Topic), len(body))
			}
		})
		if err == nil && n > len(body) {
			t.Fatalf("%d partitions from %d bytes", n, len(body))
		}
	})
}

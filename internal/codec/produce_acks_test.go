package codec

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestProduceAcks(t *testing.T) {
	txn := "txn-1"
	for v := int16(0); v <= ProduceMaxVersion; v++ {
		for _, acks := range []int16{0, 1, -1} {
			for _, tid := range []*string{nil, &txn} {
				req := kmsg.NewPtrProduceRequest()
				req.SetVersion(v)
				req.Acks = acks
				req.TransactionID = tid
				req.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 1}}}}
				got, err := ProduceAcks(req.AppendTo(nil), v)
				if err != nil || got != acks {
					t.Errorf("v%d acks %d tid %v: got %d, %v", v, acks, tid != nil, got, err)
				}
			}
		}
		if _, err := ProduceAcks([]byte{0}, v); err == nil {
			t.Errorf("v%d: truncated body accepted", v)
		}
	}
}

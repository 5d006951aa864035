package encrypt

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// checkSealed fails unless every record of every topic the filter's policy
// encrypts, in a forwarded Produce request, is null or carries one marker
// and a value that opens under its binding: no plaintext of an encrypted
// topic reaches the broker.
func checkSealed(t testing.TB, f *Filter, req *kmsg.ProduceRequest) {
	t.Helper()
	cur := f.state.Load()
	p := records.NewProcessor()
	for _, rt := range req.Topics {
		if cur.policy.Select(rt.Topic).Action != policy.Encrypt {
			continue
		}
		for _, rp := range rt.Partitions {
			it := records.NewBatchIter(rp.Records)
			for it.Next() {
				if err := p.Reset(it.Batch()); err != nil {
					t.Fatalf("%s/%d: forwarded batch unreadable: %v", rt.Topic, rp.Partition, err)
				}
				if p.Batch().Control() {
					t.Fatalf("%s/%d: control batch forwarded", rt.Topic, rp.Partition)
				}
				for p.Next() {
					r := p.Record()
					if r.Value == nil {
						continue
					}
					markers := 0
					for _, h := range r.Headers {
						if string(h.Key) == recordcrypt.HeaderKey {
							markers++
						}
					}
					if markers != 1 {
						t.Fatalf("%s/%d: record with %d markers forwarded", rt.Topic, rp.Partition, markers)
					}
					env, err := recordcrypt.Parse(r.Value)
					if err != nil {
						t.Fatalf("%s/%d: forwarded value is no envelope: %v", rt.Topic, rp.Partition, err)
					}
					aead, err := cur.keys.Decryptor(context.Background(), env.EDEK)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := recordcrypt.Open(nil, aead, env, recordcrypt.Binding{Topic: cur.policy.AADTopic(rt.Topic), Key: r.Key}); err != nil {
						t.Fatalf("%s/%d: forwarded value does not open: %v", rt.Topic, rp.Partition, err)
					}
				}
				if p.Err() != nil {
					t.Fatal(p.Err())
				}
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
		}
	}
}

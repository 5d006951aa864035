package encrypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// Finding 4: a fetched batch that cannot be decrypted withheld every record
// fetched with it. The records before it are delivered now; the consumer's
// next fetch starts at the bad batch and gets the error there.
func TestFetchDeliversRecordsBeforeABadBatch(t *testing.T) {
	f := newTestFilter(t, "KEK-orders")
	good, want := bigPartition(t, f, "orders", 3, 4, 100)
	bad, _ := bigPartition(t, f, "orders", 1, 4, 100)
	tamperLast(bad)
	binary.BigEndian.PutUint64(bad, 12)
	plain := plainBatch([][]byte{[]byte("plain")})
	binary.BigEndian.PutUint64(plain, 100)
	for _, tc := range []struct {
		name string
		set  []byte
		want int // values delivered, -1: partition error
	}{
		{"bad after encrypted", cat(good, bad, plain), len(want)},
		{"bad after plaintext", cat(plain, bad, good), 1},
		{"bad first", cat(bad, good), -1},
		{"garbage after encrypted", cat(good, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 60, 0, 0, 0, 0, 7}, make([]byte, 60)), len(want)},
	} {
		resp := fetchThrough(t, f, []fetchPart{{topic: "orders", partition: 0, set: tc.set}})
		rp := resp.Topics[0].Partitions[0]
		if tc.want < 0 {
			if rp.ErrorCode != kerr.CorruptMessage.Code || len(rp.RecordBatches) != 0 {
				t.Fatalf("%s: code %d, %d bytes; want CORRUPT_MESSAGE", tc.name, rp.ErrorCode, len(rp.RecordBatches))
			}
			continue
		}
		if rp.ErrorCode != 0 {
			t.Fatalf("%s: code %d", tc.name, rp.ErrorCode)
		}
		if got := values(t, rp.RecordBatches); len(got) != tc.want {
			t.Fatalf("%s: %d values, want %d", tc.name, len(got), tc.want)
		}
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Finding 4: a passthrough topic's consumers got CORRUPT_MESSAGE for a
// marker a producer planted, or for a batch past the decompression bound.
func TestFetchPassthroughTopicAsTheBrokerHoldsIt(t *testing.T) {
	f := newMixedFilter(t, func(o *Options) { o.MaxDecompressed = 1 << 20 })
	forged := headerBatch(records.CodecNone, recordcrypt.HeaderKey, "\x01")
	forgedZ := headerBatch(records.CodecZstd, recordcrypt.HeaderKey, "\x01")
	big := zerosBatch(2<<20, records.CodecZstd) // past MaxDecompressed
	set := cat(forged, forgedZ, big)
	resp := fetchThrough(t, f, []fetchPart{{topic: "plain-x", partition: 0, set: set}})
	rp := resp.Topics[0].Partitions[0]
	if rp.ErrorCode != 0 || !bytes.Equal(rp.RecordBatches, set) {
		t.Fatalf("passthrough partition: code %d, changed %v", rp.ErrorCode, !bytes.Equal(rp.RecordBatches, set))
	}
}

// Finding 8: a record with two markers was accepted and one marker reached
// the consumer. docs/format.md calls it malformed.
func TestFetchDoubleMarkerRefused(t *testing.T) {
	f := newTestFilter(t, "KEK-orders")
	first, _ := bigPartition(t, f, "orders", 1, 2, 10)
	enc, _ := bigPartition(t, f, "orders", 1, 2, 10)
	p := records.NewProcessor()
	it := records.NewBatchIter(enc)
	it.Next()
	if err := p.Reset(it.Batch()); err != nil {
		t.Fatal(err)
	}
	double, err := p.Rewrite(nil, func(r *records.Record) error {
		r.Headers = append(r.Headers, records.RecordHeader{Key: []byte(recordcrypt.HeaderKey), Value: []byte{recordcrypt.Version1}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint64(double, 2)
	for _, tc := range []struct {
		set  []byte
		code int16
		n    int
	}{{double, kerr.CorruptMessage.Code, 0}, {cat(first, double), 0, 2}} {
		resp := fetchThrough(t, f, []fetchPart{{topic: "orders", partition: 0, set: tc.set}})
		rp := resp.Topics[0].Partitions[0]
		if rp.ErrorCode != tc.code || len(values(t, rp.RecordBatches)) != tc.n {
			t.Fatalf("code %d, want %d", rp.ErrorCode, tc.code)
		}
	}
}

// countingKeys counts Decryptor calls and may panic in them.
type countingKeys struct {
	Keys
	calls atomic.Int32
	panic atomic.Bool
}

func (k *countingKeys) Decryptor(ctx context.Context, edek []byte) (cipher.AEAD, error) {
	k.calls.Add(1)
	if k.panic.Load() {
		panic("test panic in Decryptor")
	}
	return k.Keys.Decryptor(ctx, edek)
}

func (k *countingKeys) Resolve(ctx context.Context, name string) (kms.KEKRef, error) {
	return k.Keys.Resolve(ctx, name)
}

// Finding 6: each connection's fetch path cached its last EDEK and AEAD
// forever, so a revoked key or a reload never reached open connections.
func TestFetchEDEKCacheLastsOneResponse(t *testing.T) {
	f := newTestFilter(t, "KEK-orders")
	set, _ := bigPartition(t, f, "orders", 2, 4, 10)
	cur := f.state.Load()
	k := &countingKeys{Keys: cur.keys}
	f.Swap(cur.policy, k)
	frame, hlen := fetchResponse([]fetchPart{{topic: "orders", partition: 0, set: set}})
	var s filter.Standalone
	for i := range 3 {
		x := s.Exchange(1, fetchVersion, nil, 0, bytes.Clone(frame), hlen)
		if err := s.Respond(context.Background(), x, f); err != nil {
			t.Fatal(err)
		}
		s.Done(x)
		if got := k.calls.Load(); got != int32(i+1) {
			t.Fatalf("after %d responses on one connection, %d Decryptor calls; want one per response", i+1, got)
		}
	}
	// A reload takes effect at the next response of the same connection.
	k2 := &countingKeys{Keys: cur.keys}
	f.Swap(cur.policy, k2)
	x := s.Exchange(1, fetchVersion, nil, 0, bytes.Clone(frame), hlen)
	if err := s.Respond(context.Background(), x, f); err != nil {
		t.Fatal(err)
	}
	if k2.calls.Load() != 1 {
		t.Fatal("the new key source was not asked after Swap")
	}
}

// A panic in a decrypting goroutine cannot be recovered by the connection:
// it must fail that partition, not the process.
func TestFetchPanicFailsThePartition(t *testing.T) {
	f := newTestFilter(t, "KEK-orders")
	var parts []fetchPart
	for i := range 4 { // large enough to be decrypted in parallel
		set, _ := bigPartition(t, f, "orders", 12, 16, 1024)
		parts = append(parts, fetchPart{topic: "orders", partition: int32(i), set: set})
	}
	cur := f.state.Load()
	k := &countingKeys{Keys: cur.keys}
	k.panic.Store(true)
	f.Swap(cur.policy, k)
	resp := fetchThrough(t, f, parts)
	for _, rp := range resp.Topics[0].Partitions {
		if rp.ErrorCode != kerr.UnknownServerError.Code || len(rp.RecordBatches) != 0 {
			t.Fatalf("partition %d: code %d", rp.Partition, rp.ErrorCode)
		}
	}
	k.panic.Store(false)
	resp = fetchThrough(t, f, parts)
	for _, rp := range resp.Topics[0].Partitions {
		if rp.ErrorCode != 0 || len(values(t, rp.RecordBatches)) != 12*16 {
			t.Fatalf("after the panic, partition %d: code %d", rp.Partition, rp.ErrorCode)
		}
	}
}

// Topic names from the broker are checked too: an invalid one never reaches
// the policy, a label or a log line, and nothing panics.
func TestFetchInvalidTopicFromBroker(t *testing.T) {
	f := newTestFilter(t, "KEK-orders")
	set, _ := bigPartition(t, f, "orders", 1, 2, 10)
	plain := plainBatch([][]byte{[]byte("x")})
	resp := fetchThrough(t, f, []fetchPart{{topic: "\xff", partition: 0, set: set}, {topic: "\xff", partition: 1, set: plain}})
	for _, rp := range resp.Topics[0].Partitions {
		switch rp.Partition {
		case 0:
			if rp.ErrorCode != kerr.InvalidTopicException.Code {
				t.Fatalf("code %d", rp.ErrorCode)
			}
		case 1:
			if rp.ErrorCode != 0 || !bytes.Equal(rp.RecordBatches, plain) {
				t.Fatalf("plaintext partition changed")
			}
		}
	}
}

// A batch past the decompression bound on a topic no rule encrypts cannot be
// kseal's (produce refuses to write one): it is delivered as stored. On an
// encrypted topic it may hold envelopes: refused.
func TestFetchTooLargeBatch(t *testing.T) {
	f := newMixedFilter(t, func(o *Options) { o.MaxDecompressed = 1 << 20 })
	big := zerosBatch(2<<20, records.CodecZstd)
	resp := fetchThrough(t, f, []fetchPart{{topic: "other", partition: 0, set: big}, {topic: "other", partition: 1, set: cat(headerBatch(records.CodecLz4, "a", "b"), big)}})
	for _, rp := range resp.Topics[0].Partitions {
		if rp.ErrorCode != 0 || !bytes.HasSuffix(rp.RecordBatches, big) {
			t.Fatalf("unresolved topic, partition %d: code %d", rp.Partition, rp.ErrorCode)
		}
	}
	resp = fetchThrough(t, f, []fetchPart{{topic: "enc-a", partition: 0, set: big}})
	if rp := resp.Topics[0].Partitions[0]; rp.ErrorCode != kerr.CorruptMessage.Code {
		t.Fatalf("encrypted topic: code %d, want CORRUPT_MESSAGE", rp.ErrorCode)
	}
}

// A replica topic (policy replicas) holds envelopes MirrorMaker copied from
// its origin: it is decrypted even when a passthrough rule matches its name.
func TestFetchReplicaTopicDecryptedUnderPassthroughRule(t *testing.T) {
	rules := []policy.RuleConfig{{TopicPrefix: "orders", KEK: "KEK-$(topicName)"}, {TopicRegex: ".*", Passthrough: true}}
	f := newFilter(t, rules, []string{"KEK-orders"}, nil)
	set, want := bigPartition(t, f, "orders", 1, 3, 10)
	pol, err := policy.Compile(&policy.Config{Rules: rules, Replicas: []policy.ReplicaConfig{{TopicRegex: `source\.(.*)`, OriginTopic: "$1"}}})
	if err != nil {
		t.Fatal(err)
	}
	f.Swap(pol, f.state.Load().keys)
	resp := fetchThrough(t, f, []fetchPart{{topic: "source.orders", partition: 0, set: set}})
	if got := values(t, resp.Topics[0].Partitions[0].RecordBatches); len(got) != len(want) || !bytes.Equal(got[0], want[0]) {
		t.Fatalf("replica topic not decrypted: %q", got)
	}
}

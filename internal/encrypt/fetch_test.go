package encrypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// These tests run the filter outside the proxy (filter.Standalone) with the
// real local KMS and DEK manager: records are encrypted by the produce path
// and decrypted by the fetch path, as they would be through kseal. The
// integration suite covers the same paths against a real broker; here the
// responses are large and shaped at will, which the parallel decryption of
// big fetch responses needs.

const fetchVersion = 12 // the highest Fetch version kseal forwards while encrypting

func newTestFilter(t testing.TB, keks ...string) *Filter {
	t.Helper()
	return newFilter(t, []policy.RuleConfig{{TopicRegex: ".*", KEK: "KEK-$(topicName)"}}, keks, nil)
}

// newFilter returns a filter over the local KMS (holding keks) and a real
// DEK manager, with rules as its policy; mod, if not nil, changes its
// options.
func newFilter(t testing.TB, rules []policy.RuleConfig, keks []string, mod func(*Options)) *Filter {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cfg := local.NewConfig()
	cfg.KeyStore = filepath.Join(dir, "keys.json")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	if _, err := local.Init(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k, err := local.New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	for _, name := range keks {
		if _, err := k.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	m, err := dek.New(k, dek.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Compile(&policy.Config{Rules: rules, UnresolvedKeyPolicy: policy.PassthroughUnencrypted})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Policy: pol, Keys: managerKeys{m}, Log: log}
	if mod != nil {
		mod(&opts)
	}
	return New(opts)
}

// managerKeys adapts a dek.Manager to Keys (as internal/app does).
type managerKeys struct{ m *dek.Manager }

func (k managerKeys) Resolve(ctx context.Context, name string) (kms.KEKRef, error) {
	return k.m.Resolve(ctx, name)
}

func (k managerKeys) Current(ctx context.Context, kek kms.KEKRef) (recordcrypt.Key, error) {
	key, err := k.m.Current(ctx, kek)
	if err != nil {
		return nil, err
	}
	return key, nil
}

func (k managerKeys) Decryptor(ctx context.Context, edek []byte) (cipher.AEAD, error) {
	return k.m.Decryptor(ctx, edek)
}

// plainBatch encodes an uncompressed v2 batch of values (keys "k<i>").
func plainBatch(values [][]byte) []byte { return codecBatch(values, records.CodecNone) }

// codecBatch encodes a v2 batch of values compressed with c.
func codecBatch(values [][]byte, c records.Codec) []byte {
	var recs []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), Key: fmt.Appendf(nil, "k%d", i), Value: v}
		body := r.AppendTo(nil)[1:] // without the zero Length varint
		r.Length = int32(len(body))
		recs = r.AppendTo(recs)
	}
	if c != records.CodecNone {
		var err error
		if recs, err = records.NewCodecs(0).Compress(nil, recs, c); err != nil {
			panic(err)
		}
	}
	h := kmsg.RecordBatch{
		Magic: 2, Attributes: int16(c), NumRecords: int32(len(values)), LastOffsetDelta: int32(len(values) - 1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, Records: recs,
		Length: int32(49 + len(recs)),
	}
	raw := h.AppendTo(nil)
	setCRC(raw)
	return raw
}

func setCRC(batch []byte) {
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], crc32.MakeTable(crc32.Castagnoli)))
}

// encryptThrough runs a Produce request carrying batch for topic through
// the filter and returns the record set it would forward.
func encryptThrough(t testing.TB, f *Filter, topic string, batch []byte) []byte {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = -1
	req.TimeoutMillis = 1000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	// Request header v2: key, version, correlation id, client id, no tags.
	frame := []byte{0, 0, 0, 9, 0, 0, 0, 1, 0, 1, 't', 0}
	hlen := len(frame)
	frame = req.AppendTo(frame)
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Produce), 9, frame, hlen, nil, 0)
	if err := f.OnRequest(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if x.Local {
		t.Fatalf("produce to %s answered locally", topic)
	}
	var out kmsg.ProduceRequest // our own output: kmsg may decode it
	out.SetVersion(9)
	if err := out.ReadFrom(x.Request[x.HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	set := out.Topics[0].Partitions[0].Records
	if bytes.Equal(set, batch) {
		t.Fatalf("topic %s: produce left the batch as it was", topic)
	}
	return bytes.Clone(set)
}

type fetchPart struct {
	topic     string
	partition int32
	errorCode int16
	set       []byte
}

// fetchResponse encodes a Fetch v12 response frame (header v1) and returns
// it with the header length.
func fetchResponse(parts []fetchPart) ([]byte, int) {
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(fetchVersion)
	for _, p := range parts {
		if n := len(resp.Topics); n == 0 || resp.Topics[n-1].Topic != p.topic {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic = p.topic
			resp.Topics = append(resp.Topics, rt)
		}
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition = p.partition
		rp.ErrorCode = p.errorCode
		rp.HighWatermark = 1 << 20
		rp.RecordBatches = p.set
		rt := &resp.Topics[len(resp.Topics)-1]
		rt.Partitions = append(rt.Partitions, rp)
	}
	frame := []byte{0, 0, 0, 1, 0} // correlation id, no tags
	return resp.AppendTo(frame), 5
}

// fetchThrough runs the response through the filter and decodes what the
// client would get.
func fetchThrough(t *testing.T, f *Filter, parts []fetchPart) *kmsg.FetchResponse {
	t.Helper()
	frame, hlen := fetchResponse(parts)
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, frame, hlen)
	if err := s.Respond(context.Background(), x, f); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(fetchVersion)
	if err := resp.ReadFrom(x.Response[x.RespHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	return resp
}

// values decodes the record values of a record set, failing on a record
// that still carries kseal's marker header.
func values(t testing.TB, set []byte) [][]byte {
	t.Helper()
	var out [][]byte
	p := records.NewProcessor()
	it := records.NewBatchIter(set)
	for it.Next() {
		if err := p.Reset(it.Batch()); err != nil {
			t.Fatal(err)
		}
		for p.Next() {
			r := p.Record()
			for _, h := range r.Headers {
				if string(h.Key) == recordcrypt.HeaderKey {
					t.Fatalf("record %d still carries the marker header", r.OffsetDelta)
				}
			}
			out = append(out, bytes.Clone(r.Value))
		}
		if p.Err() != nil {
			t.Fatal(p.Err())
		}
	}
	return out
}

// bigPartition returns n batches of per values of size bytes, encrypted
// for topic, and the plaintext values in order.
func bigPartition(t testing.TB, f *Filter, topic string, n, per, size int) ([]byte, [][]byte) {
	return codecPartition(t, f, topic, n, per, size, records.CodecNone)
}

// codecPartition is bigPartition with batches compressed by c; values are
// text, so they compress as real ones do.
func codecPartition(t testing.TB, f *Filter, topic string, n, per, size int, c records.Codec) ([]byte, [][]byte) {
	var set []byte
	var want [][]byte
	for b := 0; b < n; b++ {
		vals := make([][]byte, per)
		for i := range vals {
			vals[i] = bytes.Repeat([]byte{byte('a' + (b+i)%26)}, size)
			copy(vals[i], fmt.Sprintf("%s-%d-%d|", topic, b, i))
		}
		enc := encryptThrough(t, f, topic, codecBatch(vals, c))
		binary.BigEndian.PutUint64(enc, uint64(b*per)) // the broker's base offset
		set = append(set, enc...)
		want = append(want, vals...)
	}
	return set, want
}

func TestFetchDecryptsLargeResponseAcrossPartitions(t *testing.T) {
	f := newTestFilter(t, "KEK-orders", "KEK-payments")
	// Four encrypted partitions of about 200 KiB each (over the size where
	// partitions are decrypted in parallel), one plaintext partition in
	// between and one with an error code.
	plain := plainBatch([][]byte{[]byte("not encrypted")})
	var parts []fetchPart
	want := map[string][][]byte{}
	for i, topic := range []string{"orders", "orders", "payments", "payments"} {
		set, vals := bigPartition(t, f, topic, 12, 16, 1024)
		parts = append(parts, fetchPart{topic: topic, partition: int32(i), set: set})
		want[fmt.Sprint(topic, i)] = vals
		if i == 1 {
			parts = append(parts, fetchPart{topic: topic, partition: 9, set: plain})
			parts = append(parts, fetchPart{topic: topic, partition: 10, errorCode: kerr.NotLeaderForPartition.Code})
		}
	}
	for round := 0; round < 3; round++ { // buffers are reused across fetches
		resp := fetchThrough(t, f, parts)
		seen := 0
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				switch rp.Partition {
				case 9:
					if !bytes.Equal(rp.RecordBatches, plain) {
						t.Fatalf("round %d: plaintext partition changed", round)
					}
				case 10:
					if rp.ErrorCode != kerr.NotLeaderForPartition.Code || len(rp.RecordBatches) != 0 {
						t.Fatalf("round %d: error partition changed: code %d, %d bytes", round, rp.ErrorCode, len(rp.RecordBatches))
					}
				default:
					if rp.ErrorCode != 0 {
						t.Fatalf("round %d: %s/%d: error code %d", round, rt.Topic, rp.Partition, rp.ErrorCode)
					}
					got, exp := values(t, rp.RecordBatches), want[fmt.Sprint(rt.Topic, rp.Partition)]
					if len(got) != len(exp) {
						t.Fatalf("round %d: %s/%d: %d values, want %d", round, rt.Topic, rp.Partition, len(got), len(exp))
					}
					for i := range got {
						if !bytes.Equal(got[i], exp[i]) {
							t.Fatalf("round %d: %s/%d: value %d differs", round, rt.Topic, rp.Partition, i)
						}
					}
				}
				seen++
			}
		}
		if seen != len(parts) {
			t.Fatalf("round %d: %d partitions in the response, want %d", round, seen, len(parts))
		}
	}
}

// tamperLast flips a ciphertext byte in the last record of set's last
// batch and fixes the batch CRC, so only authentication can catch it. It
// returns where that batch starts.
func tamperLast(set []byte) int {
	last := records.NewBatchIter(set)
	start := 0
	for last.Next() {
		start = last.Offset()
	}
	set[len(set)-40] ^= 1
	setCRC(set[start:])
	return start
}

func TestFetchTamperedPartitionFailsAlone(t *testing.T) {
	f := newTestFilter(t, "KEK-orders")
	var parts []fetchPart
	for i := 0; i < 4; i++ {
		set, _ := bigPartition(t, f, "orders", 12, 16, 1024)
		parts = append(parts, fetchPart{topic: "orders", partition: int32(i), set: set})
	}
	// Partition 2: its last batch is tampered with, the 11 before it are
	// delivered. Partition 3: its only batch is, the partition fails.
	tamperLast(parts[2].set)
	one, _ := bigPartition(t, f, "orders", 1, 16, 1024)
	tamperLast(one)
	parts[3].set = one
	for round := 0; round < 2; round++ {
		resp := fetchThrough(t, f, parts)
		for _, rp := range resp.Topics[0].Partitions {
			switch rp.Partition {
			case 3:
				if rp.ErrorCode != kerr.CorruptMessage.Code || len(rp.RecordBatches) != 0 {
					t.Fatalf("tampered partition: code %d, %d bytes; want CORRUPT_MESSAGE and no records", rp.ErrorCode, len(rp.RecordBatches))
				}
			case 2:
				if rp.ErrorCode != 0 || len(values(t, rp.RecordBatches)) != 11*16 {
					t.Fatalf("partition 2: code %d; want the 11 batches before the tampered one", rp.ErrorCode)
				}
			default:
				if rp.ErrorCode != 0 || len(values(t, rp.RecordBatches)) != 12*16 {
					t.Fatalf("partition %d: code %d; want its records decrypted", rp.Partition, rp.ErrorCode)
				}
			}
		}
	}
}

func TestFetchSmallResponse(t *testing.T) {
	f := newTestFilter(t, "KEK-orders")
	set, want := bigPartition(t, f, "orders", 1, 3, 10)
	resp := fetchThrough(t, f, []fetchPart{{topic: "orders", partition: 0, set: set}})
	got := values(t, resp.Topics[0].Partitions[0].RecordBatches)
	if len(got) != len(want) || !bytes.Equal(got[2], want[2]) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// BenchmarkFetchDecrypt decrypts a response like the Java consumer's
// default fetch of a backlog: three partitions of about 1 MiB of 1 KiB
// records in 16 KiB batches, uncompressed and with each codec (the batches
// are decompressed, decrypted and compressed again).
func BenchmarkFetchDecrypt(b *testing.B) {
	for _, c := range []records.Codec{records.CodecNone, records.CodecGzip, records.CodecSnappy, records.CodecLz4, records.CodecZstd} {
		b.Run(c.String(), func(b *testing.B) {
			t := testing.TB(b)
			f := newTestFilter(t, "KEK-orders")
			var parts []fetchPart
			size := 0
			for i := 0; i < 3; i++ {
				set, _ := codecPartition(t, f, "orders", 64, 16, 1024, c)
				parts = append(parts, fetchPart{topic: "orders", partition: int32(i), set: set})
				size += 64 * 16 * 1024
			}
			frame, hlen := fetchResponse(parts)
			var s filter.Standalone
			ctx := context.Background()
			b.SetBytes(int64(size)) // plaintext value bytes
			b.ReportAllocs()
			for b.Loop() {
				x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, frame, hlen)
				if err := s.Respond(ctx, x, f); err != nil {
					b.Fatal(err)
				}
				s.Done(x)
			}
		})
	}
}

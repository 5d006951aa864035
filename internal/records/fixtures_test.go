package records

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fixtures are built with franz-go's encoders (kmsg for the wire layout, kgo
// for compression), independent of the code under test.

var allCodecs = []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLz4, CodecZstd}

// kgoCodec maps a codec to franz-go's option.
func kgoCodec(c Codec) kgo.CompressionCodec {
	switch c {
	case CodecGzip:
		return kgo.GzipCompression()
	case CodecSnappy:
		return kgo.SnappyCompression()
	case CodecLz4:
		return kgo.Lz4Compression()
	case CodecZstd:
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// kgoCompress compresses with franz-go's producer compressor.
func kgoCompress(t testing.TB, c Codec, src []byte) []byte {
	t.Helper()
	if c == CodecNone {
		return src
	}
	comp, err := kgo.DefaultCompressor(kgoCodec(c))
	if err != nil {
		t.Fatal(err)
	}
	out, used := comp.Compress(new(bytes.Buffer), src)
	if int8(used) != int8(c) {
		t.Fatalf("kgo compressed with codec %d, want %d", used, c)
	}
	return bytes.Clone(out)
}

// encodeRecords encodes recs with kmsg, filling in each record's Length.
func encodeRecords(recs []kmsg.Record) []byte {
	var out []byte
	for _, r := range recs {
		r.Length = 0
		body := r.AppendTo(nil)[1:] // varint 0 is one byte
		r.Length = int32(len(body))
		out = r.AppendTo(out)
	}
	return out
}

// buildBatch encodes a v2 batch with kmsg around recs compressed by kgo. The
// header's Attributes codec bits, NumRecords, Length and CRC are set here.
func buildBatch(t testing.TB, h kmsg.RecordBatch, c Codec, recs []kmsg.Record) []byte {
	t.Helper()
	return buildBatchRaw(h, c, len(recs), kgoCompress(t, c, encodeRecords(recs)))
}

// buildBatchRaw wraps an already encoded (and compressed) records section.
func buildBatchRaw(h kmsg.RecordBatch, c Codec, n int, section []byte) []byte {
	h.Magic = 2
	h.Attributes = h.Attributes&^7 | int16(c)
	h.NumRecords = int32(n)
	h.Records = section
	h.Length = int32(49 + len(section))
	h.CRC = 0
	raw := h.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// sampleHeader has every header field set to something recognisable.
func sampleHeader() kmsg.RecordBatch {
	return kmsg.RecordBatch{
		FirstOffset:          1000,
		PartitionLeaderEpoch: 7,
		LastOffsetDelta:      9,
		FirstTimestamp:       1_700_000_000_000,
		MaxTimestamp:         1_700_000_000_500,
		ProducerID:           42,
		ProducerEpoch:        3,
		FirstSequence:        100,
	}
}

// sampleRecords covers null and empty keys and values, null and empty
// header values, negative and large timestamp deltas, offset gaps (as after
// compaction), multi-byte lengths, and a header key shared with a value.
func sampleRecords() []kmsg.Record {
	big := bytes.Repeat([]byte("0123456789abcdef"), 40)
	return []kmsg.Record{
		{OffsetDelta: 0, Key: nil, Value: []byte("v0")},
		{OffsetDelta: 1, TimestampDelta64: 5, Key: []byte{}, Value: []byte{},
			Headers: []kmsg.Header{{Key: "h-null", Value: nil}, {Key: "h-empty", Value: []byte{}}}},
		{OffsetDelta: 2, TimestampDelta64: -5, Key: []byte("k"), Value: nil},
		{OffsetDelta: 5, TimestampDelta64: 1 << 40, Key: big[:200], Value: big,
			Headers: []kmsg.Header{{Key: "a", Value: []byte("1")}, {Key: "kseal", Value: []byte{2}}, {Key: "b", Value: big[:130]}}},
		{OffsetDelta: 9, TimestampDelta64: -1 << 35, Attributes: 0, Key: []byte("last"), Value: []byte("mentions kseal only in the value")},
	}
}

// wantRecord is a record as tests compare them.
type wantRecord struct {
	attrs    int8
	ts       int64
	off      int32
	key, val []byte
	hdrs     []RecordHeader
}

func fromKmsg(r kmsg.Record) wantRecord {
	w := wantRecord{attrs: r.Attributes, ts: r.TimestampDelta64, off: r.OffsetDelta, key: r.Key, val: r.Value}
	for _, h := range r.Headers {
		w.hdrs = append(w.hdrs, RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	return w
}

func fromRecord(r *Record) wantRecord {
	w := wantRecord{attrs: r.Attributes, ts: r.TimestampDelta, off: r.OffsetDelta,
		key: cloneNullable(r.Key), val: cloneNullable(r.Value)}
	for _, h := range r.Headers {
		w.hdrs = append(w.hdrs, RecordHeader{Key: bytes.Clone(h.Key), Value: cloneNullable(h.Value)})
	}
	return w
}

// cloneNullable copies b keeping nil and empty apart.
func cloneNullable(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// sameNullable compares byte fields, nil and empty being different.
func sameNullable(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

func sameRecord(a, b wantRecord) bool {
	if a.attrs != b.attrs || a.ts != b.ts || a.off != b.off || !sameNullable(a.key, b.key) ||
		!sameNullable(a.val, b.val) || len(a.hdrs) != len(b.hdrs) {
		return false
	}
	for i := range a.hdrs {
		if !bytes.Equal(a.hdrs[i].Key, b.hdrs[i].Key) || !sameNullable(a.hdrs[i].Value, b.hdrs[i].Value) {
			return false
		}
	}
	return true
}

// readAll loads raw into p and returns its records.
func readAll(t testing.TB, p *Processor, raw []byte) []wantRecord {
	t.Helper()
	b, err := ParseBatch(raw)
	if err != nil {
		t.Fatalf("ParseBatch: %v", err)
	}
	if err := p.Reset(&b); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	var out []wantRecord
	for p.Next() {
		out = append(out, fromRecord(p.Record()))
	}
	if err := p.Err(); err != nil {
		t.Fatalf("Next: %v", err)
	}
	return out
}

// kgoDecode decodes a record set the way a franz-go consumer does,
// validating CRCs, and fails the test on any error.
func kgoDecode(t testing.TB, set []byte) []*kgo.Record {
	t.Helper()
	rp := kmsg.FetchResponseTopicPartition{Partition: 0, HighWatermark: 1 << 40, LastStableOffset: 1 << 40, RecordBatches: set}
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{KeepControlRecords: true, Topic: "t"}, &rp, kgo.DefaultDecompressor(), nil)
	if fp.Err != nil {
		t.Fatalf("franz-go rejects the record set: %v", fp.Err)
	}
	return fp.Records
}

package records

import (
	"bytes"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func legacyV0(off int64, key, val []byte) []byte {
	m := kmsg.MessageV0{Offset: off, Magic: 0, Key: key, Value: val}
	m.MessageSize = int32(len(m.AppendTo(nil)) - 12)
	return m.AppendTo(nil)
}

func legacyV1(off int64, key, val []byte) []byte {
	m := kmsg.MessageV1{Offset: off, Magic: 1, Timestamp: 1234, Key: key, Value: val}
	m.MessageSize = int32(len(m.AppendTo(nil)) - 12)
	return m.AppendTo(nil)
}

func TestParseBatchHeader(t *testing.T) {
	h := sampleHeader()
	h.Attributes = 0x08 | 0x10 | 0x40
	raw := buildBatch(t, h, CodecGzip, sampleRecords())
	b, err := ParseBatch(append(bytes.Clone(raw), "next batch"...))
	if err != nil {
		t.Fatal(err)
	}
	if b.Kind != KindBatch || !bytes.Equal(b.Raw, raw) {
		t.Fatalf("kind %s, raw %d bytes (want %d)", b.Kind, len(b.Raw), len(raw))
	}
	got := b.BatchHeader
	want := BatchHeader{
		BaseOffset: h.FirstOffset, Length: int32(len(raw) - 12), PartitionLeaderEpoch: h.PartitionLeaderEpoch,
		Magic: 2, CRC: got.CRC, Attributes: h.Attributes | int16(CodecGzip), LastOffsetDelta: h.LastOffsetDelta,
		BaseTimestamp: h.FirstTimestamp, MaxTimestamp: h.MaxTimestamp, ProducerID: h.ProducerID,
		ProducerEpoch: h.ProducerEpoch, BaseSequence: h.FirstSequence, NumRecords: int32(len(sampleRecords())),
	}
	if got != want {
		t.Errorf("header\n got %+v\nwant %+v", got, want)
	}
	if b.Codec() != CodecGzip || !b.LogAppendTime() || !b.Transactional() || b.Control() || !b.HasDeleteHorizon() {
		t.Errorf("attribute accessors wrong for %#x", b.Attributes)
	}
	if err := b.VerifyCRC(); err != nil {
		t.Errorf("VerifyCRC: %v", err)
	}
}

func TestBatchIter(t *testing.T) {
	b1 := buildBatch(t, sampleHeader(), CodecNone, sampleRecords())
	h2 := sampleHeader()
	h2.FirstOffset = 2000
	b2 := buildBatch(t, h2, CodecLz4, sampleRecords())
	v0 := legacyV0(5, nil, []byte("old"))
	v1 := legacyV1(6, []byte("k"), nil)

	type entry struct {
		kind  Kind
		magic int8
		off   int64
		start int
		size  int
	}
	tests := []struct {
		name    string
		set     []byte
		want    []entry
		wantErr bool
	}{
		{"empty", nil, nil, false},
		{"two batches", cat(b1, b2), []entry{{KindBatch, 2, 1000, 0, len(b1)}, {KindBatch, 2, 2000, len(b1), len(b2)}}, false},
		{"legacy messages", cat(v0, v1), []entry{{KindLegacy, 0, 5, 0, len(v0)}, {KindLegacy, 1, 6, len(v0), len(v1)}}, false},
		{"partial after batch", cat(b1, b2[:100]), []entry{{KindBatch, 2, 1000, 0, len(b1)}, {KindPartial, 2, 2000, len(b1), 100}}, false},
		{"partial without magic", cat(b1, b2[:14]), []entry{{KindBatch, 2, 1000, 0, len(b1)}, {KindPartial, -1, 2000, len(b1), 14}}, false},
		{"partial without length", b2[:5], []entry{{KindPartial, -1, 0, 0, 5}}, false},
		{"unknown magic", cat(b1, withByte(b2, 16, 3)), []entry{{KindBatch, 2, 1000, 0, len(b1)}}, true},
		{"length below v2 minimum", withByte(withByte(b1, 10, 0), 11, 10), nil, true},
		{"negative length", withByte(b1, 8, 0x80), nil, true},
		{"v0 length below minimum", withByte(v0, 11, 5), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := NewBatchIter(tt.set)
			var got []entry
			for it.Next() {
				b := it.Batch()
				got = append(got, entry{b.Kind, b.Magic, b.BaseOffset, it.Offset(), len(b.Raw)})
				if !bytes.Equal(b.Raw, tt.set[it.Offset():it.Offset()+len(b.Raw)]) {
					t.Errorf("Raw is not the set's bytes at %d", it.Offset())
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("entries %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d: %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			if err := it.Err(); (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrCorrupt)) {
				t.Errorf("Err = %v, want error %v", err, tt.wantErr)
			}
			failedAt := 0
			for _, e := range tt.want {
				failedAt += e.size
			}
			if tt.wantErr && it.Offset() != failedAt {
				t.Errorf("Offset after error = %d, want %d", it.Offset(), failedAt)
			}
		})
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func withByte(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

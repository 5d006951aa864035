package testenv

import (
	"encoding/binary"
	"fmt"

	"github.com/kseal/kseal/internal/records"
)

// Codec re-exports the record batch compression codecs for assertions.
type Codec = records.Codec

// The codecs a batch can carry.
const (
	CodecNone   = records.CodecNone
	CodecGzip   = records.CodecGzip
	CodecSnappy = records.CodecSnappy
	CodecLz4    = records.CodecLz4
	CodecZstd   = records.CodecZstd
)

// SegmentBatch is one record batch (magic 2) as stored in a segment file.
// The header is read here independently of the proxy's parser so tests can
// check what actually reached the disk.
type SegmentBatch struct {
	BaseOffset    int64
	LastOffset    int64
	Codec         Codec
	Transactional bool
	Control       bool
	ProducerID    int64
	ProducerEpoch int16
	BaseSequence  int32
	NumRecords    int32
	Records       []byte // the records section, compressed as Codec says
}

// Decompressed returns the records section uncompressed.
func (b SegmentBatch) Decompressed() ([]byte, error) {
	c := records.NewCodecs(64 << 20)
	defer c.Close()
	return c.Decompress(nil, b.Records, b.Codec)
}

// batchHeaderLen is the fixed v2 header: baseOffset(8) batchLength(4)
// partitionLeaderEpoch(4) magic(1) crc(4) attributes(2) lastOffsetDelta(4)
// baseTimestamp(8) maxTimestamp(8) producerId(8) producerEpoch(2)
// baseSequence(4) recordCount(4).
const batchHeaderLen = 61

// ParseSegment splits a segment file into its batches. It stops at the
// first incomplete batch (a broker may be appending) and reports an error
// only for a batch that is complete but not magic 2.
func ParseSegment(b []byte) ([]SegmentBatch, error) {
	var out []SegmentBatch
	for len(b) >= 12 {
		n := int64(int32(binary.BigEndian.Uint32(b[8:12])))
		if n < batchHeaderLen-12 || 12+n > int64(len(b)) {
			break
		}
		batch := b[:12+n]
		b = b[12+n:]
		if batch[16] != 2 {
			return out, fmt.Errorf("testenv: segment batch at offset %d has magic %d", int64(binary.BigEndian.Uint64(batch)), batch[16])
		}
		attrs := binary.BigEndian.Uint16(batch[21:23])
		base := int64(binary.BigEndian.Uint64(batch[0:8]))
		out = append(out, SegmentBatch{
			BaseOffset:    base,
			LastOffset:    base + int64(int32(binary.BigEndian.Uint32(batch[23:27]))),
			Codec:         Codec(attrs & 7),
			Transactional: attrs&0x10 != 0,
			Control:       attrs&0x20 != 0,
			ProducerID:    int64(binary.BigEndian.Uint64(batch[43:51])),
			ProducerEpoch: int16(binary.BigEndian.Uint16(batch[51:53])),
			BaseSequence:  int32(binary.BigEndian.Uint32(batch[53:57])),
			NumRecords:    int32(binary.BigEndian.Uint32(batch[57:61])),
			Records:       batch[batchHeaderLen:],
		})
	}
	return out, nil
}

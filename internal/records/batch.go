package records

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Byte offsets of the RecordBatch v2 header fields.
const (
	offLength          = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offNumRecords      = 57

	// HeaderSize is the size of a RecordBatch v2 header: everything up to
	// and including recordsCount.
	HeaderSize = 61

	// lengthPrefix is baseOffset plus batchLength: the bytes that
	// batchLength does not count.
	lengthPrefix = 12

	// Smallest legal batchLength / message_size per magic: v2 is the header
	// after the length; v0 is crc, magic, attributes and two int32 lengths;
	// v1 adds an int64 timestamp.
	minLengthV2 = HeaderSize - lengthPrefix
	minLengthV0 = 4 + 1 + 1 + 4 + 4
	minLengthV1 = minLengthV0 + 8
)

// Attribute bits of a v2 batch.
const (
	attrCodecMask     = 0x07
	attrTimestampType = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
	attrDeleteHorizon = 0x40
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Codec is a Kafka compression codec, the low three attribute bits.
type Codec int8

// The codecs Kafka defines.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLz4    Codec = 3
	CodecZstd   Codec = 4
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLz4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// Kind says what a [Batch] from a record set is.
type Kind uint8

const (
	// KindBatch is a complete RecordBatch v2 (magic 2).
	KindBatch Kind = iota
	// KindLegacy is one complete magic 0 or 1 message (an entry of an old
	// message set, possibly a wrapper holding compressed inner messages).
	// Only BaseOffset, Length and Magic of its header are set.
	KindLegacy
	// KindPartial is the trailing bytes of a record set that do not hold a
	// complete batch. Fetch responses may end like this; forward it as is.
	// Header fields are set only as far as the bytes reach (Magic is -1
	// when the magic byte is missing).
	KindPartial
)

func (k Kind) String() string {
	switch k {
	case KindBatch:
		return "batch"
	case KindLegacy:
		return "legacy"
	case KindPartial:
		return "partial"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// BatchHeader holds the fixed fields of a RecordBatch v2 header.
type BatchHeader struct {
	BaseOffset           int64
	Length               int32 // batchLength: bytes after this field
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64 // the delete horizon when HasDeleteHorizon
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// Codec returns the compression codec of the batch's records.
func (h *BatchHeader) Codec() Codec { return Codec(h.Attributes & attrCodecMask) }

// LogAppendTime reports timestamp type 1 (broker time) rather than 0.
func (h *BatchHeader) LogAppendTime() bool { return h.Attributes&attrTimestampType != 0 }

// Transactional reports the transactional attribute bit.
func (h *BatchHeader) Transactional() bool { return h.Attributes&attrTransactional != 0 }

// Control reports a control batch (transaction markers). Control batches are
// never changed: Processor.Rewrite copies them byte for byte.
func (h *BatchHeader) Control() bool { return h.Attributes&attrControl != 0 }

// HasDeleteHorizon reports the delete horizon attribute bit.
func (h *BatchHeader) HasDeleteHorizon() bool { return h.Attributes&attrDeleteHorizon != 0 }

// Batch is one entry of a record set: its raw bytes and parsed header.
type Batch struct {
	BatchHeader
	Kind Kind
	// Raw is the entry's bytes, a view into the record set: for KindBatch
	// and KindLegacy the 12-byte prefix plus Length bytes; for KindPartial
	// everything left.
	Raw []byte
}

// VerifyCRC checks a complete v2 batch's CRC-32C. It returns ErrCRCMismatch
// when it does not match and ErrCorrupt for anything that is not a complete
// v2 batch.
func (b *Batch) VerifyCRC() error {
	if b.Kind != KindBatch || len(b.Raw) < HeaderSize {
		return fmt.Errorf("verify CRC of %s entry: %w", b.Kind, ErrCorrupt)
	}
	if got := crc32.Checksum(b.Raw[offAttributes:], castagnoli); got != b.CRC {
		return fmt.Errorf("batch at offset %d: stored %08x, computed %08x: %w", b.BaseOffset, b.CRC, got, ErrCRCMismatch)
	}
	return nil
}

// ParseBatch parses the first entry of a record set. The returned Batch's Raw
// is a view into data and len(Raw) is how many bytes the entry takes. Errors
// wrap ErrCorrupt: a length below the minimum for the magic, or a magic other
// than 0, 1 and 2 in a complete entry. Incomplete data is not an error: it is
// a KindPartial batch.
func ParseBatch(data []byte) (Batch, error) {
	var b Batch
	b.Magic = -1
	if len(data) < lengthPrefix {
		b.Kind, b.Raw = KindPartial, data
		if len(data) >= 8 {
			b.BaseOffset = int64(binary.BigEndian.Uint64(data))
		}
		return b, nil
	}
	b.BaseOffset = int64(binary.BigEndian.Uint64(data))
	b.Length = int32(binary.BigEndian.Uint32(data[offLength:]))
	if b.Length < 0 {
		return b, fmt.Errorf("entry at offset %d: negative length %d: %w", b.BaseOffset, b.Length, ErrCorrupt)
	}
	if len(data) <= offMagic {
		b.Kind, b.Raw = KindPartial, data
		return b, nil
	}
	b.PartitionLeaderEpoch = int32(binary.BigEndian.Uint32(data[offLeaderEpoch:]))
	b.Magic = int8(data[offMagic])
	var min int32
	switch b.Magic {
	case 0:
		min = minLengthV0
	case 1:
		min = minLengthV1
	case 2:
		min = minLengthV2
	default:
		// An unknown magic in a cut-off entry may just be a cut-off
		// entry of a future format; either way nobody here can read it.
		return b, fmt.Errorf("entry at offset %d: unknown magic %d: %w", b.BaseOffset, b.Magic, ErrCorrupt)
	}
	if b.Length < min {
		return b, fmt.Errorf("entry at offset %d: magic %d length %d below minimum %d: %w", b.BaseOffset, b.Magic, b.Length, min, ErrCorrupt)
	}
	end := int64(lengthPrefix) + int64(b.Length)
	if end > int64(len(data)) {
		b.Kind, b.Raw = KindPartial, data
		return b, nil
	}
	b.Raw = data[:end]
	if b.Magic != 2 {
		// Old message sets use the same offset/size framing; their CRC is
		// a different field layout, not ours to read.
		b.Kind = KindLegacy
		return b, nil
	}
	b.Kind = KindBatch
	r := b.Raw
	b.CRC = binary.BigEndian.Uint32(r[offCRC:])
	b.Attributes = int16(binary.BigEndian.Uint16(r[offAttributes:]))
	b.LastOffsetDelta = int32(binary.BigEndian.Uint32(r[offLastOffsetDelta:]))
	b.BaseTimestamp = int64(binary.BigEndian.Uint64(r[offBaseTimestamp:]))
	b.MaxTimestamp = int64(binary.BigEndian.Uint64(r[offMaxTimestamp:]))
	b.ProducerID = int64(binary.BigEndian.Uint64(r[offProducerID:]))
	b.ProducerEpoch = int16(binary.BigEndian.Uint16(r[offProducerEpoch:]))
	b.BaseSequence = int32(binary.BigEndian.Uint32(r[offBaseSequence:]))
	b.NumRecords = int32(binary.BigEndian.Uint32(r[offNumRecords:]))
	return b, nil
}

// BatchIter walks the entries of a record set (a partition's records bytes)
// without copying. The zero value is an empty iterator; Reset reuses one.
//
//	it := records.NewBatchIter(set)
//	for it.Next() {
//		b := it.Batch()
//		...
//	}
//	if err := it.Err(); err != nil { ... set[it.Offset():] is what failed ... }
type BatchIter struct {
	data  []byte
	start int // where the current entry starts
	next  int // where the next entry starts
	cur   Batch
	err   error
}

// NewBatchIter returns an iterator over recordSet.
func NewBatchIter(recordSet []byte) BatchIter { return BatchIter{data: recordSet} }

// Reset restarts the iterator on recordSet.
func (it *BatchIter) Reset(recordSet []byte) { *it = BatchIter{data: recordSet} }

// Next advances to the next entry. It returns false at the end of the set,
// after a KindPartial entry, or on a malformed entry (see Err).
func (it *BatchIter) Next() bool {
	if it.err != nil || it.next >= len(it.data) {
		return false
	}
	it.start = it.next
	b, err := ParseBatch(it.data[it.start:])
	if err != nil {
		it.err = fmt.Errorf("record set byte %d: %w", it.start, err)
		it.cur = Batch{}
		return false
	}
	it.cur = b
	it.next = it.start + len(b.Raw)
	return true
}

// Batch returns the current entry. It stays valid until the next call to
// Next or Reset; its Raw aliases the record set.
func (it *BatchIter) Batch() *Batch { return &it.cur }

// Err returns the error that stopped iteration, if any. It wraps ErrCorrupt.
func (it *BatchIter) Err() error { return it.err }

// Offset returns the byte offset in the record set of the current entry, or,
// after Next returned false because of an error, of the entry that failed.
func (it *BatchIter) Offset() int { return it.start }

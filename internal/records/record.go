package records

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// RecordHeader is one record header. Key is never null on the wire (a null
// key is rejected as corrupt); Value nil means null.
type RecordHeader struct {
	Key   []byte
	Value []byte
}

// Record is one record of a batch, as views into the Processor's buffers.
// Key and Value nil mean null; a non-nil empty slice is an empty key/value.
// Everything here is valid until the next call to Next, Rewrite or Reset on
// the Processor that produced it.
type Record struct {
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int32
	Key            []byte
	Value          []byte
	// Headers is backed by a buffer the Processor reuses. A Rewrite
	// callback may change it in place, reslice it, or append to it.
	Headers []RecordHeader
}

// minRecordSize is the smallest encoded record: one byte each for length,
// attributes, timestampDelta, offsetDelta, key length, value length and
// header count. It bounds the record count a batch may claim.
const minRecordSize = 7

// minHeaderSize is the smallest encoded header: key length and value length.
const minHeaderSize = 2

// MaxRecordHeaders is the most headers a record may have for the Processor
// to parse it into a Record (Next, Rewrite); a record with more is refused as
// corrupt. Kafka sets no limit, but every header costs a 48-byte
// RecordHeader for 2 bytes of input: without a bound one 64 MiB batch of
// empty headers would take 1.5 GiB. (ScanHeader and HasHeader, which fill
// no Record, read any number.)
const MaxRecordHeaders = 1 << 16

// retainHeaders is the largest header buffer a Processor keeps between
// batches.
const retainHeaders = 1024

// readVarint reads a zig-zag varint at b[pos:]. ok is false when the bytes
// run out or the value overflows 64 bits.
func readVarint(b []byte, pos int) (v int64, next int, ok bool) {
	if pos >= len(b) {
		return 0, pos, false
	}
	// One-byte fast path: most lengths, deltas and counts in small records.
	if c := b[pos]; c < 0x80 {
		return int64(c>>1) ^ -int64(c&1), pos + 1, true
	}
	v, n := binary.Varint(b[pos:])
	if n <= 0 {
		return 0, pos, false
	}
	return v, pos + n, true
}

// readVarint32 reads a zig-zag varint that must fit an int32.
func readVarint32(b []byte, pos int) (int32, int, bool) {
	v, next, ok := readVarint(b, pos)
	if !ok || v < math.MinInt32 || v > math.MaxInt32 {
		return 0, pos, false
	}
	return int32(v), next, true
}

// readBytes reads a varint length and that many bytes; length -1 is null
// (nil). A null is allowed only when nullable.
func readBytes(b []byte, pos int, end int, nullable bool) ([]byte, int, bool) {
	n, pos, ok := readVarint32(b, pos)
	if !ok {
		return nil, pos, false
	}
	if n < 0 {
		if n == -1 && nullable {
			return nil, pos, true
		}
		return nil, pos, false
	}
	if int(n) > end-pos {
		return nil, pos, false
	}
	return b[pos : pos+int(n) : pos+int(n)], pos + int(n), true
}

// parseRecord parses the record at data[pos:] into r, reusing hdrs for its
// headers. It returns the position after the record and the (possibly grown)
// header buffer; ok is false for malformed bytes. The record must end exactly
// where its length says.
func parseRecord(data []byte, pos int, r *Record, hdrs []RecordHeader) (int, []RecordHeader, bool) {
	length, pos, ok := readVarint32(data, pos)
	if !ok || length < 0 || int(length) > len(data)-pos {
		return pos, hdrs, false
	}
	end := pos + int(length)
	body := data[:end] // reads below cannot run past this record
	if pos >= end {
		return pos, hdrs, false
	}
	r.Attributes = int8(body[pos])
	pos++
	if r.TimestampDelta, pos, ok = readVarint(body, pos); !ok {
		return pos, hdrs, false
	}
	if r.OffsetDelta, pos, ok = readVarint32(body, pos); !ok {
		return pos, hdrs, false
	}
	if r.Key, pos, ok = readBytes(body, pos, end, true); !ok {
		return pos, hdrs, false
	}
	if r.Value, pos, ok = readBytes(body, pos, end, true); !ok {
		return pos, hdrs, false
	}
	count, pos, ok := readVarint32(body, pos)
	if !ok || count < 0 || int(count) > (end-pos)/minHeaderSize || count > MaxRecordHeaders {
		return pos, hdrs, false
	}
	hdrs = hdrs[:0]
	for range count {
		var h RecordHeader
		if h.Key, pos, ok = readBytes(body, pos, end, false); !ok {
			return pos, hdrs, false
		}
		if h.Value, pos, ok = readBytes(body, pos, end, true); !ok {
			return pos, hdrs, false
		}
		hdrs = append(hdrs, h)
	}
	r.Headers = hdrs
	if pos != end {
		return pos, hdrs, false
	}
	return end, hdrs, true
}

// scanHeaderKey walks the record at data[pos:] far enough to tell whether a
// header has key k, without filling a Record. It returns the position after
// the record.
func scanHeaderKey(data []byte, pos int, k string) (next int, found, ok bool) {
	length, pos, ok := readVarint32(data, pos)
	if !ok || length < 0 || int(length) > len(data)-pos {
		return pos, false, false
	}
	end := pos + int(length)
	body := data[:end]
	pos++ // attributes
	if _, pos, ok = readVarint(body, pos); !ok {
		return pos, false, false
	}
	if _, pos, ok = readVarint32(body, pos); !ok {
		return pos, false, false
	}
	if _, pos, ok = readBytes(body, pos, end, true); !ok {
		return pos, false, false
	}
	if _, pos, ok = readBytes(body, pos, end, true); !ok {
		return pos, false, false
	}
	count, pos, ok := readVarint32(body, pos)
	if !ok || count < 0 || int(count) > (end-pos)/minHeaderSize {
		return pos, false, false
	}
	for range count {
		var key []byte
		if key, pos, ok = readBytes(body, pos, end, false); !ok {
			return pos, false, false
		}
		if string(key) == k {
			found = true
		}
		if _, pos, ok = readBytes(body, pos, end, true); !ok {
			return pos, false, false
		}
	}
	if pos != end {
		return pos, false, false
	}
	return end, found, true
}

// varintSize is the encoded size of v as a zig-zag varint.
func varintSize(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
}

// bytesSize is the encoded size of a nullable byte field.
func bytesSize(b []byte) int {
	if b == nil {
		return 1 // -1
	}
	return varintSize(int64(len(b))) + len(b)
}

// appendBytes appends a nullable byte field.
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 1) // zig-zag -1
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// recordBodySize is the encoded size of r after its length prefix.
func recordBodySize(r *Record) int {
	n := 1 + varintSize(r.TimestampDelta) + varintSize(int64(r.OffsetDelta)) +
		bytesSize(r.Key) + bytesSize(r.Value) + varintSize(int64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		n += varintSize(int64(len(h.Key))) + len(h.Key) + bytesSize(h.Value)
	}
	return n
}

// appendRecord appends r in the v2 record encoding. A header key that is nil
// is written as empty: header keys are not nullable. ok is false if the
// record would be longer than an int32 can say.
func appendRecord(dst []byte, r *Record) ([]byte, bool) {
	n := recordBodySize(r)
	if n > math.MaxInt32 {
		return dst, false
	}
	dst = binary.AppendVarint(dst, int64(n))
	dst = append(dst, byte(r.Attributes))
	dst = binary.AppendVarint(dst, r.TimestampDelta)
	dst = binary.AppendVarint(dst, int64(r.OffsetDelta))
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst, true
}

package records

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// retainLimit is the largest scratch buffer a Processor keeps between
// batches; a rare bigger batch gets a buffer that is dropped after it, so one
// huge batch does not pin its memory in a pooled Processor forever.
const retainLimit = 16 << 20

// spareHeaders is how many headers a Rewrite callback can append to a record
// without allocating: the Processor keeps that much room in Record.Headers.
const spareHeaders = 2

// Option configures a Processor.
type Option func(*Processor)

// WithMaxDecompressed bounds how large a batch's records may decompress to
// (zip-bomb defence); beyond it Reset fails with ErrTooLarge. The default is
// DefaultMaxDecompressed.
func WithMaxDecompressed(n int) Option {
	return func(p *Processor) { p.codecs = NewCodecs(n) }
}

// WithVerifyCRC makes Reset check every batch's CRC-32C (ErrCRCMismatch).
// Off by default: on produce the broker checks it anyway, and on fetch the
// consumer does.
func WithVerifyCRC(on bool) Option {
	return func(p *Processor) { p.verify = on }
}

// WithStoredRewrite sets SetStoredRewrite(on) from the start.
func WithStoredRewrite(on bool) Option {
	return func(p *Processor) { p.stored = on }
}

// EditFunc is called by Rewrite once per record, in order. It may change
// r.Value, r.Key and r.Headers (in place, by reslicing, or by appending; up
// to two appends reuse the Processor's room and allocate nothing). The bytes
// it puts there need to stay valid only until it returns: Rewrite copies
// them out before the next call. Attributes, TimestampDelta and OffsetDelta
// are written as they are left and should not be changed. An error stops
// the rewrite.
type EditFunc func(r *Record) error

// Processor reads and rewrites one v2 batch at a time with reusable buffers
// and codec state. Reset loads a batch (decompressing it); then Next/Record
// iterate its records, HasHeader scans them, and Rewrite rebuilds the batch.
// Not safe for concurrent use.
type Processor struct {
	codecs *Codecs
	verify bool
	stored bool // Rewrite writes compressed batches' records as stored blocks

	// limit and reserve bound and account the next decompressions
	// (SetLimit); zero and nil: the codecs' bound, no accounting.
	limit   int
	reserve Reserve

	b      Batch
	loaded bool
	data   []byte // the batch's records, uncompressed: a view into b.Raw or dec
	dec    []byte // decompression buffer
	enc    []byte // uncompressed records being rebuilt, before compression

	pos     int   // parse position in data
	idx     int32 // records parsed so far
	rebuilt int   // uncompressed size of the records the last Rewrite wrote
	rec     Record
	hdrs    []RecordHeader
	err     error
}

// NewProcessor returns a Processor.
func NewProcessor(opts ...Option) *Processor {
	p := &Processor{}
	for _, o := range opts {
		o(p)
	}
	if p.codecs == nil {
		p.codecs = NewCodecs(0)
	}
	return p
}

// Codecs returns the Processor's codec state, to compress or decompress
// other data with the same reusable instances.
func (p *Processor) Codecs() *Codecs { return p.codecs }

// SetStoredRewrite makes the next Rewrites write a compressed batch's
// records as a stream of stored (uncompressed) blocks of the batch's codec
// (AppendStored) instead of compressing them again. The codec attribute is
// kept, so the batch stays valid for every reader and for a topic whose
// compression.type is that codec. For batches whose values were encrypted:
// ciphertext does not compress.
func (p *Processor) SetStoredRewrite(on bool) { p.stored = on }

// Close releases codec resources. The Processor stays usable.
func (p *Processor) Close() { p.codecs.Close() }

// SetLimit bounds the decompressed size of the batches Reset loads from now
// on to limit bytes (the Processor's own bound when limit <= 0 or above it)
// and calls reserve (nil: nothing) before the decompression buffer grows;
// an error from reserve fails Reset with that error wrapped.
func (p *Processor) SetLimit(limit int, reserve Reserve) {
	p.limit, p.reserve = limit, reserve
}

// Reset loads b: checks its header, optionally its CRC, and decompresses its
// records. b.Raw must stay unchanged while the Processor uses it (record
// views of uncompressed batches point into it). Errors: ErrLegacyMagic for
// magic 0/1, ErrPartial, ErrCorrupt (bad header fields, bad compressed
// data, a record count the bytes cannot hold), ErrCRCMismatch, ErrTooLarge.
func (p *Processor) Reset(b *Batch) error {
	p.b = *b
	p.loaded, p.data, p.pos, p.idx, p.err = false, nil, 0, 0, nil
	p.rec = Record{}
	if cap(p.hdrs) > retainHeaders {
		p.hdrs = nil // one record with many headers does not pin them
	}
	switch {
	case b.Kind == KindLegacy:
		return fmt.Errorf("entry at offset %d magic %d: %w", b.BaseOffset, b.Magic, ErrLegacyMagic)
	case b.Kind == KindPartial:
		return fmt.Errorf("entry at offset %d: %w", b.BaseOffset, ErrPartial)
	case b.Kind != KindBatch || b.Magic != 2 || len(b.Raw) < HeaderSize || int64(len(b.Raw)) != lengthPrefix+int64(b.Length):
		return fmt.Errorf("batch at offset %d: inconsistent batch: %w", b.BaseOffset, ErrCorrupt)
	}
	if b.NumRecords < 0 {
		return fmt.Errorf("batch at offset %d: negative record count %d: %w", b.BaseOffset, b.NumRecords, ErrCorrupt)
	}
	if p.verify {
		if err := b.VerifyCRC(); err != nil {
			return err
		}
	}
	section := b.Raw[HeaderSize:]
	codec := b.Codec()
	switch {
	case codec == CodecNone || (len(section) == 0 && b.NumRecords == 0):
		// Compaction can leave empty batches whose codec bits still say
		// compressed but whose records section is empty.
		p.data = section
	default:
		if cap(p.dec) > retainLimit {
			p.dec = nil
		}
		dec, err := p.codecs.DecompressLimit(p.dec[:0], section, codec, p.limit, p.reserve)
		p.dec = dec
		if err != nil {
			return fmt.Errorf("batch at offset %d: %w", b.BaseOffset, err)
		}
		p.data = dec
	}
	if int64(b.NumRecords) > int64(len(p.data)/minRecordSize) {
		return fmt.Errorf("batch at offset %d: %d records cannot fit in %d bytes: %w", b.BaseOffset, b.NumRecords, len(p.data), ErrCorrupt)
	}
	p.loaded = true
	return nil
}

// Trim drops the scratch buffers larger than the Processor keeps between
// batches, and the loaded batch with them (Reset loads the next). A caller
// that accounts the buffers' memory per request calls it when the request
// is done, so a large batch's memory is not kept, unaccounted, until the
// next batch comes.
func (p *Processor) Trim() {
	if cap(p.dec) > retainLimit || cap(p.enc) > retainLimit {
		p.dec, p.enc = nil, nil
		p.loaded, p.data, p.b, p.rec = false, nil, Batch{}, Record{}
	}
}

// Batch returns the loaded batch.
func (p *Processor) Batch() *Batch { return &p.b }

// Records returns the loaded batch's records section, uncompressed. It
// aliases the Processor's buffer or the batch's bytes.
func (p *Processor) Records() []byte { return p.data }

// Rewind restarts record iteration at the first record.
func (p *Processor) Rewind() { p.pos, p.idx, p.err = 0, 0, nil }

// Next parses the next record. It returns false after the last record or on
// malformed bytes (see Err), including bytes left over after the last record.
func (p *Processor) Next() bool {
	if !p.loaded || p.err != nil {
		return false
	}
	if p.idx >= p.b.NumRecords {
		if p.pos != len(p.data) {
			p.err = p.corrupt("%d bytes after the last record", len(p.data)-p.pos)
		}
		return false
	}
	next, hdrs, ok := parseRecord(p.data, p.pos, &p.rec, p.hdrs)
	p.hdrs = hdrs
	if !ok {
		p.err = p.corrupt("malformed record %d at byte %d (or more than %d headers)", p.idx, p.pos, MaxRecordHeaders)
		return false
	}
	p.pos = next
	p.idx++
	return true
}

// Record returns the record Next parsed. It is reused by the next call.
func (p *Processor) Record() *Record { return &p.rec }

// Err returns the error that stopped Next, wrapping ErrCorrupt.
func (p *Processor) Err() error { return p.err }

func (p *Processor) corrupt(format string, args ...any) error {
	return fmt.Errorf("batch at offset %d: %s: %w", p.b.BaseOffset, fmt.Sprintf(format, args...), ErrCorrupt)
}

var errNotLoaded = errors.New("records: no batch loaded")

// HasHeader reports whether any record of the loaded batch has a header
// with key, walking records until one does (values are skipped by length,
// not read). Control batches report false. It rewinds record iteration.
//
// There is deliberately no bytes.Contains prefilter: searching a 1 MiB batch
// for the key's bytes measured ten times slower than walking its records.
func (p *Processor) HasHeader(key string) (bool, error) {
	if !p.loaded {
		return false, errNotLoaded
	}
	p.Rewind()
	if p.b.Control() || p.b.NumRecords == 0 {
		return false, nil
	}
	return p.ScanHeader(key)
}

// ScanHeader is HasHeader for every batch, control batches and batches
// claiming no records included: it walks all the records the batch holds
// (read-only, allocating nothing) and fails with ErrCorrupt when they do
// not match its record count exactly. It rewinds record iteration.
func (p *Processor) ScanHeader(key string) (bool, error) {
	if !p.loaded {
		return false, errNotLoaded
	}
	p.Rewind()
	pos := 0
	for i := range p.b.NumRecords {
		next, found, ok := scanHeaderKey(p.data, pos, key)
		if !ok {
			return false, p.corrupt("malformed record %d at byte %d", i, pos)
		}
		if found {
			return true, nil
		}
		pos = next
	}
	if pos != len(p.data) {
		return false, p.corrupt("%d bytes after the last record", len(p.data)-pos)
	}
	return false, nil
}

// RebuiltSize returns the uncompressed size of the records section the last
// successful Rewrite wrote (what a reader must decompress it to).
func (p *Processor) RebuiltSize() int { return p.rebuilt }

// Rewrite appends to dst the loaded batch rebuilt with fn applied to every
// record, and returns the extended dst. The new batch keeps baseOffset,
// partitionLeaderEpoch, attributes (codec, timestamp type, transactional,
// control, delete horizon), lastOffsetDelta, both timestamps, producer id
// and epoch, base sequence and record count; records are re-encoded,
// compressed again with the same codec (or written as stored blocks of it,
// see SetStoredRewrite), and batchLength and CRC-32C are
// recomputed. Control batches and batches without records (and without
// record bytes) are appended byte for byte without calling fn. fn nil rewrites records unchanged. dst must
// not overlap the batch's bytes. On error dst is returned at its old length.
// It rewinds record iteration.
func (p *Processor) Rewrite(dst []byte, fn EditFunc) ([]byte, error) {
	if !p.loaded {
		return dst, errNotLoaded
	}
	p.Rewind()
	raw := p.b.Raw
	if p.b.Control() || (p.b.NumRecords == 0 && len(p.data) == 0) {
		return append(dst, raw...), nil
	}
	start := len(dst)
	codec := p.b.Codec()
	dst = append(dst, raw[:HeaderSize]...)
	// The records are rebuilt into dst (uncompressed) or the Processor's
	// scratch; either grows, by an eighth more than the records, only when
	// it cannot hold them as they are (a caller that made room for the
	// rewritten batch has dst never grow here).
	recs := dst
	if codec != CodecNone {
		if cap(p.enc) > retainLimit {
			p.enc = nil
		}
		recs = p.enc[:0]
	}
	if cap(recs)-len(recs) < len(p.data) {
		recs = slices.Grow(recs, len(p.data)+len(p.data)/8)
	}
	pos := 0
	for i := range p.b.NumRecords {
		next, hdrs, ok := parseRecord(p.data, pos, &p.rec, p.hdrs)
		p.hdrs = hdrs
		if !ok {
			return dst[:start], p.corrupt("malformed record %d at byte %d (or more than %d headers)", i, pos, MaxRecordHeaders)
		}
		pos = next
		if fn != nil {
			if cap(p.hdrs)-len(p.hdrs) < spareHeaders {
				p.hdrs = slices.Grow(p.hdrs, spareHeaders)
				p.rec.Headers = p.hdrs
			}
			if err := fn(&p.rec); err != nil {
				return dst[:start], fmt.Errorf("batch at offset %d record offset %d: %w", p.b.BaseOffset, p.b.BaseOffset+int64(p.rec.OffsetDelta), err)
			}
		}
		if recs, ok = appendRecord(recs, &p.rec); !ok {
			return dst[:start], fmt.Errorf("batch at offset %d record %d: %w", p.b.BaseOffset, i, ErrTooLarge)
		}
	}
	p.rec = Record{} // drop references to the callback's bytes
	if pos != len(p.data) {
		return dst[:start], p.corrupt("%d bytes after the last record", len(p.data)-pos)
	}
	p.rebuilt = len(recs) - len(dst) // recs extends dst, after the header
	if codec != CodecNone {
		p.rebuilt = len(recs)
	}
	if codec == CodecNone {
		dst = recs
	} else {
		p.enc = recs
		var err error
		if p.stored {
			dst, err = AppendStored(dst, recs, codec)
		} else {
			dst, err = p.codecs.Compress(dst, recs, codec)
		}
		if err != nil {
			return dst[:start], fmt.Errorf("batch at offset %d: %w", p.b.BaseOffset, err)
		}
	}
	length := len(dst) - start - lengthPrefix
	if length > math.MaxInt32 {
		return dst[:start], fmt.Errorf("batch at offset %d: rewritten length %d: %w", p.b.BaseOffset, length, ErrTooLarge)
	}
	out := dst[start:]
	binary.BigEndian.PutUint32(out[offLength:], uint32(length))
	binary.BigEndian.PutUint32(out[offCRC:], crc32.Checksum(out[offAttributes:], castagnoli))
	return dst, nil
}

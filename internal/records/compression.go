package records

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultMaxDecompressed is the decompressed-size bound a Processor uses
// unless told otherwise: far above what Kafka's default 1 MiB batches
// decompress to, far below what hurts the proxy.
const DefaultMaxDecompressed = 64 << 20

// Xerial snappy framing, as written by snappy-java's SnappyOutputStream (the
// Java client's snappy codec): an 8-byte magic, a big-endian int32 version and
// minimum compatible version (snappy-java rejects a minimum below 1), then
// blocks of a big-endian int32 length and a raw snappy block. Other clients
// (librdkafka, older Go clients) send one raw snappy block; we read both and
// write xerial, which snappy-java, librdkafka and franz-go all read.
var (
	xerialMagic  = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}
	xerialHeader = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1}
)

// xerialBlockSize is snappy-java's default block size.
const xerialBlockSize = 32 << 10

// lz4BlockSize is the block size the Java producer writes (64 KiB). Kafka's
// reader accepts 64 KiB to 4 MiB but always with independent blocks, which
// is what lz4 writes; a small block keeps our writer's buffers small.
const lz4BlockSize = lz4.Block64Kb

// Codecs holds reusable compression state: a gzip, lz4 and zstd reader and
// writer each, created on first use and reused after (the zstd ones are
// expensive to make). Not safe for concurrent use. The zero value is not
// usable; use NewCodecs.
type Codecs struct {
	max int

	src bytes.Reader // what the stream decoders read from
	out appendWriter // what the stream encoders write to

	gzr gzip.Reader
	gzw *gzip.Writer
	lzr *lz4.Reader
	lzw *lz4.Writer
	zr  *zstd.Decoder
	zw  *zstd.Encoder

	zwin int // the window zr is limited to (its buffers hold about that)
}

// NewCodecs returns codec state that refuses to decompress past
// maxDecompressed bytes (DefaultMaxDecompressed if <= 0).
func NewCodecs(maxDecompressed int) *Codecs {
	if maxDecompressed <= 0 {
		maxDecompressed = DefaultMaxDecompressed
	}
	return &Codecs{max: maxDecompressed}
}

// MaxDecompressed returns the decompression bound.
func (c *Codecs) MaxDecompressed() int { return c.max }

// Close releases the zstd decoder and encoder. The Codecs stays usable: they
// are made again on next use.
func (c *Codecs) Close() {
	c.dropZstd()
	if c.zw != nil {
		c.zw.Close()
		c.zw = nil
	}
}

// appendWriter is an io.Writer appending to a slice, so stream encoders can
// write straight into the caller's buffer.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// Decompress appends src decompressed with codec to dst and returns it. It
// fails with ErrTooLarge once the output would pass the bound (counting only
// what it appends), and with ErrCorrupt for malformed input or an unknown
// codec. CodecNone appends src as is.
func (c *Codecs) Decompress(dst, src []byte, codec Codec) ([]byte, error) {
	return c.DecompressLimit(dst, src, codec, 0, nil)
}

// Reserve is called before a decompression buffer grows, with the number of
// bytes the output may then reach (beyond where it started), plus for zstd
// the decoder's own buffers. Returning an
// error stops decompression; DecompressLimit returns it wrapped. It lets a
// caller account memory (e.g. a process-wide budget) before it is allocated.
type Reserve func(total int) error

// DecompressLimit is Decompress with a bound of limit bytes (the Codecs'
// own bound when limit <= 0 or above it) and a Reserve hook (nil: none)
// called before the output buffer grows: every byte it appends was reserved
// first, whatever the codec. The output buffer starts at the declared size
// (zstd, snappy) or a guess, and doubles (reserved again each time) while
// the data lasts and the bound allows, so a bomb costs at most limit bytes
// of output, and about as much again in the smaller buffers it outgrew
// (garbage until collected). For zstd the reservation includes the
// decoder's window (see unzstd), which the Codecs may keep for the next
// batch.
func (c *Codecs) DecompressLimit(dst, src []byte, codec Codec, limit int, reserve Reserve) ([]byte, error) {
	if limit <= 0 || limit > c.max {
		limit = c.max
	}
	if reserve == nil {
		reserve = noReserve
	}
	start := len(dst)
	out, err := c.decompress(dst, src, codec, limit, reserve)
	if err != nil {
		return dst[:start], fmt.Errorf("decompress %s (%d bytes): %w", codec, len(src), err)
	}
	return out, nil
}

func noReserve(int) error { return nil }

func (c *Codecs) decompress(dst, src []byte, codec Codec, limit int, reserve Reserve) ([]byte, error) {
	switch codec {
	case CodecNone:
		if len(src) > limit {
			return dst, ErrTooLarge
		}
		if err := reserve(len(src)); err != nil {
			return dst, err
		}
		return append(dst, src...), nil
	case CodecGzip:
		c.src.Reset(src)
		if err := c.gzr.Reset(&c.src); err != nil {
			return dst, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return readBounded(dst, &c.gzr, limit, 4*len(src), 0, reserve)
	case CodecSnappy:
		return c.unsnappy(dst, src, limit, reserve)
	case CodecLz4:
		if c.lzr == nil {
			c.lzr = lz4.NewReader(nil)
		}
		c.src.Reset(src)
		c.lzr.Reset(&c.src)
		return readBounded(dst, c.lzr, limit, 4*len(src), 0, reserve)
	case CodecZstd:
		return c.unzstd(dst, src, limit, reserve)
	}
	return dst, ErrUnknownCodec
}

// zstdFirstGuess is the smallest buffer a zstd frame without a declared
// size is first decoded into.
const zstdFirstGuess = 256 << 10

// zstdKeepWindow is the largest window the zstd decoder keeps its buffers
// for between batches: the decoder is dropped after a batch whose window
// was larger (Kafka's clients write windows of 2 MiB at the default level,
// 8 MiB up to level 19), so one batch does not pin its memory in a pooled
// Codecs forever.
const zstdKeepWindow = 8 << 20

// zstdRing is what the zstd decoder holds for a window of w bytes: the
// window plus room for two blocks (its ring buffer), and the block
// decoder's own buffers.
func zstdRing(w int) int { return w + 4*(128<<10+64) }

// unzstd decodes zstd as a stream into a buffer readBounded grows, so the
// output never grows past what was reserved, and a frame that lies about
// its size (or declares none) costs at most limit bytes of output. The
// decoder keeps a window of history besides: its maximum is set per call
// to the first frame's window (rounded up to a power of two, never below
// what the decoder may already hold), and reserved with the output, so a
// frame cannot make the decoder allocate more than was reserved.
//
// DecodeAll is not used: given too small a buffer, even with
// WithDecodeAllCapLimit, it grows the buffer by appending past its
// capacity (a whole copy, 1.25 times as large) before it notices, so a
// bomb cost the reserved bytes plus about as much again, unreserved, for
// each guess of the size.
func (c *Codecs) unzstd(dst, src []byte, limit int, reserve Reserve) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return dst, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	first := min(limit, max(zstdFirstGuess, 8*len(src)))
	if h.HasFCS {
		if h.FrameContentSize > uint64(limit) {
			return dst, ErrTooLarge
		}
		// One byte more than the frame holds, so the end is seen without
		// growing the buffer; several frames may follow: it grows if so.
		first = int(h.FrameContentSize) + 1
	}
	window := max(h.WindowSize, zstd.MinWindowSize)
	switch {
	case h.SingleSegment:
		window = max(h.FrameContentSize, zstd.MinWindowSize) // the frame is its own window
	case h.Skippable:
		window = uint64(c.max) // no Kafka client writes them: the frames after may need any window
	}
	if window > uint64(c.max) {
		return dst, fmt.Errorf("%w: zstd window of %d bytes", ErrTooLarge, window)
	}
	window = min(max(uint64(c.zwin), 1<<bits.Len64(window-1)), uint64(c.max))
	ring := zstdRing(int(window))
	if err := reserve(ring); err != nil {
		return dst, err
	}
	c.src.Reset(src)
	var err error
	switch {
	case c.zr == nil:
		c.zr, err = zstd.NewReader(&c.src,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecodeBuffersBelow(0),
			// In a stream the decoder's "max memory" bounds every
			// frame's window, single-segment frames' too, which the
			// max window does not.
			zstd.WithDecoderMaxMemory(window),
		)
	case int(window) != c.zwin:
		err = c.zr.ResetWithOptions(&c.src, zstd.WithDecoderMaxMemory(window))
	default:
		err = c.zr.Reset(&c.src)
	}
	if err != nil {
		c.dropZstd()
		return dst, fmt.Errorf("zstd decoder: %w", err)
	}
	c.zwin = int(window)
	out, err := readBounded(dst, c.zr, limit, first, ring, reserve)
	c.src.Reset(nil)
	if c.zwin > zstdKeepWindow {
		c.dropZstd()
	}
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return out, fmt.Errorf("%w: a later frame's zstd window is larger than the first's (%d bytes)", ErrTooLarge, window)
	}
	return out, err
}

// dropZstd closes the zstd decoder; the next zstd batch makes a new one.
func (c *Codecs) dropZstd() {
	if c.zr != nil {
		c.zr.Close()
		c.zr, c.zwin = nil, 0
	}
}

// readBounded appends everything r yields to dst, failing with ErrTooLarge
// once more than limit bytes were appended. first is the size of the first
// buffer (the output's expected size plus one, so that reading the end
// does not grow it); it doubles from there. The output never uses a byte
// past start that was not reserved first: reserve is called with extra
// (memory the reader itself holds, 0 for none) plus the output's size.
func readBounded(dst []byte, r io.Reader, limit, first, extra int, reserve Reserve) ([]byte, error) {
	start := len(dst)
	bound := limit + 1 // one byte past the bound tells "too large"
	room := 0          // bytes past start reserved and within capacity
	next := min(max(first, 4096), bound)
	zeroReads := 0
	for {
		if len(dst)-start == room {
			if err := reserve(extra + next); err != nil {
				return dst[:start], err
			}
			dst = growExact(dst, start+next)
			room = next
			next = min(2*room+4096, bound)
		}
		n, err := r.Read(dst[len(dst) : start+room])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst[:start], ErrTooLarge
		}
		switch {
		case err == io.EOF:
			return dst, nil
		case err != nil:
			return dst[:start], fmt.Errorf("%w: %w", ErrCorrupt, err)
		case n == 0:
			if zeroReads++; zeroReads > 100 {
				return dst[:start], fmt.Errorf("%w: %w", ErrCorrupt, io.ErrNoProgress)
			}
		default:
			zeroReads = 0
		}
	}
}

// growExact returns b with a capacity of exactly n (when it has less): no
// more than was reserved, where append's growth may round up by a quarter.
func growExact(b []byte, n int) []byte {
	if cap(b) >= n {
		return b
	}
	nb := make([]byte, len(b), n)
	copy(nb, b)
	return nb
}

// unsnappy decodes xerial-framed or raw-block snappy.
func (c *Codecs) unsnappy(dst, src []byte, limit int, reserve Reserve) ([]byte, error) {
	if len(src) >= len(xerialHeader) && bytes.Equal(src[:len(xerialMagic)], xerialMagic) {
		return c.unxerial(dst, src[len(xerialHeader):], limit, reserve)
	}
	n, err := s2.DecodedLen(src)
	if err != nil {
		return dst, fmt.Errorf("%w: snappy: %w", ErrCorrupt, err)
	}
	if n > limit {
		return dst, ErrTooLarge
	}
	if err := reserve(n); err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, n)
	if _, err := s2.Decode(dst[len(dst):len(dst)+n], src); err != nil {
		return dst, fmt.Errorf("%w: snappy: %w", ErrCorrupt, err)
	}
	return dst[:len(dst)+n], nil
}

// unxerial decodes xerial blocks (after the 16-byte header). It sums the
// blocks' claimed sizes first, so a bomb is refused before any output is
// allocated, and dst grows once.
func (c *Codecs) unxerial(dst, src []byte, limit int, reserve Reserve) ([]byte, error) {
	total := 0
	for rem := src; len(rem) > 0; {
		if len(rem) < 4 {
			return dst, fmt.Errorf("%w: xerial: truncated block length", ErrCorrupt)
		}
		size := binary.BigEndian.Uint32(rem)
		rem = rem[4:]
		if uint64(size) > uint64(len(rem)) {
			return dst, fmt.Errorf("%w: xerial: block of %d bytes, %d left", ErrCorrupt, size, len(rem))
		}
		n, err := s2.DecodedLen(rem[:size])
		if err != nil {
			return dst, fmt.Errorf("%w: xerial block: %w", ErrCorrupt, err)
		}
		if total += n; total > limit {
			return dst, ErrTooLarge
		}
		rem = rem[size:]
	}
	if err := reserve(total); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = slices.Grow(dst, total)
	for len(src) > 0 {
		size := binary.BigEndian.Uint32(src)
		block := src[4 : 4+size]
		src = src[4+size:]
		n, _ := s2.DecodedLen(block) // checked above
		if _, err := s2.Decode(dst[len(dst):len(dst)+n], block); err != nil {
			return dst[:start], fmt.Errorf("%w: xerial block: %w", ErrCorrupt, err)
		}
		dst = dst[:len(dst)+n]
	}
	return dst, nil
}

// Compress appends src compressed with codec to dst and returns it. Snappy
// is written xerial-framed (see above), lz4 as an LZ4 frame with 64 KiB
// independent blocks, zstd as one frame with a 64 KiB window (what franz-go
// writes; small windows keep every consumer's decoder memory small).
// CodecNone appends src as is.
func (c *Codecs) Compress(dst, src []byte, codec Codec) ([]byte, error) {
	start := len(dst)
	out, err := c.compress(dst, src, codec)
	if err != nil {
		return dst[:start], fmt.Errorf("compress %s (%d bytes): %w", codec, len(src), err)
	}
	return out, nil
}

func (c *Codecs) compress(dst, src []byte, codec Codec) ([]byte, error) {
	switch codec {
	case CodecNone:
		return append(dst, src...), nil
	case CodecGzip:
		c.out.b = dst
		if c.gzw == nil {
			// Fastest levels, here and for zstd: kseal recompresses batches
			// it rewrites, where the producer chose the codec, not the effort.
			// Encrypted values do not compress at any level, and a fetched
			// batch only travels to one consumer; higher levels cost several
			// times the CPU for a few percent.
			c.gzw, _ = gzip.NewWriterLevel(&c.out, gzip.BestSpeed)
		} else {
			c.gzw.Reset(&c.out)
		}
		return c.finishStream(c.gzw, src)
	case CodecSnappy:
		return appendXerial(dst, src), nil
	case CodecLz4:
		c.out.b = dst
		if c.lzw == nil {
			c.lzw = lz4.NewWriter(&c.out)
			if err := c.lzw.Apply(lz4.BlockSizeOption(lz4BlockSize), lz4.ChecksumOption(false)); err != nil {
				c.lzw = nil
				return dst, fmt.Errorf("configure lz4 writer: %w", err)
			}
		} else {
			c.lzw.Reset(&c.out)
		}
		return c.finishStream(c.lzw, src)
	case CodecZstd:
		if c.zw == nil {
			zw, err := zstd.NewWriter(nil,
				zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderLevel(zstd.SpeedFastest),
				// The batch CRC-32C covers the compressed bytes already; a
				// frame checksum would cost a second pass over the data.
				zstd.WithEncoderCRC(false),
				zstd.WithWindowSize(64<<10),
				zstd.WithZeroFrames(true),
			)
			if err != nil {
				return dst, fmt.Errorf("create zstd encoder: %w", err)
			}
			c.zw = zw
		}
		return c.zw.EncodeAll(src, dst), nil
	}
	return dst, ErrUnknownCodec
}

// finishStream writes src through a stream encoder that writes to c.out and
// returns c.out's bytes, dropping the encoder's reference to them.
func (c *Codecs) finishStream(w io.WriteCloser, src []byte) ([]byte, error) {
	_, err := w.Write(src)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	out := c.out.b
	c.out.b = nil
	return out, err
}

// MaxCompressedLen bounds what Compress appends for n bytes of input with
// codec: given a dst with that much room spare, Compress never grows it.
// For snappy it is the xerial header plus each 32 KiB block's worst case
// (s2.MaxEncodedLen) and length; gzip, lz4 and zstd store a block that does
// not compress as it is, with a few bytes of framing per block of 16 KiB or
// more, far less than the n/6 + 4 KiB allowed for them.
func MaxCompressedLen(codec Codec, n int) int {
	switch codec {
	case CodecNone:
		return n
	case CodecSnappy:
		if n == 0 {
			return 1
		}
		full, rest := n/xerialBlockSize, n%xerialBlockSize
		m := len(xerialHeader) + full*(4+s2.MaxEncodedLen(xerialBlockSize))
		if rest > 0 {
			m += 4 + s2.MaxEncodedLen(rest)
		}
		return m
	}
	return n + n/6 + 4096
}

// appendXerial appends src as a xerial-framed snappy stream. Empty input
// becomes an empty raw block instead: a header-only stream is what
// snappy-java writes, but franz-go mistakes it for a raw block and fails,
// while every reader takes the one-byte raw block. (Rewrite never compresses
// nothing: a batch with records has at least 7 bytes of them.)
func appendXerial(dst, src []byte) []byte {
	if len(src) == 0 {
		return append(dst, 0)
	}
	dst = append(dst, xerialHeader...)
	for len(src) > 0 {
		n := min(len(src), xerialBlockSize)
		// A no-op when the caller made room for MaxCompressedLen.
		dst = slices.Grow(dst, 4+s2.MaxEncodedLen(n))
		at := len(dst)
		// Encode in place after room for the length, then fill it in.
		block := s2.EncodeSnappy(dst[at+4:cap(dst)], src[:n])
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(block)))
		dst = dst[:at+4+len(block)]
		src = src[n:]
	}
	return dst
}

package records

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	if c.zr != nil {
		c.zr.Close()
		c.zr = nil
	}
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
// bytes the output may then reach (beyond where it started). Returning an
// error stops decompression; DecompressLimit returns it wrapped. It lets a
// caller account memory (e.g. a process-wide budget) before it is allocated.
type Reserve func(total int) error

// DecompressLimit is Decompress with a bound of limit bytes (the Codecs'
// own bound when limit <= 0 or above it) and a Reserve hook (nil: none)
// called before the output buffer grows: every byte it appends was reserved
// first, whatever the codec. A zstd frame whose size is not declared is
// decoded into a buffer of a guessed size, doubled (and reserved again) as
// long as it is too small and below limit, so a bomb costs at most limit
// bytes and twice the decoding work.
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
		return readBounded(dst, &c.gzr, limit, len(src), reserve)
	case CodecSnappy:
		return c.unsnappy(dst, src, limit, reserve)
	case CodecLz4:
		if c.lzr == nil {
			c.lzr = lz4.NewReader(nil)
		}
		c.src.Reset(src)
		c.lzr.Reset(&c.src)
		return readBounded(dst, c.lzr, limit, len(src), reserve)
	case CodecZstd:
		return c.unzstd(dst, src, limit, reserve)
	}
	return dst, ErrUnknownCodec
}

// zstdFirstGuess is the smallest buffer a zstd frame without a declared
// size is first decoded into.
const zstdFirstGuess = 256 << 10

// unzstd decodes zstd into a buffer it sizes itself: DecodeAll is limited
// to the buffer's capacity (WithDecodeAllCapLimit), so nothing is allocated
// that was not reserved first.
func (c *Codecs) unzstd(dst, src []byte, limit int, reserve Reserve) ([]byte, error) {
	if c.zr == nil {
		zr, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(uint64(c.max)),
			zstd.WithDecodeAllCapLimit(true),
		)
		if err != nil {
			return dst, fmt.Errorf("create zstd decoder: %w", err)
		}
		c.zr = zr
	}
	want := min(limit, max(zstdFirstGuess, 8*len(src)))
	var h zstd.Header
	if err := h.Decode(src); err == nil && h.HasFCS {
		if h.FrameContentSize > uint64(limit) {
			return dst, ErrTooLarge
		}
		// Several frames may follow: the guess grows below if needed.
		want = max(int(h.FrameContentSize), 1)
	}
	start := len(dst)
	for {
		if err := reserve(want); err != nil {
			return dst[:start], err
		}
		dst = slices.Grow(dst[:start], want)
		out, err := c.zr.DecodeAll(src, dst[:start:start+want])
		if err == nil {
			if len(out) > 0 && &out[:1][0] == &dst[:1][0] {
				// Decoded in place: give the caller back the buffer's whole
				// capacity, not the window DecodeAll was limited to.
				return dst[:len(out)], nil
			}
			return out, nil
		}
		if !errors.Is(err, zstd.ErrDecoderSizeExceeded) && !errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return dst[:start], fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if want >= limit || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return dst[:start], fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		want = min(limit, 2*want)
	}
}

// readBounded appends everything r yields to dst, failing with ErrTooLarge
// once more than limit bytes were appended. srcLen guesses the first growth.
// The output never uses a byte past start that was not reserved first.
func readBounded(dst []byte, r io.Reader, limit, srcLen int, reserve Reserve) ([]byte, error) {
	start := len(dst)
	bound := limit + 1 // one byte past the bound tells "too large"
	room := 0          // bytes past start reserved and within capacity
	next := min(max(4*srcLen, 4096), bound)
	zeroReads := 0
	for {
		if len(dst)-start == room {
			if err := reserve(next); err != nil {
				return dst[:start], err
			}
			dst = slices.Grow(dst, next-room)
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

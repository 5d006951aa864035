package records

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
)

// compressible returns n bytes that compress somewhat, like real records.
func compressible(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"kafka ", "record ", "value ", "proxy ", "seal ", "0123 ", "\x00\x01 "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func TestCompressRoundTripEveryCodec(t *testing.T) {
	c := NewCodecs(0)
	defer c.Close()
	for _, codec := range allCodecs {
		for _, size := range []int{0, 1, 1000, 100 << 10} {
			src := compressible(size)
			comp, err := c.Compress([]byte("hdr"), src, codec)
			if err != nil {
				t.Fatalf("%s %d: %v", codec, size, err)
			}
			if string(comp[:3]) != "hdr" {
				t.Fatalf("%s: Compress did not append", codec)
			}
			comp = comp[3:]
			// franz-go's consumer decompressor reads it.
			got, err := kgo.DefaultDecompressor().Decompress(comp, kgo.CompressionCodecType(codec))
			if err != nil || !bytes.Equal(got, src) {
				t.Errorf("%s %d bytes: franz-go decompress: %v, equal %v", codec, size, err, bytes.Equal(got, src))
			}
			// And so do we, twice, reusing state.
			for range 2 {
				got, err = c.Decompress([]byte("x"), comp, codec)
				if err != nil || !bytes.Equal(got[1:], src) || got[0] != 'x' {
					t.Errorf("%s %d bytes: Decompress: %v", codec, size, err)
				}
			}
		}
	}
}

func TestSnappyFormats(t *testing.T) {
	src := compressible(100 << 10)
	c := NewCodecs(0)
	ours, err := c.Compress(nil, src, CodecSnappy)
	if err != nil {
		t.Fatal(err)
	}
	// snappy-java's header: magic, version 1, minimum compatible version 1.
	wantHdr := []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1}
	if !bytes.HasPrefix(ours, wantHdr) {
		t.Fatalf("xerial header % x", ours[:16])
	}
	// Blocks are at most 32 KiB uncompressed, like snappy-java writes.
	blocks := 0
	for rest := ours[16:]; len(rest) > 0; blocks++ {
		n := binary.BigEndian.Uint32(rest)
		l, err := snappy.DecodedLen(rest[4 : 4+n])
		if err != nil || l > 32<<10 {
			t.Fatalf("block %d: decoded length %d, %v", blocks, l, err)
		}
		rest = rest[4+n:]
	}
	if blocks != 4 {
		t.Errorf("%d blocks, want 4", blocks)
	}
	if got, err := xerial.Decode(ours); err != nil || !bytes.Equal(got, src) {
		t.Errorf("independent xerial decoder: %v", err)
	}
	inputs := map[string][]byte{
		"raw block":            snappy.Encode(nil, src),
		"xerial (other coder)": xerial.Encode(nil, src),
	}
	for name, in := range inputs {
		got, err := c.Decompress(nil, in, CodecSnappy)
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLz4FrameIsJavaCompatible(t *testing.T) {
	out, err := NewCodecs(0).Compress(nil, compressible(200<<10), CodecLz4)
	if err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint32(out) != 0x184D2204 {
		t.Fatalf("magic % x", out[:4])
	}
	flg, bd := out[4], out[5]
	// Kafka's Java reader needs version 01 and independent blocks, and a
	// block size between 64 KiB (4) and 4 MiB (7).
	if flg>>6 != 1 || flg&0x20 == 0 || flg&0x03 != 0 {
		t.Errorf("FLG %08b: want version 01, block independence, reserved 0", flg)
	}
	if size := bd >> 4 & 7; size != 4 || bd&0x8f != 0 {
		t.Errorf("BD %08b: want 64 KiB blocks", bd)
	}
}

func TestUnknownCodec(t *testing.T) {
	c := NewCodecs(0)
	for _, codec := range []Codec{5, 6, 7, -1} {
		if _, err := c.Decompress(nil, []byte{1}, codec); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("Decompress %s: %v", codec, err)
		}
		if _, err := c.Compress(nil, []byte{1}, codec); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("Compress %s: %v", codec, err)
		}
	}
}

func TestZipBomb(t *testing.T) {
	const limit = 1 << 20
	bomb := make([]byte, 64<<20) // zeros: compresses to almost nothing
	enc := NewCodecs(0)
	defer enc.Close()
	inputs := map[string]struct {
		codec Codec
		data  []byte
	}{
		"raw snappy lying about its length": {CodecSnappy, binary.AppendUvarint(nil, 1<<31)},
		"xerial blocks adding up":           {CodecSnappy, xerial.Encode(nil, bomb[:8<<20])},
		"raw snappy":                        {CodecSnappy, snappy.Encode(nil, bomb[:8<<20])},
	}
	for _, codec := range allCodecs {
		if codec == CodecNone {
			continue
		}
		comp, err := enc.Compress(nil, bomb, codec)
		if err != nil {
			t.Fatal(err)
		}
		inputs[codec.String()+" 64 MiB of zeros"] = struct {
			codec Codec
			data  []byte
		}{codec, comp}
	}
	inputs["zstd from franz-go"] = struct {
		codec Codec
		data  []byte
	}{CodecZstd, kgoCompress(t, CodecZstd, bomb)}
	inputs["none over the limit"] = struct {
		codec Codec
		data  []byte
	}{CodecNone, bomb[:limit+1]}

	dec := NewCodecs(limit)
	defer dec.Close()
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			out, err := dec.Decompress(nil, in.data, in.codec)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decompress = %d bytes, %v; want ErrTooLarge", len(out), err)
			}
			// The bound holds for memory too: a few times the limit for
			// buffers and codec state, never the bomb's size.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 12*limit {
				t.Errorf("allocated %d MiB decompressing a bomb with a 1 MiB limit", grew>>20)
			}
		})
	}
	// Exactly at the limit is fine.
	for _, codec := range allCodecs {
		comp, _ := enc.Compress(nil, bomb[:limit], codec)
		if out, err := dec.Decompress(nil, comp, codec); err != nil || len(out) != limit {
			t.Errorf("%s at the limit: %d bytes, %v", codec, len(out), err)
		}
	}
}

func TestZipBombInBatch(t *testing.T) {
	// A batch whose records decompress past the Processor's bound.
	big := make([]byte, 4<<20)
	recs := sampleRecords()
	recs[0].Value = big
	raw := buildBatch(t, sampleHeader(), CodecZstd, recs)
	b, _ := ParseBatch(raw)
	if err := NewProcessor(WithMaxDecompressed(1 << 20)).Reset(&b); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Reset = %v, want ErrTooLarge", err)
	}
	if err := NewProcessor().Reset(&b); err != nil {
		t.Fatalf("default bound: %v", err)
	}
}

// zstdStream compresses n zero bytes as the Java client does: one streamed
// frame with no declared size (window 8 MiB at this level).
func zstdStream(tb testing.TB, n int, opts ...zstd.EOption) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, append([]zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zeros) {
		if _, err := zw.Write(zeros[:min(left, len(zeros))]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestZstdBombAllocatesWhatItReserves is the hostile test's flaky RSS:
// decompressing zstd bombs, over the bound and just under it, must not
// allocate more than twice the most it reserved (the output buffer's
// doublings add up to less than the last one). DecodeAll, given buffers of
// guessed sizes, grew each by appending past its capacity before noticing
// it was too small: an 80 MiB bomb under a 64 MiB bound allocated 297 MiB
// with 64 MiB reserved.
func TestZstdBombAllocatesWhatItReserves(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	const limit = 16 << 20
	c := NewCodecs(limit)
	defer c.Close()
	for _, tc := range []struct {
		name string
		size int
		err  error
	}{
		{"over the bound", limit + 16<<20, ErrTooLarge},
		{"under the bound", limit - 1<<20, nil},
		{"at the bound", limit, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := zstdStream(t, tc.size)
			reserved := 0
			reserve := func(total int) error {
				reserved = max(reserved, total)
				return nil
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			out, err := c.DecompressLimit(nil, src, CodecZstd, 0, reserve)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tc.err) || (err == nil && len(out) != tc.size) {
				t.Fatalf("DecompressLimit = %d bytes, %v; want %d bytes, %v", len(out), err, tc.size, tc.err)
			}
			if cap(out) > reserved {
				t.Errorf("output capacity %d, more than the %d bytes reserved", cap(out), reserved)
			}
			grew := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d MiB of zeros in %d bytes: reserved %.1f MiB, allocated %.1f MiB", tc.size>>20, len(src), float64(reserved)/(1<<20), float64(grew)/(1<<20))
			if grew > uint64(2*reserved+1<<20) {
				t.Errorf("allocated %.1f MiB, more than twice the %.1f MiB reserved", float64(grew)/(1<<20), float64(reserved)/(1<<20))
			}
		})
	}
}

// zstdRawFrame is a zstd frame with no declared size, the window
// descriptor wd (window 2^(10+wd>>3), mantissa wd&7) and n zero bytes in one
// raw block: encoders shrink the window of small content, a hostile client
// need not.
func zstdRawFrame(wd byte, n int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0, wd}
	bh := uint32(1 | n<<3) // last block, raw, n bytes
	f = append(f, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(f, make([]byte, n)...)
}

// TestZstdWindowReservedAndNotKept: a frame's window is the decoder's
// memory, whatever the frame holds: it is reserved before decoding, a later
// frame cannot need more than was reserved, and a window past what a
// Codecs keeps is not kept.
func TestZstdWindowReservedAndNotKept(t *testing.T) {
	c := NewCodecs(64 << 20)
	defer c.Close()
	reserved := 0
	reserve := func(total int) error { reserved = max(reserved, total); return nil }

	big := zstdRawFrame(15<<3, 1000) // 1000 bytes, a 32 MiB window
	out, err := c.DecompressLimit(nil, big, CodecZstd, 0, reserve)
	if err != nil || len(out) != 1000 {
		t.Fatalf("DecompressLimit = %d bytes, %v", len(out), err)
	}
	if reserved < 32<<20 {
		t.Errorf("reserved %d bytes for a frame with a 32 MiB window", reserved)
	}
	if c.zr != nil {
		t.Errorf("the decoder of a 32 MiB window was kept (zstdKeepWindow %d)", zstdKeepWindow)
	}

	// A small frame, then one with a larger window: refused, not decoded
	// with memory that was not reserved.
	small := zstdRawFrame(6<<3, 1000) // a 64 KiB window
	reserved = 0
	two := append(append([]byte{}, small...), big...)
	if _, err := c.DecompressLimit(nil, two, CodecZstd, 0, reserve); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a second frame with a larger window: %v, want ErrTooLarge", err)
	}
	if reserved >= 32<<20 {
		t.Errorf("reserved %d bytes for a 64 KiB window", reserved)
	}
	// The same frames the other way round decode.
	two = append(append([]byte{}, big...), small...)
	if out, err := c.DecompressLimit(nil, two, CodecZstd, 0, reserve); err != nil || len(out) != 2000 {
		t.Errorf("a large window, then a small: %d bytes, %v", len(out), err)
	}
}

// Compress never grows a dst with MaxCompressedLen bytes of room, even for
// input that does not compress (a caller sizes its buffer once so).
func TestMaxCompressedLen(t *testing.T) {
	c := NewCodecs(0)
	for _, codec := range []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLz4, CodecZstd} {
		for _, n := range []int{0, 1, 100, xerialBlockSize, xerialBlockSize + 1, 300 << 10} {
			src := make([]byte, n)
			crand.Read(src)
			dst := make([]byte, 7, 7+MaxCompressedLen(codec, n))
			out, err := c.Compress(dst, src, codec)
			if err != nil {
				t.Fatal(err)
			}
			if &out[:1][0] != &dst[:1][0] {
				t.Errorf("%s, %d bytes: Compress grew the buffer past MaxCompressedLen %d to %d bytes", codec, n, MaxCompressedLen(codec, n), len(out)-7)
			}
		}
	}
}

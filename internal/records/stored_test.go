package records

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// storedSizes are the sizes every stored encoder is tested with: empty, one
// byte, each codec's block boundaries and a few MiB.
var storedSizes = []int{0, 1, 59, 60, 61, 256, 257, 1000,
	storedXerialBlock - 1, storedXerialBlock, storedXerialBlock + 1,
	storedDeflate - 1, storedDeflate, storedDeflate + 1,
	64<<10 - 1, 64 << 10, 64<<10 + 1, 128 << 10, 128<<10 + 1,
	3<<20 + 12345}

var storedCodecs = []Codec{CodecGzip, CodecSnappy, CodecLz4, CodecZstd}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(3, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// libDecode decodes with the codec's library decoder, not kseal's.
func libDecode(t testing.TB, codec Codec, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch codec {
	case CodecGzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip reader: %v", err)
		}
		r = zr
	case CodecLz4:
		r = lz4.NewReader(bytes.NewReader(b))
	case CodecZstd:
		zr, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case CodecSnappy:
		out, err := xerial.Decode(b)
		if err != nil {
			t.Fatalf("xerial decode: %v", err)
		}
		return out
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s library decode: %v", codec, err)
	}
	return out
}

func checkStored(t testing.TB, c *Codecs, codec Codec, src []byte) {
	t.Helper()
	enc, err := AppendStored([]byte("hdr"), src, codec)
	if err != nil {
		t.Fatalf("%s %d: %v", codec, len(src), err)
	}
	if string(enc[:3]) != "hdr" {
		t.Fatalf("%s: AppendStored did not append", codec)
	}
	enc = enc[3:]
	if want := StoredLen(codec, len(src)); len(enc) != want {
		t.Fatalf("%s %d: wrote %d bytes, StoredLen says %d", codec, len(src), len(enc), want)
	}
	got, err := c.Decompress(nil, enc, codec)
	if err != nil {
		t.Fatalf("%s %d: kseal decode: %v", codec, len(src), err)
	}
	if !bytes.Equal(got, src) {
		t.Fatalf("%s %d: kseal decode differs", codec, len(src))
	}
	if got := libDecode(t, codec, enc); !bytes.Equal(got, src) {
		t.Fatalf("%s %d: library decode differs (%d bytes)", codec, len(src), len(got))
	}
}

func TestStoredRoundTrip(t *testing.T) {
	c := NewCodecs(0)
	defer c.Close()
	for _, codec := range storedCodecs {
		for _, n := range storedSizes {
			checkStored(t, c, codec, randomBytes(n))
		}
	}
}

// The output buffer grows once, to the exact size, whatever the input.
func TestStoredGrowsOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under -race say nothing")
	}
	for _, codec := range storedCodecs {
		for _, n := range []int{0, 1, 100 << 10, 3 << 20} {
			src := randomBytes(n)
			if a := testing.AllocsPerRun(3, func() { _, _ = AppendStored([]byte("x"), src, codec) }); a > 2 {
				t.Errorf("%s %d: %v allocations, want the one growth (and the 1-byte start)", codec, n, a)
			}
		}
	}
}

// The LZ4 frame header's checksum byte is what pierrec/lz4 writes for the
// same descriptor.
func TestStoredLz4HeaderMatchesLibrary(t *testing.T) {
	var b bytes.Buffer
	w := lz4.NewWriter(&b)
	if err := w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := b.Bytes()[:len(lz4StoredHeader)]; !bytes.Equal(got, lz4StoredHeader[:]) {
		t.Fatalf("pierrec/lz4 writes header % x, we write % x", got, lz4StoredHeader[:])
	}
}

func TestStoredZstdBlocksAreRaw(t *testing.T) {
	out, _ := AppendStored(nil, randomBytes(200<<10), CodecZstd)
	types, err := ZstdBlockTypes(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(types) != 4 {
		t.Fatalf("%d blocks, want 4", len(types))
	}
	for i, ty := range types {
		if ty != 0 {
			t.Fatalf("block %d has type %d, want Raw (0)", i, ty)
		}
	}
	var h zstd.Header
	if err := h.Decode(out); err != nil || !h.HasFCS || h.FrameContentSize != 200<<10 || h.WindowSize != 64<<10 {
		t.Fatalf("header %+v, %v", h, err)
	}
}

func TestStoredNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under -race say nothing")
	}
	src := randomBytes(300 << 10)
	buf := make([]byte, 0, 1<<20)
	for _, codec := range storedCodecs {
		n := testing.AllocsPerRun(20, func() {
			buf, _ = AppendStored(buf[:0], src, codec)
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per batch", codec, n)
		}
	}
}

func fuzzStored(f *testing.F, codec Codec) {
	for _, n := range []int{0, 1, 61, 257, 70000} {
		f.Add(randomBytes(n))
	}
	c := NewCodecs(0)
	f.Fuzz(func(t *testing.T, src []byte) { checkStored(t, c, codec, src) })
}

func FuzzStoredZstd(f *testing.F)   { fuzzStored(f, CodecZstd) }
func FuzzStoredGzip(f *testing.F)   { fuzzStored(f, CodecGzip) }
func FuzzStoredLz4(f *testing.F)    { fuzzStored(f, CodecLz4) }
func FuzzStoredSnappy(f *testing.F) { fuzzStored(f, CodecSnappy) }

// A stored rewrite keeps the batch's codec, its records, a valid CRC, and
// franz-go reads it as a consumer would.
func TestRewriteStoredKeepsCodec(t *testing.T) {
	for _, codec := range storedCodecs {
		h := sampleHeader()
		recs := sampleRecords()
		raw := buildBatch(t, h, codec, recs)
		p := NewProcessor(WithStoredRewrite(true))
		want := readAll(t, p, raw)
		out, err := p.Rewrite(nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		b, err := ParseBatch(out)
		if err != nil {
			t.Fatal(err)
		}
		if b.Codec() != codec {
			t.Fatalf("codec %s, want %s", b.Codec(), codec)
		}
		if err := b.VerifyCRC(); err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		section := out[HeaderSize:]
		if len(section) != StoredLen(codec, p.RebuiltSize()) {
			t.Fatalf("%s: records section of %d bytes is not stored (%d)", codec, len(section), StoredLen(codec, p.RebuiltSize()))
		}
		if codec == CodecZstd {
			types, err := ZstdBlockTypes(section)
			if err != nil || len(types) == 0 || types[0] != 0 {
				t.Fatalf("zstd block types %v, %v", types, err)
			}
		}
		got := readAll(t, NewProcessor(), out)
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", codec, len(got), len(want))
		}
		for i := range got {
			if !sameRecord(got[i], want[i]) {
				t.Fatalf("%s: record %d differs", codec, i)
			}
		}
		if n := len(kgoDecode(t, out)); n != len(want) {
			t.Fatalf("%s: franz-go reads %d records, want %d", codec, n, len(want))
		}
	}
}

// A stored rewrite fits the room the produce path reserves for a rewritten
// batch (MaxCompressedLen), so the budget charged covers it and the
// output buffer never grows past it.
func TestStoredFitsMaxCompressedLen(t *testing.T) {
	for _, codec := range []Codec{CodecGzip, CodecSnappy, CodecLz4, CodecZstd} {
		for _, n := range []int{0, 1, 7, 1 << 10, 32<<10 - 1, 32 << 10, 32<<10 + 1, 64 << 10, 64<<10 + 1, 1 << 20, 64 << 20} {
			if s, m := StoredLen(codec, n), MaxCompressedLen(codec, n); s > m {
				t.Errorf("codec %d, %d bytes: stored %d > MaxCompressedLen %d", codec, n, s, m)
			}
		}
	}
}

package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// frames reads every frame of in through a Reader over r(in) and compares
// each with what ReadFrame returns from the same bytes.
func readAllFrames(t *testing.T, r io.Reader, initial, retain, maxSize int) ([][]byte, error) {
	t.Helper()
	fr := NewReader(r, initial, retain, MinRequestSize, maxSize)
	var out [][]byte
	for {
		msg, err := fr.Next()
		if err != nil {
			return out, err
		}
		out = append(out, append([]byte(nil), msg...))
	}
}

func TestReaderMatchesReadFrame(t *testing.T) {
	var in []byte
	var want [][]byte
	for i, n := range []int{8, 9, 100, 4096, 70_000, 8, 300_000, 12, 65_536 - 4} {
		msg := bytes.Repeat([]byte{byte(i + 1)}, n)
		want = append(want, msg)
		in = append(in, sized(msg)...)
	}
	readers := map[string]func([]byte) io.Reader{
		"whole":   func(b []byte) io.Reader { return bytes.NewReader(b) },
		"onebyte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":    func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"dataerr": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
	}
	for name, mk := range readers {
		for _, initial := range []int{1, 16, 4096, 1 << 20} {
			got, err := readAllFrames(t, mk(in), initial, 128<<10, 1<<20)
			if err != io.EOF {
				t.Fatalf("%s/%d: ended with %v, want io.EOF", name, initial, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s/%d: %d frames, want %d", name, initial, len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%s/%d: frame %d differs", name, initial, i)
				}
			}
		}
	}
}

func TestReaderErrors(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"partial size", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"partial body", append([]byte{0, 0, 0, 10}, make([]byte, 5)...), io.ErrUnexpectedEOF},
		{"too small", sized([]byte("1234567")), ErrFrameTooSmall},
		{"negative", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooSmall},
		{"too large", append([]byte{0, 0, 4, 1}, make([]byte, 1025)...), ErrFrameTooLarge},
	}
	for _, c := range cases {
		fr := NewReader(bytes.NewReader(c.in), 64, 64, MinRequestSize, 1024)
		_, err := fr.Next()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A read error other than EOF is returned as is (wrapped inside a frame).
	boom := errors.New("boom")
	fr := NewReader(io.MultiReader(bytes.NewReader([]byte{0, 0, 0, 9, 1}), iotest.ErrReader(boom)), 64, 64, MinRequestSize, 1024)
	if _, err := fr.Next(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want %v", err, boom)
	}
}

func TestReaderGrowsWithReceivedBytes(t *testing.T) {
	// A peer announcing 512 MiB and sending 10 bytes must not make the
	// reader allocate the announced size.
	in := append([]byte{0x20, 0, 0, 0}, make([]byte, 10)...)
	fr := NewReader(bytes.NewReader(in), 16, 16, 4, 1<<30)
	if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if cap(fr.buf) > growStep {
		t.Fatalf("allocated %d bytes for 14 received", cap(fr.buf))
	}
}

func TestReaderRetainsAndShrinks(t *testing.T) {
	small := sized(bytes.Repeat([]byte("s"), 100))
	big := sized(bytes.Repeat([]byte("b"), 500_000))
	in := append(append(append([]byte(nil), small...), big...), small...)
	fr := NewReader(bytes.NewReader(in), 4096, 64<<10, MinRequestSize, 1<<20)
	for i := 0; i < 2; i++ {
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if cap(fr.buf) < 500_000 {
		t.Fatalf("buffer of %d bytes holds a 500,000-byte frame?", cap(fr.buf))
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if cap(fr.buf) > 64<<10 {
		t.Fatalf("buffer of %d bytes kept after a big frame (retain 64 KiB)", cap(fr.buf))
	}
}

// countingReader counts Read calls, as a socket would count system calls.
type countingReader struct {
	r     io.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// TestReaderOneReadPerFrame is why Reader exists: once its buffer has grown
// to the frames' size, a frame that is all there takes one read, where a
// 32 KiB bufio.Reader in front of ReadFrame takes two for a 46 KiB produce
// request.
func TestReaderOneReadPerFrame(t *testing.T) {
	msg := bytes.Repeat([]byte("p"), 46<<10)
	cr := &countingReader{}
	fr := NewReader(cr, 32<<10, 4<<20, MinRequestSize, 1<<20)
	for i := 0; i < 10; i++ {
		cr.r = bytes.NewReader(sized(msg)) // one frame per "arrival"
		before := cr.calls
		if _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
		if i > 0 && cr.calls-before != 1 {
			t.Fatalf("frame %d took %d reads", i, cr.calls-before)
		}
	}
}

func TestReaderComplete(t *testing.T) {
	in := append(sized([]byte("12345678")), sized([]byte("abcdefghij"))[:6]...)
	fr := NewReader(bytes.NewReader(in), 64, 64, MinRequestSize, 1024)
	if fr.Complete() {
		t.Fatal("complete before any read")
	}
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	if fr.Complete() {
		t.Fatal("a partial frame is complete")
	}
}

func FuzzReader(f *testing.F) {
	f.Add(sized([]byte("12345678")), 16, uint16(3))
	f.Add(append(sized([]byte("12345678")), sized([]byte("abcdefghij"))...), 9, uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, maxSize int, initial uint16) {
		if maxSize < 0 {
			maxSize = -maxSize
		}
		maxSize %= 1 << 20
		fr := NewReader(iotest.HalfReader(bytes.NewReader(in)), int(initial), 256, MinRequestSize, maxSize)
		r := bytes.NewReader(in)
		var buf []byte
		for {
			msg, err := fr.Next()
			want, werr := ReadFrame(r, buf, MinRequestSize, maxSize)
			if (err == nil) != (werr == nil) {
				t.Fatalf("Reader: %v, ReadFrame: %v", err, werr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(msg, want[SizeLen:]) {
				t.Fatal("Reader and ReadFrame disagree")
			}
			buf = want
			if c := cap(fr.buf); c > max(2*len(in), int(initial), 2*SizeLen, growStep) {
				t.Fatalf("buffer of %d bytes for %d input bytes", c, len(in))
			}
		}
	})
}

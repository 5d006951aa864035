package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func sized(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestReadFrame(t *testing.T) {
	body10 := bytes.Repeat([]byte{7}, 10)
	tests := []struct {
		name     string
		in       []byte
		min, max int
		want     []byte // whole frame
		wantErr  error
	}{
		{name: "ok", in: sized(body10), min: 8, max: 100, want: sized(body10)},
		{name: "exact max", in: sized(body10), min: 8, max: 10, want: sized(body10)},
		{name: "exact min", in: sized(body10), min: 10, max: 100, want: sized(body10)},
		{name: "too large", in: sized(body10), min: 8, max: 9, wantErr: ErrFrameTooLarge},
		{name: "too small", in: sized(body10[:3]), min: 8, max: 100, wantErr: ErrFrameTooSmall},
		{name: "zero", in: sized(nil), min: 4, max: 100, wantErr: ErrFrameTooSmall},
		{name: "negative", in: []byte{0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8}, min: 4, max: 100, wantErr: ErrFrameTooSmall},
		{name: "huge positive", in: []byte{0x7f, 0xff, 0xff, 0xff}, min: 4, max: 1 << 20, wantErr: ErrFrameTooLarge},
		{name: "clean eof", in: nil, min: 4, max: 100, wantErr: io.EOF},
		{name: "partial prefix", in: []byte{0, 0}, min: 4, max: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "partial body", in: sized(body10)[:9], min: 4, max: 100, wantErr: io.ErrUnexpectedEOF},
		{name: "empty body after prefix", in: sized(body10)[:4], min: 4, max: 100, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrame(bytes.NewReader(tt.in), nil, tt.min, tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if len(got) != 0 {
					t.Fatalf("got %d bytes on error", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %x, want %x", got, tt.want)
			}
		})
	}
}

func TestReadFrameSizeErrorFields(t *testing.T) {
	_, err := ReadFrame(bytes.NewReader(sized(make([]byte, 50))), nil, 8, 40)
	var se *SizeError
	if !errors.As(err, &se) || se.Size != 50 || se.Max != 40 || se.Min != 8 {
		t.Fatalf("err = %#v", err)
	}
	if errors.Is(err, ErrFrameTooSmall) {
		t.Fatal("too large also matched too small")
	}
}

func TestReadFrameSequenceReusesBuffer(t *testing.T) {
	var stream []byte
	for i := 0; i < 5; i++ {
		stream = append(stream, sized(bytes.Repeat([]byte{byte(i)}, 8+i))...)
	}
	r := bytes.NewReader(stream)
	buf := make([]byte, 0, 64)
	for i := 0; i < 5; i++ {
		f, err := ReadRequest(r, buf, 100)
		if err != nil {
			t.Fatal(err)
		}
		if &f[0] != &buf[:1][0] {
			t.Fatalf("frame %d did not reuse the buffer", i)
		}
		if len(f) != SizeLen+8+i || f[SizeLen] != byte(i) {
			t.Fatalf("frame %d = %x", i, f)
		}
		buf = f
	}
	if _, err := ReadRequest(r, buf, 100); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameGrowsWithReceivedBytes(t *testing.T) {
	// A peer announcing 512 MiB and sending 10 bytes must not make us
	// allocate the announced size.
	in := append([]byte{0x20, 0, 0, 0}, make([]byte, 10)...)
	got, err := ReadFrame(bytes.NewReader(in), nil, 4, 1<<30)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if cap(got) > 2*growStep {
		t.Fatalf("allocated %d bytes for 10 received", cap(got))
	}
	// A large frame that does arrive is read completely across growths.
	big := bytes.Repeat([]byte("0123456789"), 100_000)
	got, err = ReadFrame(bytes.NewReader(sized(big)), make([]byte, 0, 16), 4, 1<<30)
	if err != nil || !bytes.Equal(got[SizeLen:], big) {
		t.Fatalf("big frame: err %v, equal %v", err, bytes.Equal(got[SizeLen:], big))
	}
}

func TestStartFinishFrame(t *testing.T) {
	dst := []byte("prefix")
	dst, start := StartFrame(dst)
	dst = append(dst, "hello"...)
	if err := FinishFrame(dst, start); err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("prefix"), sized([]byte("hello"))...); !bytes.Equal(dst, want) {
		t.Fatalf("got %q, want %q", dst, want)
	}
	if err := FinishFrame([]byte{1, 2}, 0); err == nil {
		t.Fatal("FinishFrame accepted a buffer without prefix")
	}
}

func FuzzFrame(f *testing.F) {
	f.Add(sized([]byte("12345678")), 16)
	f.Add(append(sized([]byte("12345678")), sized([]byte("abcdefghij"))...), 9)
	f.Fuzz(func(t *testing.T, in []byte, maxSize int) {
		if maxSize < 0 {
			maxSize = -maxSize
		}
		r := bytes.NewReader(in)
		var buf []byte
		consumed := 0
		for i := 0; i <= len(in); i++ {
			fr, err := ReadRequest(r, buf, maxSize%(1<<20))
			if err != nil {
				if len(fr) != 0 {
					t.Fatalf("error with %d bytes", len(fr))
				}
				return
			}
			size := int(binary.BigEndian.Uint32(fr))
			if size != len(fr)-SizeLen || size < MinRequestSize || size > maxSize%(1<<20) {
				t.Fatalf("frame size %d, len %d", size, len(fr))
			}
			if !bytes.Equal(fr, in[consumed:consumed+len(fr)]) {
				t.Fatal("frame differs from input")
			}
			consumed += len(fr)
			buf = fr
		}
		t.Fatal("more frames than input bytes")
	})
}

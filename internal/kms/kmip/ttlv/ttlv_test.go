package ttlv

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The examples of the KMIP 1.x specification, section 9.1.2.
func TestSpecExamples(t *testing.T) {
	cases := []struct {
		name string
		it   Item
		hex  string
	}{
		{"Integer 8", Int(0x420020, 8), "420020 | 02 | 00000004 | 00000008 00000000"},
		{"LongInteger 123456789000000000", Long(0x420020, 123456789000000000), "420020 | 03 | 00000008 | 01B69B4BA5749200"},
		{"BigInteger", Item{Tag: 0x420020, Type: BigInteger, Bytes: unhex(t, "0000000003FD35EB6BC2DF4618080000")}, "420020 | 04 | 00000010 | 0000000003FD35EB 6BC2DF4618080000"},
		{"Enumeration 255", Enum(0x420020, 255), "420020 | 05 | 00000004 | 000000FF 00000000"},
		{"Boolean true", Bool(0x420020, true), "420020 | 06 | 00000008 | 0000000000000001"},
		{"TextString Hello World", Text(0x420020, "Hello World"), "420020 | 07 | 0000000B | 48656C6C6F20576F726C640000000000"},
		{"ByteString 010203", Bytes(0x420020, []byte{1, 2, 3}), "420020 | 08 | 00000003 | 0102030000000000"},
		{"DateTime", DateTimeItem(0x420020, 0x47DA67F8), "420020 | 09 | 00000008 | 0000000047DA67F8"},
		{"Interval 10 days", Item{Tag: 0x420020, Type: Interval, Int: 864000}, "420020 | 0A | 00000004 | 000D2F00 00000000"},
		{"Structure", Struct(0x420020, Enum(0x420004, 254), Int(0x420005, 255)),
			"420020 | 01 | 00000020 | 420004 | 05 | 00000004 | 000000FE 00000000 | 420005 | 02 | 00000004 | 000000FF 00000000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.hex)
			got := Encode(c.it)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded\n%X\nwant\n%X", got, want)
			}
			back, err := Decode(want, DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if again := Encode(back); !bytes.Equal(again, want) {
				t.Fatalf("decode+encode gave %X", again)
			}
		})
	}
}

func TestNegativeInteger(t *testing.T) {
	it, err := Decode(Encode(Int(0x420020, -5)), DefaultLimits)
	if err != nil || it.Int != -5 {
		t.Fatalf("got %d, %v", it.Int, err)
	}
}

func TestFind(t *testing.T) {
	s := Struct(0x420001, Text(0x420002, "a"), Text(0x420003, "b"))
	if f := s.Find(0x420003); f == nil || f.Text() != "b" {
		t.Fatalf("Find: %v", f)
	}
	if s.Find(0x420009) != nil {
		t.Fatal("Find found a missing tag")
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		name string
		hex  string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"short header", "42002002000000", ErrTruncated},
		{"length past the end", "420020 | 08 | 00000010 | 0102030000000000", ErrTruncated},
		{"huge length", "420020 | 08 | FFFFFFFF | 0102030000000000", ErrTruncated},
		{"padding missing", "420020 | 08 | 00000003 | 010203", ErrTruncated},
		{"integer length 8", "420020 | 02 | 00000008 | 0000000800000000", ErrMalformed},
		{"bool 2", "420020 | 06 | 00000008 | 0000000000000002", ErrMalformed},
		{"non-zero padding", "420020 | 08 | 00000003 | 0102030000000001", ErrMalformed},
		{"unknown type", "420020 | 0B | 00000000", ErrMalformed},
		{"trailing bytes", "420020 | 08 | 00000000 | 0000000000000000", ErrMalformed},
		{"bigint length 3", "420020 | 04 | 00000003 | 0102030000000000", ErrMalformed},
		{"structure cut child", "420020 | 01 | 00000008 | 420004 | 05 | 00000004", ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(unhex(t, c.hex), DefaultLimits)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	deep := Text(0x420001, "x")
	for range 20 {
		deep = Struct(0x420001, deep)
	}
	if _, err := Decode(Encode(deep), DefaultLimits); !errors.Is(err, ErrLimit) {
		t.Fatalf("depth: got %v", err)
	}
	if _, err := Decode(Encode(deep), Limits{MaxDepth: 30, MaxItems: 100}); err != nil {
		t.Fatalf("depth within limits: %v", err)
	}
	wide := Struct(0x420001)
	for range 100 {
		wide.Items = append(wide.Items, Bool(0x420002, true))
	}
	if _, err := Decode(Encode(wide), Limits{MaxDepth: 4, MaxItems: 50}); !errors.Is(err, ErrLimit) {
		t.Fatalf("items: got %v", err)
	}
}

func TestMessageLen(t *testing.T) {
	msg := Encode(Struct(0x420078, Int(0x42000D, 1)))
	n, err := MessageLen(msg[:8])
	if err != nil || n != len(msg) {
		t.Fatalf("MessageLen = %d, %v; want %d", n, err, len(msg))
	}
	if _, err := MessageLen(Encode(Int(0x420078, 1))[:8]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("non-structure: %v", err)
	}
}

// FuzzDecode checks that decoding never panics or over-allocates, and that
// whatever decodes encodes back to the same bytes (decoding is strict, so
// one message has one byte form).
func FuzzDecode(f *testing.F) {
	f.Add(Encode(Struct(0x420078,
		Struct(0x420077, Struct(0x420069, Int(0x42006A, 1), Int(0x42006B, 2)), Int(0x42000D, 1)),
		Struct(0x42000F, Enum(0x42005C, 0x1F), Struct(0x420079, Text(0x420094, "1"), Bytes(0x4200C2, make([]byte, 32)))))))
	f.Add(Encode(Struct(0x42007B, Bool(0x4200C5, true), Long(0x420020, -1), DateTimeItem(0x420092, 1700000000),
		Item{Tag: 0x420020, Type: BigInteger, Bytes: make([]byte, 16)}, Item{Tag: 0x420021, Type: Interval, Int: 7})))
	f.Add([]byte{0x42, 0, 0x20, 1, 0xff, 0xff, 0xff, 0xf8})
	f.Fuzz(func(t *testing.T, b []byte) {
		it, err := Decode(b, Limits{MaxDepth: 8, MaxItems: 256})
		if err != nil {
			return
		}
		if again := Encode(it); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded\n%X\nfrom\n%X", again, b)
		}
	})
}

package azure

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

func TestEDEKRoundTrip(t *testing.T) {
	hexV := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, version string
		alg           byte
		wrappedLen    int
		size          int
	}{
		{"KEK-orders", hexV, algRSAOAEP256, 256, 285},
		{"KEK-orders", hexV, algRSAOAEP256, 512, 541},
		{"KEK-orders", hexV, algA256KW, 40, 69},
		{"k", "v1", algRSAOAEP256, 384, 1 + 1 + 1 + 1 + 1 + 2 + 384},
		{"KEK-orders", strings.ToUpper(hexV), algA256KW, 40, 1 + 1 + 10 + 1 + 1 + 32 + 40},
		{strings.Repeat("a", 127), strings.Repeat("z", 64), algA256KW, 40, 1 + 1 + 127 + 1 + 1 + 64 + 40},
	}
	for _, tt := range tests {
		wrapped := bytes.Repeat([]byte{0xab}, tt.wrappedLen)
		e := appendEDEK(nil, tt.name, tt.version, tt.alg, wrapped)
		if len(e) != tt.size {
			t.Errorf("%s/%s: EDEK is %d bytes, want %d", tt.name, tt.version, len(e), tt.size)
		}
		bits := 0
		if tt.alg == algRSAOAEP256 {
			bits = tt.wrappedLen * 8
		}
		if n := EDEKSize(tt.name, tt.version, bits); n != len(e) {
			t.Errorf("EDEKSize = %d, encoded %d", n, len(e))
		}
		p, err := parseEDEK(e)
		if err != nil {
			t.Fatalf("parse %x: %v", e, err)
		}
		if p.name != tt.name || p.version != tt.version || p.alg != tt.alg || !bytes.Equal(p.wrapped, wrapped) {
			t.Errorf("parsed %+v", p)
		}
	}
}

// Golden bytes: the format is stored in every record, so it must not drift.
func TestEDEKGolden(t *testing.T) {
	e := appendEDEK(nil, "KEK-a", "00112233445566778899aabbccddeeff", algA256KW, bytes.Repeat([]byte{7}, 40))
	want := "01" + "05" + hex.EncodeToString([]byte("KEK-a")) + "02" + "00112233445566778899aabbccddeeff" + strings.Repeat("07", 40)
	if got := hex.EncodeToString(e); got != want {
		t.Fatalf("EDEK\n got %s\nwant %s", got, want)
	}
	e = appendEDEK(nil, "k", "v-1", algRSAOAEP256, bytes.Repeat([]byte{1}, 256))
	want = "01" + "01" + "6b" + "81" + "03" + hex.EncodeToString([]byte("v-1")) + strings.Repeat("01", 256)
	if got := hex.EncodeToString(e); got != want {
		t.Fatalf("EDEK\n got %s\nwant %s", got, want)
	}
}

func TestParseEDEKRejects(t *testing.T) {
	good := appendEDEK(nil, "KEK-a", "00112233445566778899aabbccddeeff", algA256KW, make([]byte, 40))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := map[string][]byte{
		"empty":                 nil,
		"format 2":              mut(func(b []byte) []byte { b[0] = 2; return b }),
		"zero name":             {1, 0},
		"long name len":         {1, 0x80, 0x01},
		"non-minimal varint":    {1, 0x85, 0x00, 'K', 'E', 'K', '-', 'a'},
		"name past end":         {1, 9, 'a'},
		"name with dot":         mut(func(b []byte) []byte { b[3] = '.'; return b }),
		"name with slash":       mut(func(b []byte) []byte { b[3] = '/'; return b }),
		"no alg":                good[:7],
		"alg 0":                 mut(func(b []byte) []byte { b[7] = 0; return b }),
		"alg 3":                 mut(func(b []byte) []byte { b[7] = 3; return b }),
		"stray flag":            mut(func(b []byte) []byte { b[7] |= 0x40; return b }),
		"short version":         good[:8+10],
		"short wrapped":         good[:len(good)-1],
		"long wrapped":          append(append([]byte(nil), good...), 0),
		"rsa 255":               appendEDEK(nil, "k", "v", algRSAOAEP256, make([]byte, 255)),
		"text hex version":      {1, 1, 'k', 0x82, 32, '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0'},
		"empty text version":    {1, 1, 'k', 0x82, 0},
		"text version ctrl":     {1, 1, 'k', 0x82, 1, '\n'},
		"text version past":     {1, 1, 'k', 0x82, 5, 'a'},
		"text version too long": append([]byte{1, 1, 'k', 0x82, 65}, bytes.Repeat([]byte{'a'}, 65+40)...),
	}
	for name, in := range tests {
		if p, err := parseEDEK(in); err == nil {
			t.Errorf("%s: parsed %x as %+v", name, in, p)
		}
	}
}

func FuzzParseEDEK(f *testing.F) {
	f.Add(appendEDEK(nil, "KEK-orders", "0123456789abcdef0123456789abcdef", algRSAOAEP256, make([]byte, 256)))
	f.Add(appendEDEK(nil, "KEK-a", "v2", algA256KW, make([]byte, 40)))
	f.Add([]byte{1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseEDEK(b)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to the same bytes (one byte form per
		// value), and names and versions are safe in a URL path.
		again := appendEDEK(nil, p.name, p.version, p.alg, p.wrapped)
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x as %x", b, again)
		}
		if !validName(p.name) || !validVersion(p.version) || !validWrappedLen(p.alg, len(p.wrapped)) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

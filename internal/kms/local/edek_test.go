package local

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEDEKRoundTripAndSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint64
		size    int
	}{
		{"KEK-orders", 1, 53}, // the size stated in docs/local-kms.md
		{"k", 1, 44},
		{"KEK-orders", 300, 54},
		{strings.Repeat("a", 255), 1<<64 - 1, 1 + 2 + 255 + 10 + 40},
	} {
		wrapped := bytes.Repeat([]byte{0xAB}, wrappedLen)
		edek := append(appendEDEK(nil, tc.name, tc.version), wrapped...)
		if len(edek) != tc.size || EDEKSize(tc.name, tc.version) != tc.size {
			t.Errorf("%.10s v%d: EDEK %d bytes, EDEKSize %d, want %d", tc.name, tc.version, len(edek), EDEKSize(tc.name, tc.version), tc.size)
		}
		name, version, w, err := parseEDEK(edek)
		if err != nil || string(name) != tc.name || version != tc.version || !bytes.Equal(w, wrapped) {
			t.Errorf("%.10s v%d: parse = %.10q, %d, %X, %v", tc.name, tc.version, name, version, w, err)
		}
		info, err := DescribeEDEK(edek)
		if err != nil || info.KEK != tc.name {
			t.Errorf("DescribeEDEK = %+v, %v", info, err)
		}
	}
}

func TestParseEDEKMalformed(t *testing.T) {
	good := append(appendEDEK(nil, "KEK-a", 2), make([]byte, wrappedLen)...)
	for _, tc := range []struct {
		name string
		edek []byte
	}{
		{"empty", nil},
		{"unknown format", append([]byte{2}, good[1:]...)},
		{"zero name length", append([]byte{1, 0, 1}, make([]byte, wrappedLen)...)},
		{"name longer than input", []byte{1, 0x7f, 'a'}},
		{"name longer than 255", append(append([]byte{1, 0x80, 0x02}, bytes.Repeat([]byte{'a'}, 256)...), append([]byte{1}, make([]byte, wrappedLen)...)...)},
		{"huge name length varint", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"control byte in name", append([]byte{1, 2, 'a', '\n', 1}, make([]byte, wrappedLen)...)},
		{"NUL in name", append([]byte{1, 2, 'a', 0, 1}, make([]byte, wrappedLen)...)},
		{"version zero", append([]byte{1, 1, 'a', 0}, make([]byte, wrappedLen)...)},
		{"version overflows", append([]byte{1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, make([]byte, wrappedLen)...)},
		{"non-minimal name length", append([]byte{1, 0x81, 0x00, 'a', 1}, make([]byte, wrappedLen)...)},
		{"non-minimal version", append([]byte{1, 1, 'a', 0x81, 0x00}, make([]byte, wrappedLen)...)},
		{"truncated version", []byte{1, 1, 'a', 0x80}},
		{"short wrapped key", good[:len(good)-1]},
		{"long wrapped key", append(bytes.Clone(good), 0)},
	} {
		if _, _, _, err := parseEDEK(tc.edek); !errors.Is(err, errMalformedEDEK) {
			t.Errorf("%s: err = %v, want errMalformedEDEK", tc.name, err)
		}
	}
	if _, _, _, err := parseEDEK(good); err != nil {
		t.Fatalf("good EDEK: %v", err)
	}
}

// FuzzParseEDEK checks that parsing arbitrary bytes never panics, and that
// whatever parses re-encodes to the same bytes.
func FuzzParseEDEK(f *testing.F) {
	f.Add(append(appendEDEK(nil, "KEK-orders", 1), make([]byte, wrappedLen)...))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, edek []byte) {
		name, version, wrapped, err := parseEDEK(edek)
		if err != nil {
			return
		}
		again := append(appendEDEK(nil, string(name), version), wrapped...)
		if !bytes.Equal(again, edek) {
			t.Fatalf("re-encoded %X, parsed from %X", again, edek)
		}
	})
}

package hadoop

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEDEKRoundTripAndSize(t *testing.T) {
	iv := bytes.Repeat([]byte{0x11}, ivSize)
	mat := bytes.Repeat([]byte{0xAB}, dekSize)
	for _, tc := range []struct {
		name, version, describe string
		size                    int
	}{
		{"KEK-orders", "KEK-orders@0", "0", 73}, // the size docs/kms-hadoop.md states
		{"k", "k@12", "12", 1 + 1 + 1 + 1 + 4 + 48},
		{"KEK-a", "other-form", "other-form", 1 + 1 + 5 + 1 + 10 + 48},
		{strings.Repeat("a", 255), strings.Repeat("b", 255), strings.Repeat("b", 255), 1 + 2 + 255 + 2 + 255 + 48},
	} {
		edek := appendEDEK(nil, tc.name, tc.version, iv, mat)
		if len(edek) != tc.size || EDEKSize(tc.name, tc.version) != tc.size {
			t.Errorf("%.10s: EDEK %d bytes, EDEKSize %d, want %d", tc.name, len(edek), EDEKSize(tc.name, tc.version), tc.size)
		}
		name, version, gotIV, gotMat, err := parseEDEK(edek)
		if err != nil || string(name) != tc.name || string(version) != tc.version || !bytes.Equal(gotIV, iv) || !bytes.Equal(gotMat, mat) {
			t.Errorf("%.10s: parse = %.10q, %.10q, %v", tc.name, name, version, err)
		}
		info, err := DescribeEDEK(edek)
		if err != nil || info.KEK != tc.name || info.Version != tc.describe {
			t.Errorf("DescribeEDEK = %+v, %v; want version %.10q", info, err, tc.describe)
		}
	}
}

func TestParseEDEKMalformed(t *testing.T) {
	tail := make([]byte, ivSize+dekSize)
	good := appendEDEK(nil, "KEK-a", "KEK-a@2", tail[:ivSize], tail[ivSize:])
	if _, _, _, _, err := parseEDEK(good); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edek []byte
	}{
		{"empty", nil},
		{"unknown format", append([]byte{2}, good[1:]...)},
		{"format byte only", []byte{1}},
		{"zero name length", append([]byte{1, 0, 1, 'v'}, tail...)},
		{"name longer than input", []byte{1, 0x7f, 'a'}},
		{"name longer than 255", append([]byte{1, 0x80, 0x02}, bytes.Repeat([]byte{'a'}, 300)...)},
		{"huge length varint", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"non-minimal name length", append([]byte{1, 0x81, 0x00, 'a', 1, 'v'}, tail...)},
		{"slash in name", append([]byte{1, 3, 'a', '/', 'b', 1, 'v'}, tail...)},
		{"at in name", append([]byte{1, 3, 'a', '@', 'b', 1, 'v'}, tail...)},
		{"percent in version", append([]byte{1, 1, 'a', 3, 'a', '%', '2'}, tail...)},
		{"slash in version", append([]byte{1, 1, 'a', 3, '.', '.', '/'}, tail...)},
		{"zero version length", append([]byte{1, 1, 'a', 0}, tail...)},
		{"short material", good[:len(good)-1]},
		{"long material", append(append([]byte{}, good...), 0)},
	} {
		if _, _, _, _, err := parseEDEK(tc.edek); !errors.Is(err, errMalformedEDEK) {
			t.Errorf("%s: err = %v, want errMalformedEDEK", tc.name, err)
		}
		if _, err := DescribeEDEK(tc.edek); err == nil {
			t.Errorf("%s: DescribeEDEK accepted it", tc.name)
		}
	}
}

// FuzzParseEDEK: any input either fails or re-encodes to exactly itself
// (one byte form per EDEK), with safe names.
func FuzzParseEDEK(f *testing.F) {
	tail := bytes.Repeat([]byte{7}, ivSize+dekSize)
	f.Add(appendEDEK(nil, "KEK-orders", "KEK-orders@0", tail[:ivSize], tail[ivSize:]))
	f.Add(appendEDEK(nil, "k", "k@123456", tail[:ivSize], tail[ivSize:]))
	f.Add([]byte{1, 0x81, 0x00, 'a'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		name, version, iv, mat, err := parseEDEK(b)
		if err != nil {
			return
		}
		if !validKeyName(name) || !validVersionName(version) || len(iv) != ivSize || len(mat) != dekSize {
			t.Fatalf("accepted bad parts: %q %q %d %d", name, version, len(iv), len(mat))
		}
		if again := appendEDEK(nil, string(name), string(version), iv, mat); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
		if _, err := DescribeEDEK(b); err != nil {
			t.Fatal(err)
		}
	})
}

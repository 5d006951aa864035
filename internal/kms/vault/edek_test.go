package vault

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestEDEKRoundTripAndSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version uint64
		ctLen   int
		size    int
	}{
		{"KEK-orders", 1, 60, 73}, // the size stated in docs/kms-vault.md
		{"k", 1, 60, 64},
		{"KEK-orders", 300, 60, 74},
		{"KEK-rsa", 2, 512, 1 + 1 + 7 + 1 + 512},
		{strings.Repeat("a", 255), maxVersion, maxCiphertext, 1 + 2 + 255 + 5 + maxCiphertext},
	} {
		ct := bytes.Repeat([]byte{0xAB}, tc.ctLen)
		edek := appendEDEK(nil, tc.name, tc.version, ct)
		if len(edek) != tc.size || EDEKSize(tc.name, tc.version, tc.ctLen) != tc.size {
			t.Errorf("%.10s v%d: EDEK %d bytes, EDEKSize %d, want %d", tc.name, tc.version, len(edek), EDEKSize(tc.name, tc.version, tc.ctLen), tc.size)
		}
		name, version, got, err := parseEDEK(edek)
		if err != nil || string(name) != tc.name || version != tc.version || !bytes.Equal(got, ct) {
			t.Errorf("%.10s v%d: parse = %.10q, %d, %d bytes, %v", tc.name, tc.version, name, version, len(got), err)
		}
		info, err := DescribeEDEK(edek)
		if err != nil || info.KEK != tc.name {
			t.Errorf("DescribeEDEK = %+v, %v", info, err)
		}
	}
}

func TestParseEDEKMalformed(t *testing.T) {
	ct := make([]byte, 60)
	good := appendEDEK(nil, "KEK-a", 2, ct)
	for _, tc := range []struct {
		name string
		edek []byte
	}{
		{"empty", nil},
		{"unknown format", append([]byte{2}, good[1:]...)},
		{"local KMS format byte but garbage", []byte{1}},
		{"zero name length", append([]byte{1, 0, 1}, ct...)},
		{"name longer than input", []byte{1, 0x7f, 'a'}},
		{"name longer than 255", append(append([]byte{1, 0x80, 0x02}, bytes.Repeat([]byte{'a'}, 256)...), append([]byte{1}, ct...)...)},
		{"huge name length varint", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"slash in name", append([]byte{1, 3, 'a', '/', 'b', 1}, ct...)},
		{"dot dot slash", append([]byte{1, 3, '.', '.', '/', 1}, ct...)},
		{"percent in name", append([]byte{1, 3, 'a', '%', '2', 1}, ct...)},
		{"NUL in name", append([]byte{1, 2, 'a', 0, 1}, ct...)},
		{"version zero", append([]byte{1, 1, 'a', 0}, ct...)},
		{"version above 2^31-1", append([]byte{1, 1, 'a', 0x80, 0x80, 0x80, 0x80, 0x08}, ct...)},
		{"non-minimal name length", append([]byte{1, 0x81, 0x00, 'a', 1}, ct...)},
		{"non-minimal version", append([]byte{1, 1, 'a', 0x81, 0x00}, ct...)},
		{"truncated version", []byte{1, 1, 'a', 0x80}},
		{"no ciphertext", []byte{1, 1, 'a', 1}},
		{"ciphertext too long", append([]byte{1, 1, 'a', 1}, make([]byte, maxCiphertext+1)...)},
	} {
		if _, _, _, err := parseEDEK(tc.edek); !errors.Is(err, errMalformedEDEK) {
			t.Errorf("%s: err = %v, want errMalformedEDEK", tc.name, err)
		}
		if _, err := DescribeEDEK(tc.edek); err == nil {
			t.Errorf("%s: DescribeEDEK accepted it", tc.name)
		}
	}
	if _, _, _, err := parseEDEK(good); err != nil {
		t.Fatalf("good EDEK: %v", err)
	}
}

func TestCiphertextString(t *testing.T) {
	// A real Transit answer (aes256-gcm96, 60 bytes).
	const s = "vault:v1:42TSHvWvZlhbt+CNbQRMIinkXBMibLi2LGd4k1Ps96APSs4byv33iWUNkxKxE7gWL8SkZI/PtaoVT2Ah"
	v, ct, err := parseCiphertext(s)
	if err != nil || v != 1 || len(ct) != 60 {
		t.Fatalf("parse = %d, %d bytes, %v", v, len(ct), err)
	}
	if got := string(appendCiphertext(nil, v, ct)); got != s {
		t.Fatalf("rebuilt %q", got)
	}
	if got := string(appendCiphertext([]byte("x"), 12345, []byte{1, 2})); got != "xvault:v12345:AQI=" {
		t.Fatalf("rebuilt %q", got)
	}
	for _, bad := range []string{
		"", "vault:", "vault:v", "vault:v1", "vault:v:AAAA", "vault:v0:AAAA", "vault:v01:AAAA",
		"vault:v-1:AAAA", "vault:v+1:AAAA", "vault:vx:AAAA", "vault:v2147483648:AAAA", "vault:v1:",
		"vault:v1:AAA", "vault:v1:AAAB=", "vault:v1:AQJ=", "vault:v1:AA==\n", "vault:v1:AA-_",
		"VAULT:v1:AAAA", "vault:v1:" + base64.StdEncoding.EncodeToString(make([]byte, maxCiphertext+1)),
	} {
		if _, _, err := parseCiphertext(bad); err == nil {
			t.Errorf("parseCiphertext(%.40q) accepted it", bad)
		}
	}
}

// FuzzParseEDEK checks that parsing arbitrary bytes never panics, that
// whatever parses re-encodes to the same bytes, and that the rebuilt
// Transit string parses back to the same version and ciphertext.
func FuzzParseEDEK(f *testing.F) {
	f.Add(appendEDEK(nil, "KEK-orders", 1, make([]byte, 60)))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, edek []byte) {
		name, version, ct, err := parseEDEK(edek)
		if err != nil {
			return
		}
		if again := appendEDEK(nil, string(name), version, ct); !bytes.Equal(again, edek) {
			t.Fatalf("re-encoded %X, parsed from %X", again, edek)
		}
		v, ct2, err := parseCiphertext(string(appendCiphertext(nil, version, ct)))
		if err != nil || v != version || !bytes.Equal(ct2, ct) {
			t.Fatalf("Transit string does not round-trip: %d %X %v", v, ct2, err)
		}
	})
}

// FuzzParseCiphertext checks that what parses rebuilds the same string, so
// an EDEK always carries exactly what the server returned.
func FuzzParseCiphertext(f *testing.F) {
	f.Add("vault:v1:42TSHvWvZlhbt+CNbQRMIinkXBMibLi2LGd4k1Ps96APSs4byv33iWUNkxKxE7gWL8SkZI/PtaoVT2Ah")
	f.Add("vault:v12:AQI=")
	f.Add("vault:v1:AQJ=")
	f.Fuzz(func(t *testing.T, s string) {
		v, ct, err := parseCiphertext(s)
		if err != nil {
			return
		}
		if got := string(appendCiphertext(nil, v, ct)); got != s {
			t.Fatalf("rebuilt %q from %q", got, s)
		}
	})
}

// BenchmarkParseEDEK measures the offline parse every DecryptDEK and
// DescribeEDEK starts with; it must not allocate.
func BenchmarkParseEDEK(b *testing.B) {
	edek := appendEDEK(nil, "KEK-orders", 7, make([]byte, 60))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := parseEDEK(edek); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseEDEKDoesNotAllocate(t *testing.T) {
	edek := appendEDEK(nil, "KEK-orders", 7, make([]byte, 60))
	if n := testing.AllocsPerRun(100, func() { parseEDEK(edek) }); n != 0 {
		t.Fatalf("parseEDEK allocates %v times", n)
	}
}

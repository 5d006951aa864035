package local

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyWrapRFC3394 checks the test vectors of RFC 3394 section 4.
func TestKeyWrapRFC3394(t *testing.T) {
	const kek = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
	const data = "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
	for _, tc := range []struct {
		name         string
		kekLen, dLen int
		want         string
	}{
		{"4.1 128-bit KEK, 128-bit key", 16, 16, "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		{"4.2 192-bit KEK, 128-bit key", 24, 16, "96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D"},
		{"4.3 256-bit KEK, 128-bit key", 32, 16, "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"},
		{"4.4 192-bit KEK, 192-bit key", 24, 24, "031D33264E15D33268F24EC260743EDCE1C6C7DDEE725A936BA814915C6762D2"},
		{"4.5 256-bit KEK, 192-bit key", 32, 24, "A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1"},
		{"4.6 256-bit KEK, 256-bit key", 32, 32, "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := aes.NewCipher(unhex(t, kek)[:tc.kekLen])
			if err != nil {
				t.Fatal(err)
			}
			key := unhex(t, data)[:tc.dLen]
			want := unhex(t, tc.want)
			prefix := []byte("xy")
			got := wrapKey(b, prefix, key)
			if !bytes.Equal(got[:2], prefix) || !bytes.Equal(got[2:], want) {
				t.Fatalf("wrap = %X, want xy + %X", got, want)
			}
			back, err := unwrapKey(b, []byte("z"), want)
			if err != nil || !bytes.Equal(back, append([]byte("z"), key...)) {
				t.Fatalf("unwrap = %X, %v; want z + %X", back, err, key)
			}
		})
	}
}

func TestKeyUnwrapRejects(t *testing.T) {
	b, _ := aes.NewCipher(unhex(t, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"))
	other, _ := aes.NewCipher(make([]byte, 32))
	good := unhex(t, "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		if out, err := unwrapKey(b, nil, bad); !errors.Is(err, errUnwrap) || len(out) != 0 {
			t.Fatalf("flipped byte %d: unwrap = %X, %v; want errUnwrap and no output", i, out, err)
		}
	}
	if _, err := unwrapKey(other, nil, good); !errors.Is(err, errUnwrap) {
		t.Fatalf("wrong KEK: err = %v, want errUnwrap", err)
	}
	for _, n := range []int{0, 8, 16, 39, 41} {
		if _, err := unwrapKey(b, nil, make([]byte, n)); !errors.Is(err, errUnwrap) {
			t.Fatalf("%d bytes: err = %v, want errUnwrap", n, err)
		}
	}
}

func BenchmarkKeyWrap(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 32))
	key := make([]byte, 32)
	buf := make([]byte, 0, 40)
	b.ReportAllocs()
	for b.Loop() {
		buf = wrapKey(blk, buf[:0], key)
	}
}

func BenchmarkKeyUnwrap(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 32))
	wrapped := wrapKey(blk, nil, make([]byte, 32))
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = unwrapKey(blk, buf[:0], wrapped); err != nil {
			b.Fatal(err)
		}
	}
}

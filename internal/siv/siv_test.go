package siv

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type vec struct {
	name, key string
	ad        []string
	pt, out   string
}

// vectors: RFC 5297 Appendix A (A.1, A.2: 256-bit keys, so AES-128-SIV) and
// a few of Wycheproof's aes_siv_cmac_test.json (one AD component each) for
// 48- and 64-byte keys, block-boundary lengths and the CTR edge cases.
var vectors = []vec{
	{name: "RFC 5297 A.1 deterministic",
		key: "fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff",
		ad:  []string{"10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627"},
		pt:  "11223344 55667788 99aabbcc ddee",
		out: "85632d07 c6e8f37f 950acd32 0a2ecc93 40c02b96 90c4dc04 daef7f6a fe5c"},
	{name: "RFC 5297 A.2 nonce-based",
		key: "7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f",
		ad: []string{"00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100",
			"10203040 50607080 90a0",
			"09f91102 9d74e35b d84156c5 635688c0"},
		pt: "74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553",
		out: "7bdb6e3b 432667eb 06f4d14b ff2fbd0f cb900f2f ddbe4043 26601965 c889bf17 dba77ceb 094fa663 b7a3f748 ba8af829" +
			"ea64ad54 4a272e9c 485b62a3 fd5c0d"},
	{name: "no AD, empty plaintext",
		key: "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
		pt:  "", out: "f2007a5beb2b8900c588a7adf599f172"},
	{name: "wycheproof 2 empty AD and plaintext",
		key: "2b27e429fb6c02678e589ccc4437c5adfb44b331ab6d21ea321727e6ec03d354",
		ad:  []string{""}, pt: "", out: "b2b2354e3724dcdaa85ecf029b49a90c"},
	{name: "wycheproof 9 two blocks",
		key: "96e1e4896fb2cd05f133a6a100bc5609a7ac3ca6d81721e922dadd69ad07a892",
		ad:  []string{"8ee21f1a5e2b3f8b8f2064e5cecac81d"},
		pt:  "91a17e4dfcc3166a1add26ff0e7c12056e8a654f28a6de24f4ba739ceb5b5b18",
		out: "849195031e8927a1af4f64cbdd8048461c03598bfba441312776a4e8ac959bee44c521801287a2fd95e2329b1c694441"},
	{name: "wycheproof 30 long",
		key: "83bc39bf7b5faaf0f9223ed2aa761ab32c04993e3fbccd34ee616ffd28ce5766",
		ad:  []string{"ed9ec561ecf5e289a1516c9f"},
		pt:  "f70ef1598f403902dcab4cc23bb1265f34e825b99abc61b26a22b9bbf478c3c1e61e67e98201bc564d022b87b4106aad0c4ca2d30e8927fba5b52a76971ef79a92a1eb6cf4ef87aea6b551567a2c4c41",
		out: "fafea55bba0680a510ce095d5c8a40a84a76071b8938dcfe99c8c73b049230ac52df7e09769852a6057353a7df7b8d18882ce5369c6bb855f271d88108719a1b5ea5765f549c282639c8bfacc34b5b10991b8fbdae2e42429fb7f0554e0e5611"},
	{name: "wycheproof 33 edge SIV all ones",
		key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		ad:  []string{""}, pt: "110d3aa6f558c30977870672804064e0",
		out: "ffffffffffffffffffffffffffffffff01f74b8e43a262001d8357f95489432e"},
	// AES-192-SIV: Wycheproof tcId 196 and 194 are "flipped bit in tag"
	// vectors; these are their valid forms (the bit restored, which tcIds
	// 198-202, flipping other bits of the same tag, confirm).
	{name: "wycheproof 196 restored AES-192-SIV empty",
		key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
		ad:  []string{""}, pt: "", out: "e84dda18e98cc8139cbdfd2271d8bae0"},
	{name: "wycheproof 194 restored AES-192-SIV one block",
		key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
		ad:  []string{""}, pt: "303132333435363738393a3b3c3d3e3f",
		out: "e88ecb00ac9a462cdce6242b1b4951e4738b595aebf6ee3e7be424bfb51bfdee"},
	{name: "wycheproof 306 AES-256-SIV short",
		key: "3ab062dbdd38b951a9fb0d8bb185959a93dab3496b850a3062b93003036c8bd2aabbf37d5d3f6a399d4cedefb70c1b8a7b45639fe118c10e39f36fa58618a84d",
		ad:  []string{"e8605f13db8c482d48bdba2d"}, pt: "5c6f", out: "fddea9ac778b978a968033ce52ec61162588"},
	{name: "wycheproof 320 AES-256-SIV 17 bytes",
		key: "139383f3f82dc78e0b380027f9e5fcd2ed23716404be5c554452e4dc73d237026594491820c6b8297185cc1fa84f49a5c7d7cd05c5de090ff1c3397bc2740437",
		ad:  []string{"d39da73ffc03ad0a9213ffc7"}, pt: "48604944a80fadf50d55b87727934458c8",
		out: "a9cf73951cb39823777f35c96c845169476e2ec2317cb6b8dd8b6172fdceabff9d"},
	{name: "wycheproof 324 AES-256-SIV long",
		key: "72a76714e0171e8213de624f00e273bc900050e69d25c454cc42b61e8b3fbc92d4942e1ae14421e164046c1479a7b9c9f4b50b382cb62dfeaa210b98dec7d937",
		ad:  []string{"6a8aaf2c84003e0e6f409658"},
		pt:  "92d8f4dc7d41e8b180d66e8994022db79249cdc76fd7f3ea12d9925b51925250cd75a15fcfd78ea85c57fe6196f8d7545086f99ea796a0ea69170db9944200435d9d3d551943892400ce787f703c1105",
		out: "69f720f36b0da86ec8cc0f46d62835dcb35ac23f5b891152d861c4e0f0018f19d272ee8b12d83300bfd46aeec0124d5d23b3cb849c1cab1fdf64b70947ebf79f5442e209076dfa9a3f36ab0a6d3cf4a75ddfcdc21837743b20885db4c803ac27"},
	{name: "wycheproof 333 AES-256-SIV edge SIV",
		key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
		ad:  []string{""}, pt: "114cc36e58faceb2e6a2344a679ea4c3",
		out: "fffffffffffffffffffffffffffffffe2f849650d6e89e2668e990219195719c"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			a, err := New(unhex(t, v.key))
			if err != nil {
				t.Fatal(err)
			}
			var ad [][]byte
			for _, s := range v.ad {
				ad = append(ad, unhex(t, s))
			}
			pt, want := unhex(t, v.pt), unhex(t, v.out)
			got := a.Seal(nil, pt, ad...)
			if !bytes.Equal(got, want) {
				t.Fatalf("Seal = %x\nwant   %x", got, want)
			}
			back, err := a.Open(nil, want, ad...)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("Open = %x, %v", back, err)
			}
			// Appending to a prefix, and opening in place.
			pre := []byte("prefix")
			got = a.Seal(bytes.Clone(pre), pt, ad...)
			if !bytes.Equal(got[:len(pre)], pre) || !bytes.Equal(got[len(pre):], want) {
				t.Fatalf("Seal(prefix) = %x", got)
			}
			buf := bytes.Clone(want)
			back, err = a.Open(buf[:0], buf, ad...)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("Open in place = %x, %v", back, err)
			}
		})
	}
}

func TestWycheproofInvalid(t *testing.T) {
	// tcId 194 and 335: a bit flipped in the tag must not open.
	for _, c := range []struct{ key, ct string }{
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
			"ea8ecb00ac9a462cdce6242b1b4951e4738b595aebf6ee3e7be424bfb51bfdee"},
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
			"6ef5b8ef53fc365606cd3ea047374885"},
	} {
		a, err := New(unhex(t, c.key))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := a.Open(nil, unhex(t, c.ct), nil); err != ErrAuth {
			t.Fatalf("Open = %x, %v", out, err)
		}
	}
}

func TestKeySizes(t *testing.T) {
	for n := range 100 {
		_, err := New(make([]byte, n))
		if ok := n == 32 || n == 48 || n == 64; ok != (err == nil) {
			t.Errorf("New(%d bytes) = %v", n, err)
		}
	}
}

func testAEAD(t testing.TB) *AEAD {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i * 7)
	}
	a, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestOpenRejectsEveryFlippedBit(t *testing.T) {
	a := testAEAD(t)
	for _, n := range []int{0, 1, 15, 16, 17, 40} {
		pt := bytes.Repeat([]byte{0x5a}, n)
		ad1, ad2 := []byte("orders"), []byte("12345678")
		sealed := a.Seal(nil, pt, ad1, ad2)
		for i := range len(sealed) * 8 {
			bad := bytes.Clone(sealed)
			bad[i/8] ^= 1 << (i % 8)
			dst := make([]byte, 0, 64)
			if out, err := a.Open(dst, bad, ad1, ad2); err != ErrAuth || len(out) != 0 {
				t.Fatalf("len %d: bit %d flipped: Open = %x, %v", n, i, out, err)
			}
			if bytes.ContainsFunc(dst[:cap(dst)], func(r rune) bool { return r != 0 }) {
				t.Fatalf("len %d: bit %d flipped: failed Open left bytes in dst's spare capacity", n, i)
			}
		}
		for i := range len(ad1) * 8 {
			bad := bytes.Clone(ad1)
			bad[i/8] ^= 1 << (i % 8)
			if _, err := a.Open(nil, sealed, bad, ad2); err != ErrAuth {
				t.Fatalf("AD bit %d flipped: Open = %v", i, err)
			}
		}
		if _, err := a.Open(nil, sealed[:len(sealed)-1], ad1, ad2); n > 0 && err != ErrAuth {
			t.Fatalf("truncated: %v", err)
		}
	}
	if _, err := a.Open(nil, make([]byte, 15)); err != ErrAuth {
		t.Fatalf("short: %v", err)
	}
}

func TestADVector(t *testing.T) {
	a := testAEAD(t)
	pt := []byte("customer-42")
	x, y := []byte("topic"), []byte("keyid")
	sealed := a.Seal(nil, pt, x, y)
	for name, ad := range map[string][][]byte{
		"swapped":      {y, x},
		"concatenated": {append(bytes.Clone(x), y...)},
		"one missing":  {x},
		"one extra":    {x, y, nil},
		"none":         nil,
	} {
		if _, err := a.Open(nil, sealed, ad...); err != ErrAuth {
			t.Errorf("%s: Open = %v, want ErrAuth", name, err)
		}
		if bytes.Equal(a.Seal(nil, pt, ad...), sealed) {
			t.Errorf("%s: same output as the original AD", name)
		}
	}
	// Deterministic, and another key gives something else.
	if !bytes.Equal(a.Seal(nil, pt, x, y), sealed) {
		t.Fatal("Seal is not deterministic")
	}
	b, _ := New(make([]byte, KeySize))
	if _, err := b.Open(nil, sealed, x, y); err != ErrAuth {
		t.Fatalf("other key: %v", err)
	}
}

func TestTooManyAD(t *testing.T) {
	a := testAEAD(t)
	ad := make([][]byte, MaxAD+1)
	if _, err := a.Open(nil, make([]byte, 32), ad...); err != ErrAuth {
		t.Fatalf("Open with %d AD: %v", len(ad), err)
	}
	sealed := a.Seal(nil, []byte("x"), ad[:MaxAD]...)
	if _, err := a.Open(nil, sealed, ad[:MaxAD]...); err != nil {
		t.Fatalf("Open with %d AD: %v", MaxAD, err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Seal with 127 AD components did not panic")
		}
	}()
	a.Seal(nil, []byte("x"), ad...)
}

func TestZeroAllocs(t *testing.T) {
	a := testAEAD(t)
	pt := bytes.Repeat([]byte{1}, 100)
	t1, id := []byte("orders"), []byte("01234567")
	dst := make([]byte, 0, 256)
	out := make([]byte, 0, 256)
	sealed := a.Seal(nil, pt, t1, id)
	if n := testing.AllocsPerRun(100, func() { a.Seal(dst, pt, t1, id) }); n != 0 {
		t.Errorf("Seal: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := a.Open(out, sealed, t1, id); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Open: %v allocs", n)
	}
}

func TestConcurrent(t *testing.T) {
	a := testAEAD(t)
	done := make(chan error)
	for g := range 4 {
		go func() {
			for i := range 200 {
				pt := []byte(fmt.Sprintf("%d-%d", g, i))
				s := a.Seal(nil, pt, []byte("t"))
				back, err := a.Open(nil, s, []byte("t"))
				if err != nil || !bytes.Equal(back, pt) {
					done <- fmt.Errorf("round trip %q: %x, %v", pt, back, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzSIV(f *testing.F) {
	f.Add([]byte("customer-42"), []byte("orders"), []byte("01234567"), uint8(2))
	f.Add([]byte{}, []byte{}, []byte{}, uint8(0))
	f.Add(bytes.Repeat([]byte{0xff}, 33), []byte("t"), []byte{}, uint8(1))
	a := testAEAD(f)
	f.Fuzz(func(t *testing.T, pt, ad1, ad2 []byte, n uint8) {
		ad := [][]byte{ad1, ad2}[:n%3]
		sealed := a.Seal(nil, pt, ad...)
		if len(sealed) != len(pt)+Size {
			t.Fatalf("sealed %d bytes for %d", len(sealed), len(pt))
		}
		if !bytes.Equal(a.Seal(nil, pt, ad...), sealed) {
			t.Fatal("not deterministic")
		}
		back, err := a.Open(nil, sealed, ad...)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("Open = %x, %v", back, err)
		}
		// in place
		back, err = a.Open(sealed[:0], sealed, ad...)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("Open in place = %x, %v", back, err)
		}
		if len(ad) > 0 {
			if _, err := a.Open(nil, a.Seal(nil, pt, ad...), ad[:len(ad)-1]...); err != ErrAuth {
				t.Fatal("opened with an AD component missing")
			}
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	for _, n := range []int{16, 64, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a := testAEAD(b)
			pt := make([]byte, n)
			dst := make([]byte, 0, n+Size)
			t1, id := []byte("orders"), []byte("01234567")
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				a.Seal(dst, pt, t1, id)
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{16, 64, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a := testAEAD(b)
			t1, id := []byte("orders"), []byte("01234567")
			sealed := a.Seal(nil, make([]byte, n), t1, id)
			dst := make([]byte, 0, n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Open(dst, sealed, t1, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

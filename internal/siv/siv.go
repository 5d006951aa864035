// Package siv implements AES-SIV (RFC 5297): deterministic authenticated
// encryption with associated data. Its IV is a MAC (S2V over AES-CMAC) of the
// associated data and the plaintext, so equal inputs give equal outputs and
// nothing else does; that is what kseal needs to encrypt record keys without
// breaking compaction (docs/format.md, "Version 2").
//
// It is written from the RFC (and RFC 4493 for AES-CMAC) on crypto/aes: no
// maintained Go library exists.
package siv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// KeySize is the key length kseal uses: AES-256-SIV, whose first 32 bytes
// are K1 (S2V, AES-CMAC) and last 32 bytes K2 (CTR). New also accepts 32-
// and 48-byte keys (AES-128-SIV and AES-192-SIV).
const KeySize = 64

// Size is the length of the synthetic IV V that leads every sealed output:
// Seal adds exactly Size bytes to the plaintext.
const Size = 16

// MaxAD is the most associated-data components Seal and Open take: S2V
// takes at most 127 strings, and the plaintext is the last one.
const MaxAD = 126

// ErrAuth means the sealed bytes, the associated data or the key are not
// what Seal was given.
var ErrAuth = errors.New("siv: authentication failed")

// AEAD is AES-SIV under one key. It is safe for concurrent use.
type AEAD struct {
	mac cipher.Block // AES under K1, for S2V's CMAC
	ctr cipher.Block // AES under K2, for CTR
	// sub1 and sub2 are the CMAC subkeys of K1 (RFC 4493 section 2.3).
	sub1, sub2 [16]byte
	// d0 is S2V's first step, AES-CMAC(K1, <zero>): the same for every input.
	d0 [16]byte
}

// New returns AES-SIV under key: 32, 48 or 64 bytes, K1 || K2.
func New(key []byte) (*AEAD, error) {
	switch len(key) {
	case 32, 48, 64:
	default:
		return nil, fmt.Errorf("siv: key of %d bytes, want 32, 48 or 64", len(key))
	}
	half := len(key) / 2
	mac, err := aes.NewCipher(key[:half])
	if err != nil {
		return nil, err
	}
	ctr, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, err
	}
	a := &AEAD{mac: mac, ctr: ctr}
	var l [16]byte
	mac.Encrypt(l[:], l[:])
	a.sub1 = dbl(l)
	a.sub2 = dbl(a.sub1)
	s := pool.Get().(*scratch)
	a.cmac(s, a.d0[:], nil, &a.d0) // a.d0 is zero here
	put(s)
	return a, nil
}

// scratch holds one call's intermediate blocks. They cannot live on the
// stack (they escape through cipher.Block), so they are pooled, and cleared
// before going back: they hold key stream and MAC state.
type scratch struct {
	x, blk, d, v, q, ks [16]byte
}

var pool = sync.Pool{New: func() any { return new(scratch) }}

func put(s *scratch) {
	*s = scratch{}
	pool.Put(s)
}

// Seal appends V (16 bytes) || ciphertext of plaintext to dst, with the
// associated-data vector ad (RFC 5297 S2V; at most MaxAD components, more
// panics: that is a programming error). It allocates nothing when dst has
// room for len(plaintext)+Size more bytes. dst's spare capacity must not
// overlap plaintext.
func (a *AEAD) Seal(dst, plaintext []byte, ad ...[]byte) []byte {
	if len(ad) > MaxAD {
		panic("siv: more than 126 associated-data components")
	}
	ret, out := grow(dst, Size+len(plaintext))
	s := pool.Get().(*scratch)
	a.s2v(s, ad, plaintext)
	copy(out, s.v[:])
	a.xorCTR(s, out[Size:], plaintext)
	put(s)
	return ret
}

// Open authenticates and decrypts sealed (V || C), appending the plaintext
// to dst. Every failure is ErrAuth, and then dst's spare capacity holds
// nothing of the plaintext. dst may be sealed[:0] to decrypt in place;
// otherwise its spare capacity must not overlap sealed.
func (a *AEAD) Open(dst, sealed []byte, ad ...[]byte) ([]byte, error) {
	if len(sealed) < Size || len(ad) > MaxAD {
		return dst, ErrAuth
	}
	s := pool.Get().(*scratch)
	var v [Size]byte
	copy(v[:], sealed) // before an in-place decryption overwrites it
	s.v = v
	ret, out := grow(dst, len(sealed)-Size)
	a.xorCTR(s, out, sealed[Size:]) // forwards, block by block: in place is safe
	a.s2v(s, ad, out)
	ok := subtle.ConstantTimeCompare(s.v[:], v[:]) == 1
	put(s)
	if !ok {
		clear(out)
		return dst, ErrAuth
	}
	return ret, nil
}

// s2v computes S2V(K1, ad..., p) into s.v (RFC 5297 section 2.4).
func (a *AEAD) s2v(s *scratch, ad [][]byte, p []byte) {
	// D = AES-CMAC(K, <zero>)
	s.d = a.d0
	for _, c := range ad {
		// D = dbl(D) xor AES-CMAC(K, Si)
		a.cmac(s, c, nil, &s.v)
		s.d = dbl(s.d)
		subtle.XORBytes(s.d[:], s.d[:], s.v[:])
	}
	if len(p) >= 16 {
		// T = Sn xorend D
		a.cmac(s, p, &s.d, &s.v)
		return
	}
	// T = dbl(D) xor pad(Sn)
	s.d = dbl(s.d)
	subtle.XORBytes(s.d[:], s.d[:], p)
	s.d[len(p)] ^= 0x80
	a.cmac(s, s.d[:], nil, &s.v)
}

// cmac computes AES-CMAC (RFC 4493) of m under K1 into out. With tail set,
// the MAC is of m with its last 16 bytes XORed with *tail (S2V's "xorend"),
// computed on the fly so m is not modified. len(m) >= 16 when tail is set.
// out may be tail or alias m.
func (a *AEAD) cmac(s *scratch, m []byte, tail *[16]byte, out *[16]byte) {
	n := len(m)
	off := n - 16 // where the tail starts
	last := n / 16
	if n > 0 && n%16 == 0 {
		last--
	}
	x := &s.x
	*x = [16]byte{}
	for i := range last {
		b := i * 16
		subtle.XORBytes(x[:], x[:], m[b:b+16])
		if tail != nil && b+16 > off {
			xorTail(x, tail, b, off)
		}
		a.mac.Encrypt(x[:], x[:])
	}
	b := last * 16
	blk := &s.blk
	*blk = [16]byte{}
	k := copy(blk[:], m[b:])
	if tail != nil && b+16 > off {
		xorTail(blk, tail, b, off)
	}
	if k == 16 {
		subtle.XORBytes(blk[:], blk[:], a.sub1[:])
	} else {
		blk[k] = 0x80
		subtle.XORBytes(blk[:], blk[:], a.sub2[:])
	}
	subtle.XORBytes(x[:], x[:], blk[:])
	a.mac.Encrypt(out[:], x[:])
}

// xorTail XORs into x, the block at offset b of the message, the bytes of
// tail that fall into it (tail covers message bytes off..off+15).
func xorTail(x, tail *[16]byte, b, off int) {
	start, end := max(b, off), min(b+16, off+16)
	subtle.XORBytes(x[start-b:], x[start-b:], tail[start-off:end-off])
}

// xorCTR sets dst = src XOR the CTR key stream from Q = s.v with bits 63 and
// 31 cleared (RFC 5297 section 2.5), the counter a 128-bit big-endian
// integer. Block by block and forwards, so dst may be src.
func (a *AEAD) xorCTR(s *scratch, dst, src []byte) {
	s.q = s.v
	s.q[8] &= 0x7f
	s.q[12] &= 0x7f
	hi := binary.BigEndian.Uint64(s.q[:8])
	lo := binary.BigEndian.Uint64(s.q[8:])
	for len(src) > 0 {
		a.ctr.Encrypt(s.ks[:], s.q[:])
		n := subtle.XORBytes(dst, src, s.ks[:])
		dst, src = dst[n:], src[n:]
		lo++
		if lo == 0 {
			hi++
		}
		binary.BigEndian.PutUint64(s.q[:8], hi)
		binary.BigEndian.PutUint64(s.q[8:], lo)
	}
}

// dbl is multiplication by x in GF(2^128) (RFC 5297 section 2.3), without
// branches on the secret.
func dbl(v [16]byte) [16]byte {
	hi := binary.BigEndian.Uint64(v[:8])
	lo := binary.BigEndian.Uint64(v[8:])
	carry := hi >> 63
	hi = hi<<1 | lo>>63
	lo = lo<<1 ^ 0x87&-carry
	var out [16]byte
	binary.BigEndian.PutUint64(out[:8], hi)
	binary.BigEndian.PutUint64(out[8:], lo)
	return out
}

// grow extends in by n bytes, returning the whole slice and the new part.
func grow(in []byte, n int) (head, tail []byte) {
	total := len(in) + n
	if cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total, total+total/4)
		copy(head, in)
	}
	return head, head[len(in):]
}

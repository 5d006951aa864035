package local

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// AES key wrap (RFC 3394, NIST SP 800-38F "KW") wraps a DEK in 8 bytes more
// than the key itself: 40 bytes for a 256-bit DEK against 60 for AES-GCM with
// a nonce and tag. The EDEK is repeated in every record, so the 20 bytes
// matter. KW is deterministic and carries a 64-bit integrity check, which is
// what it is designed for: wrapping uniformly random keys.

// kwIV is the default initial value of RFC 3394 section 2.2.3.1.
var kwIV = [8]byte{0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6}

// errUnwrap is returned for every unwrap failure, so that callers learn
// nothing beyond "this key did not wrap these bytes".
var errUnwrap = errors.New("key unwrap failed: integrity check")

// wrapKey appends the RFC 3394 wrapping of key (a multiple of 8 bytes, at
// least 16) under the AES block b to dst.
func wrapKey(b cipher.Block, dst, key []byte) []byte {
	if len(key) < 16 || len(key)%8 != 0 {
		panic("local: wrapKey: key length must be a multiple of 8, at least 16")
	}
	n := len(key) / 8
	start := len(dst)
	dst = append(dst, kwIV[:]...)
	dst = append(dst, key...)
	out := dst[start:]
	var buf [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(buf[:8], out[:8])
			copy(buf[8:], out[8*i:8*i+8])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(buf[:8])^t)
			copy(out[8*i:8*i+8], buf[8:])
		}
	}
	return dst
}

// unwrapKey appends the key unwrapped from wrapped to dst, or returns
// errUnwrap when the integrity check fails.
func unwrapKey(b cipher.Block, dst, wrapped []byte) ([]byte, error) {
	if len(wrapped) < 24 || len(wrapped)%8 != 0 {
		return dst, errUnwrap
	}
	n := len(wrapped)/8 - 1
	var a, buf [16]byte
	copy(a[:8], wrapped[:8])
	start := len(dst)
	dst = append(dst, wrapped[8:]...)
	r := dst[start:]
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a[:8])^t)
			copy(buf[8:], r[8*(i-1):8*i])
			b.Decrypt(buf[:], buf[:])
			copy(a[:8], buf[:8])
			copy(r[8*(i-1):8*i], buf[8:])
		}
	}
	if subtle.ConstantTimeCompare(a[:8], kwIV[:]) != 1 {
		clear(r)
		return dst[:start], errUnwrap
	}
	return dst, nil
}

// Package siv implements AES-SIV (RFC 5297): a deterministic authenticated
// encryption with associated data, misuse-resistant because its IV is a MAC
// (S2V over AES-CMAC) of the associated data and the plaintext. Equal inputs
// give equal outputs, which is what kseal needs to encrypt record keys
// without breaking compaction (docs/format.md, "Version 2").
//
// It is written from the RFC on crypto/aes; no maintained Go library exists.
package siv

import (
	"errors"
)

// KeySize is the key length kseal uses: AES-256-SIV, whose first 32 bytes
// are K1 (S2V, AES-CMAC) and last 32 bytes K2 (CTR). New also accepts 32-
// and 48-byte keys (AES-128-SIV and AES-192-SIV).
const KeySize = 64

// Size of the synthetic IV V that leads every sealed output.
const Size = 16

// ErrAuth means the sealed bytes, the associated data or the key are not
// what Seal was given.
var ErrAuth = errors.New("siv: authentication failed")

// AEAD is AES-SIV under one key. It is safe for concurrent use.
type AEAD struct{}

// New returns AES-SIV under key (32, 48 or 64 bytes).
func New(key []byte) (*AEAD, error) {
	return nil, errors.New("siv: not implemented")
}

// Seal appends V (16 bytes) || ciphertext of plaintext to dst, with the
// associated-data vector ad (RFC 5297 S2V; at most 126 components). It
// allocates nothing when dst has room for len(plaintext)+Size more bytes.
// dst's spare capacity must not overlap plaintext.
func (a *AEAD) Seal(dst, plaintext []byte, ad ...[]byte) []byte {
	return dst
}

// Open authenticates and decrypts sealed (V || C), appending the plaintext
// to dst. Every failure is ErrAuth. dst's spare capacity must not overlap
// sealed.
func (a *AEAD) Open(dst, sealed []byte, ad ...[]byte) ([]byte, error) {
	return dst, ErrAuth
}

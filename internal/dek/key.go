package dek

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// Key is an active encryption DEK: an AES-256-GCM AEAD, its EDEK, and a
// counter that hands out each nonce counter once. It implements
// recordcrypt.Key. A Key only ever comes from a fresh kms.GenerateDEK owned by
// this process, which is what makes counter-derived nonces unique.
type Key struct {
	aead    cipher.AEAD
	edek    []byte
	kek     kms.KEKRef
	created time.Time
	limit   uint64
	next    atomic.Uint64
}

// AEAD returns the cipher to seal with.
func (k *Key) AEAD() cipher.AEAD { return k.aead }

// EDEK returns the wrapped DEK to store in each record. Do not modify it.
func (k *Key) EDEK() []byte { return k.edek }

// KEK is the KEK the DEK is wrapped by.
func (k *Key) KEK() kms.KEKRef { return k.kek }

// Created is when the DEK was made, on the Manager's clock.
func (k *Key) Created() time.Time { return k.created }

// Next returns a nonce counter never returned before for this DEK, or
// ErrExhausted once MaxEncryptionsPerDEK counters were handed out; the caller
// then asks Current for a new DEK.
func (k *Key) Next() (uint64, error) {
	n := k.next.Add(1) - 1
	if n >= k.limit {
		return 0, ErrExhausted
	}
	return n, nil
}

// Used is how many counters were handed out.
func (k *Key) Used() uint64 { return min(k.next.Load(), k.limit) }

// Exhausted reports whether Next will fail.
func (k *Key) Exhausted() bool { return k.next.Load() >= k.limit }

// newAEAD builds AES-256-GCM from a raw key. The caller wipes raw afterwards:
// the cipher keeps its own expanded copy.
func newAEAD(raw []byte) (cipher.AEAD, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("dek: KMS returned a %d-byte data key, want 32", len(raw))
	}
	var aead cipher.AEAD
	var err error
	withSecret(func() {
		var block cipher.Block
		block, err = aes.NewCipher(raw)
		if err == nil {
			aead, err = cipher.NewGCM(block)
		}
	})
	return aead, err
}

// openOnly is how decrypt-side DEKs are handed out: their nonce counters are
// unknown, so sealing with one could reuse a nonce. Sealing panics because it
// is a programming error, never a data error.
type openOnly struct{ cipher.AEAD }

func (openOnly) Seal(dst, nonce, plaintext, additionalData []byte) []byte {
	panic("dek: a DEK unwrapped for decryption must never seal")
}

// edekID is the short id of an EDEK used in errors; it equals
// recordcrypt.DEKIDOf (truncated SHA-256), which this package does not import.
func edekID(edek []byte) string {
	sum := sha256.Sum256(edek)
	return hex.EncodeToString(sum[:8])
}

// fingerprint identifies a raw DEK without revealing it, to catch a KMS that
// hands out the same key twice.
func fingerprint(raw []byte) [16]byte {
	sum := sha256.Sum256(raw)
	return [16]byte(sum[:16])
}

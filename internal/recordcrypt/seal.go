package recordcrypt

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Key is what Seal needs from a data key. internal/dek's *Key implements it.
type Key interface {
	// AEAD is AES-256-GCM under the DEK, with 12-byte nonces and 16-byte tags.
	AEAD() cipher.AEAD
	// EDEK is the DEK wrapped by its KEK, stored in every envelope.
	EDEK() []byte
	// Next returns a nonce counter never returned before for this DEK, or an
	// error once the DEK has reached its cap (then the caller needs a new DEK).
	Next() (uint64, error)
}

// Binding is what a sealed value is bound to: its associated data.
type Binding struct {
	// Topic is the binding topic: the record's topic, or the origin topic
	// that policy maps a replica topic (MirrorMaker's "source.orders") to.
	Topic string
	// Key is the record key; nil is the null key, distinct from empty.
	Key []byte
	// SkipKey leaves the record key out of the associated data (Seal only:
	// the choice is recorded in the envelope's flags, and Open follows them).
	SkipKey bool
}

var errNotParsed = errors.New("recordcrypt: envelope did not come from Parse")

// Seal encrypts value under k, bound to b, and appends the envelope to dst.
// A null value must not be sealed: it passes through unencrypted.
// dst's spare capacity must not overlap value. Size dst with Overhead to
// avoid growing it; Seal then allocates nothing.
func Seal(dst []byte, k Key, b Binding, value []byte) ([]byte, error) {
	aead := k.AEAD()
	if aead.NonceSize() != NonceSize || aead.Overhead() != TagSize {
		return dst, fmt.Errorf("recordcrypt: seal: AEAD with %d-byte nonce and %d-byte tag, want AES-GCM", aead.NonceSize(), aead.Overhead())
	}
	edek := k.EDEK()
	if len(edek) == 0 || len(edek) > MaxEDEKLen {
		return dst, fmt.Errorf("recordcrypt: seal: EDEK of %d bytes, want 1..%d", len(edek), MaxEDEKLen)
	}
	counter, err := k.Next()
	if err != nil {
		return dst, fmt.Errorf("recordcrypt: seal: %w", err)
	}
	if counter > MaxCounter {
		return dst, fmt.Errorf("recordcrypt: seal: nonce counter %d above %d", counter, uint64(MaxCounter))
	}
	flags := FlagKeyBound
	if b.SkipKey {
		flags = 0
	}
	start := len(dst)
	dst = append(dst, Version1, byte(flags))
	dst = binary.AppendUvarint(dst, uint64(len(edek)))
	dst = append(dst, edek...)
	dst = binary.AppendUvarint(dst, counter)

	s := getScratch()
	s.build(dst[start:], b, flags&FlagKeyBound != 0, counter)
	dst = aead.Seal(dst, s.nonce[:], value, s.aad)
	putScratch(s)
	return dst, nil
}

// Open authenticates and decrypts env, which Parse returned, appending the
// value to dst. aead must be AES-256-GCM under env's DEK. b.Topic and b.Key
// must be what Seal was given (b.SkipKey is ignored: env's flags decide).
// dst may be env.Ciphertext[:0] to decrypt in place; otherwise its spare
// capacity must not overlap env.Ciphertext. Every failure to authenticate is
// ErrAuth.
func Open(dst []byte, aead cipher.AEAD, env Envelope, b Binding) ([]byte, error) {
	if env.prefix == nil {
		return dst, errNotParsed
	}
	if env.Version != Version1 {
		return dst, fmt.Errorf("%w: Open reads version 1 envelopes, not %d (Opener.OpenV2 reads both)", ErrUnsupportedVersion, env.Version)
	}
	s := getScratch()
	s.build(env.prefix, b, env.KeyBound(), env.Counter)
	out, err := aead.Open(dst, s.nonce[:], env.Ciphertext, s.aad)
	putScratch(s)
	if err != nil {
		return dst, ErrAuth
	}
	return out, nil
}

// scratch holds the nonce and associated data of one Seal or Open. They
// cannot live on the stack (they escape through the cipher.AEAD interface)
// nor in dst (GCM forbids the AAD overlapping the output), so they are pooled.
type scratch struct {
	nonce [NonceSize]byte
	aad   []byte
}

// maxPooledAAD keeps one huge record key from pinning a large buffer.
const maxPooledAAD = 64 << 10

var scratchPool = sync.Pool{New: func() any { return &scratch{aad: make([]byte, 0, 512)} }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	if cap(s.aad) > maxPooledAAD {
		return
	}
	scratchPool.Put(s)
}

// build derives the nonce and assembles the associated data (docs/format.md,
// "Associated data"):
//
//	prefix || uvarint(len(topic)) || topic || [keyBound: 0x00 | 0x01 || uvarint(len(key)) || key]
func (s *scratch) build(prefix []byte, b Binding, keyBound bool, counter uint64) {
	s.nonce = [NonceSize]byte{}
	binary.BigEndian.PutUint64(s.nonce[4:], counter)

	a := append(s.aad[:0], prefix...)
	a = binary.AppendUvarint(a, uint64(len(b.Topic)))
	a = append(a, b.Topic...)
	if keyBound {
		if b.Key == nil {
			a = append(a, 0)
		} else {
			a = append(a, 1)
			a = binary.AppendUvarint(a, uint64(len(b.Key)))
			a = append(a, b.Key...)
		}
	}
	s.aad = a
}

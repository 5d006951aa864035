package recordcrypt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// HeaderKey is the record header that marks an encrypted record. Its value
// starts with the format version: exactly one byte in version 1; in version
// 2 the parts byte follows, and maybe an envelope (docs/format.md).
const HeaderKey = "kseal"

// Version1 is the first format version: the value alone is encrypted. This
// package reads it forever and writes it while encryption.format.writeVersion
// is 1 (Seal).
const Version1 byte = 1

// Flags is the second byte of an envelope. Version 2 defines no flag.
type Flags byte

// FlagKeyBound means the record key is part of the associated data, so the
// value cannot be moved to another key. Seal sets it unless told otherwise.
const FlagKeyBound Flags = 1 << 0

// knownFlags are the bits version 1 defines; any other bit makes the
// envelope malformed, so a later writer cannot silently weaken what an older
// reader checks.
const knownFlags = FlagKeyBound

const (
	// MaxEDEKLen bounds the EDEK a version 1 envelope may carry. Real EDEKs are
	// 60-300 bytes; the bound keeps a hostile record from making the decrypt
	// cache hold or send to the KMS something huge.
	MaxEDEKLen = 4096
	// MaxCounter is the largest nonce counter a version 1 envelope may carry:
	// 2^32 encryptions per key is the ceiling NIST SP 800-38D sets for GCM.
	MaxCounter = 1<<32 - 1
	// TagSize is the AES-GCM authentication tag length.
	TagSize = 16
	// NonceSize is the AES-GCM nonce length; the nonce is derived, not stored.
	NonceSize = 12
)

// Errors returned by Parse, Seal and Open. Callers map them to Kafka error
// codes (docs/format.md, "Errors").
var (
	// ErrMalformed means the bytes are not a valid envelope, marker, sealed
	// key or (version 2) envelope plaintext.
	ErrMalformed = errors.New("recordcrypt: malformed envelope")
	// ErrUnsupportedVersion means the envelope or marker names a format
	// version this build does not know.
	ErrUnsupportedVersion = errors.New("recordcrypt: unsupported format version")
	// ErrAuth means authentication failed: the value was tampered with, moved
	// to another topic or key, or opened with the wrong key.
	ErrAuth = errors.New("recordcrypt: authentication failed (tampered, moved, or wrong key)")
)

// Envelope is a parsed envelope (version 1 or 2). Its slices alias the
// parsed bytes.
type Envelope struct {
	Version byte
	Flags   Flags
	// EDEK is the provider's encrypted data key, opaque to this package.
	EDEK []byte
	// Counter is the per-DEK counter the nonce is derived from.
	Counter uint64
	// Ciphertext is the GCM ciphertext followed by its 16-byte tag.
	Ciphertext []byte

	// prefix is every byte before Ciphertext; it leads the associated data.
	prefix []byte
}

// KeyBound reports whether the record key is part of the associated data:
// by the flag in version 1, always in version 2.
func (e Envelope) KeyBound() bool { return e.Version == Version2 || e.Flags&FlagKeyBound != 0 }

// PlaintextLen is the length of the value Open returns.
func (e Envelope) PlaintextLen() int { return len(e.Ciphertext) - TagSize }

// DEKID identifies the DEK of the envelope for logs and audit tools.
func (e Envelope) DEKID() DEKID { return DEKIDOf(e.EDEK) }

// Parse reads a sealed version 1 value without decrypting it. It rejects
// anything that is not canonical version 1: unknown version or flags,
// non-minimal varints, an EDEK longer than MaxEDEKLen, a counter above
// MaxCounter, or a ciphertext shorter than the tag. Its work is bounded by
// len(value). Version 2 envelopes are read by ParseRecord.
func Parse(value []byte) (Envelope, error) {
	return parseEnvelope(value, Version1)
}

// parseEnvelope reads an envelope of the given version. Versions 1 and 2
// share the layout; version 2 defines no flag.
func parseEnvelope(value []byte, version byte) (Envelope, error) {
	if len(value) < 2 {
		return Envelope{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(value))
	}
	if value[0] != version {
		return Envelope{}, fmt.Errorf("%w: %d", ErrUnsupportedVersion, value[0])
	}
	env := Envelope{Version: value[0], Flags: Flags(value[1])}
	known := knownFlags
	if version == Version2 {
		known = 0
	}
	if env.Flags&^known != 0 {
		return Envelope{}, fmt.Errorf("%w: unknown flags %#02x", ErrMalformed, byte(env.Flags))
	}
	off := 2
	edekLen, n := uvarint(value[off:])
	if n <= 0 || edekLen == 0 || edekLen > MaxEDEKLen {
		return Envelope{}, fmt.Errorf("%w: EDEK length", ErrMalformed)
	}
	off += n
	if uint64(len(value)-off) < edekLen {
		return Envelope{}, fmt.Errorf("%w: EDEK of %d bytes truncated", ErrMalformed, edekLen)
	}
	env.EDEK = value[off : off+int(edekLen) : off+int(edekLen)]
	off += int(edekLen)
	env.Counter, n = uvarint(value[off:])
	if n <= 0 || env.Counter > MaxCounter {
		return Envelope{}, fmt.Errorf("%w: nonce counter", ErrMalformed)
	}
	off += n
	if len(value)-off < TagSize {
		return Envelope{}, fmt.Errorf("%w: ciphertext shorter than the tag", ErrMalformed)
	}
	env.prefix = value[:off:off]
	env.Ciphertext = value[off:]
	return env, nil
}

// uvarint reads a canonical (minimal) unsigned LEB128 varint of at most 64
// bits. n is 0 when input ends first and -1 when the encoding overflows or is
// not minimal, so every value has exactly one encoding and no byte of an
// envelope can change without changing what it means.
func uvarint(b []byte) (v uint64, n int) {
	v, n = binary.Uvarint(b)
	if n <= 0 {
		return 0, -1
	}
	if n > 1 && b[n-1] == 0 {
		return 0, -1 // a trailing zero group is padding: not minimal
	}
	return v, n
}

// Overhead is how many bytes Seal adds to a value: the envelope prefix for
// an EDEK of edekLen bytes and the given counter, plus the tag. It is exact,
// so callers can size output buffers before sealing.
func Overhead(edekLen int, counter uint64) int {
	return 2 + uvarintLen(uint64(edekLen)) + edekLen + uvarintLen(counter) + TagSize
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// ParseMarker checks the value of a version 1 HeaderKey header and returns
// the format version it names; any other version is ErrUnsupportedVersion.
// ParseRecord reads markers of every version.
func ParseMarker(headerValue []byte) (byte, error) {
	if len(headerValue) != 1 {
		return 0, fmt.Errorf("%w: %s header of %d bytes, want 1", ErrMalformed, HeaderKey, len(headerValue))
	}
	if headerValue[0] != Version1 {
		return 0, fmt.Errorf("%w: %s header names version %d", ErrUnsupportedVersion, HeaderKey, headerValue[0])
	}
	return headerValue[0], nil
}

// CheckMarker verifies that a record's marker header agrees with its parsed
// value. The version byte is authenticated as part of the value, so this
// keeps a swapped header from going unnoticed.
func CheckMarker(headerValue []byte, env Envelope) error {
	v, err := ParseMarker(headerValue)
	if err != nil {
		return err
	}
	if v != env.Version {
		return fmt.Errorf("%w: %s header says version %d, value says %d", ErrMalformed, HeaderKey, v, env.Version)
	}
	return nil
}

// DEKID is a short, stable identifier of a DEK: the first 8 bytes of the
// SHA-256 of its EDEK. It is derived, never stored, and reveals nothing
// about the key.
type DEKID [8]byte

// DEKIDOf computes the DEKID of an EDEK.
func DEKIDOf(edek []byte) DEKID {
	sum := sha256.Sum256(edek)
	var id DEKID
	copy(id[:], sum[:])
	return id
}

// String returns the id in hex.
func (id DEKID) String() string { return hex.EncodeToString(id[:]) }

package kmip

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kseal/kseal/internal/kms"
)

// EDEK layout (repeated in every encrypted record):
//
//	byte     format, edekV1 = 1
//	byte     mode: edekModeGCM (AES-GCM, the server's IV and tag) or
//	         edekModeCBC (AES-CBC with PKCS#5 padding)
//	uvarint  length of the KEK's Unique Identifier (1..255), then its bytes
//	uvarint  length of the KEK name (1..255), then its bytes
//	uvarint  length of the IV/nonce the server chose (1..32), then its bytes
//	uvarint  length of the authentication tag (GCM: 12..16; CBC: 0), then it
//	bytes    the rest: the wrapped DEK (GCM 32 bytes, CBC 48)
//
// The Unique Identifier is what Decrypt needs: a later key with the same
// name (a rotation) has another one, so records stay readable under the key
// that wrapped them. The name is there for DescribeEDEK and logs.
const (
	edekV1      = 1
	edekModeGCM = 1
	edekModeCBC = 2
	dekSize     = 32
	maxIDLen    = 255
	maxIVLen    = 32
	gcmTagLen   = 16
)

var errMalformedEDEK = errors.New("kmip kms: malformed EDEK")

type edek struct {
	mode byte
	uid  []byte
	name []byte
	iv   []byte
	tag  []byte
	ct   []byte
}

func appendEDEK(dst []byte, e *edek) []byte {
	dst = append(dst, edekV1, e.mode)
	for _, f := range [][]byte{e.uid, e.name, e.iv, e.tag} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return append(dst, e.ct...)
}

// parseEDEK splits an EDEK. It reads untrusted bytes (records at the broker
// can be written by anyone able to produce directly), so every length is
// checked against what is left and against its own bound, only minimal
// varints are accepted (one EDEK, one byte form), and the identifiers must
// be printable ASCII (they go into logs and requests). Fields alias b.
func parseEDEK(b []byte) (edek, error) {
	var e edek
	if len(b) < 2 || b[0] != edekV1 {
		return e, fmt.Errorf("%w: unknown format", errMalformedEDEK)
	}
	e.mode = b[1]
	var wantCT int
	switch e.mode {
	case edekModeGCM:
		wantCT = dekSize
	case edekModeCBC:
		wantCT = dekSize + 16
	default:
		return e, fmt.Errorf("%w: unknown mode %d", errMalformedEDEK, e.mode)
	}
	rest := b[2:]
	field := func(what string, lo, hi uint64) ([]byte, error) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || k != uvarintLen(n) || n < lo || n > hi || n > uint64(len(rest)-k) {
			return nil, fmt.Errorf("%w: bad %s length", errMalformedEDEK, what)
		}
		f := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return f, nil
	}
	var err error
	if e.uid, err = field("key identifier", 1, maxIDLen); err != nil {
		return e, err
	}
	if e.name, err = field("key name", 1, maxIDLen); err != nil {
		return e, err
	}
	if !printable(e.uid) || !printable(e.name) {
		return e, fmt.Errorf("%w: key identifier or name is not printable ASCII", errMalformedEDEK)
	}
	if e.iv, err = field("IV", 1, maxIVLen); err != nil {
		return e, err
	}
	lo, hi := uint64(12), uint64(gcmTagLen)
	if e.mode == edekModeCBC {
		lo, hi = 0, 0
	}
	if e.tag, err = field("tag", lo, hi); err != nil {
		return e, err
	}
	if len(rest) != wantCT {
		return e, fmt.Errorf("%w: wrapped key is %d bytes, want %d", errMalformedEDEK, len(rest), wantCT)
	}
	e.ct = rest
	return e, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// printable reports whether s is 1 to 255 bytes of ASCII from '!' to '~'
// (no spaces or control characters).
func printable[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := range len(s) {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// DescribeEDEK reads the KEK name and Unique Identifier from an EDEK
// without calling the server. Version is the Unique Identifier: KMIP has no
// key versions, a rotated key is a new object with its own identifier.
func DescribeEDEK(b []byte) (kms.EDEKInfo, error) {
	e, err := parseEDEK(b)
	if err != nil {
		return kms.EDEKInfo{}, err
	}
	return kms.EDEKInfo{KEK: string(e.name), Version: string(e.uid)}, nil
}

package local

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EDEK layout (all of it is repeated in every encrypted record):
//
//	byte     format, edekV1 = 1
//	uvarint  length of the KEK name
//	bytes    KEK name
//	uvarint  KEK version (>= 1)
//	40 bytes the DEK wrapped by that KEK version (AES key wrap, RFC 3394)
//
// so 43 bytes plus the name: 53 bytes for "KEK-orders" version 1.
const (
	edekV1     = 1
	kekSize    = 32          // AES-256 KEKs
	dekSize    = 32          // AES-256 DEKs
	wrappedLen = dekSize + 8 // RFC 3394 adds one 64-bit block
	maxNameLen = 255
)

// EDEKSize returns the size of an EDEK for a KEK named name at version.
func EDEKSize(name string, version uint64) int {
	var tmp [binary.MaxVarintLen64]byte
	return 1 + binary.PutUvarint(tmp[:], uint64(len(name))) + len(name) + binary.PutUvarint(tmp[:], version) + wrappedLen
}

var errMalformedEDEK = errors.New("local kms: malformed EDEK")

func appendEDEK(dst []byte, name string, version uint64) []byte {
	dst = append(dst, edekV1)
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	return binary.AppendUvarint(dst, version)
}

// parseEDEK splits an EDEK. It reads untrusted bytes (EDEKs come back from
// the broker, where anyone able to produce directly could have written
// them), so every length is checked against what is left and the name must
// be one validName accepts. name aliases edek.
func parseEDEK(edek []byte) (name []byte, version uint64, wrapped []byte, err error) {
	if len(edek) < 1 || edek[0] != edekV1 {
		return nil, 0, nil, fmt.Errorf("%w: unknown format", errMalformedEDEK)
	}
	rest := edek[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxNameLen || n > uint64(len(rest)-k) {
		return nil, 0, nil, fmt.Errorf("%w: bad KEK name length", errMalformedEDEK)
	}
	rest = rest[k:]
	name, rest = rest[:n], rest[n:]
	if !validNameBytes(name) {
		return nil, 0, nil, fmt.Errorf("%w: bad KEK name", errMalformedEDEK)
	}
	version, k = binary.Uvarint(rest)
	if k <= 0 || k != uvarintLen(version) || version == 0 {
		return nil, 0, nil, fmt.Errorf("%w: bad KEK version", errMalformedEDEK)
	}
	rest = rest[k:]
	if len(rest) != wrappedLen {
		return nil, 0, nil, fmt.Errorf("%w: wrapped key is %d bytes, want %d", errMalformedEDEK, len(rest), wrappedLen)
	}
	return name, version, rest, nil
}

// uvarintLen is the size of v's minimal encoding: EDEKs accept only that, so
// one EDEK has one byte form (caches may key on the bytes).
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// validName reports whether s may name a KEK: 1 to 255 bytes of ASCII
// letters, digits and . _ - / : + = @ — enough for Kafka topic names (which
// use . _ - and alphanumerics) behind a prefix, and nothing that could confuse
// a terminal or a log line.
func validName(s string) bool { return validNameBytes([]byte(s)) }

func validNameBytes(s []byte) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '-', c == '/', c == ':', c == '+', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

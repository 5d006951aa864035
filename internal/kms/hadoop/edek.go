package hadoop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// EDEK layout (all of it is repeated in every encrypted record):
//
//	byte     format, edekV1 = 1
//	uvarint  length of the key name (1..255)
//	bytes    key name
//	uvarint  length of the key version name (1..255)
//	bytes    key version name, as the KMS returned it ("KEK-orders@3")
//	16 bytes the IV of the encrypted key version
//	32 bytes the encrypted key material (AES/CTR keeps the length)
//
// so 51 bytes plus both names: 73 bytes for "KEK-orders" version 0. The
// server needs all four to decrypt: the key name (its ACLs are checked
// against it), the version name (which key version decrypts), the IV and
// the material.
const (
	edekV1     = 1
	dekSize    = 32 // AES-256 DEKs
	ivSize     = 16 // the AES block; Hadoop's EEK IV
	maxNameLen = 255
)

var errMalformedEDEK = errors.New("hadoop kms: malformed EDEK")

// EDEKSize returns the size of an EDEK for key name and version name.
func EDEKSize(name, version string) int {
	return 1 + uvarintLen(uint64(len(name))) + len(name) + uvarintLen(uint64(len(version))) + len(version) + ivSize + dekSize
}

// appendEDEK appends the EDEK; iv must be ivSize and material dekSize bytes.
func appendEDEK(dst []byte, name, version string, iv, material []byte) []byte {
	dst = append(dst, edekV1)
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	dst = binary.AppendUvarint(dst, uint64(len(version)))
	dst = append(dst, version...)
	dst = append(dst, iv...)
	return append(dst, material...)
}

// parseEDEK splits an EDEK. It reads untrusted bytes (EDEKs come back from
// the broker, where anyone able to produce directly could have written
// them), so every length is checked against what is left, both names must
// be safe in a URL path, only minimal varints are accepted and the size is
// exact, so one EDEK has one byte form (caches key on the bytes). All
// results alias edek.
func parseEDEK(edek []byte) (name, version, iv, material []byte, err error) {
	if len(edek) < 1 || edek[0] != edekV1 {
		return nil, nil, nil, nil, fmt.Errorf("%w: unknown format", errMalformedEDEK)
	}
	rest := edek[1:]
	name, rest, ok := cutString(rest)
	if !ok || !validKeyName(name) {
		return nil, nil, nil, nil, fmt.Errorf("%w: bad key name", errMalformedEDEK)
	}
	version, rest, ok = cutString(rest)
	if !ok || !validVersionName(version) {
		return nil, nil, nil, nil, fmt.Errorf("%w: bad key version name", errMalformedEDEK)
	}
	if len(rest) != ivSize+dekSize {
		return nil, nil, nil, nil, fmt.Errorf("%w: IV and key material are %d bytes, want %d", errMalformedEDEK, len(rest), ivSize+dekSize)
	}
	return name, version, rest[:ivSize:ivSize], rest[ivSize:], nil
}

// cutString reads a uvarint length (1..maxNameLen, minimal encoding) and
// that many bytes.
func cutString(b []byte) (s, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxNameLen || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	b = b[k:]
	return b[:n], b[n:], true
}

// uvarintLen is the size of v's minimal encoding.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// validKeyName reports whether s may name a Hadoop KMS key here: 1 to 255
// bytes of ASCII letters, digits, '.', '_' and '-'. Hadoop accepts more;
// this keeps names safe in a URL path and a log line, and covers Kafka
// topic names behind a prefix.
func validKeyName[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := range len(s) {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// validVersionName accepts a key name's characters and '@' (Hadoop names
// versions "<key>@<n>").
func validVersionName[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := range len(s) {
		if !isNameChar(s[i]) && s[i] != '@' {
			return false
		}
	}
	return true
}

// versionSuffix is what DescribeEDEK reports as the version: the n of
// "<key>@<n>", or the whole version name when it has another form.
func versionSuffix(name, version string) string {
	if v, ok := strings.CutPrefix(version, name+"@"); ok && v != "" {
		return v
	}
	return version
}

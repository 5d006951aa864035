package aws

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// EDEK layout (all of it is repeated in every encrypted record). The first
// byte says how the KMS key is recorded; the rest is AWS's CiphertextBlob,
// which already names the key to AWS but is opaque to us, so the key id is
// kept beside it to pass as Decrypt's KeyId (pinning decryption to the key
// the EDEK claims):
//
//	byte      form
//	  1       single-Region key id: 16 bytes, the UUID's raw bytes
//	  2       multi-Region key id "mrk-<32 hex>": 16 bytes, the hex decoded
//	  3       any other key id or a key ARN: uvarint length, ASCII bytes
//	bytes     the CiphertextBlob, to the end
//
// For a single-Region key that is 17 bytes plus the blob (about 184 bytes
// from AWS for a 256-bit data key): about 201 bytes.
const (
	formUUID     = 1
	formMRK      = 2
	formString   = 3
	dekSize      = 32   // AES_256 data keys
	maxBlobLen   = 6144 // AWS's CiphertextBlob limit
	maxKeyIDLen  = 2048 // AWS's KeyId limit
	uuidLen      = 36   // xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
	mrkPrefix    = "mrk-"
	mrkLen       = len(mrkPrefix) + 32
	compactIDLen = 16
)

var errMalformedEDEK = errors.New("aws kms: malformed EDEK")

// appendKeyID appends the form byte and key id. It fails only for an id no
// EDEK may hold (empty, too long, or not printable ASCII).
func appendKeyID(dst []byte, id string) ([]byte, error) {
	if b, ok := parseUUID(id); ok {
		dst = append(dst, formUUID)
		return append(dst, b[:]...), nil
	}
	if len(id) == mrkLen && id[:len(mrkPrefix)] == mrkPrefix {
		if b, ok := parseLowerHex(id[len(mrkPrefix):]); ok {
			dst = append(dst, formMRK)
			return append(dst, b[:]...), nil
		}
	}
	if !validKeyID(id) {
		return dst, fmt.Errorf("aws kms: key id %q cannot be recorded in an EDEK", id)
	}
	dst = append(dst, formString)
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	return append(dst, id...), nil
}

// parseEDEK splits an EDEK into the key id it records and the
// CiphertextBlob. It reads untrusted bytes (EDEKs come back from the broker,
// where anyone able to produce directly could have written them), so every
// length is checked against what is left. blob aliases edek.
func parseEDEK(edek []byte) (keyID string, blob []byte, err error) {
	if len(edek) < 1 {
		return "", nil, fmt.Errorf("%w: empty", errMalformedEDEK)
	}
	rest := edek[1:]
	switch edek[0] {
	case formUUID, formMRK:
		if len(rest) < compactIDLen {
			return "", nil, fmt.Errorf("%w: truncated key id", errMalformedEDEK)
		}
		var b [compactIDLen]byte
		copy(b[:], rest)
		if edek[0] == formUUID {
			keyID = formatUUID(b)
		} else {
			keyID = mrkPrefix + hex.EncodeToString(b[:])
		}
		rest = rest[compactIDLen:]
	case formString:
		n, k := binary.Uvarint(rest)
		if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxKeyIDLen || n > uint64(len(rest)-k) {
			return "", nil, fmt.Errorf("%w: bad key id length", errMalformedEDEK)
		}
		rest = rest[k:]
		keyID = string(rest[:n])
		rest = rest[n:]
		// One EDEK, one byte form: an id that has a compact form must use it.
		if !validKeyID(keyID) || isCompact(keyID) {
			return "", nil, fmt.Errorf("%w: bad key id", errMalformedEDEK)
		}
	default:
		return "", nil, fmt.Errorf("%w: unknown form %d", errMalformedEDEK, edek[0])
	}
	if len(rest) == 0 || len(rest) > maxBlobLen {
		return "", nil, fmt.Errorf("%w: CiphertextBlob is %d bytes", errMalformedEDEK, len(rest))
	}
	return keyID, rest, nil
}

func isCompact(id string) bool {
	if _, ok := parseUUID(id); ok {
		return true
	}
	if len(id) == mrkLen && id[:len(mrkPrefix)] == mrkPrefix {
		_, ok := parseLowerHex(id[len(mrkPrefix):])
		return ok
	}
	return false
}

// parseUUID accepts only the canonical lowercase form AWS uses, so that
// formatUUID gives back the same string.
func parseUUID(s string) ([compactIDLen]byte, bool) {
	var b [compactIDLen]byte
	if len(s) != uuidLen || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, false
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	return parseLowerHex(h)
}

func formatUUID(b [compactIDLen]byte) string {
	var s [uuidLen]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// parseLowerHex decodes 32 lowercase hex digits.
func parseLowerHex(s string) ([compactIDLen]byte, bool) {
	var b [compactIDLen]byte
	if len(s) != 2*compactIDLen {
		return b, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return b, false
		}
	}
	_, err := hex.Decode(b[:], []byte(s))
	return b, err == nil
}

// validKeyID reports whether s may be recorded as a key id: 1 to 2048 bytes
// of printable ASCII without spaces (key ids, key ARNs), nothing that could
// confuse a terminal or a log line.
func validKeyID(s string) bool {
	if len(s) == 0 || len(s) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// uvarintLen is the size of v's minimal encoding: EDEKs accept only that, so
// one EDEK has one byte form (caches key on the bytes).
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

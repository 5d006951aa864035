package azure

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// EDEK layout (all of it is repeated in every encrypted record, so it is
// binary and carries no vault: the vault is configuration):
//
//	byte     format, edekV1 = 1
//	uvarint  length of the key name (1..127)
//	bytes    key name (letters, digits, dashes: Azure's rule)
//	byte     algorithm in the low nibble (algRSAOAEP256, algA256KW); bit 7
//	         set when the version is stored as text
//	version  16 raw bytes, the key version's 32 lowercase hex digits (what
//	         Azure and Managed HSM issue); or, with bit 7, uvarint length
//	         (1..64) and the version as ASCII letters, digits and dashes
//	bytes    the wrapped DEK, to the end: 256, 384 or 512 bytes for
//	         RSA-OAEP-256 (the modulus size), 40 for A256KW
//
// So 1 + 1 + len(name) + 1 + 16 + 256 bytes for an RSA-2048 key with a hex
// version: 285 bytes for "KEK-orders"; 69 bytes with an oct-HSM key.
const (
	edekV1 = 1

	algRSAOAEP256 = 1 // RSA keys (RSA, RSA-HSM)
	algA256KW     = 2 // AES keys on Managed HSM (oct-HSM), RFC 3394 key wrap
	algMask       = 0x0f
	flagTextVer   = 0x80

	dekSize        = 32
	aesWrappedSize = dekSize + 8
	maxNameLen     = 127
	maxVersionLen  = 64
	hexVersionLen  = 32
)

var errMalformedEDEK = errors.New("azure kms: malformed EDEK")

// algName is the JSON Web Algorithm name Key Vault expects for alg.
func algName(alg byte) string {
	switch alg {
	case algRSAOAEP256:
		return "RSA-OAEP-256"
	case algA256KW:
		return "A256KW"
	}
	return ""
}

// validWrappedLen reports whether n bytes can be a DEK wrapped with alg.
func validWrappedLen(alg byte, n int) bool {
	switch alg {
	case algRSAOAEP256:
		return n == 256 || n == 384 || n == 512 // RSA 2048, 3072, 4096
	case algA256KW:
		return n == aesWrappedSize
	}
	return false
}

// EDEKSize returns the size of an EDEK for a key name and version wrapped
// with an RSA key of rsaBits (0 for an AES key).
func EDEKSize(name, version string, rsaBits int) int {
	n := 1 + uvarintLen(uint64(len(name))) + len(name) + 1
	if isHexVersion(version) {
		n += hexVersionLen / 2
	} else {
		n += uvarintLen(uint64(len(version))) + len(version)
	}
	if rsaBits == 0 {
		return n + aesWrappedSize
	}
	return n + rsaBits/8
}

// appendEDEK encodes an EDEK. name and version must have passed validName
// and validVersion.
func appendEDEK(dst []byte, name, version string, alg byte, wrapped []byte) []byte {
	dst = append(dst, edekV1)
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	if isHexVersion(version) {
		dst = append(dst, alg)
		dst, _ = hex.AppendDecode(dst, []byte(version)) // checked by isHexVersion
	} else {
		dst = append(dst, alg|flagTextVer)
		dst = binary.AppendUvarint(dst, uint64(len(version)))
		dst = append(dst, version...)
	}
	return append(dst, wrapped...)
}

// parsedEDEK is a decoded EDEK; wrapped aliases the input.
type parsedEDEK struct {
	name    string
	version string
	alg     byte
	wrapped []byte
}

// parseEDEK decodes an EDEK. Its input is untrusted (it comes back from the
// broker, where anyone able to produce directly could have written it):
// every length is checked against what is left, names and versions must
// be what Azure allows (they go into a URL path), and every value has one
// byte form only.
func parseEDEK(edek []byte) (parsedEDEK, error) {
	var p parsedEDEK
	if len(edek) < 1 || edek[0] != edekV1 {
		return p, fmt.Errorf("%w: unknown format", errMalformedEDEK)
	}
	rest := edek[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxNameLen || n > uint64(len(rest)-k) {
		return p, fmt.Errorf("%w: bad key name length", errMalformedEDEK)
	}
	rest = rest[k:]
	name := rest[:n]
	rest = rest[n:]
	if !validName(name) {
		return p, fmt.Errorf("%w: bad key name", errMalformedEDEK)
	}
	if len(rest) < 1 {
		return p, fmt.Errorf("%w: truncated", errMalformedEDEK)
	}
	flags := rest[0]
	rest = rest[1:]
	p.alg = flags & algMask
	if algName(p.alg) == "" || flags&^(algMask|flagTextVer) != 0 {
		return p, fmt.Errorf("%w: unknown algorithm", errMalformedEDEK)
	}
	if flags&flagTextVer == 0 {
		if len(rest) < hexVersionLen/2 {
			return p, fmt.Errorf("%w: truncated version", errMalformedEDEK)
		}
		p.version = hex.EncodeToString(rest[:hexVersionLen/2])
		rest = rest[hexVersionLen/2:]
	} else {
		n, k := binary.Uvarint(rest)
		if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxVersionLen || n > uint64(len(rest)-k) {
			return p, fmt.Errorf("%w: bad key version length", errMalformedEDEK)
		}
		v := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		// A hex version has the short form only.
		if !validVersion(v) || isHexVersion(string(v)) {
			return p, fmt.Errorf("%w: bad key version", errMalformedEDEK)
		}
		p.version = string(v)
	}
	if !validWrappedLen(p.alg, len(rest)) {
		return p, fmt.Errorf("%w: wrapped key is %d bytes, not a size %s produces", errMalformedEDEK, len(rest), algName(p.alg))
	}
	p.name = string(name)
	p.wrapped = rest
	return p, nil
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

// validName reports whether s is a Key Vault key name: 1 to 127 ASCII
// letters, digits and dashes. Names go into URL paths unescaped-safe.
func validName[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// validVersion reports whether s can be a key version: 1 to 64 ASCII
// letters, digits and dashes (Azure issues 32 lowercase hex digits).
func validVersion[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > maxVersionLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

// isHexVersion reports whether v is 32 lowercase hex digits, the form
// stored as 16 raw bytes.
func isHexVersion(v string) bool {
	if len(v) != hexVersionLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

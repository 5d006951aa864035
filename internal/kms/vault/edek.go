package vault

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// EDEK layout (all of it is repeated in every encrypted record):
//
//	byte     format, edekV1 = 1
//	uvarint  length of the Transit key name (1..255)
//	bytes    key name
//	uvarint  key version (>= 1), the N of "vault:vN:"
//	bytes    the rest: the Transit ciphertext after "vault:vN:",
//	         base64-decoded (60 bytes for aes256-gcm96 and
//	         chacha20-poly1305 keys: 12-byte nonce, 32-byte DEK, 16-byte tag)
//
// so 63 bytes plus the name: 73 bytes for "KEK-orders" version 1, where the
// Transit string alone is 89 characters. DecryptDEK rebuilds the string.
// The mount and namespace are not recorded: they come from the config, so
// keys can move between mounts by config without rewriting records.
const (
	edekV1        = 1
	dekSize       = 32 // AES-256 DEKs
	maxNameLen    = 255
	maxVersion    = 1<<31 - 1 // Transit versions are Go ints; stay portable
	maxCiphertext = 1024      // RSA-4096 keys give 512 bytes; AES/ChaCha 60
	vaultPrefix   = "vault:v"
)

var errMalformedEDEK = errors.New("vault kms: malformed EDEK")

// appendEDEK appends the EDEK for ciphertext ct of key name at version.
func appendEDEK(dst []byte, name string, version uint64, ct []byte) []byte {
	dst = append(dst, edekV1)
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	dst = binary.AppendUvarint(dst, version)
	return append(dst, ct...)
}

// parseEDEK splits an EDEK. It reads untrusted bytes (EDEKs come back from
// the broker, where anyone able to produce directly could have written
// them), so every length is checked against what is left, the name must be
// one validKeyName accepts (it goes into a URL), and only minimal varints
// are accepted, so one EDEK has one byte form (caches key on the bytes).
// name and ct alias edek.
func parseEDEK(edek []byte) (name []byte, version uint64, ct []byte, err error) {
	if len(edek) < 1 || edek[0] != edekV1 {
		return nil, 0, nil, fmt.Errorf("%w: unknown format", errMalformedEDEK)
	}
	rest := edek[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || k != uvarintLen(n) || n == 0 || n > maxNameLen || n > uint64(len(rest)-k) {
		return nil, 0, nil, fmt.Errorf("%w: bad key name length", errMalformedEDEK)
	}
	rest = rest[k:]
	name, rest = rest[:n], rest[n:]
	if !validKeyName(name) {
		return nil, 0, nil, fmt.Errorf("%w: bad key name", errMalformedEDEK)
	}
	version, k = binary.Uvarint(rest)
	if k <= 0 || k != uvarintLen(version) || version == 0 || version > maxVersion {
		return nil, 0, nil, fmt.Errorf("%w: bad key version", errMalformedEDEK)
	}
	rest = rest[k:]
	if len(rest) == 0 || len(rest) > maxCiphertext {
		return nil, 0, nil, fmt.Errorf("%w: ciphertext is %d bytes, want 1 to %d", errMalformedEDEK, len(rest), maxCiphertext)
	}
	return name, version, rest, nil
}

// uvarintLen is the size of v's minimal encoding.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// validKeyName reports whether s may name a Transit key here: 1 to 255
// bytes of ASCII letters, digits, '.', '_' and '-'. Transit's own rule is
// narrower at the ends (a word character first and last) and it answers
// for anything else itself; this check keeps names safe in a URL path and
// a log line, and covers Kafka topic names behind a prefix.
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

// appendCiphertext appends Transit's string form "vault:vN:<base64>".
func appendCiphertext(dst []byte, version uint64, ct []byte) []byte {
	dst = append(dst, vaultPrefix...)
	dst = strconv.AppendUint(dst, version, 10)
	dst = append(dst, ':')
	return base64.StdEncoding.AppendEncode(dst, ct)
}

// parseCiphertext splits Transit's "vault:vN:<base64>" into N and the
// decoded bytes, accepting only what appendCiphertext gives back unchanged,
// so an EDEK always rebuilds the exact string the server returned.
func parseCiphertext(s string) (version uint64, ct []byte, err error) {
	rest, ok := strings.CutPrefix(s, vaultPrefix)
	if !ok {
		return 0, nil, fmt.Errorf("ciphertext does not start with %q", vaultPrefix)
	}
	num, b64, ok := strings.Cut(rest, ":")
	if !ok || num == "" || num[0] == '0' {
		return 0, nil, errors.New("ciphertext has no key version")
	}
	version, err = strconv.ParseUint(num, 10, 64)
	if err != nil || version > maxVersion {
		return 0, nil, errors.New("ciphertext has a bad key version")
	}
	ct, err = base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return 0, nil, fmt.Errorf("ciphertext is not standard base64: %w", err)
	}
	if base64.StdEncoding.EncodedLen(len(ct)) != len(b64) {
		// The decoder skips line breaks; the rebuilt string would differ.
		return 0, nil, errors.New("ciphertext base64 has line breaks")
	}
	if len(ct) == 0 || len(ct) > maxCiphertext {
		return 0, nil, fmt.Errorf("ciphertext is %d bytes, want 1 to %d", len(ct), maxCiphertext)
	}
	return version, ct, nil
}

// EDEKSize returns the size of an EDEK for key name at version wrapping
// into ctLen ciphertext bytes (60 for AES and ChaCha20 Transit keys).
func EDEKSize(name string, version uint64, ctLen int) int {
	return 1 + uvarintLen(uint64(len(name))) + len(name) + uvarintLen(version) + ctLen
}

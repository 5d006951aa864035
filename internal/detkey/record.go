package detkey

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/kseal/kseal/internal/siv"
)

// The key topic's records (docs/key-topic.md):
//
//	key   = T || 0x00 || KEK name
//	value = 0x01 (record version) || uvarint len(KEK name) || KEK name || uvarint len(EDEK) || EDEK
//
// T is the binding topic (1 to 249 bytes of [a-zA-Z0-9._-]), the KEK name
// 1 to MaxKEKNameLen bytes of UTF-8 without 0x00, the EDEK 1 to MaxEDEKLen
// bytes as the KMS's GenerateDEK returned it. The KEK name in the value
// must equal the one in the key. Varints are minimal and nothing may
// follow the EDEK. A record that breaks any of these is not a key record:
// every kseal replica skips it, so they all agree on the first valid one.

// RecordVersion is the version byte of the key records kseal writes.
const RecordVersion = 1

const (
	// MaxEDEKLen bounds an EDEK in a key record (as in an envelope).
	MaxEDEKLen = 4096
	// MaxKEKNameLen bounds a KEK name in a key record.
	MaxKEKNameLen = 1024
	// KeySize is the size of a deterministic key (AES-256-SIV).
	KeySize = siv.KeySize

	// infoPrefix and idPrefix separate the HKDF info and the key id hash
	// from any other use of the same bytes.
	infoPrefix = "kseal/v2/record-key"
	idPrefix   = "kseal/v2/key-id"
)

// ErrMalformed means a key-topic record is not a valid key record.
var ErrMalformed = errors.New("detkey: malformed key record")

// KeyRecord is one key record of the key topic.
type KeyRecord struct {
	Topic string // the binding topic T
	KEK   string // the KEK name policy selected
	EDEK  []byte // the DEK wrapped by the KEK
}

// AppendKey appends the record key of (topic, kek) to dst.
func AppendKey(dst []byte, topic, kek string) []byte {
	dst = append(dst, topic...)
	dst = append(dst, 0)
	return append(dst, kek...)
}

// AppendValue appends r's record value (version RecordVersion) to dst.
func (r *KeyRecord) AppendValue(dst []byte) []byte {
	dst = append(dst, RecordVersion)
	dst = binary.AppendUvarint(dst, uint64(len(r.KEK)))
	dst = append(dst, r.KEK...)
	dst = binary.AppendUvarint(dst, uint64(len(r.EDEK)))
	return append(dst, r.EDEK...)
}

// Check reports whether r can be written as a key record.
func (r *KeyRecord) Check() error {
	if err := checkTopic(r.Topic); err != nil {
		return err
	}
	if err := checkKEKName(r.KEK); err != nil {
		return err
	}
	if len(r.EDEK) == 0 || len(r.EDEK) > MaxEDEKLen {
		return fmt.Errorf("%w: EDEK of %d bytes (1 to %d)", ErrMalformed, len(r.EDEK), MaxEDEKLen)
	}
	return nil
}

// ParseKeyRecord parses a key-topic record (hostile input: it comes from
// the broker). The result does not alias key or value.
func ParseKeyRecord(key, value []byte) (KeyRecord, error) {
	var r KeyRecord
	if key == nil || value == nil {
		return r, fmt.Errorf("%w: null key or value", ErrMalformed)
	}
	sep := -1
	for i, c := range key {
		if c == 0 {
			sep = i
			break
		}
	}
	if sep < 0 {
		return r, fmt.Errorf("%w: key without separator", ErrMalformed)
	}
	topic, kek := key[:sep], key[sep+1:]
	if len(value) == 0 {
		return r, fmt.Errorf("%w: empty value", ErrMalformed)
	}
	if value[0] != RecordVersion {
		return r, fmt.Errorf("%w: unknown record version %d", ErrMalformed, value[0])
	}
	rest := value[1:]
	vkek, rest, ok := readBytes(rest, MaxKEKNameLen)
	if !ok {
		return r, fmt.Errorf("%w: bad KEK name field", ErrMalformed)
	}
	edek, rest, ok := readBytes(rest, MaxEDEKLen)
	if !ok || len(edek) == 0 {
		return r, fmt.Errorf("%w: bad EDEK field", ErrMalformed)
	}
	if len(rest) != 0 {
		return r, fmt.Errorf("%w: %d bytes after the EDEK", ErrMalformed, len(rest))
	}
	if string(vkek) != string(kek) {
		return r, fmt.Errorf("%w: KEK name in the value differs from the key's", ErrMalformed)
	}
	r = KeyRecord{Topic: string(topic), KEK: string(kek), EDEK: append([]byte(nil), edek...)}
	if err := checkTopic(r.Topic); err != nil {
		return KeyRecord{}, err
	}
	if err := checkKEKName(r.KEK); err != nil {
		return KeyRecord{}, err
	}
	return r, nil
}

// readBytes reads a minimal uvarint length (at most max) and that many bytes.
func readBytes(b []byte, max int) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || k != uvarintLen(n) || n > uint64(max) || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

func uvarintLen(n uint64) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// checkTopic applies Kafka's rule for topic names: 1 to 249 bytes of
// a-z A-Z 0-9 . _ -, not "." nor "..".
func checkTopic(s string) error {
	if s == "" || len(s) > 249 || s == "." || s == ".." {
		return fmt.Errorf("%w: topic name of %d bytes is not a Kafka topic name", ErrMalformed, len(s))
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: topic name holds %q", ErrMalformed, c)
		}
	}
	return nil
}

// CheckTopicName reports whether s is a valid Kafka topic name (for
// encryption.keyTopic.name).
func CheckTopicName(s string) error {
	if err := checkTopic(s); err != nil {
		return fmt.Errorf("%q is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)", s)
	}
	return nil
}

func checkKEKName(s string) error {
	if s == "" || len(s) > MaxKEKNameLen || !utf8.ValidString(s) {
		return fmt.Errorf("%w: KEK name of %d bytes (1 to %d of UTF-8)", ErrMalformed, len(s), MaxKEKNameLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return fmt.Errorf("%w: KEK name holds a zero byte", ErrMalformed)
		}
	}
	return nil
}

// KeyID is the id of the deterministic key made from edek:
// SHA-256("kseal/v2/key-id" || EDEK)[:8].
func KeyID(edek []byte) [8]byte {
	h := sha256.New()
	h.Write([]byte(idPrefix))
	h.Write(edek)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var id [8]byte
	copy(id[:], sum[:8])
	return id
}

// DeriveKey is the deterministic key of topic made from a DEK:
// HKDF-SHA256(DEK, salt = nil, info = "kseal/v2/record-key" || 0x00 || T),
// KeySize bytes. The caller wipes it once the AEAD is built.
func DeriveKey(dek []byte, topic string) ([]byte, error) {
	if len(dek) != 32 {
		return nil, fmt.Errorf("detkey: DEK of %d bytes, want 32", len(dek))
	}
	return hkdf.Key(sha256.New, dek, nil, infoPrefix+"\x00"+topic, KeySize)
}

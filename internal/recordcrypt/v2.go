package recordcrypt

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kseal/kseal/internal/records"
	"github.com/kseal/kseal/internal/siv"
)

// Version2 is the format version in which the record key and headers may be
// encrypted too, not only the value (docs/format.md, "Version 2"). Writers
// use it when encryption.format.writeVersion is 2; readers read both.
const Version2 byte = 2

// DetKey is the deterministic key of one (binding topic, KEK): record keys
// sealed under it are equal exactly when the plaintext keys are, which keeps
// compaction working.
type DetKey struct {
	// ID is stored in every sealed key, so readers find the key to open it.
	ID [8]byte
	// AEAD is AES-SIV under the key (siv.KeySize bytes).
	AEAD *siv.AEAD
}

// Parts says what of a record is encrypted: the second byte of a version 2
// marker.
type Parts uint8

const (
	// PartValue: the record value is an envelope.
	PartValue Parts = 1 << 0
	// PartKey: the record key is deterministically sealed.
	PartKey Parts = 1 << 1
	// PartHeaders: headers were removed and travel inside the envelope.
	PartHeaders Parts = 1 << 2

	knownParts = PartValue | PartKey | PartHeaders
)

// String lists the parts, e.g. "value+key", for logs and tools.
func (p Parts) String() string {
	if p == 0 {
		return "none"
	}
	var b []byte
	for _, x := range []struct {
		p    Parts
		name string
	}{{PartValue, "value"}, {PartKey, "key"}, {PartHeaders, "headers"}} {
		if p&x.p != 0 {
			if len(b) > 0 {
				b = append(b, '+')
			}
			b = append(b, x.name...)
		}
	}
	if rest := p &^ knownParts; rest != 0 {
		b = fmt.Appendf(b, "+%#02x", uint8(rest))
	}
	return string(b)
}

// SealedKeyOverhead is what sealing adds to a record key: the version byte,
// the 8-byte key ID and AES-SIV's 16-byte synthetic IV.
const SealedKeyOverhead = 1 + 8 + siv.Size

// MaxSealedHeaders bounds the headers one version 2 envelope carries (and
// the headers an opened record has): the Processor refuses records with more.
const MaxSealedHeaders = records.MaxRecordHeaders

// MaxGrowthV2 bounds how many bytes SealV2 adds to one encoded record that
// has nHeaders headers, under a DEK whose EDEK has edekLen bytes, whatever
// the parts: the marker header, the envelope (prefix and tag), the length
// and index varints of the plaintext, the sealed key, and every length varint
// of the record that may grow, the record's own length included. Callers
// size output buffers with it, as with Overhead for version 1.
func MaxGrowthV2(edekLen, nHeaders int) int {
	const (
		marker  = 1 + len(HeaderKey) + 5 + 2 // name and value length varints, version and parts
		varints = 5 + 5 + 5 + 5 + 5 + 5      // plaintext value length and header count; record key, value, header count and length varints
		index   = 3                          // a header index below MaxSealedHeaders
	)
	return Overhead(edekLen, MaxCounter) + SealedKeyOverhead + marker + varints + index*nHeaders
}

var (
	// ErrMarkerPresent means a record handed to SealV2 already has a kseal
	// header: a client forging (or replaying) one. It is never sealed.
	ErrMarkerPresent = errors.New("recordcrypt: record already has a " + HeaderKey + " header")
	errNoDetKey      = errors.New("recordcrypt: record key to seal or open without a deterministic key")
	errNoAEAD        = errors.New("recordcrypt: envelope to open without a DEK")
	errNotRecord     = errors.New("recordcrypt: RecordV2 does not come from ParseRecord of this record")
)

var markerKey = []byte(HeaderKey)

// Sealer seals records in format version 2. It owns the buffers a sealed
// record points into, reused from call to call, so sealing allocates nothing
// in steady state. A Sealer is not safe for concurrent use: use one per
// goroutine (e.g. per partition pass of the produce filter).
type Sealer struct {
	plain  []byte // the envelope's plaintext
	hsec   []byte // the header entries, before their count is known
	value  []byte // the sealed value
	marker []byte // the marker header's value
	key    []byte // the sealed record key
	topic  []byte // the binding topic, as AES-SIV associated data
	aad    []byte
	sel    []int // indexes of the headers being sealed
	nonce  [NonceSize]byte
}

// SealV2 rewrites r in place for format version 2 (docs/format.md,
// "Version 2"), binding it to topic (the binding topic, as for Seal). It
// encrypts what parts asks for and r has:
//   - PartValue: a non-null value becomes an envelope under k;
//   - PartKey: a non-null key (empty too) is sealed deterministically under
//     dk, which must then be non-nil;
//   - PartHeaders: the headers sel reports true for (every header if sel is
//     nil) move, with their names, into the envelope under k.
//
// It then appends the marker header. r's Key, Value and marker point into
// s's buffers until the next call. sealed is false, and r unchanged, when
// there was nothing to encrypt (null value and key, no selected header):
// such a record gets no marker. On error r is unchanged and must not be
// forwarded. A record that already has a kseal header is refused with
// ErrMarkerPresent.
func (s *Sealer) SealV2(k Key, dk *DetKey, topic string, parts Parts, sel func(name []byte) bool, r *records.Record) (sealed bool, err error) {
	if parts&^knownParts != 0 {
		return false, fmt.Errorf("recordcrypt: seal: unknown parts %#02x", uint8(parts))
	}
	var got Parts
	if parts&PartValue != 0 && r.Value != nil {
		got |= PartValue
	}
	if parts&PartKey != 0 && r.Key != nil {
		if dk == nil || dk.AEAD == nil {
			return false, errNoDetKey
		}
		got |= PartKey
	}
	s.sel = s.sel[:0]
	s.hsec = s.hsec[:0]
	for i := range r.Headers {
		h := &r.Headers[i]
		if string(h.Key) == HeaderKey {
			return false, ErrMarkerPresent
		}
		if parts&PartHeaders == 0 || (sel != nil && !sel(h.Key)) {
			continue
		}
		s.sel = append(s.sel, i)
		s.hsec = binary.AppendUvarint(s.hsec, uint64(i))
		s.hsec = binary.AppendUvarint(s.hsec, uint64(len(h.Key)))
		s.hsec = append(s.hsec, h.Key...)
		if h.Value == nil {
			s.hsec = binary.AppendVarint(s.hsec, -1)
		} else {
			s.hsec = binary.AppendVarint(s.hsec, int64(len(h.Value)))
			s.hsec = append(s.hsec, h.Value...)
		}
	}
	if len(s.sel) > 0 {
		got |= PartHeaders
	}
	if got == 0 {
		return false, nil
	}

	// The key first: the envelope's associated data holds it as stored.
	stored := r.Key
	if got&PartKey != 0 {
		s.topic = append(s.topic[:0], topic...)
		s.key = append(s.key[:0], Version2)
		s.key = append(s.key, dk.ID[:]...)
		s.key = dk.AEAD.Seal(s.key, r.Key, s.topic, dk.ID[:])
		stored = s.key
	}

	s.marker = append(s.marker[:0], Version2, byte(got))
	if got&(PartValue|PartHeaders) != 0 {
		s.plain = s.plain[:0]
		if got&PartValue != 0 {
			s.plain = binary.AppendUvarint(s.plain, uint64(len(r.Value)))
			s.plain = append(s.plain, r.Value...)
		}
		if got&PartHeaders != 0 {
			s.plain = binary.AppendUvarint(s.plain, uint64(len(s.sel)))
			s.plain = append(s.plain, s.hsec...)
		}
		if got&PartValue != 0 {
			if s.value, err = s.seal(s.value[:0], k, topic, got, stored); err != nil {
				return false, err
			}
		} else if s.marker, err = s.seal(s.marker, k, topic, got, stored); err != nil {
			return false, err
		}
	}

	// Nothing failed: rewrite r.
	if got&PartKey != 0 {
		r.Key = s.key
	}
	if got&PartValue != 0 {
		r.Value = s.value
	}
	if got&PartHeaders != 0 {
		j, next := 0, 0
		for i := range r.Headers {
			if next < len(s.sel) && s.sel[next] == i {
				next++
				continue
			}
			r.Headers[j] = r.Headers[i]
			j++
		}
		clear(r.Headers[j:])
		r.Headers = r.Headers[:j]
	}
	r.Headers = append(r.Headers, records.RecordHeader{Key: markerKey, Value: s.marker})
	return true, nil
}

// seal appends to dst the version 2 envelope of s.plain under k.
func (s *Sealer) seal(dst []byte, k Key, topic string, parts Parts, storedKey []byte) ([]byte, error) {
	if k == nil {
		return dst, errors.New("recordcrypt: seal: value or headers to encrypt without a DEK")
	}
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
	start := len(dst)
	dst = append(dst, Version2, 0)
	dst = binary.AppendUvarint(dst, uint64(len(edek)))
	dst = append(dst, edek...)
	dst = binary.AppendUvarint(dst, counter)
	s.aad = appendAADv2(s.aad[:0], dst[start:], topic, parts, storedKey)
	setNonce(&s.nonce, counter)
	return aead.Seal(dst, s.nonce[:], s.plain, s.aad), nil
}

func setNonce(n *[NonceSize]byte, counter uint64) {
	*n = [NonceSize]byte{}
	binary.BigEndian.PutUint64(n[4:], counter)
}

// appendAADv2 appends the associated data of a version 2 envelope:
//
//	prefix || uvarint(len(topic)) || topic || parts || (0x00 | 0x01 || uvarint(len(key)) || key)
//
// where key is the record key as stored (sealed, when PartKey).
func appendAADv2(a, prefix []byte, topic string, parts Parts, key []byte) []byte {
	a = append(a, prefix...)
	a = binary.AppendUvarint(a, uint64(len(topic)))
	a = append(a, topic...)
	a = append(a, byte(parts))
	if key == nil {
		return append(a, 0)
	}
	a = append(a, 1)
	a = binary.AppendUvarint(a, uint64(len(key)))
	return append(a, key...)
}

// RecordV2 is an encrypted record (version 1 or 2) as ParseRecord read it,
// before anything is decrypted. Its slices alias the record.
type RecordV2 struct {
	// Version is the record's format version: 1 or 2 (0 for a record without
	// a marker, which is plaintext).
	Version byte
	// Parts is what is encrypted (version 1: PartValue).
	Parts Parts
	// Env is the envelope, when HasEnvelope: the DEK to open the record is
	// the one Env.EDEK wraps.
	Env Envelope
	// KeyID names the deterministic key the record key is sealed under
	// (PartKey only).
	KeyID [8]byte

	marker int // index of the marker header
}

// HasEnvelope reports whether Env is set: the record has an envelope (in its
// value or, version 2 only, in its marker), so opening it needs the DEK.
func (rec RecordV2) HasEnvelope() bool { return rec.Env.prefix != nil }

// ParseRecord finds r's marker header and checks, without any key, that the
// record follows docs/format.md: exactly one marker, a known version, known
// parts bits (not 0), the envelope where the parts say (in the value when
// PartValue, else in the marker when PartHeaders, else nowhere), canonical
// envelope fields, and a sealed key of the right form when PartKey. A
// record without a marker is plaintext: version 0, no error. What is
// encrypted (header order, lengths) is checked when OpenV2 decrypts it. Its
// work is bounded by the record's size.
func ParseRecord(r *records.Record) (rec RecordV2, version byte, err error) {
	rec.marker = -1
	for i := range r.Headers {
		if string(r.Headers[i].Key) != HeaderKey {
			continue
		}
		if rec.marker >= 0 {
			return RecordV2{}, 0, fmt.Errorf("%w: more than one %s header", ErrMalformed, HeaderKey)
		}
		rec.marker = i
	}
	if rec.marker < 0 {
		return RecordV2{}, 0, nil
	}
	m := r.Headers[rec.marker].Value
	if len(m) == 0 {
		return RecordV2{}, 0, fmt.Errorf("%w: empty %s header", ErrMalformed, HeaderKey)
	}
	switch m[0] {
	case Version1:
		if len(m) != 1 {
			return RecordV2{}, 0, fmt.Errorf("%w: version 1 %s header of %d bytes, want 1", ErrMalformed, HeaderKey, len(m))
		}
		if r.Value == nil {
			return RecordV2{}, 0, fmt.Errorf("%w: version 1 marker on a null value", ErrMalformed)
		}
		if len(r.Value) > 0 && r.Value[0] != Version1 {
			return RecordV2{}, 0, fmt.Errorf("%w: version 1 marker, value of version %d", ErrMalformed, r.Value[0])
		}
		if rec.Env, err = Parse(r.Value); err != nil {
			return RecordV2{}, 0, err
		}
		rec.Version, rec.Parts = Version1, PartValue
		return rec, Version1, nil
	case Version2:
	default:
		return RecordV2{}, 0, fmt.Errorf("%w: %s header names version %d", ErrUnsupportedVersion, HeaderKey, m[0])
	}
	if len(m) < 2 {
		return RecordV2{}, 0, fmt.Errorf("%w: version 2 %s header without parts", ErrMalformed, HeaderKey)
	}
	rec.Version, rec.Parts = Version2, Parts(m[1])
	if rec.Parts == 0 || rec.Parts&^knownParts != 0 {
		return RecordV2{}, 0, fmt.Errorf("%w: parts %#02x", ErrMalformed, m[1])
	}
	switch {
	case rec.Parts&PartValue != 0:
		if r.Value == nil {
			return RecordV2{}, 0, fmt.Errorf("%w: parts say value, the value is null", ErrMalformed)
		}
		if len(m) != 2 {
			return RecordV2{}, 0, fmt.Errorf("%w: parts say value, the marker carries %d more bytes", ErrMalformed, len(m)-2)
		}
		rec.Env, err = parseV2Envelope(r.Value)
	case rec.Parts&PartHeaders != 0:
		if len(m) == 2 {
			return RecordV2{}, 0, fmt.Errorf("%w: parts say headers, no envelope", ErrMalformed)
		}
		rec.Env, err = parseV2Envelope(m[2:])
	default:
		if len(m) != 2 {
			return RecordV2{}, 0, fmt.Errorf("%w: key-only marker of %d bytes, want 2", ErrMalformed, len(m))
		}
	}
	if err != nil {
		return RecordV2{}, 0, err
	}
	if rec.Parts&PartKey != 0 {
		switch {
		case r.Key == nil:
			return RecordV2{}, 0, fmt.Errorf("%w: parts say key, the key is null", ErrMalformed)
		case len(r.Key) < SealedKeyOverhead:
			return RecordV2{}, 0, fmt.Errorf("%w: sealed key of %d bytes, want at least %d", ErrMalformed, len(r.Key), SealedKeyOverhead)
		case r.Key[0] != Version2:
			return RecordV2{}, 0, fmt.Errorf("%w: sealed key of version %d", ErrMalformed, r.Key[0])
		}
		copy(rec.KeyID[:], r.Key[1:9])
	}
	return rec, Version2, nil
}

func parseV2Envelope(b []byte) (Envelope, error) {
	if len(b) > 0 && b[0] != Version2 {
		return Envelope{}, fmt.Errorf("%w: envelope of version %d in a version 2 record", ErrMalformed, b[0])
	}
	return parseEnvelope(b, Version2)
}

// Opener opens records of format versions 1 and 2. It owns the buffers an
// opened record points into, reused from call to call, so opening allocates
// nothing in steady state. It is not safe for concurrent use: use one per
// goroutine.
type Opener struct {
	plain  []byte // decrypted envelope (the value and headers point into it)
	value  []byte // version 1 value
	key    []byte // opened record key
	topic  []byte
	aad    []byte
	hdrs   []records.RecordHeader
	sealed []sealedHeader
	nonce  [NonceSize]byte
}

type sealedHeader struct {
	idx int
	h   records.RecordHeader
}

// OpenV2 authenticates and decrypts the record rec describes (ParseRecord of
// r): it restores r's value, key and headers exactly as the producer sent
// them (header order, duplicates, null values) and removes the marker.
// aead is AES-256-GCM under rec.Env's DEK, nil when !rec.HasEnvelope(); dk
// is the deterministic key rec.KeyID names, nil without PartKey. topic is
// the binding topic. A version 1 record is opened as Open does; a record
// without marker (version 0) is left alone. r's slices point into o's
// buffers until the next call. Every failure to authenticate is ErrAuth; on
// any error r is unchanged.
func (o *Opener) OpenV2(aead cipher.AEAD, dk *DetKey, topic string, rec RecordV2, r *records.Record) error {
	if rec.Version == 0 {
		return nil
	}
	if rec.marker < 0 || rec.marker >= len(r.Headers) || string(r.Headers[rec.marker].Key) != HeaderKey {
		return errNotRecord
	}
	if rec.HasEnvelope() && aead == nil {
		return errNoAEAD
	}
	if rec.Version == Version1 {
		v, err := Open(o.value[:0], aead, rec.Env, Binding{Topic: topic, Key: r.Key})
		if err != nil {
			return err
		}
		o.value = v
		r.Value = v
		r.Headers = append(r.Headers[:rec.marker], r.Headers[rec.marker+1:]...)
		return nil
	}
	if rec.Version != Version2 {
		return fmt.Errorf("%w: %d", ErrUnsupportedVersion, rec.Version)
	}

	var value []byte
	headers := false
	if rec.HasEnvelope() {
		if rec.Env.Version != Version2 {
			return errNotRecord
		}
		o.aad = appendAADv2(o.aad[:0], rec.Env.prefix, topic, rec.Parts, r.Key)
		setNonce(&o.nonce, rec.Env.Counter)
		plain, err := aead.Open(o.plain[:0], o.nonce[:], rec.Env.Ciphertext, o.aad)
		if err != nil {
			return ErrAuth
		}
		o.plain = plain
		if value, headers, err = o.parsePlain(plain, rec.Parts, len(r.Headers)-1); err != nil {
			return err
		}
	}
	if rec.Parts&PartKey != 0 {
		if dk == nil || dk.AEAD == nil {
			return errNoDetKey
		}
		if dk.ID != rec.KeyID || len(r.Key) < SealedKeyOverhead || !bytes.Equal(r.Key[1:9], dk.ID[:]) {
			return fmt.Errorf("%w: deterministic key %x given for a key sealed under %x", ErrAuth, dk.ID, rec.KeyID)
		}
		o.topic = append(o.topic[:0], topic...)
		if o.key == nil {
			o.key = make([]byte, 0, 64) // an empty key must stay non-null
		}
		k, err := dk.AEAD.Open(o.key[:0], r.Key[1+8:], o.topic, dk.ID[:])
		if err != nil {
			return ErrAuth
		}
		o.key = k
	}

	// Nothing failed: rewrite r.
	if rec.Parts&PartKey != 0 {
		r.Key = o.key
	}
	if rec.Parts&PartValue != 0 {
		r.Value = value
	}
	if headers {
		o.merge(r.Headers, rec.marker)
		r.Headers = o.hdrs
	} else {
		r.Headers = append(r.Headers[:rec.marker], r.Headers[rec.marker+1:]...)
	}
	return nil
}

// parsePlain reads an envelope's plaintext into the value and o.sealed.
// clear is how many headers the record has besides the marker.
func (o *Opener) parsePlain(p []byte, parts Parts, clear int) (value []byte, headers bool, err error) {
	off := 0
	if parts&PartValue != 0 {
		l, n := uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return nil, false, fmt.Errorf("%w: value length in the plaintext", ErrMalformed)
		}
		off = n
		value = p[off : off+int(l) : off+int(l)]
		off += int(l)
	}
	o.sealed = o.sealed[:0]
	if parts&PartHeaders != 0 {
		count, n := uvarint(p[off:])
		// Each entry takes at least 3 bytes: that bounds count by the input.
		if n <= 0 || count == 0 || count > MaxSealedHeaders || count > uint64(len(p)-off)/3 {
			return nil, false, fmt.Errorf("%w: sealed header count", ErrMalformed)
		}
		off += n
		total := uint64(clear) + count
		if total > MaxSealedHeaders {
			return nil, false, fmt.Errorf("%w: %d headers", ErrMalformed, total)
		}
		for i := range int(count) {
			idx, n := uvarint(p[off:])
			if n <= 0 || idx >= total || (i > 0 && idx <= uint64(o.sealed[i-1].idx)) {
				return nil, false, fmt.Errorf("%w: sealed header %d: index", ErrMalformed, i)
			}
			off += n
			nl, n := uvarint(p[off:])
			if n <= 0 || nl > uint64(len(p)-off-n) {
				return nil, false, fmt.Errorf("%w: sealed header %d: name length", ErrMalformed, i)
			}
			off += n
			name := p[off : off+int(nl) : off+int(nl)]
			off += int(nl)
			vl, n := varint(p[off:])
			if n <= 0 || vl < -1 || vl > int64(len(p)-off-n) {
				return nil, false, fmt.Errorf("%w: sealed header %d: value length", ErrMalformed, i)
			}
			off += n
			var v []byte
			if vl >= 0 {
				v = p[off : off+int(vl) : off+int(vl)]
				off += int(vl)
			}
			o.sealed = append(o.sealed, sealedHeader{idx: int(idx), h: records.RecordHeader{Key: name, Value: v}})
		}
		headers = true
	}
	if off != len(p) {
		return nil, false, fmt.Errorf("%w: %d bytes after the plaintext", ErrMalformed, len(p)-off)
	}
	return value, headers, nil
}

// merge sets o.hdrs to the record's headers: the clear ones (all but the
// marker) in order, with the sealed ones put back at their indexes.
func (o *Opener) merge(clearHdrs []records.RecordHeader, marker int) {
	o.hdrs = o.hdrs[:0]
	ci, si := 0, 0
	total := len(clearHdrs) - 1 + len(o.sealed)
	for pos := range total {
		if si < len(o.sealed) && o.sealed[si].idx == pos {
			o.hdrs = append(o.hdrs, o.sealed[si].h)
			si++
			continue
		}
		if ci == marker {
			ci++
		}
		o.hdrs = append(o.hdrs, clearHdrs[ci])
		ci++
	}
}

// varint reads a canonical (minimal) zigzag varint, as Kafka encodes
// lengths; n <= 0 on error, as for uvarint.
func varint(b []byte) (int64, int) {
	u, n := uvarint(b)
	if n <= 0 {
		return 0, n
	}
	return int64(u>>1) ^ -int64(u&1), n
}

package detkey

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// Shred records (docs/key-topic.md, "Shred records"; docs/shredding.md):
// `kseal shred` writes one into the key topic before it destroys a KEK, so
// that every kseal process can tell a KEK destroyed on purpose from one the
// KMS cannot reach or lost:
//
//	key   = 0x00 || "shred" || 0x00 || KEK name
//	value = 0x02 (shred record) || uvarint len(KEK name) || KEK name
//	        || uvarint len(KEK id) || KEK id || uvarint unix milliseconds
//	        || uvarint len(note) || note
//
// A key record's key starts with a topic name, never 0x00, so the two
// cannot be confused, and a kseal that predates shred records skips them
// as malformed. The KEK id is what the KMS calls the key (ResolveKEK's
// KEKRef.ID, e.g. an AWS key id behind an alias), since that is what some
// KMSs' EDEKs name; it may equal the name. The note (at most MaxShredNote
// bytes of UTF-8) is the operator's.

// ShredRecordType is the first value byte of a shred record.
const ShredRecordType = 2

// MaxShredNote bounds a shred record's note.
const MaxShredNote = 1024

var shredKeyPrefix = []byte("\x00shred\x00")

// ShredRecord is one shred record of the key topic.
type ShredRecord struct {
	KEK   string    // the KEK name policy selected
	KEKID string    // the KMS's id of the KEK ("" when the same as KEK)
	Time  time.Time // when kseal shred ran (millisecond precision)
	Note  string    // the operator's note
}

// IsShredKey reports whether a key-topic record key is a shred record's.
func IsShredKey(key []byte) bool { return bytes.HasPrefix(key, shredKeyPrefix) }

// AppendShredKey appends the record key of the shred record of kek.
func AppendShredKey(dst []byte, kek string) []byte {
	return append(append(dst, shredKeyPrefix...), kek...)
}

// Check reports whether r can be written.
func (r *ShredRecord) Check() error {
	if err := checkKEKName(r.KEK); err != nil {
		return err
	}
	if r.KEKID != "" {
		if err := checkKEKName(r.KEKID); err != nil {
			return fmt.Errorf("KEK id: %w", err)
		}
	}
	if len(r.Note) > MaxShredNote || !utf8.ValidString(r.Note) {
		return fmt.Errorf("%w: note of %d bytes (at most %d of UTF-8)", ErrMalformed, len(r.Note), MaxShredNote)
	}
	if r.Time.UnixMilli() < 0 {
		return fmt.Errorf("%w: time before 1970", ErrMalformed)
	}
	return nil
}

// AppendValue appends r's record value.
func (r *ShredRecord) AppendValue(dst []byte) []byte {
	dst = append(dst, ShredRecordType)
	dst = binary.AppendUvarint(dst, uint64(len(r.KEK)))
	dst = append(dst, r.KEK...)
	dst = binary.AppendUvarint(dst, uint64(len(r.KEKID)))
	dst = append(dst, r.KEKID...)
	dst = binary.AppendUvarint(dst, uint64(r.Time.UnixMilli()))
	dst = binary.AppendUvarint(dst, uint64(len(r.Note)))
	return append(dst, r.Note...)
}

// ParseShredRecord parses a shred record (hostile input: it comes from the
// broker). The result does not alias key or value.
func ParseShredRecord(key, value []byte) (ShredRecord, error) {
	var r ShredRecord
	if !IsShredKey(key) || value == nil {
		return r, fmt.Errorf("%w: not a shred record", ErrMalformed)
	}
	kek := key[len(shredKeyPrefix):]
	if len(value) == 0 || value[0] != ShredRecordType {
		return r, fmt.Errorf("%w: shred record of another type", ErrMalformed)
	}
	rest := value[1:]
	vkek, rest, ok := readBytes(rest, MaxKEKNameLen)
	if !ok || string(vkek) != string(kek) {
		return r, fmt.Errorf("%w: bad KEK name field in a shred record", ErrMalformed)
	}
	id, rest, ok := readBytes(rest, MaxKEKNameLen)
	if !ok {
		return r, fmt.Errorf("%w: bad KEK id field in a shred record", ErrMalformed)
	}
	ms, k := binary.Uvarint(rest)
	if k <= 0 || k != uvarintLen(ms) || ms > 1<<62 {
		return r, fmt.Errorf("%w: bad time in a shred record", ErrMalformed)
	}
	note, rest, ok := readBytes(rest[k:], MaxShredNote)
	if !ok || len(rest) != 0 {
		return r, fmt.Errorf("%w: bad note in a shred record", ErrMalformed)
	}
	r = ShredRecord{KEK: string(kek), KEKID: string(id), Time: time.UnixMilli(int64(ms)).UTC(), Note: string(note)}
	if err := r.Check(); err != nil {
		return ShredRecord{}, err
	}
	return r, nil
}

// shredIndex is the shred records the Store read, by KEK name and id
// (guarded by Store.mu). The first record of a KEK is kept.
type shredIndex struct {
	byName map[string]*ShredRecord
	// negative: names asked about that had no record after a re-read, and
	// when (bounded by maxNegative).
	negative map[string]time.Time
}

// indexShred adds a shred record read from the key topic.
func (s *Store) indexShred(key, value []byte) {
	r, err := ParseShredRecord(key, value)
	if err != nil {
		s.m.skipped.WithLabelValues("malformed").Inc()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shreds.byName == nil {
		s.shreds.byName = map[string]*ShredRecord{}
	}
	for _, n := range []string{r.KEK, r.KEKID} {
		if n == "" {
			continue
		}
		if _, ok := s.shreds.byName[n]; !ok {
			s.shreds.byName[n] = &r
		}
		delete(s.shreds.negative, n)
	}
}

func (s *Store) lookupShred(kek string) (*ShredRecord, time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.shreds.byName[kek]
	at, neg := s.shreds.negative[kek]
	return r, at, neg
}

// Shredded returns the shred record of kek (a KEK name, or the KMS's id of
// it as an EDEK names it), if the key topic holds one. A KEK it has not seen
// one for makes it read the key topic again (at most once per
// RereadInterval for all callers, like unknown key ids); an answer "no"
// is then remembered for RereadInterval. An error means the key topic could
// not be read: the caller must not take the KEK for shredded.
func (s *Store) Shredded(ctx context.Context, up Upstream, kek string) (*ShredRecord, error) {
	r, at, neg := s.lookupShred(kek)
	if r != nil {
		return r, nil
	}
	if neg && s.opts.now().Sub(at) < s.opts.RereadInterval {
		return nil, nil
	}
	s.flightMu.Lock()
	after := s.rereadSeq
	s.flightMu.Unlock()
	err := s.rereadAfter(ctx, up, after)
	if r, _, _ = s.lookupShred(kek); r != nil {
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.shreds.negative == nil || len(s.shreds.negative) >= maxNegative {
		s.shreds.negative = map[string]time.Time{}
	}
	s.shreds.negative[kek] = s.opts.now()
	s.mu.Unlock()
	return nil, nil
}

// KEKOf returns the KEK name of the key record with key id id, if the Store
// has read it (a record whose key alone is sealed names its KEK only so).
func (s *Store) KEKOf(id [8]byte) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.byID[id]; e != nil {
		return e.kek, true
	}
	return "", false
}

// WriteShred appends r to the key topic (creating the topic if needed) and
// returns its offset. `kseal shred` writes through its own client; this is
// for callers holding an Upstream.
func (s *Store) WriteShred(ctx context.Context, up Upstream, r *ShredRecord) (int64, error) {
	if err := r.Check(); err != nil {
		return 0, err
	}
	if err := up.CreateTopic(ctx, s.opts.Topic, s.opts.ReplicationFactor, TopicConfigs); err != nil {
		return 0, s.upstreamErr("create", err)
	}
	off, err := up.Produce(ctx, s.opts.Topic, AppendShredKey(nil, r.KEK), r.AppendValue(nil))
	if err != nil {
		return 0, s.upstreamErr("write a shred record to", err)
	}
	return off, nil
}

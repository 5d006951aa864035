package codec

import (
	"encoding/binary"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
)

// This file holds what FetchScan and ShareFetchScan share: the partitions
// a scan recorded (positions in the body, no copies), the edits callers
// make to them, and the one copy pass that builds the edited body.

// scannedPart is one partition a scan recorded: where its fields lie in
// the body. Values are read from the body when asked for, so a partition
// costs 24 pointer-free bytes whatever its version, and 32 more (partEdit)
// once any partition of the scan is edited; one takes at least 18 bytes on
// the wire, so a scan's storage stays within about three times the body it
// describes. Offsets are int32: a Kafka frame is at most 2 GiB.
type scannedPart struct {
	topicAt   int32 // the topic's name or id
	errAt     int32 // the error code (the partition index is the 4 bytes before it)
	extraAt   int32 // a version-specific field (ShareFetch: the acknowledge error code)
	recordsAt int32 // the records' length prefix
	dataAt    int32 // the records' bytes, -1 when null
	end       int32 // after the records
}

// partEdit is what a caller set on one partition.
type partEdit struct {
	newError   int16
	setError   bool
	setRecords bool
	newRecords []byte
}

// bodyRepl replaces body[from:to] with scratch[at:at+n]: a rewrite the scan
// made itself (node endpoints). Every one lies after the last partition.
type bodyRepl struct{ from, to, at, n int32 }

// partScan is the storage and the splice shared by FetchScan and
// ShareFetchScan. It is reused from one scan to the next.
type partScan struct {
	body    []byte
	flex    bool
	parts   []scannedPart
	repls   []bodyRepl
	scratch []byte // bytes of repls
	tmp     []byte // one rewrite in progress
	sp      splicer
	// edits[i] is partition i's edits; sized to the partitions on the
	// first edit of a scan (edited), so a scan nobody edits never
	// touches it.
	edits  []partEdit
	edited bool
}

// tooLarge reports a body whose offsets would not fit in int32 (more than
// a Kafka frame can hold).
func tooLarge(body []byte) bool { return len(body) > 1<<31-1 }

// reset starts a scan of body, dropping the last scan's references.
func (s *partScan) reset(body []byte, flex bool) {
	if s.edited {
		clear(s.edits) // drop references to the records set
		s.edits, s.edited = s.edits[:0], false
	}
	s.parts, s.repls, s.scratch = s.parts[:0], s.repls[:0], s.scratch[:0]
	s.body, s.flex = body, flex
}

// drop forgets the scan (after an error, or when the caller is done).
func (s *partScan) drop() {
	s.reset(nil, false)
}

func (s *partScan) add(p scannedPart) {
	s.parts = append(s.parts, p)
}

// replace records that body[from:to] is replaced by b.
func (s *partScan) replace(from, to int, b []byte) {
	at := len(s.scratch)
	s.scratch = append(s.scratch, b...)
	s.repls = append(s.repls, bodyRepl{int32(from), int32(to), int32(at), int32(len(b))})
}

func (s *partScan) records(i int) []byte {
	p := &s.parts[i]
	if p.dataAt < 0 {
		return nil
	}
	return s.body[p.dataAt:p.end:p.end]
}

func (s *partScan) int16At(at int32) int16 { return int16(binary.BigEndian.Uint16(s.body[at:])) }
func (s *partScan) int32At(at int32) int32 { return int32(binary.BigEndian.Uint32(s.body[at:])) }

func (s *partScan) errorCode(i int) int16 { return s.int16At(s.parts[i].errAt) }

// uuidAt reads a topic id.
func (s *partScan) uuidAt(at int32) (id [16]byte) {
	copy(id[:], s.body[at:])
	return id
}

// strAt reads the (already checked) string at at.
func (s *partScan) strAt(at int32) string {
	r := newBodyReader(s.body[at:], s.flex)
	return bytesString(r.str())
}

// edit returns partition i's edits, sizing the edits to the scan first.
func (s *partScan) edit(i int) *partEdit {
	_ = s.parts[i] // an index past the scan panics like one past parts
	if !s.edited {
		s.edits = slices.Grow(s.edits[:0], len(s.parts))[:len(s.parts)]
		clear(s.edits)
		s.edited = true
	}
	return &s.edits[i]
}

func (s *partScan) setRecords(i int, b []byte) {
	e := s.edit(i)
	e.newRecords, e.setRecords = b, true
}

func (s *partScan) setErrorCode(i int, code int16) {
	e := s.edit(i)
	e.newError, e.setError = code, true
}

// spliceEdits writes edits of partition i through sp.
func (s *partScan) spliceEdits(sp *splicer, i int, setError bool, code int16, setRecords bool, records []byte) {
	p := &s.parts[i]
	if setError && code != s.int16At(p.errAt) {
		sp.replace(int(p.errAt), int(p.errAt)+2, 2)
		sp.out = kbin.AppendInt16(sp.out, code)
	}
	if setRecords {
		sp.replace(int(p.recordsAt), int(p.end), len(records)+5)
		sp.out = appendNullableBytes(sp.out, records, s.flex)
	}
}

// spliceRepls writes the scan's own rewrites through sp, after the
// partitions.
func (s *partScan) spliceRepls(sp *splicer) {
	for _, r := range s.repls {
		sp.replace(int(r.from), int(r.to), int(r.n))
		sp.out = append(sp.out, s.scratch[r.at:r.at+r.n]...)
	}
}

// splice builds the edited body: see FetchScan.Splice.
func (s *partScan) splice(dst []byte) ([]byte, bool) {
	s.sp.start(dst, s.body)
	for i := 0; s.edited && i < len(s.edits); i++ {
		if e := &s.edits[i]; e.setError || e.setRecords {
			s.spliceEdits(&s.sp, i, e.setError, e.newError, e.setRecords, e.newRecords)
		}
	}
	s.spliceRepls(&s.sp)
	return s.sp.finish()
}

// splicer builds a changed body lazily: nothing is copied until the first
// replacement, and then every unchanged stretch of the original is copied in
// one append. Replacements come in body order.
type splicer struct {
	body   []byte
	dst    []byte // the caller's buffer, returned when nothing changed
	out    []byte
	copied int // body[:copied] is already in out or replaced
	dirty  bool
}

func (s *splicer) start(dst, body []byte) {
	*s = splicer{body: body, dst: dst, out: dst}
}

// replace copies the body up to from, then skips the original body[from:to];
// the caller appends a replacement of about n bytes to s.out. The first
// replacement sizes out for the whole new body as if it were the only one,
// so a caller's reused buffer is not reallocated in steady state.
func (s *splicer) replace(from, to, n int) {
	if !s.dirty {
		s.dirty = true
		s.out = slices.Grow(s.out, len(s.body)-(to-from)+n)
	}
	s.out = append(s.out, s.body[s.copied:from]...)
	s.copied = to
}

// finish returns the new body appended to dst, or dst and false when
// nothing was replaced. It drops the splicer's references.
func (s *splicer) finish() ([]byte, bool) {
	out, dirty := s.dst, s.dirty
	if dirty {
		out = append(s.out, s.body[s.copied:]...)
	}
	*s = splicer{}
	return out, dirty
}

package codec

import "fmt"

// ShareFetchPartition is one partition of a ShareFetch response as the
// walker sees it. Like FetchPartition it is reused: its fields and the memory
// Records points into are valid only during the callback.
type ShareFetchPartition struct {
	TopicID [16]byte

	Partition            int32
	ErrorCode            int16
	AcknowledgeErrorCode int16

	// Records is the partition's record batches (nil when null). The
	// acquired-records ranges that follow them are copied unchanged.
	Records []byte

	newRecords []byte
	setRecords bool
	newError   int16
	setError   bool
}

// SetRecords replaces the partition's records with b (nil writes null). b is
// copied before the walker moves on.
func (p *ShareFetchPartition) SetRecords(b []byte) {
	p.newRecords, p.setRecords = b, true
}

// SetErrorCode replaces the partition's error code; its error message is
// kept.
func (p *ShareFetchPartition) SetErrorCode(code int16) {
	p.newError, p.setError = code, true
}

// ShareFetchFunc is called for every partition of a ShareFetch response, in
// wire order. Returning an error stops the walk.
type ShareFetchFunc func(p *ShareFetchPartition) error

// ShareFetchScan is a ShareFetch response body (api key 78, versions 0 to
// ShareFetchMaxVersion, all flexible) walked once, as FetchScan does for
// Fetch: Scan records the partitions and rewrites the node endpoints (a
// regular field after the topics, not a tag); callers edit partitions by
// index; Splice builds the new body in one copy pass. What it returns
// aliases the body, which must stay unchanged until the next Scan or
// Reset. Not safe for concurrent use.
type ShareFetchScan struct {
	partScan
}

// Scan walks body, recording its partitions in wire order and rewriting
// the node endpoints through m (endpoints m does not know are dropped, a
// nil m drops them all). On error the scan is empty.
func (s *ShareFetchScan) Scan(body []byte, version int16, m AddressMapper) error {
	if version < 0 || version > ShareFetchMaxVersion {
		s.drop()
		return fmt.Errorf("share fetch response v%d: %w", version, ErrUnknownVersion)
	}
	if tooLarge(body) {
		s.drop()
		return fmt.Errorf("share fetch response v%d: %d bytes: %w", version, len(body), ErrMalformed)
	}
	s.reset(body, true)
	if err := s.scan(version, m); err != nil {
		s.drop()
		return fmt.Errorf("share fetch response v%d: %w", version, err)
	}
	return nil
}

func (s *ShareFetchScan) scan(version int16, m AddressMapper) error {
	r := newBodyReader(s.body, true)
	r.Int32()       // throttle
	r.Int16()       // error code
	r.nullableStr() // error message
	if version >= 1 {
		r.Int32() // acquisition lock timeout
	}
	topics, _ := r.arrayLen()
	for t := 0; t < topics && r.Ok(); t++ {
		topicAt := r.off()
		r.Span(16) // topic id
		parts, _ := r.arrayLen()
		for i := 0; i < parts && r.Ok(); i++ {
			s.partition(&r, topicAt)
		}
		r.skipTags()
	}
	if !r.Ok() {
		return fmt.Errorf("topics: %w", ErrMalformed)
	}
	endpointsAt := r.off()
	var changed bool
	s.tmp, changed = rewriteEndpoints(s.tmp[:0], &r, m, endpointLayout{rack: true})
	if !r.Ok() {
		return fmt.Errorf("node endpoints: %w", ErrMalformed)
	}
	if changed {
		s.replace(endpointsAt, r.off(), s.tmp)
	}
	r.skipTags()
	if !r.Ok() {
		return fmt.Errorf("tagged fields: %w", ErrMalformed)
	}
	if len(r.Src) != 0 {
		return fmt.Errorf("%d bytes after the message: %w", len(r.Src), ErrMalformed)
	}
	return nil
}

// partition reads one partition: partition, error code, error message,
// acknowledge error code and message, current leader (id, epoch, tags),
// records, acquired records (first, last, delivery count, tags), tags.
func (s *ShareFetchScan) partition(r *bodyReader, topicAt int) {
	r.Int32() // partition
	errAt := r.off()
	r.Int16()
	r.nullableStr()
	ackAt := r.off()
	r.Int16()
	r.nullableStr()
	r.Int32() // current leader id
	r.Int32() // current leader epoch
	r.skipTags()
	recordsAt := r.off()
	dataAt := -1
	if b := r.nullableBytes(); b != nil {
		dataAt = r.off() - len(b)
	}
	end := r.off()
	acquired, _ := r.arrayLen()
	for j := 0; j < acquired && r.Ok(); j++ {
		r.Int64() // first offset
		r.Int64() // last offset
		r.Int16() // delivery count
		r.skipTags()
	}
	r.skipTags()
	if r.Ok() {
		s.add(scannedPart{topicAt: int32(topicAt), errAt: int32(errAt), extraAt: int32(ackAt), recordsAt: int32(recordsAt), dataAt: int32(dataAt), end: int32(end)})
	}
}

// Len is the number of partitions scanned.
func (s *ShareFetchScan) Len() int { return len(s.parts) }

// TopicID is partition i's topic id.
func (s *ShareFetchScan) TopicID(i int) [16]byte { return s.uuidAt(s.parts[i].topicAt) }

// Partition is partition i's partition index.
func (s *ShareFetchScan) Partition(i int) int32 { return s.int32At(s.parts[i].errAt - 4) }

// ErrorCode is partition i's error code as the broker sent it.
func (s *ShareFetchScan) ErrorCode(i int) int16 { return s.errorCode(i) }

// AcknowledgeErrorCode is partition i's acknowledge error code.
func (s *ShareFetchScan) AcknowledgeErrorCode(i int) int16 { return s.int16At(s.parts[i].extraAt) }

// Records is partition i's record batches (nil when null).
func (s *ShareFetchScan) Records(i int) []byte { return s.records(i) }

// SetRecords makes Splice write b (nil writes null) in place of partition
// i's records; the acquired-records ranges after them are kept. b must stay
// valid until Splice has run.
func (s *ShareFetchScan) SetRecords(i int, b []byte) { s.setRecords(i, b) }

// SetErrorCode makes Splice write code as partition i's error code; its
// error message is kept.
func (s *ShareFetchScan) SetErrorCode(i int, code int16) { s.setErrorCode(i, code) }

// Splice appends the edited body to dst in one pass, as FetchScan.Splice.
func (s *ShareFetchScan) Splice(dst []byte) (out []byte, changed bool) { return s.splice(dst) }

// Reset drops the scan's references to the body and to the records given
// to SetRecords.
func (s *ShareFetchScan) Reset() { s.drop() }

// ShareFetchWalker walks ShareFetch response bodies (api key 78, versions 0
// to ShareFetchMaxVersion, all flexible) the way FetchWalker walks Fetch
// responses. ShareFetch carries its node endpoints as a regular field after
// the topics, not as a tag; they are rewritten through Mapper. It is a
// ShareFetchScan with a callback per partition; new code uses the scan.
//
// A ShareFetchWalker is reusable but not safe for concurrent use.
type ShareFetchWalker struct {
	// Mapper maps node endpoints; nil drops them all.
	Mapper AddressMapper

	p    ShareFetchPartition
	scan ShareFetchScan
}

// Walk reads the ShareFetch response body and calls fn (which may be nil)
// for every partition. Results are as for FetchWalker.Walk: changed=false
// means forward the original; otherwise the new body is appended to dst. A
// malformed body is found before fn is called.
func (w *ShareFetchWalker) Walk(dst, body []byte, version int16, fn ShareFetchFunc) (out []byte, changed bool, err error) {
	s := &w.scan
	if err := s.Scan(body, version, w.Mapper); err != nil {
		return dst, false, err
	}
	sp := &s.sp
	sp.start(dst, body)
	p := &w.p
	for i := range s.parts {
		if fn == nil {
			break
		}
		*p = ShareFetchPartition{
			TopicID: s.TopicID(i), Partition: s.Partition(i), ErrorCode: s.errorCode(i),
			AcknowledgeErrorCode: s.AcknowledgeErrorCode(i), Records: s.records(i),
		}
		if err := fn(p); err != nil {
			sp.finish()
			*p = ShareFetchPartition{}
			s.Reset()
			return dst, false, fmt.Errorf("share fetch response v%d partition entry %d: %w", version, i, err)
		}
		s.spliceEdits(sp, i, p.setError, p.newError, p.setRecords, p.newRecords) // copies the records now
	}
	s.spliceRepls(sp)
	out, changed = sp.finish()
	*p = ShareFetchPartition{}
	s.Reset()
	return out, changed, nil
}

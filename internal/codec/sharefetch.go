package codec

import "fmt"

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

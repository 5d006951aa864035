package codec

import (
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
)

// FetchPartition is one partition of a Fetch response as the walker sees it.
// The walker reuses one FetchPartition for every partition: its fields, and
// the memory Topic and Records point into, are valid only during the
// callback. Copy what must outlive it.
type FetchPartition struct {
	Topic   string   // topic name, versions 0-12; aliases the body
	TopicID [16]byte // topic id, versions 13+

	Partition            int32
	ErrorCode            int16
	HighWatermark        int64
	LastStableOffset     int64 // -1 before v4
	LogStartOffset       int64 // -1 before v5
	PreferredReadReplica int32 // -1 before v11

	// Records is the partition's record batches as the broker sent them
	// (nil when null). The last batch may be partial: brokers cut the
	// response at the requested byte limit.
	Records []byte

	newRecords []byte
	setRecords bool
	newError   int16
	setError   bool
}

// SetRecords replaces the partition's records with b (nil writes a null
// array, an empty non-nil slice an empty one). b is copied before the walker
// moves on, so the caller may reuse its buffer for the next partition.
func (p *FetchPartition) SetRecords(b []byte) {
	p.newRecords, p.setRecords = b, true
}

// SetErrorCode replaces the partition's error code, for example with
// RESOURCE_NOT_FOUND (91) together with SetRecords([]byte{}).
func (p *FetchPartition) SetErrorCode(code int16) {
	p.newError, p.setError = code, true
}

// FetchFunc is called for every partition of a Fetch response, in wire order.
// Returning an error stops the walk; Walk returns that error wrapped.
type FetchFunc func(p *FetchPartition) error

// FetchWalker walks Fetch response bodies (api key 1, versions 0 to
// FetchMaxVersion), lets a callback replace records and error codes, and
// rewrites the KIP-951 node endpoints (top-level tag 0) through Mapper.
//
// A FetchWalker is reusable but not safe for concurrent use; with one walker
// per connection, an unchanged response costs no allocation.
type FetchWalker struct {
	// Mapper maps node endpoints; nil drops them all.
	Mapper AddressMapper

	p       FetchPartition
	sp      splicer
	scratch []byte
}

// Walk reads the Fetch response body of the given version and calls fn (which
// may be nil) for every partition.
//
// If nothing changed, changed is false and out is dst: the caller forwards
// the original frame. Otherwise the new body is appended to dst in one pass:
// unchanged stretches of body are copied in bulk, only replaced fields are
// encoded. Node endpoints the mapper does not know are dropped.
//
// On error out is dst and fn may already have seen some partitions.
func (w *FetchWalker) Walk(dst, body []byte, version int16, fn FetchFunc) (out []byte, changed bool, err error) {
	if version < 0 || version > FetchMaxVersion {
		return dst, false, fmt.Errorf("fetch response v%d: %w", version, ErrUnknownVersion)
	}
	w.sp.start(dst, body)
	err = w.walk(body, version, fn)
	out, changed = w.sp.finish()
	w.p = FetchPartition{} // drop references to body and records
	if err != nil {
		return dst, false, err
	}
	return out, changed, nil
}

func (w *FetchWalker) walk(body []byte, version int16, fn FetchFunc) error {
	r := newBodyReader(body, version >= fetchFirstFlexible)
	if version >= 1 {
		r.Int32() // throttle
	}
	if version >= 7 {
		r.Int16() // error code
		r.Int32() // session id
	}
	topics, _ := r.arrayLen()
	p := &w.p
	for t := 0; t < topics && r.Ok(); t++ {
		if version >= fetchFirstTopicID {
			p.Topic, p.TopicID = "", r.Uuid()
		} else {
			p.Topic, p.TopicID = bytesString(r.str()), [16]byte{}
		}
		parts, _ := r.arrayLen()
		for i := 0; i < parts && r.Ok(); i++ {
			if err := w.partition(&r, version, fn); err != nil {
				return fmt.Errorf("fetch response v%d topic %d partition %d: %w", version, t, i, err)
			}
		}
		r.skipTags()
	}
	if !r.Ok() {
		return fmt.Errorf("fetch response v%d: topics: %w", version, ErrMalformed)
	}
	if r.flex {
		w.topLevelTags(&r)
		if !r.Ok() {
			return fmt.Errorf("fetch response v%d: tagged fields: %w", version, ErrMalformed)
		}
	}
	if len(r.Src) != 0 {
		return fmt.Errorf("fetch response v%d: %d bytes after the message: %w", version, len(r.Src), ErrMalformed)
	}
	return nil
}

// partition reads one partition, calls fn and applies what it set.
func (w *FetchWalker) partition(r *bodyReader, version int16, fn FetchFunc) error {
	p := &w.p
	p.Partition = r.Int32()
	errAt := r.off()
	p.ErrorCode = r.Int16()
	p.HighWatermark = r.Int64()
	p.LastStableOffset, p.LogStartOffset, p.PreferredReadReplica = -1, -1, -1
	if version >= 4 {
		p.LastStableOffset = r.Int64()
	}
	if version >= 5 {
		p.LogStartOffset = r.Int64()
	}
	if version >= 4 {
		aborted, _ := r.arrayLen()
		for j := 0; j < aborted && r.Ok(); j++ {
			r.Int64() // producer id
			r.Int64() // first offset
			r.skipTags()
		}
	}
	if version >= 11 {
		p.PreferredReadReplica = r.Int32()
	}
	recordsAt := r.off()
	p.Records = r.nullableBytes()
	recordsEnd := r.off()
	r.skipTags() // diverging epoch, current leader, snapshot id: no addresses
	if !r.Ok() {
		return ErrMalformed
	}
	p.setRecords, p.setError, p.newRecords = false, false, nil
	if fn == nil {
		return nil
	}
	if err := fn(p); err != nil {
		return err
	}
	if p.setError && p.newError != p.ErrorCode {
		w.sp.replace(errAt, errAt+2, 2)
		w.sp.out = kbin.AppendInt16(w.sp.out, p.newError)
	}
	if p.setRecords {
		w.sp.replace(recordsAt, recordsEnd, len(p.newRecords)+5)
		w.sp.out = appendNullableBytes(w.sp.out, p.newRecords, r.flex)
	}
	p.Records, p.newRecords = nil, nil
	return nil
}

// topLevelTags reads the response's tagged fields and rewrites tag 0, the
// node endpoints (KIP-951, v16+: node id, host, port, rack, tags). kmsg
// decodes tag 0 as endpoints in every flexible version, so it is rewritten in
// every flexible version here too.
func (w *FetchWalker) topLevelTags(r *bodyReader) {
	n := r.Uvarint()
	if !r.Ok() || int64(n) > int64(len(r.Src))/2 { // a tag takes two bytes or more
		r.fail()
		return
	}
	for ; n > 0 && r.Ok(); n-- {
		key := r.Uvarint()
		sizeAt := r.off()
		size := r.Uvarint()
		if !r.Ok() || int64(size) > int64(len(r.Src)) {
			r.fail()
			return
		}
		data := r.Span(int(size))
		if key != 0 {
			continue
		}
		sub := newBodyReader(data, true)
		var changed bool
		w.scratch, changed = rewriteEndpoints(w.scratch[:0], &sub, w.Mapper, endpointLayout{rack: true})
		if !sub.Ok() || len(sub.Src) != 0 {
			r.fail()
			return
		}
		if changed {
			w.sp.replace(sizeAt, r.off(), len(w.scratch)+5)
			w.sp.out = kbin.AppendUvarint(w.sp.out, uint32(len(w.scratch)))
			w.sp.out = append(w.sp.out, w.scratch...)
		}
	}
}

// splicer builds a changed body lazily: nothing is copied until the first
// replacement, and then every unchanged stretch of the original is copied in
// one append.
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

package codec

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

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

// ShareFetchWalker walks ShareFetch response bodies (api key 78, versions 0
// to ShareFetchMaxVersion, all flexible) the way FetchWalker walks Fetch
// responses. ShareFetch carries its node endpoints as a regular field after
// the topics, not as a tag; they are rewritten through Mapper.
//
// A ShareFetchWalker is reusable but not safe for concurrent use.
type ShareFetchWalker struct {
	// Mapper maps node endpoints; nil drops them all.
	Mapper AddressMapper

	p       ShareFetchPartition
	sp      splicer
	scratch []byte
}

// Walk reads the ShareFetch response body and calls fn (which may be nil)
// for every partition. Results are as for FetchWalker.Walk: changed=false
// means forward the original; otherwise the new body is appended to dst.
func (w *ShareFetchWalker) Walk(dst, body []byte, version int16, fn ShareFetchFunc) (out []byte, changed bool, err error) {
	if version < 0 || version > ShareFetchMaxVersion {
		return dst, false, fmt.Errorf("share fetch response v%d: %w", version, ErrUnknownVersion)
	}
	w.sp.start(dst, body)
	err = w.walk(body, version, fn)
	out, changed = w.sp.finish()
	w.p = ShareFetchPartition{}
	if err != nil {
		return dst, false, err
	}
	return out, changed, nil
}

func (w *ShareFetchWalker) walk(body []byte, version int16, fn ShareFetchFunc) error {
	r := newBodyReader(body, true)
	r.Int32()       // throttle
	r.Int16()       // error code
	r.nullableStr() // error message
	if version >= 1 {
		r.Int32() // acquisition lock timeout
	}
	topics, _ := r.arrayLen()
	for t := 0; t < topics && r.Ok(); t++ {
		w.p.TopicID = r.Uuid()
		parts, _ := r.arrayLen()
		for i := 0; i < parts && r.Ok(); i++ {
			if err := w.partition(&r, fn); err != nil {
				return fmt.Errorf("share fetch response v%d topic %d partition %d: %w", version, t, i, err)
			}
		}
		r.skipTags()
	}
	if !r.Ok() {
		return fmt.Errorf("share fetch response v%d: topics: %w", version, ErrMalformed)
	}
	endpointsAt := r.off()
	var changed bool
	w.scratch, changed = rewriteEndpoints(w.scratch[:0], &r, w.Mapper, endpointLayout{rack: true})
	if !r.Ok() {
		return fmt.Errorf("share fetch response v%d: node endpoints: %w", version, ErrMalformed)
	}
	if changed {
		w.sp.replace(endpointsAt, r.off(), len(w.scratch))
		w.sp.out = append(w.sp.out, w.scratch...)
	}
	r.skipTags()
	if !r.Ok() {
		return fmt.Errorf("share fetch response v%d: tagged fields: %w", version, ErrMalformed)
	}
	if len(r.Src) != 0 {
		return fmt.Errorf("share fetch response v%d: %d bytes after the message: %w", version, len(r.Src), ErrMalformed)
	}
	return nil
}

// partition reads one partition: partition, error code, error message,
// acknowledge error code and message, current leader (id, epoch, tags),
// records, acquired records (first, last, delivery count, tags), tags.
func (w *ShareFetchWalker) partition(r *bodyReader, fn ShareFetchFunc) error {
	p := &w.p
	p.Partition = r.Int32()
	errAt := r.off()
	p.ErrorCode = r.Int16()
	r.nullableStr()
	p.AcknowledgeErrorCode = r.Int16()
	r.nullableStr()
	r.Int32() // current leader id
	r.Int32() // current leader epoch
	r.skipTags()
	recordsAt := r.off()
	p.Records = r.nullableBytes()
	recordsEnd := r.off()
	acquired, _ := r.arrayLen()
	for j := 0; j < acquired && r.Ok(); j++ {
		r.Int64() // first offset
		r.Int64() // last offset
		r.Int16() // delivery count
		r.skipTags()
	}
	r.skipTags()
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
		w.sp.out = appendNullableBytes(w.sp.out, p.newRecords, true)
	}
	p.Records, p.newRecords = nil, nil
	return nil
}

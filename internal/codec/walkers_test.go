package codec

import (
	"encoding/binary"
	"fmt"
)

// The per-partition walkers, FetchWalker and ShareFetchWalker, were the
// API before the scans. No code outside tests uses them any more; they stay
// here as the test oracle of the scans' edit-by-index and Splice: they
// splice each partition's edits as the callback makes them, a separate path
// to the same output (TestFetchScanEveryVersion, FuzzFetchScan,
// TestShareFetchScanEveryVersion, FuzzShareFetchScan), and the older walker
// tests (fetch_test.go, sharefetch_test.go) check the layout through them.

// fill sets p to partition i's fields (the FetchWalker view), with the
// topic given (the caller reads it once per topic).
func (s *FetchScan) fill(p *FetchPartition, i int, topic string, id [16]byte) {
	sp := &s.parts[i]
	// Field by field: a composite literal would be copied in with a
	// runtime call (the struct holds pointers).
	p.Topic, p.TopicID = topic, id
	p.Partition = s.int32At(sp.errAt - 4)
	p.ErrorCode = s.int16At(sp.errAt)
	p.HighWatermark = s.int64At(sp.errAt + 2)
	p.LastStableOffset, p.LogStartOffset, p.PreferredReadReplica = -1, -1, -1
	if s.version >= 4 {
		p.LastStableOffset = s.int64At(sp.errAt + 10)
	}
	if s.version >= 5 {
		p.LogStartOffset = s.int64At(sp.errAt + 18)
	}
	if s.version >= 11 {
		p.PreferredReadReplica = s.int32At(sp.recordsAt - 4)
	}
	p.Records = s.records(i)
	p.newRecords, p.setRecords, p.setError = nil, false, false
}

// FetchPartition is one partition of a Fetch response as FetchWalker's
// callback sees it. The walker reuses one FetchPartition for every
// partition: its fields, and the memory Topic and Records point into, are
// valid only during the callback. Copy what must outlive it.
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
// rewrites the KIP-951 node endpoints (top-level tag 0) through Mapper. It
// is a FetchScan with a callback per partition; new code uses FetchScan.
//
// A FetchWalker is reusable but not safe for concurrent use; with one walker
// per connection, an unchanged response costs no allocation.
type FetchWalker struct {
	// Mapper maps node endpoints; nil drops them all.
	Mapper AddressMapper

	p    FetchPartition
	scan FetchScan
}

// Walk reads the Fetch response body of the given version and calls fn (which
// may be nil) for every partition.
//
// If nothing changed, changed is false and out is dst: the caller forwards
// the original frame. Otherwise the new body is appended to dst in one pass:
// unchanged stretches of body are copied in bulk, only replaced fields are
// encoded. Node endpoints the mapper does not know are dropped.
//
// A malformed body is found before fn is called. On error out is dst; on an
// error from fn, fn has seen the partitions before it.
func (w *FetchWalker) Walk(dst, body []byte, version int16, fn FetchFunc) (out []byte, changed bool, err error) {
	s := &w.scan
	if err := s.Scan(body, version, w.Mapper); err != nil {
		return dst, false, err
	}
	if fn == nil {
		out, changed = s.Splice(dst)
		s.Reset()
		return out, changed, nil
	}
	sp := &s.sp
	sp.start(dst, body)
	p := &w.p
	var topic string
	var id [16]byte
	for i := range s.parts {
		if i == 0 || s.parts[i].topicAt != s.parts[i-1].topicAt {
			topic, id = s.Topic(i), s.TopicID(i)
		}
		s.fill(p, i, topic, id)
		if err := fn(p); err != nil {
			sp.finish()
			*p = FetchPartition{}
			s.Reset()
			return dst, false, fmt.Errorf("fetch response v%d partition entry %d: %w", version, i, err)
		}
		s.spliceEdits(sp, i, p.setError, p.newError, p.setRecords, p.newRecords) // copies the records now
	}
	s.spliceRepls(sp)
	out, changed = sp.finish()
	*p = FetchPartition{} // drop references to body and records
	s.Reset()
	return out, changed, nil
}

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

func (s *partScan) int64At(at int32) int64 { return int64(binary.BigEndian.Uint64(s.body[at:])) }

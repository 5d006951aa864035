package codec

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

// fetchLayout is the Fetch response body (api key 1, versions 0 to
// FetchMaxVersion), written once for buffers (FetchScan) and streams
// (FetchStream) alike. The caller checks c.ok() and that no byte is left.
func fetchLayout(c *cursor, version int16) {
	if version >= 1 {
		c.fixed(4) // throttle
	}
	if version >= 7 {
		c.fixed(2 + 4) // error code, session id
	}
	topics := c.count()
	for t := 0; t < topics && c.ok(); t++ {
		topicAt := c.off()
		if version >= fetchFirstTopicID {
			c.fixed(16)
		} else {
			c.str()
		}
		parts := c.count()
		for i := 0; i < parts && c.ok(); i++ {
			c.fixed(4) // partition
			errAt := c.off()
			c.fixed(2 + 8) // error code, high watermark
			if version >= 4 {
				c.fixed(8) // last stable offset
			}
			if version >= 5 {
				c.fixed(8) // log start offset
			}
			if version >= 4 {
				aborted := c.count()
				for j := 0; j < aborted && c.ok(); j++ {
					c.fixed(8 + 8) // producer id, first offset
					c.tags()
				}
			}
			if version >= 11 {
				c.fixed(4) // preferred read replica
			}
			recordsAt := c.off()
			dataAt := c.nullableBytes()
			end := c.off()
			c.tags() // diverging epoch, current leader, snapshot id: no addresses
			c.partition(topicAt, errAt, recordsAt, dataAt, end)
		}
		c.tags()
	}
	if version >= fetchFirstFlexible && c.ok() {
		c.topLevelTags()
	}
}

// FetchScan is a Fetch response body (api key 1, versions 0 to
// FetchMaxVersion) walked once: Scan records where every partition lies
// and rewrites the node endpoints; callers then edit partitions by index
// and Splice builds the new body in one copy pass.
//
// It records positions, not copies: what it returns aliases the body, which
// must stay unchanged until the next Scan or Reset. Its storage is reused,
// so a steady state allocates nothing. Not safe for concurrent use.
type FetchScan struct {
	partScan
	version int16
	mapper  AddressMapper
	tagsAt  int // where the top-level tagged fields start (flexible versions)
}

// Scan walks body, a Fetch response body of the given version, recording
// its partitions in wire order and rewriting the KIP-951 node endpoints
// (top-level tag 0, in every flexible version, as kmsg decodes it) through
// m; endpoints m does not know are dropped, a nil m drops them all. On error
// the scan is empty.
func (s *FetchScan) Scan(body []byte, version int16, m AddressMapper) error {
	if version < 0 || version > FetchMaxVersion {
		s.drop()
		return fmt.Errorf("fetch response v%d: %w", version, ErrUnknownVersion)
	}
	if tooLarge(body) {
		s.drop()
		return fmt.Errorf("fetch response v%d: %d bytes: %w", version, len(body), ErrMalformed)
	}
	flex := version >= fetchFirstFlexible
	s.reset(body, flex)
	s.version, s.mapper = version, m
	c := cursor{b: body, end: len(body), flex: flex, scan: s}
	fetchLayout(&c, version)
	err, left := c.err, len(c.b)
	s.mapper = nil
	switch {
	case err != nil:
		s.drop()
		return fmt.Errorf("fetch response v%d: %w", version, err)
	case left != 0:
		s.drop()
		return fmt.Errorf("fetch response v%d: %d bytes after the message: %w", version, left, ErrMalformed)
	}
	return nil
}

// Len is the number of partitions scanned.
func (s *FetchScan) Len() int { return len(s.parts) }

// Topic is partition i's topic name (versions 0-12; "" from 13). It aliases
// the body.
func (s *FetchScan) Topic(i int) string {
	if s.version >= fetchFirstTopicID {
		return ""
	}
	return s.strAt(s.parts[i].topicAt)
}

// TopicID is partition i's topic id (versions 13+; zero before).
func (s *FetchScan) TopicID(i int) [16]byte {
	if s.version < fetchFirstTopicID {
		return [16]byte{}
	}
	return s.uuidAt(s.parts[i].topicAt)
}

// Partition is partition i's partition index.
func (s *FetchScan) Partition(i int) int32 { return s.int32At(s.parts[i].errAt - 4) }

// ErrorCode is partition i's error code as the broker sent it.
func (s *FetchScan) ErrorCode(i int) int16 { return s.errorCode(i) }

// Records is partition i's record batches as the broker sent them (nil when
// null). The last batch may be partial: brokers cut the response at the
// requested byte limit.
func (s *FetchScan) Records(i int) []byte { return s.records(i) }

// SetRecords makes Splice write b (nil writes a null array, an empty
// non-nil slice an empty one) in place of partition i's records. b must
// stay valid until Splice has run.
func (s *FetchScan) SetRecords(i int, b []byte) { s.setRecords(i, b) }

// SetErrorCode makes Splice write code as partition i's error code, for
// example RESOURCE_NOT_FOUND (91) together with SetRecords(i, []byte{}).
func (s *FetchScan) SetErrorCode(i int, code int16) { s.setErrorCode(i, code) }

// Splice appends the edited body to dst in one pass: unchanged stretches of
// the body are copied in bulk, only replaced fields are encoded. If nothing
// changed (no edit that differs, endpoints as they were), changed is false
// and out is dst: forward the original.
func (s *FetchScan) Splice(dst []byte) (out []byte, changed bool) { return s.splice(dst) }

// Reset drops the scan's references to the body and to the records given
// to SetRecords.
func (s *FetchScan) Reset() { s.drop() }

// partition records a partition into the scan, if any.
func (c *cursor) partition(topicAt, errAt, recordsAt, dataAt, end int) {
	if c.scan != nil && c.err == nil {
		c.scan.add(scannedPart{topicAt: int32(topicAt), errAt: int32(errAt), recordsAt: int32(recordsAt), dataAt: int32(dataAt), end: int32(end)})
	}
}

// topLevelTags reads a Fetch response's own tagged fields, rewriting the
// node endpoints (tag 0): a scan records the rewrite, a stream writes it.
func (c *cursor) topLevelTags() {
	switch {
	case c.st != nil:
		c.st.topLevelTags(c)
	case c.scan != nil:
		c.scan.topLevelTags(c)
	default:
		c.tags()
	}
}

// topLevelTags reads the response's tagged fields and rewrites tag 0, the
// node endpoints (KIP-951, v16+: node id, host, port, rack, tags). kmsg
// decodes tag 0 as endpoints in every flexible version, so it is rewritten in
// every flexible version here too, every copy of it.
func (s *FetchScan) topLevelTags(cur *cursor) {
	s.tagsAt = cur.off()
	c := &bodyReader{Reader: kbin.Reader{Src: cur.b}, body: s.body, flex: true}
	defer func() {
		if !c.Ok() {
			cur.fail(fmt.Errorf("tagged fields: %w", ErrMalformed))
			return
		}
		cur.advance(c.off() - cur.off())
	}()
	n := c.Uvarint()
	if !c.Ok() || int64(n) > int64(len(c.Src))/2 { // a tag takes two bytes or more
		c.fail()
		return
	}
	for ; n > 0 && c.Ok(); n-- {
		key := c.Uvarint()
		sizeAt := c.off()
		size := c.Uvarint()
		if !c.Ok() || int64(size) > int64(len(c.Src)) {
			c.fail()
			return
		}
		data := c.Span(int(size))
		if key != 0 {
			continue
		}
		sub := newBodyReader(data, true)
		var changed bool
		s.tmp, changed = rewriteEndpoints(s.tmp[:0], &sub, s.mapper, endpointLayout{rack: true})
		if !sub.Ok() || len(sub.Src) != 0 {
			c.fail()
			return
		}
		if changed {
			at := len(s.scratch)
			s.scratch = kbin.AppendUvarint(s.scratch, uint32(len(s.tmp)))
			s.scratch = append(s.scratch, s.tmp...)
			s.repls = append(s.repls, bodyRepl{int32(sizeAt), int32(c.off()), int32(at), int32(len(s.scratch) - at)})
		}
	}
}

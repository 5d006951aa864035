package codec

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kbin"

	"github.com/kseal/kseal/internal/frame"
)

// FetchStream forwards Fetch response bodies while they arrive, for a proxy
// that changes nothing in them but the KIP-951 node endpoints: a consumer
// then gets the first bytes of a large fetch without waiting for the last
// ones to reach the proxy, and the records never sit in a buffer of their
// own.
//
// The frame's size has gone out before the body is read, so the rewrite of
// the endpoints (the top-level tagged fields, at the very end) must keep the
// section's length: a shorter one is padded with an unknown tag (clients
// skip tags they do not know); one that cannot be made to fit, e.g. because
// the proxy's host name is longer than the broker's, has its endpoints
// replaced by padding instead. Clients then find a moved partition's leader
// through Metadata, as they did before KIP-951. A broker address is never
// forwarded.
//
// Like FetchWalker it reads untrusted bytes with every count checked
// against the bytes left. A malformed body is found only after part of it
// has been forwarded: the caller must then close the client connection.
// A FetchStream is reusable but not safe for concurrent use.
type FetchStream struct {
	// Mapper maps node endpoints; nil drops them all.
	Mapper AddressMapper

	s       streamer
	tail    []byte
	scratch []byte
	tags    []Tag
	out     []byte
}

// ErrTagsNoFit reports tagged fields that could be neither rewritten nor
// neutralised within their original length (it takes unusual unknown tags).
var ErrTagsNoFit = errors.New("rewritten tagged fields do not fit their original length")

// Forward copies a Fetch response body of size bytes (the frame after the
// response header) of the given version from src to dst, rewriting the node
// endpoints in place. It writes exactly size bytes when it succeeds; on
// error an unknown prefix has been written.
func (f *FetchStream) Forward(dst io.Writer, src *bufio.Reader, size int, version int16) error {
	if version < 0 || version > FetchMaxVersion {
		return fmt.Errorf("fetch response v%d: %w", version, ErrUnknownVersion)
	}
	s := &f.s
	*s = streamer{src: src, dst: dst, left: size}
	flex := version >= fetchFirstFlexible
	if version >= 1 {
		s.copy(4) // throttle
	}
	if version >= 7 {
		s.copy(6) // error code, session id
	}
	topics := s.arrayLen(flex)
	for t := 0; t < topics && s.err == nil; t++ {
		if version >= fetchFirstTopicID {
			s.copy(16)
		} else {
			s.skipString(flex)
		}
		parts := s.arrayLen(flex)
		for i := 0; i < parts && s.err == nil; i++ {
			s.copy(4 + 2 + 8) // partition, error code, high watermark
			if version >= 4 {
				s.copy(8) // last stable offset
			}
			if version >= 5 {
				s.copy(8) // log start offset
			}
			if version >= 4 {
				aborted := s.arrayLen(flex)
				for j := 0; j < aborted && s.err == nil; j++ {
					s.copy(16) // producer id, first offset
					if flex {
						s.skipTags()
					}
				}
			}
			if version >= 11 {
				s.copy(4) // preferred read replica
			}
			s.skipBytes(flex) // the records, streamed
			if flex {
				s.skipTags() // diverging epoch, current leader, snapshot id: no addresses
			}
		}
		if flex {
			s.skipTags()
		}
	}
	if s.err == nil && flex {
		f.forwardTopLevelTags()
	}
	if s.err == nil && s.left != 0 {
		s.fail(fmt.Errorf("%d bytes after the message: %w", s.left, ErrMalformed))
	}
	if s.err != nil {
		err := s.err
		*s = streamer{}
		return fmt.Errorf("fetch response v%d: %w", version, err)
	}
	*s = streamer{}
	return nil
}

// forwardTopLevelTags reads the rest of the body (the top-level tagged
// fields) and writes it with the node endpoints (tag 0) rewritten, at the
// same length.
func (f *FetchStream) forwardTopLevelTags() {
	s := &f.s
	f.tail = s.read(f.tail[:0], s.left)
	if s.err != nil {
		return
	}
	out, err := f.rewriteTags(f.tail)
	if err != nil {
		s.fail(err)
		return
	}
	s.write(out)
}

// rewriteTags returns tail (a whole tagged-field section) with tag 0's
// endpoints mapped, padded to tail's length, or tail itself when nothing
// changes.
func (f *FetchStream) rewriteTags(tail []byte) ([]byte, error) {
	r := kbin.Reader{Src: tail}
	var ok bool
	f.tags, ok = ReadTags(&r, f.tags)
	if !ok || len(r.Src) != 0 {
		return nil, fmt.Errorf("tagged fields: %w", ErrMalformed)
	}
	// Tag 0 is the endpoints. A broker sends it at most once; should it
	// come twice, every copy is rewritten, as FetchWalker does.
	type span struct{ tag, from, to int }
	var spans [4]span
	mapped := spans[:0]
	changed := false
	f.scratch = f.scratch[:0]
	for i, t := range f.tags {
		if t.Key != 0 {
			continue
		}
		sub := newBodyReader(t.Data, true)
		from := len(f.scratch)
		var ch bool
		f.scratch, ch = rewriteEndpoints(f.scratch, &sub, f.Mapper, endpointLayout{rack: true})
		if !sub.Ok() || len(sub.Src) != 0 {
			return nil, fmt.Errorf("node endpoints: %w", ErrMalformed)
		}
		changed = changed || ch
		mapped = append(mapped, span{i, from, len(f.scratch)})
	}
	if !changed {
		return tail, nil
	}
	for _, m := range mapped {
		f.tags[m.tag].Data = f.scratch[m.from:m.to]
	}
	if out, ok := padTags(f.out[:0], f.tags, len(tail)); ok {
		f.out = out
		return out, nil
	}
	// The mapped endpoints do not fit: drop them, keep the length.
	kept := f.tags[:0]
	for _, t := range f.tags {
		if t.Key != 0 {
			kept = append(kept, t)
		}
	}
	f.tags = kept
	out, ok := padTags(f.out[:0], f.tags, len(tail))
	f.out = out
	if !ok {
		return nil, ErrTagsNoFit
	}
	return out, nil
}

// padTags appends the tagged-field section holding tags and, if it is
// shorter than size, one more unknown tag, keyed after every other (and
// never 0), whose zero bytes pad it to exactly size bytes. ok is false when no such
// encoding exists.
func padTags(dst []byte, tags []Tag, size int) ([]byte, bool) {
	base := len(dst)
	dst = AppendTags(dst, tags)
	gap := size - (len(dst) - base)
	if gap == 0 {
		return dst, true
	}
	if gap < 0 {
		return dst[:base], false
	}
	key := uint32(1) // never 0: that is the endpoints' tag
	for _, t := range tags {
		if t.Key == 1<<32-1 {
			return dst[:base], false
		}
		key = max(key, t.Key+1)
	}
	// One more tag: the count may take another byte, then the key, the
	// data's length and the data.
	count := kbin.UvarintLen(uint32(len(tags)+1)) - kbin.UvarintLen(uint32(len(tags)))
	room := gap - count - kbin.UvarintLen(key)
	for n := max(room-5, 0); n <= room; n++ {
		if kbin.UvarintLen(uint32(n))+n != room {
			continue
		}
		dst = dst[:base]
		dst = kbin.AppendUvarint(dst, uint32(len(tags)+1))
		for _, t := range tags {
			dst = kbin.AppendUvarint(dst, t.Key)
			dst = kbin.AppendUvarint(dst, uint32(len(t.Data)))
			dst = append(dst, t.Data...)
		}
		dst = kbin.AppendUvarint(dst, key)
		dst = kbin.AppendUvarint(dst, uint32(n))
		for i := 0; i < n; i++ {
			dst = append(dst, 0)
		}
		return dst, true
	}
	return dst[:base], false
}

// streamer reads a message from src field by field, bounded by the bytes
// left in its frame, and copies what it reads to dst. Fixed-size fields and
// lengths go through src's buffer; large byte fields are copied in chunks
// of at most src's buffer size, so nothing is buffered beyond that.
type streamer struct {
	src  *bufio.Reader
	dst  io.Writer
	left int
	err  error
}

func (s *streamer) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// peek returns the next n bytes (n at most src's buffer size) without
// consuming them.
func (s *streamer) peek(n int) []byte {
	if s.err != nil {
		return nil
	}
	if n > s.left {
		s.fail(fmt.Errorf("%d bytes needed, %d left: %w", n, s.left, ErrMalformed))
		return nil
	}
	b, err := s.src.Peek(n)
	if err != nil {
		s.fail(frame.NoEOF(err))
		return nil
	}
	return b
}

// copy forwards the next n bytes (n small).
func (s *streamer) copy(n int) {
	if b := s.peek(n); b != nil {
		s.write(b)
		s.consume(n)
	}
}

func (s *streamer) consume(n int) {
	if s.err != nil {
		return
	}
	if _, err := s.src.Discard(n); err != nil {
		s.fail(frame.NoEOF(err))
		return
	}
	s.left -= n
}

func (s *streamer) write(b []byte) {
	if s.err != nil {
		return
	}
	if _, err := s.dst.Write(b); err != nil {
		s.fail(&frame.WriteError{Err: err})
	}
}

// stream forwards the next n bytes in chunks.
func (s *streamer) stream(n int) {
	if s.err == nil && n > s.left {
		s.fail(fmt.Errorf("field of %d bytes, %d left: %w", n, s.left, ErrMalformed))
	}
	if s.err != nil {
		return
	}
	if err := frame.Forward(s.dst, s.src, n); err != nil {
		s.fail(err)
		return
	}
	s.left -= n
}

// read appends the next n bytes to dst (consuming, not forwarding them).
func (s *streamer) read(dst []byte, n int) []byte {
	if s.err == nil && n > s.left {
		s.fail(fmt.Errorf("field of %d bytes, %d left: %w", n, s.left, ErrMalformed))
	}
	for n > 0 && s.err == nil {
		k := min(n, s.src.Size())
		dst = append(dst, s.peek(k)...)
		s.consume(k)
		n -= k
	}
	return dst
}

// uvarint forwards an unsigned varint and returns its value.
func (s *streamer) uvarint() uint32 {
	b := s.peek(min(5, s.left))
	if s.err != nil {
		return 0
	}
	v, n := binary.Uvarint(b)
	if n <= 0 || v > 1<<32-1 {
		s.fail(fmt.Errorf("bad varint: %w", ErrMalformed))
		return 0
	}
	s.copy(n)
	return uint32(v)
}

func (s *streamer) int16() int16 {
	b := s.peek(2)
	if b == nil {
		return 0
	}
	v := int16(binary.BigEndian.Uint16(b))
	s.copy(2)
	return v
}

func (s *streamer) int32() int32 {
	b := s.peek(4)
	if b == nil {
		return 0
	}
	v := int32(binary.BigEndian.Uint32(b))
	s.copy(4)
	return v
}

// arrayLen forwards an array length and returns the count (0 for null). A
// count that cannot fit in the bytes left is malformed.
func (s *streamer) arrayLen(flex bool) int {
	var n int64
	if flex {
		n = int64(s.uvarint()) - 1
	} else {
		n = int64(s.int32())
	}
	if s.err != nil || n == -1 || n == 0 { // -1: null
		return 0
	}
	if n < 0 || n > int64(s.left) {
		s.fail(fmt.Errorf("array of %d with %d bytes left: %w", n, s.left, ErrMalformed))
		return 0
	}
	return int(n)
}

// skipString forwards a (non-null) string.
func (s *streamer) skipString(flex bool) {
	var n int64
	if flex {
		n = int64(s.uvarint()) - 1
	} else {
		n = int64(s.int16())
	}
	if s.err == nil && n < 0 {
		s.fail(fmt.Errorf("null or negative string length: %w", ErrMalformed))
		return
	}
	s.stream(int(n))
}

// skipBytes forwards nullable bytes.
func (s *streamer) skipBytes(flex bool) {
	var n int64
	if flex {
		n = int64(s.uvarint()) - 1
	} else {
		n = int64(s.int32())
	}
	if s.err != nil || n < 0 { // null: -1, or any negative length, as Kafka reads it
		return
	}
	s.stream(int(n))
}

// skipTags forwards a tagged-field section.
func (s *streamer) skipTags() {
	n := s.uvarint()
	if s.err == nil && int64(n) > int64(s.left)/2 { // a tag takes two bytes or more
		s.fail(fmt.Errorf("%d tags with %d bytes left: %w", n, s.left, ErrMalformed))
	}
	for ; n > 0 && s.err == nil; n-- {
		s.uvarint() // key
		s.stream(int(s.uvarint()))
	}
}

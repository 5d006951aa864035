package codec

import (
	"bufio"
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
// It reads the body through the same layout and cursor as FetchScan
// (fetchLayout), so the two accept the same bodies, with every count checked
// against the bytes left. What it has read goes to dst in bulk, before it
// waits for more input, so a slow broker's bytes are not held back. A
// malformed body is found only after part of it has been forwarded: the
// caller must then close the client connection. A FetchStream is reusable
// but not safe for concurrent use.
type FetchStream struct {
	// Mapper maps node endpoints; nil drops them all.
	Mapper AddressMapper

	// The stream side of the cursor: win is src's buffered bytes from
	// offset winAt of the body. Bytes before winAt have been written to dst
	// and discarded from src; those from winAt to the cursor's off have
	// been read and go to dst at the next flush.
	src   *bufio.Reader
	dst   io.Writer
	size  int
	win   []byte
	winAt int
	cur   cursor

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
// error an unknown prefix has been written. It reads the body through the
// same layout as FetchScan.
func (f *FetchStream) Forward(dst io.Writer, src *bufio.Reader, size int, version int16) error {
	if version < 0 || version > FetchMaxVersion {
		return fmt.Errorf("fetch response v%d: %w", version, ErrUnknownVersion)
	}
	f.src, f.dst, f.size, f.win, f.winAt = src, dst, size, nil, 0
	c := &f.cur
	*c = cursor{flex: version >= fetchFirstFlexible, st: f}
	fetchLayout(c, version)
	f.flush(c)
	if c.err == nil && c.left() != 0 {
		c.fail(fmt.Errorf("%d bytes after the message: %w", c.left(), ErrMalformed))
	}
	err := c.err
	*c = cursor{}
	f.src, f.dst, f.win = nil, nil, nil
	if err != nil {
		return fmt.Errorf("fetch response v%d: %w", version, err)
	}
	return nil
}

// flush writes what the cursor has read of the window and drops it from
// src.
func (f *FetchStream) flush(c *cursor) {
	k := c.off() - f.winAt
	if k <= 0 || c.err != nil {
		return
	}
	if _, err := f.dst.Write(f.win[:k]); err != nil {
		c.fail(&frame.WriteError{Err: err})
		return
	}
	f.src.Discard(k) // buffered: cannot fail
	f.win, f.winAt = f.win[k:], c.off()
}

// refill makes n more bytes (within the body) available to the cursor:
// it flushes what was read, waits for n bytes and takes what src holds.
func (f *FetchStream) refill(c *cursor, n int) bool {
	f.flush(c)
	if c.err != nil {
		return false
	}
	if _, err := f.src.Peek(n); err != nil {
		c.fail(frame.NoEOF(err))
		return false
	}
	f.win, _ = f.src.Peek(min(f.src.Buffered(), c.left()))
	c.b, c.end = f.win, f.winAt+len(f.win)
	return true
}

// forward passes n bytes of a large field (more than the window holds)
// from src to dst in chunks of at most src's buffer size.
func (f *FetchStream) forward(c *cursor, n int) {
	f.flush(c)
	if c.err != nil {
		return
	}
	at := c.off()
	if err := frame.Forward(f.dst, f.src, n); err != nil {
		c.fail(err)
		return
	}
	f.win, f.winAt = nil, at+n
	c.b, c.end = nil, at+n
}

// skipTags passes a tagged-field section through the stream's cursor.
func (f *FetchStream) skipTags() {
	if _, ok := skipTagSection(cursorTags{&f.cur}); !ok {
		f.cur.fail(fmt.Errorf("tagged fields: %w", ErrMalformed))
	}
}

// topLevelTags reads the rest of the body (the top-level tagged fields)
// and writes it with the node endpoints (tag 0) rewritten, at the same
// length.
func (f *FetchStream) topLevelTags(c *cursor) {
	f.flush(c)
	if c.err != nil {
		return
	}
	f.tail = f.tail[:0]
	for n := c.left(); n > 0 && c.err == nil; {
		k := min(n, f.src.Size())
		b, err := f.src.Peek(k)
		if err != nil {
			c.fail(frame.NoEOF(err))
			return
		}
		f.tail = append(f.tail, b...)
		f.src.Discard(k)
		n -= k
	}
	end := c.off() + len(f.tail)
	f.win, f.winAt = nil, end
	c.b, c.end = nil, end
	out, err := f.rewriteTags(f.tail)
	if err != nil {
		c.fail(err)
		return
	}
	if _, err := f.dst.Write(out); err != nil {
		c.fail(&frame.WriteError{Err: err})
	}
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
	// come twice, every copy is rewritten, as FetchScan does.
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

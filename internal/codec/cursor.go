package codec

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

// cursor is what a message layout (fetchLayout) reads through, over a
// buffered body or over a stream alike. b holds the unread bytes at hand:
// for a buffer, the rest of the body; for a stream (st set), what the
// stream's read buffer holds of the frame, refilled by st when a field
// needs more (st forwards what was read before). Reads of fixed-size
// fields and lengths are plain slice operations on b, so the layout costs
// no indirect call per field; only a refill or a large field goes to st.
//
// Every count is checked against the bytes left before any loop runs.
// After a failure every read is a no-op and ok reports false.
type cursor struct {
	b    []byte
	end  int // offset in the message just past b
	err  error
	flex bool
	st   *FetchStream // nil for a buffer
	scan *FetchScan   // the buffered scan recording partitions, if any
}

func (c *cursor) ok() bool { return c.err == nil }

// off is the offset in the message of the next byte to read.
func (c *cursor) off() int { return c.end - len(c.b) }

func (c *cursor) fail(err error) {
	if c.err == nil {
		c.err = err
	}
	c.end -= len(c.b)
	c.b = nil
}

// left is the number of bytes of the message not yet read.
func (c *cursor) left() int {
	if c.st == nil {
		return len(c.b)
	}
	return c.st.size - c.off()
}

// need makes the next n bytes available in b.
func (c *cursor) need(n int) bool {
	return n <= len(c.b) || c.more(n)
}

// more is need's slow path: a stream refills, a buffer fails.
func (c *cursor) more(n int) bool {
	if c.err != nil {
		return false
	}
	if c.st == nil || n > c.left() {
		c.fail(fmt.Errorf("%d bytes needed, %d left: %w", n, c.left(), ErrMalformed))
		return false
	}
	return c.st.refill(c, n)
}

func (c *cursor) advance(n int) {
	c.b = c.b[n:]
}

// fixed passes over n bytes of fixed-size fields. n is at most 16, the
// smallest buffer a bufio.Reader has: a stream must hold them at once.
func (c *cursor) fixed(n int) {
	if c.need(n) {
		c.advance(n)
	}
}

func (c *cursor) int16() int16 {
	if !c.need(2) {
		return 0
	}
	v := int16(binary.BigEndian.Uint16(c.b))
	c.advance(2)
	return v
}

func (c *cursor) int32() int32 {
	if !c.need(4) {
		return 0
	}
	v := int32(binary.BigEndian.Uint32(c.b))
	c.advance(4)
	return v
}

func (c *cursor) uvarint() uint32 {
	if len(c.b) < 5 && !c.need(min(5, c.left())) {
		return 0
	}
	v, n := kbin.Uvarint(c.b)
	if n <= 0 {
		c.fail(fmt.Errorf("bad varint: %w", ErrMalformed))
		return 0
	}
	c.advance(n)
	return v
}

// skip passes over n bytes of a variable-size field: from b when they are
// at hand, else a buffer fails and a stream forwards them in chunks.
func (c *cursor) skip(n int) {
	switch {
	case c.err != nil:
	case n < 0 || n > c.left():
		c.fail(fmt.Errorf("field of %d bytes, %d left: %w", n, c.left(), ErrMalformed))
	case n <= len(c.b):
		c.advance(n)
	default:
		c.st.forward(c, n)
	}
}

// count reads an array length (0 for null). A count larger than the bytes
// left is malformed: every element takes a byte or more.
func (c *cursor) count() int {
	var n int64
	if c.flex {
		n = int64(c.uvarint()) - 1
	} else {
		n = int64(c.int32())
	}
	if c.err != nil || n == -1 {
		return 0
	}
	if n < 0 || n > int64(c.left()) {
		c.fail(fmt.Errorf("array of %d with %d bytes left: %w", n, c.left(), ErrMalformed))
		return 0
	}
	return int(n)
}

// str passes over a non-null string.
func (c *cursor) str() {
	var n int
	if c.flex {
		n = int(c.uvarint()) - 1
	} else {
		n = int(c.int16())
	}
	if c.err == nil && n < 0 {
		c.fail(fmt.Errorf("null or negative string length: %w", ErrMalformed))
		return
	}
	c.skip(n)
}

// nullableBytes passes over nullable bytes (records) and returns the offset
// of their data, -1 when null (any negative length, as Kafka reads it).
func (c *cursor) nullableBytes() int {
	var n int64
	if c.flex {
		n = int64(c.uvarint()) - 1
	} else {
		n = int64(c.int32())
	}
	if c.err != nil || n < 0 {
		return -1
	}
	at := c.off()
	c.skip(int(n))
	return at
}

// tags passes over a tagged-field section (flexible versions only).
func (c *cursor) tags() {
	if !c.flex || c.err != nil {
		return
	}
	if len(c.b) > 0 && c.b[0] == 0 { // no tags: the common case
		c.advance(1)
		return
	}
	if c.st != nil {
		c.st.skipTags() // through c.st.cur, which is c
		return
	}
	r := kbin.Reader{Src: c.b}
	if !SkipTags(&r) {
		c.fail(fmt.Errorf("tagged fields: %w", ErrMalformed))
		return
	}
	c.advance(len(c.b) - len(r.Src))
}

// cursorTags is a stream's cursor as a tagCursor. (A buffered cursor skips
// tags through SkipTags on its bytes: passing it here would move it to the
// heap.)
type cursorTags struct{ c *cursor }

func (t cursorTags) uvarint() (cursorTags, uint32) { return t, t.c.uvarint() }
func (t cursorTags) skip(n int) cursorTags         { t.c.skip(n); return t }
func (t cursorTags) left() int                     { return t.c.left() }
func (t cursorTags) ok() bool                      { return t.c.ok() }
func (t cursorTags) fail() cursorTags {
	t.c.fail(fmt.Errorf("tag count past the bytes left: %w", ErrMalformed))
	return t
}

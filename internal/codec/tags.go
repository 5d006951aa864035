// Package codec walks and rewrites the Kafka messages kseal must change, using
// bounded primitives from kbin. It never hands bytes to kmsg's decoders: kmsg
// v1.15 loops on untrusted tagged-field counts without checking that input
// remains (see docs/threat-model.md), so every count read here is checked
// against the bytes left before any loop runs.
package codec

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kbin"
)

// ErrMalformed reports bytes that do not form the message they claim to be.
var ErrMalformed = errors.New("malformed kafka message")

// SkipTags skips a tagged-field section (KIP-482) and reports whether it was
// well formed. Each tag takes at least two bytes (key and size), so a count
// larger than half the remaining input is rejected before looping.
func SkipTags(r *kbin.Reader) bool {
	c, ok := skipTagSection(kbinTags(*r))
	*r = kbin.Reader(c)
	return ok
}

// tagCursor is what skipTagSection reads through: a kbin.Reader (kbinTags)
// or a stream's cursor (cursorTags). Its methods take and return the cursor by
// value, so a reader on the caller's stack stays there (a method called
// through an interface or a generic dictionary would move its receiver to
// the heap).
type tagCursor[C any] interface {
	uvarint() (C, uint32)
	skip(n int) C // n bytes; more than are left fails
	left() int    // bytes left
	ok() bool
	fail() C
}

// skipTagSection is the one tagged-field skipper of this package: buffered
// bodies (bodyReader, SkipTags, a buffered cursor) and streams (a
// FetchStream's cursor) use it. The frame
// package keeps its own for headers: it cannot import codec, which imports
// it. Each tag takes at least two bytes (key and size), so a count larger
// than half the bytes left is rejected before looping.
func skipTagSection[C tagCursor[C]](c C) (C, bool) {
	c, n := c.uvarint()
	if !c.ok() {
		return c, false
	}
	if int64(n) > int64(c.left())/2 {
		return c.fail(), false
	}
	for ; n > 0 && c.ok(); n-- {
		c, _ = c.uvarint() // tag key
		var size uint32
		c, size = c.uvarint()
		if c.ok() {
			c = c.skip(int(size))
		}
	}
	return c, c.ok()
}

// kbinTags is a kbin.Reader as a tagCursor.
type kbinTags kbin.Reader

func (c kbinTags) uvarint() (kbinTags, uint32) {
	r := kbin.Reader(c)
	v := r.Uvarint()
	return kbinTags(r), v
}

func (c kbinTags) skip(n int) kbinTags {
	r := kbin.Reader(c)
	r.Span(n)
	return kbinTags(r)
}

func (c kbinTags) left() int      { return len(c.Src) }
func (c kbinTags) ok() bool       { return (*kbin.Reader)(&c).Ok() }
func (c kbinTags) fail() kbinTags { return c.skip(-1) }

// Tag is one raw tagged field.
type Tag struct {
	Key  uint32
	Data []byte
}

// ReadTags reads a tagged-field section into dst (reusing its storage),
// bounding the count the same way as SkipTags.
func ReadTags(r *kbin.Reader, dst []Tag) ([]Tag, bool) {
	dst = dst[:0]
	n := r.Uvarint()
	if !r.Ok() || int64(n) > int64(len(r.Src))/2 {
		return dst, false
	}
	for ; n > 0; n-- {
		key := r.Uvarint()
		size := r.Uvarint()
		if !r.Ok() || int64(size) > int64(len(r.Src)) {
			return dst, false
		}
		dst = append(dst, Tag{Key: key, Data: r.Span(int(size))})
	}
	return dst, r.Ok()
}

// AppendTags appends a tagged-field section holding tags.
func AppendTags(dst []byte, tags []Tag) []byte {
	dst = kbin.AppendUvarint(dst, uint32(len(tags)))
	for _, t := range tags {
		dst = kbin.AppendUvarint(dst, t.Key)
		dst = kbin.AppendUvarint(dst, uint32(len(t.Data)))
		dst = append(dst, t.Data...)
	}
	return dst
}

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
	n := r.Uvarint()
	if !r.Ok() || int64(n) > int64(len(r.Src))/2 {
		return false
	}
	for ; n > 0; n-- {
		r.Uvarint() // tag key
		size := r.Uvarint()
		if !r.Ok() || int64(size) > int64(len(r.Src)) {
			return false
		}
		r.Span(int(size))
	}
	return r.Ok()
}

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

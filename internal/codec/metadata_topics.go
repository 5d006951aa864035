package codec

import "fmt"

// MetadataTopicsFunc receives each topic of a Metadata response that has
// both a name and an id. name aliases the body: copy it to keep it.
type MetadataTopicsFunc func(name []byte, id [16]byte)

// walkMetadataTopics reads the rest of a Metadata response body (v10+) from
// r, positioned after the brokers, calling fn for each topic with a name and
// a non-zero id.
func walkMetadataTopics(r *bodyReader, version int16, fn MetadataTopicsFunc) error {
	r.nullableStr() // cluster id
	r.Int32()       // controller id
	n, _ := r.arrayLen()
	for i := 0; i < n && r.Ok(); i++ {
		r.Int16() // error code
		name, null := r.nullableStr()
		id := r.Uuid()
		r.Bool() // is internal
		parts, _ := r.arrayLen()
		for j := 0; j < parts && r.Ok(); j++ {
			r.Int16()     // error code
			r.Int32()     // partition index
			r.Int32()     // leader id
			r.Int32()     // leader epoch (v7+)
			skipInt32s(r) // replica nodes
			skipInt32s(r) // isr nodes
			skipInt32s(r) // offline replicas (v5+)
			r.skipTags()
		}
		r.Int32() // topic authorized operations (v8+)
		r.skipTags()
		if r.Ok() && !null && len(name) > 0 && id != ([16]byte{}) {
			fn(name, id)
		}
	}
	if version <= 10 {
		r.Int32() // cluster authorized operations (v8-v10)
	}
	if version >= 13 {
		r.Int16() // top-level error code
	}
	r.skipTags()
	if !r.Ok() || len(r.Src) != 0 {
		return fmt.Errorf("metadata response v%d: topics: %w", version, ErrMalformed)
	}
	return nil
}

func skipInt32s(r *bodyReader) {
	n, _ := r.arrayLen()
	if n > len(r.Src)/4 {
		r.fail()
		return
	}
	r.Span(4 * n)
}

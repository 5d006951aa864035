package codec

import "fmt"

// RewriteShareAcknowledgeResponse rewrites the node endpoints of a
// ShareAcknowledge response body (api key 79, versions 0 to
// ShareAcknowledgeMaxVersion, all flexible) through m and appends the new
// body to dst. The endpoints are a regular field after the topics, so the
// topics are walked (bounded) to reach them; they carry no records and are
// copied byte for byte. Endpoints m cannot map are dropped.
//
// When nothing changes, changed is false and out is dst unchanged.
func RewriteShareAcknowledgeResponse(dst, body []byte, version int16, m AddressMapper) (out []byte, changed bool, err error) {
	if version < 0 || version > ShareAcknowledgeMaxVersion {
		return dst, false, fmt.Errorf("share acknowledge response v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, true)
	r.Int32()       // throttle
	r.Int16()       // error code
	r.nullableStr() // error message
	if version >= 2 {
		r.Int32() // acquisition lock timeout
	}
	topics, _ := r.arrayLen()
	for t := 0; t < topics && r.Ok(); t++ {
		r.Uuid() // topic id
		parts, _ := r.arrayLen()
		for i := 0; i < parts && r.Ok(); i++ {
			r.Int32()       // partition
			r.Int16()       // error code
			r.nullableStr() // error message
			r.Int32()       // current leader id
			r.Int32()       // current leader epoch
			r.skipTags()    // current leader tags
			r.skipTags()    // partition tags
		}
		r.skipTags()
	}
	if !r.Ok() {
		return dst, false, fmt.Errorf("share acknowledge response v%d: topics: %w", version, ErrMalformed)
	}
	out = append(dst, body[:r.off()]...)
	out, changed = rewriteEndpoints(out, &r, m, endpointLayout{rack: true})
	tagsAt := r.off()
	r.skipTags()
	if !r.Ok() {
		return dst, false, fmt.Errorf("share acknowledge response v%d: node endpoints: %w", version, ErrMalformed)
	}
	if len(r.Src) != 0 {
		return dst, false, fmt.Errorf("share acknowledge response v%d: %d bytes after the message: %w", version, len(r.Src), ErrMalformed)
	}
	if !changed {
		return dst, false, nil
	}
	return append(out, body[tagsAt:]...), true, nil
}

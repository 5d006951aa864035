package codec

import "fmt"

// RewriteMetadata rewrites the brokers of a Metadata response body (api key
// 3, versions 0 to MetadataMaxVersion) through m and appends the new body to
// dst. Brokers m cannot map are dropped. Everything after the brokers array
// (cluster id, controller, topics, tags) is copied byte for byte. m sees
// every upstream broker as (node id, host, port): that is how the proxy
// learns the cluster's addresses.
//
// In the same walk, when topics is not nil, it calls topics for every topic
// with a name and a non-zero id (versions 10 and later; earlier versions
// carry no ids and their topics are not read): that is how kseal learns the
// topic names of the messages that name topics only by id (ShareFetch). A
// malformed topics section is an error only when topics is not nil.
//
// When nothing changes, changed is false and out is dst unchanged: forward
// the original bytes.
func RewriteMetadata(dst, body []byte, version int16, m AddressMapper, topics MetadataTopicsFunc) (out []byte, changed bool, err error) {
	if version < 0 || version > MetadataMaxVersion {
		return dst, false, fmt.Errorf("metadata response v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, version >= metadataFirstFlexible)
	if version >= 3 {
		r.Int32() // throttle
	}
	start := r.off()
	if !r.Ok() {
		return dst, false, fmt.Errorf("metadata response v%d: truncated before brokers: %w", version, ErrMalformed)
	}
	out = append(dst, body[:start]...)
	out, changed = rewriteEndpoints(out, &r, m, endpointLayout{rack: version >= 1})
	if !r.Ok() {
		return dst, false, fmt.Errorf("metadata response v%d: brokers array: %w", version, ErrMalformed)
	}
	rest := r.Src
	if topics != nil && version >= 10 {
		if err := walkMetadataTopics(&r, version, topics); err != nil {
			return dst, false, err
		}
	}
	if !changed {
		return dst, false, nil
	}
	return append(out, rest...), true, nil
}

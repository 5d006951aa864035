package codec

import "fmt"

// RewriteDescribeClusterResponse rewrites the brokers of a DescribeCluster
// response body (api key 60, versions 0 to DescribeClusterMaxVersion, all
// flexible) through m and appends the new body to dst. Brokers m cannot map
// are dropped; everything else is copied byte for byte.
//
// When nothing changes, changed is false and out is dst unchanged.
func RewriteDescribeClusterResponse(dst, body []byte, version int16, m AddressMapper) (out []byte, changed bool, err error) {
	if version < 0 || version > DescribeClusterMaxVersion {
		return dst, false, fmt.Errorf("describe cluster response v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, true)
	r.Int32()       // throttle
	r.Int16()       // error code
	r.nullableStr() // error message
	if version >= 1 {
		r.Int8() // endpoint type
	}
	r.str()   // cluster id
	r.Int32() // controller id
	start := r.off()
	if !r.Ok() {
		return dst, false, fmt.Errorf("describe cluster response v%d: truncated before brokers: %w", version, ErrMalformed)
	}
	out = append(dst, body[:start]...)
	out, changed = rewriteEndpoints(out, &r, m, endpointLayout{rack: true, fenced: version >= 2})
	if !r.Ok() {
		return dst, false, fmt.Errorf("describe cluster response v%d: brokers array: %w", version, ErrMalformed)
	}
	if !changed {
		return dst, false, nil
	}
	return append(out, r.Src...), true, nil
}

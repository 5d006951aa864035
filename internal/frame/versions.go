package frame

import (
	"math"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiInfo is what the header parsers need to know about one API key, taken
// once from kmsg's generated tables so that per-frame lookups are an index
// into an array and allocate nothing.
type apiInfo struct {
	known        bool
	maxVersion   int16
	reqFlexFrom  int16 // first flexible request version, -1 if none known
	respFlexFrom int16 // first flexible response version, -1 if none known
}

var apis = buildAPIs()

func buildAPIs() []apiInfo {
	var out []apiInfo
	for k := 0; k <= math.MaxInt16; k++ {
		req := kmsg.RequestForKey(int16(k))
		resp := kmsg.ResponseForKey(int16(k))
		if req == nil || resp == nil {
			continue
		}
		for len(out) <= k {
			out = append(out, apiInfo{})
		}
		info := apiInfo{known: true, maxVersion: req.MaxVersion(), reqFlexFrom: -1, respFlexFrom: -1}
		for v := int16(0); v <= info.maxVersion; v++ {
			req.SetVersion(v)
			if info.reqFlexFrom < 0 && req.IsFlexible() {
				info.reqFlexFrom = v
			}
			resp.SetVersion(v)
			if info.respFlexFrom < 0 && resp.IsFlexible() {
				info.respFlexFrom = v
			}
		}
		out[k] = info
	}
	return out
}

func lookup(key int16) (apiInfo, bool) {
	if key < 0 || int(key) >= len(apis) || !apis[key].known {
		return apiInfo{}, false
	}
	return apis[key], true
}

// flexible reports whether version is flexible given the first flexible
// version, and whether that is known. Kafka never turns flexibility off again,
// so versions past kmsg's maximum are known flexible when an earlier one was.
func flexible(info apiInfo, flexFrom, version int16) (flex, known bool) {
	if version < 0 {
		return false, false
	}
	if flexFrom >= 0 && version >= flexFrom {
		return true, true
	}
	return false, version <= info.maxVersion
}

// MaxVersion returns the highest version of an API key that kmsg (and so
// kseal's version tables) knows, and false for keys kmsg does not know.
func MaxVersion(key int16) (int16, bool) {
	info, ok := lookup(key)
	return info.maxVersion, ok
}

// Request header versions. HeaderUnknown means the key or version is not in
// kmsg's tables, so where the header ends cannot be told.
const (
	HeaderUnknown int8 = -1
)

// RequestHeaderVersion returns the request header version for an API key and
// version: 2 for flexible requests, 1 otherwise, 0 only for ControlledShutdown
// v0. ok is false when kmsg does not know the key or the version (nor can
// infer it).
func RequestHeaderVersion(key, version int16) (v int8, ok bool) {
	info, ok := lookup(key)
	if !ok {
		return HeaderUnknown, false
	}
	if key == controlledShutdownKey && version == 0 {
		return 0, true
	}
	flex, known := flexible(info, info.reqFlexFrom, version)
	switch {
	case !known:
		return HeaderUnknown, false
	case flex:
		return 2, true
	default:
		return 1, true
	}
}

// ResponseHeaderVersion returns the response header version for an API key and
// version: 1 (with tagged fields) for flexible responses, 0 otherwise, and
// always 0 for ApiVersions so that a client can read the response of a
// version the broker does not support.
func ResponseHeaderVersion(key, version int16) (v int8, ok bool) {
	info, ok := lookup(key)
	if !ok {
		return HeaderUnknown, false
	}
	if key == apiVersionsKey {
		return 0, true
	}
	flex, known := flexible(info, info.respFlexFrom, version)
	switch {
	case !known:
		return HeaderUnknown, false
	case flex:
		return 1, true
	default:
		return 0, true
	}
}

const (
	controlledShutdownKey int16 = 7
	apiVersionsKey        int16 = 18
)

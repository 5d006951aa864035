package codec

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// API keys of the messages kseal rewrites.
const (
	keyProduce          int16 = 0
	keyFetch            int16 = 1
	keyMetadata         int16 = 3
	keyFindCoordinator  int16 = 10
	keyApiVersions      int16 = 18
	keyDescribeCluster  int16 = 60
	keyShareFetch       int16 = 78
	keyShareAcknowledge int16 = 79
)

// ApiVersionsMaxVersion is the highest ApiVersions response version
// RewriteApiVersionsResponse understands (kmsg v1.15.0's maximum). A proxy
// should answer a higher request version itself with
// AppendApiVersionsUnsupported rather than forward it.
const ApiVersionsMaxVersion int16 = 5

// errUnsupportedVersion is Kafka's UNSUPPORTED_VERSION error code.
const errUnsupportedVersion int16 = 35

// ProxyMaxVersion returns the highest version of an API kseal rewrites that
// its codecs understand, and false for APIs kseal forwards untouched. The
// numbers are the maxima of the walkers in this package, which match kmsg
// v1.15.0.
func ProxyMaxVersion(key int16) (int16, bool) {
	switch key {
	case keyProduce:
		return ProduceMaxVersion, true
	case keyFetch:
		return FetchMaxVersion, true
	case keyMetadata:
		return MetadataMaxVersion, true
	case keyFindCoordinator:
		return FindCoordinatorMaxVersion, true
	case keyApiVersions:
		return ApiVersionsMaxVersion, true
	case keyDescribeCluster:
		return DescribeClusterMaxVersion, true
	case keyShareFetch:
		return ShareFetchMaxVersion, true
	case keyShareAcknowledge:
		return ShareAcknowledgeMaxVersion, true
	}
	return 0, false
}

// kmsgMax holds kmsg's highest version per API key, -1 for unknown keys.
var kmsgMax = func() []int16 {
	var out []int16
	for k := 0; k < 1<<15; k++ {
		req := kmsg.RequestForKey(int16(k))
		if req == nil {
			continue
		}
		for len(out) <= k {
			out = append(out, -1)
		}
		out[k] = req.MaxVersion()
	}
	return out
}()

// KnownMaxVersion returns kmsg's highest version of an API key and false for
// keys kmsg does not know.
func KnownMaxVersion(key int16) (int16, bool) {
	if key < 0 || int(key) >= len(kmsgMax) || kmsgMax[key] < 0 {
		return 0, false
	}
	return kmsgMax[key], true
}

// VersionLimit decides what a client may see of one advertised API: the new
// maximum version and whether to keep the entry at all. It is given the
// broker's range.
type VersionLimit func(key, minVersion, maxVersion int16) (newMax int16, keep bool)

// LimitVersions is the VersionLimit kseal uses. It drops APIs kmsg does not
// know (the proxy could not even tell where their request headers end), caps
// the APIs kseal rewrites at ProxyMaxVersion and every other API at kmsg's
// maximum, so that a client never picks a version whose framing the proxy has
// not seen. An entry whose range becomes empty is dropped.
func LimitVersions(key, minVersion, maxVersion int16) (int16, bool) {
	limit, ok := ProxyMaxVersion(key)
	if !ok {
		if limit, ok = KnownMaxVersion(key); !ok {
			return 0, false
		}
	}
	newMax := min(maxVersion, limit)
	return newMax, newMax >= minVersion
}

// RewriteApiVersionsResponse rewrites the advertised version ranges of an
// ApiVersions response body (versions 0 to ApiVersionsMaxVersion) through
// limit and appends the new body to dst: entries limit rejects are dropped,
// maxima it lowers are lowered (it can never raise one), and every other byte
// (entry tags, throttle, supported and finalized features, unknown tags) is
// copied as it came.
//
// A response carrying UNSUPPORTED_VERSION is in the v0 layout whatever the
// request version (KIP-511), and is read as such.
//
// When nothing changes, changed is false and out is dst unchanged.
func RewriteApiVersionsResponse(dst, body []byte, version int16, limit VersionLimit) (out []byte, changed bool, err error) {
	if version < 0 || version > ApiVersionsMaxVersion {
		return dst, false, fmt.Errorf("api versions response v%d: %w", version, ErrUnknownVersion)
	}
	layout := version
	if len(body) >= 2 && int16(binary.BigEndian.Uint16(body)) == errUnsupportedVersion && version > 0 {
		layout = 0
		if _, _, ok := scanApiVersions(body, 0, limit); !ok {
			layout = version // not v0 after all: try the version asked for
		}
	}
	kept, changed, ok := scanApiVersions(body, layout, limit)
	if !ok {
		return dst, false, fmt.Errorf("api versions response v%d (read as v%d): %w", version, layout, ErrMalformed)
	}
	if !changed {
		return dst, false, nil
	}
	flex := layout >= 3
	r := newBodyReader(body, flex)
	out = append(dst, body[:2]...) // error code
	r.Int16()
	n, _ := r.arrayLen()
	if flex {
		out = kbin.AppendCompactArrayLen(out, kept)
	} else {
		out = kbin.AppendArrayLen(out, kept)
	}
	for i := 0; i < n; i++ {
		start := r.off()
		key, lo, hi := r.Int16(), r.Int16(), r.Int16()
		r.skipTags()
		newMax, keep := clampVersions(limit, key, lo, hi)
		if !keep {
			continue
		}
		entry := body[start:r.off()]
		out = append(out, entry[:4]...)
		out = kbin.AppendInt16(out, newMax)
		out = append(out, entry[6:]...)
	}
	return append(out, r.Src...), true, nil
}

// scanApiVersions validates body in the given layout and reports how many
// entries limit keeps and whether any entry changes.
func scanApiVersions(body []byte, layout int16, limit VersionLimit) (kept int, changed, ok bool) {
	r := newBodyReader(body, layout >= 3)
	r.Int16() // error code
	n, null := r.arrayLen()
	if null {
		// Kafka never sends a null array here; treat it as malformed
		// rather than inventing an encoding for it.
		return 0, false, false
	}
	for i := 0; i < n && r.Ok(); i++ {
		key, lo, hi := r.Int16(), r.Int16(), r.Int16()
		r.skipTags()
		newMax, keep := clampVersions(limit, key, lo, hi)
		if keep {
			kept++
		}
		if !keep || newMax != hi {
			changed = true
		}
	}
	if layout >= 1 {
		r.Int32() // throttle
	}
	r.skipTags()
	return kept, changed, r.Ok() && len(r.Src) == 0
}

// clampVersions applies limit and enforces that it only narrows the range.
func clampVersions(limit VersionLimit, key, lo, hi int16) (int16, bool) {
	newMax, keep := limit(key, lo, hi)
	if !keep || newMax < lo {
		return 0, false
	}
	return min(newMax, hi), true
}

// AppendApiVersionsUnsupported appends the body of the response Kafka gives
// to an ApiVersions request of a version it does not support: v0 layout,
// UNSUPPORTED_VERSION, and a single entry advertising the ApiVersions
// versions that are supported (0 to maxVersion), so the client retries
// with one of them.
func AppendApiVersionsUnsupported(dst []byte, maxVersion int16) []byte {
	dst = kbin.AppendInt16(dst, errUnsupportedVersion)
	dst = kbin.AppendArrayLen(dst, 1)
	dst = kbin.AppendInt16(dst, keyApiVersions)
	dst = kbin.AppendInt16(dst, 0)
	return kbin.AppendInt16(dst, maxVersion)
}

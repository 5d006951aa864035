package codec

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kbin"
)

// This file holds the wire helpers shared by the response rewriters for
// Metadata, FindCoordinator, DescribeCluster, Fetch, ShareFetch and
// ShareAcknowledge: a bounded reader that knows whether the message version
// is flexible, and the broker-endpoint array rewrite they all need.

// ErrUnknownVersion reports a message version the rewriter was not written
// for. Rewriting a version whose layout we have not checked could forward a
// real broker address or mangle records, so such messages are refused.
var ErrUnknownVersion = errors.New("unknown message version")

// Highest versions the rewriters in this package understand. They match
// kmsg v1.15.0; a kmsg upgrade that adds a version fails a test until the new
// layout has been checked here.
const (
	MetadataMaxVersion         int16 = 13
	FindCoordinatorMaxVersion  int16 = 6
	DescribeClusterMaxVersion  int16 = 2
	FetchMaxVersion            int16 = 18
	ShareFetchMaxVersion       int16 = 2
	ShareAcknowledgeMaxVersion int16 = 2
)

// Versions where layouts change.
const (
	metadataFirstFlexible       int16 = 9
	findCoordinatorFirstFlex    int16 = 3
	findCoordinatorFirstBatched int16 = 4 // KIP-699 coordinators array
	fetchFirstFlexible          int16 = 12
	fetchFirstTopicID           int16 = 13
)

// bodyReader is a kbin.Reader that remembers the whole body (so fields can be
// sliced out of it by offset) and whether the version uses compact
// (flexible) encodings. Every method leaves the reader invalid on bad input;
// callers check Ok once after a group of reads.
type bodyReader struct {
	kbin.Reader
	body []byte
	flex bool
}

func newBodyReader(body []byte, flex bool) bodyReader {
	return bodyReader{Reader: kbin.Reader{Src: body}, body: body, flex: flex}
}

// off is the offset of the next unread byte in body.
func (r *bodyReader) off() int { return len(r.body) - len(r.Src) }

// fail invalidates the reader. kbin.Reader has no exported way to do that;
// a negative span is its documented failure path.
func (r *bodyReader) fail() { r.Span(-1) }

// str reads a non-nullable string and returns its bytes (aliasing body).
func (r *bodyReader) str() []byte {
	if r.flex {
		return r.Span(int(r.Uvarint()) - 1) // 0 (null) gives -1 and fails
	}
	return r.Span(int(r.Int16()))
}

// nullableStr reads a nullable string; null reports true.
func (r *bodyReader) nullableStr() (b []byte, null bool) {
	if r.flex {
		n := r.Uvarint()
		if n == 0 {
			return nil, r.Ok()
		}
		return r.Span(int(n) - 1), false
	}
	n := r.Int16()
	if n < 0 {
		return nil, r.Ok()
	}
	return r.Span(int(n)), false
}

// nullableBytes reads a nullable byte array (records). Null is returned as a
// nil slice, empty as a non-nil empty slice.
func (r *bodyReader) nullableBytes() []byte {
	var n int
	if r.flex {
		u := r.Uvarint()
		if u == 0 {
			return nil
		}
		n = int(u) - 1
	} else {
		i := r.Int32()
		if i < 0 {
			return nil
		}
		n = int(i)
	}
	b := r.Span(n)
	if b == nil && r.Ok() {
		b = r.body[:0:0]
	}
	return b
}

// arrayLen reads an array length. A null array (-1) reads as 0 with
// null=true. A length larger than the bytes left is invalid: every element
// takes at least one byte, so this bounds every loop over the array.
func (r *bodyReader) arrayLen() (n int, null bool) {
	if r.flex {
		u := r.Uvarint()
		if u == 0 {
			return 0, r.Ok()
		}
		n = int(u) - 1
	} else {
		i := r.Int32()
		if i == -1 {
			return 0, true
		}
		n = int(i)
	}
	if n < 0 || n > len(r.Src) {
		r.fail()
		return 0, false
	}
	return n, false
}

// skipTags skips a tagged-field section in flexible versions.
func (r *bodyReader) skipTags() {
	if r.flex {
		SkipTags(&r.Reader)
	}
}

// appendStr appends a non-nullable string in the reader's encoding.
func appendStr(dst []byte, s string, flex bool) []byte {
	if flex {
		return kbin.AppendCompactString(dst, s)
	}
	return kbin.AppendString(dst, s)
}

// appendNullableStr appends a nullable string in the reader's encoding.
func appendNullableStr(dst []byte, s *string, flex bool) []byte {
	if flex {
		return kbin.AppendCompactNullableString(dst, s)
	}
	return kbin.AppendNullableString(dst, s)
}

// appendNullableBytes appends a nullable byte array (nil is null).
func appendNullableBytes(dst, b []byte, flex bool) []byte {
	if flex {
		return kbin.AppendCompactNullableBytes(dst, b)
	}
	return kbin.AppendNullableBytes(dst, b)
}

// bytesString views b as a string without copying. The result aliases b and
// is valid only as long as b is not modified.
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// mapBroker asks m for the proxy address of a node. A nil mapper maps
// nothing, so a missing mapper drops addresses instead of leaking them. The
// host is copied: mappers keep what they learn, and the body is reused.
func mapBroker(m AddressMapper, nodeID int32, host []byte, port int32) (string, int32, bool) {
	if m == nil {
		return "", 0, false
	}
	return m.MapBroker(nodeID, string(host), port)
}

// endpointLayout says which fields follow host and port in one broker
// endpoint entry; they are copied as one span.
type endpointLayout struct {
	rack   bool // nullable string
	fenced bool // bool (DescribeCluster v2+)
}

// rewriteEndpoints reads a broker endpoint array (node id, host, port, then
// the layout's fields and tags) from r and appends the rewritten array to
// dst. Endpoints the mapper does not know are dropped. changed is false when
// every endpoint maps to its own address, in which case the caller may forward
// the original bytes instead. Bad input leaves r invalid.
func rewriteEndpoints(dst []byte, r *bodyReader, m AddressMapper, l endpointLayout) (out []byte, changed bool) {
	n, null := r.arrayLen()
	if !r.Ok() {
		return dst, false
	}
	if null {
		if r.flex {
			return append(dst, 0), false
		}
		return kbin.AppendInt32(dst, -1), false
	}
	// The count is written after the entries; reserve the widest encoding it
	// can need (fewer entries never need more bytes) and close the gap after.
	lenAt := len(dst)
	reserved := 4
	if r.flex {
		reserved = kbin.UvarintLen(uint32(n) + 1)
	}
	dst = append(dst, 0, 0, 0, 0, 0)[:lenAt+reserved]
	kept := 0
	for i := 0; i < n; i++ {
		id := r.Int32()
		host := r.str()
		port := r.Int32()
		restAt := r.off()
		if l.rack {
			r.nullableStr()
		}
		if l.fenced {
			r.Int8()
		}
		r.skipTags()
		if !r.Ok() {
			return dst[:lenAt], false
		}
		rest := r.body[restAt:r.off()]
		ph, pp, ok := mapBroker(m, id, host, port)
		if !ok {
			changed = true
			continue
		}
		if ph != bytesString(host) || pp != port {
			changed = true
		}
		kept++
		dst = kbin.AppendInt32(dst, id)
		dst = appendStr(dst, ph, r.flex)
		dst = kbin.AppendInt32(dst, pp)
		dst = append(dst, rest...)
	}
	if !r.flex {
		binary.BigEndian.PutUint32(dst[lenAt:], uint32(kept))
		return dst, changed
	}
	used := len(kbin.AppendUvarint(dst[lenAt:lenAt], uint32(kept)+1))
	if used < reserved {
		copy(dst[lenAt+used:], dst[lenAt+reserved:])
		dst = dst[:len(dst)-(reserved-used)]
	}
	return dst, changed
}

package codec

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

// produceFirstNodeEndpoints is the first Produce response version whose
// top-level tag 0 holds the KIP-951 node endpoints (node id, host, port,
// rack): real broker addresses that must not reach the client.
const produceFirstNodeEndpoints int16 = 10

// nodeEndpointsTag is the top-level tag of the node endpoints.
const nodeEndpointsTag = 0

// BuildProduceErrorResponse appends a Produce response body answering every
// partition of req with the error code errorFor returns (throttle 0, offsets
// -1, no error message), in req's version. It is how a request is refused
// without forwarding it. errorFor is given the partition entry itself, so
// answering n partitions costs O(n) whatever their numbers.
func BuildProduceErrorResponse(dst []byte, req *ProduceRequest, errorFor func(t *ProduceTopic, p *ProducePartition) int16) []byte {
	return req.appendResponse(dst, func(t *ProduceTopic, p *ProducePartition) (int16, string, bool) {
		return errorFor(t, p), "", true
	})
}

// appendResponse encodes a response for the partitions pick selects, in
// request order, one topic entry per request topic entry with a selection.
func (r *ProduceRequest) appendResponse(dst []byte, pick func(*ProduceTopic, *ProducePartition) (int16, string, bool)) []byte {
	flex := r.Version >= produceFirstFlexible
	topics := 0
	for i := range r.Topics {
		t := &r.Topics[i]
		for j := range t.Partitions {
			if _, _, ok := pick(t, &t.Partitions[j]); ok {
				topics++
				break
			}
		}
	}
	dst = appendArrayLen(dst, topics, flex)
	for i := range r.Topics {
		t := &r.Topics[i]
		n := 0
		for j := range t.Partitions {
			if _, _, ok := pick(t, &t.Partitions[j]); ok {
				n++
			}
		}
		if n == 0 {
			continue
		}
		dst = appendProduceTopicKey(dst, t, r.Version)
		dst = appendArrayLen(dst, n, flex)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			if code, msg, ok := pick(t, p); ok {
				dst = appendProducePartitionError(dst, r.Version, p.Partition, code, msg)
			}
		}
		if flex {
			dst = append(dst, 0) // topic tags
		}
	}
	if r.Version >= 1 {
		dst = kbin.AppendInt32(dst, 0) // throttle
	}
	if flex {
		dst = append(dst, 0) // top-level tags
	}
	return dst
}

func appendProduceTopicKey(dst []byte, t *ProduceTopic, version int16) []byte {
	if version >= produceFirstTopicID {
		return kbin.AppendUuid(dst, t.ID)
	}
	return appendStr(dst, bytesString(t.Name), version >= produceFirstFlexible)
}

// appendProducePartitionError encodes one partition response the way a broker
// answers a failed partition: offsets and timestamps -1, no record errors.
func appendProducePartitionError(dst []byte, version int16, partition int32, code int16, msg string) []byte {
	flex := version >= produceFirstFlexible
	dst = kbin.AppendInt32(dst, partition)
	dst = kbin.AppendInt16(dst, code)
	dst = kbin.AppendInt64(dst, -1) // base offset
	if version >= 2 {
		dst = kbin.AppendInt64(dst, -1) // log append time
	}
	if version >= 5 {
		dst = kbin.AppendInt64(dst, -1) // log start offset
	}
	if version >= 8 {
		dst = appendArrayLen(dst, 0, flex) // record errors
		if msg == "" {
			dst = appendNullableStr(dst, nil, flex)
		} else {
			dst = appendNullableStr(dst, &msg, flex)
		}
	}
	if flex {
		dst = append(dst, 0) // tags
	}
	return dst
}

// RewriteProduceResponse rewrites a Produce response body from the broker
// and appends the result to dst: from v10, the node endpoints (top-level tag
// 0) go through m; nodes m cannot map are dropped (a nil m drops them all).
//
// Every other byte (partition tags such as the current leader, unknown tags,
// throttle) is copied as it came. When there is nothing to do, changed is
// false, out is dst unchanged and nothing was allocated: forward the original
// bytes.
func RewriteProduceResponse(dst, body []byte, version int16, m AddressMapper) (out []byte, changed bool, err error) {
	if version < 0 || version > ProduceMaxVersion {
		return dst, false, fmt.Errorf("produce response v%d: %w", version, ErrUnknownVersion)
	}
	tagsAt, endpoints, err := scanProduceResponse(body, version)
	if err != nil {
		return dst, false, fmt.Errorf("produce response v%d: %w", version, err)
	}
	if !endpoints {
		return dst, false, nil
	}
	out, changed, err = appendProduceResponseTags(append(dst, body[:tagsAt]...), body[tagsAt:], version, m)
	if err != nil {
		return dst, false, fmt.Errorf("produce response v%d: %w", version, err)
	}
	if !changed {
		return dst, false, nil
	}
	return out, true, nil
}

// scanProduceResponse validates a Produce response body and returns the
// offset of its top-level tagged fields (the body's length before v9) and
// whether they hold node endpoints.
func scanProduceResponse(body []byte, version int16) (tagsAt int, endpoints bool, err error) {
	flex := version >= produceFirstFlexible
	r := newBodyReader(body, flex)
	n, null := r.arrayLen()
	if !r.Ok() || null {
		return 0, false, fmt.Errorf("topics array: %w", ErrMalformed)
	}
	for i := 0; i < n; i++ {
		if !skipProduceResponseTopic(&r, version) {
			return 0, false, fmt.Errorf("topic entry %d: %w", i, ErrMalformed)
		}
	}
	if version >= 1 {
		r.Int32() // throttle
	}
	tagsAt = r.off()
	if flex {
		nt := r.Uvarint()
		if !r.Ok() || int64(nt) > int64(len(r.Src))/2 {
			return 0, false, fmt.Errorf("tagged fields: %w", ErrMalformed)
		}
		for ; nt > 0 && r.Ok(); nt-- {
			key := r.Uvarint()
			size := r.Uvarint()
			r.Span(int(size))
			if key == nodeEndpointsTag && version >= produceFirstNodeEndpoints {
				endpoints = true
			}
		}
	}
	if !r.Ok() || len(r.Src) != 0 {
		return 0, false, fmt.Errorf("after topics: %w", ErrMalformed)
	}
	return tagsAt, endpoints, nil
}

// skipProduceResponseTopic reads one topic entry, leaving r invalid on bad
// input.
func skipProduceResponseTopic(r *bodyReader, version int16) bool {
	if version >= produceFirstTopicID {
		r.Span(16)
	} else {
		r.str()
	}
	n, null := r.arrayLen()
	if !r.Ok() || null {
		return false
	}
	for j := 0; j < n && r.Ok(); j++ {
		readProducePartition(r, version)
	}
	r.skipTags()
	return r.Ok()
}

// appendProduceResponseTags appends the top-level tagged-field section tags
// (validated by scanProduceResponse) with the node endpoints rewritten
// through m.
func appendProduceResponseTags(dst, tags []byte, version int16, m AddressMapper) (out []byte, changed bool, err error) {
	r := newBodyReader(tags, true)
	nt := r.Uvarint()
	out = kbin.AppendUvarint(dst, nt)
	for ; nt > 0; nt-- {
		key := r.Uvarint()
		data := r.Span(int(r.Uvarint()))
		if key != nodeEndpointsTag || version < produceFirstNodeEndpoints {
			out = kbin.AppendUvarint(out, key)
			out = kbin.AppendUvarint(out, uint32(len(data)))
			out = append(out, data...)
			continue
		}
		var ch bool
		out, ch, err = appendNodeEndpointsTag(out, data, m)
		if err != nil {
			return dst, false, err
		}
		changed = changed || ch
	}
	return out, changed, nil
}

// appendNodeEndpointsTag appends tag 0 holding the node endpoints in data
// rewritten through m. The tag's size precedes its data, so the widest size
// prefix is reserved and the gap closed once the size is known.
func appendNodeEndpointsTag(dst, data []byte, m AddressMapper) (out []byte, changed bool, err error) {
	out = kbin.AppendUvarint(dst, nodeEndpointsTag)
	sizeAt := len(out)
	const reserved = 5
	out = append(out, 0, 0, 0, 0, 0)
	r := newBodyReader(data, true)
	out, changed = rewriteEndpoints(out, &r, m, endpointLayout{rack: true})
	if !r.Ok() || len(r.Src) != 0 {
		return dst, false, fmt.Errorf("node endpoints: %w", ErrMalformed)
	}
	var size [reserved]byte
	used := len(kbin.AppendUvarint(size[:0], uint32(len(out)-sizeAt-reserved)))
	copy(out[sizeAt:], size[:used])
	copy(out[sizeAt+used:], out[sizeAt+reserved:])
	return out[:len(out)-(reserved-used)], changed, nil
}

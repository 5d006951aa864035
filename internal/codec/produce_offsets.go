package codec

import "fmt"

// ProducePartitionResult is one partition of a Produce response, as
// WalkProduceOffsets hands it out. Topic aliases the response body (nil from
// v13, which names topics by TopicID).
type ProducePartitionResult struct {
	Topic      []byte
	TopicID    [16]byte
	Partition  int32
	ErrorCode  int16
	BaseOffset int64
}

// WalkProduceOffsets reads a Produce response body of the given version and
// calls visit for every partition, in order, with its error code and base
// offset (the offset of the first record the broker appended for it). It
// reads the body only (never writes it), allocates nothing, and its work is
// bounded by the body's size: every array length is checked against the
// bytes left. A malformed body is an error wrapping ErrMalformed; partitions
// visited before the error were whole.
func WalkProduceOffsets(body []byte, version int16, visit func(ProducePartitionResult)) error {
	if version < 0 || version > ProduceMaxVersion {
		return fmt.Errorf("produce response v%d: %w", version, ErrUnknownVersion)
	}
	flex := version >= produceFirstFlexible
	r := newBodyReader(body, flex)
	n, null := r.arrayLen()
	if !r.Ok() || null {
		return fmt.Errorf("produce response v%d: topics array: %w", version, ErrMalformed)
	}
	var p ProducePartitionResult
	for i := 0; i < n; i++ {
		p.Topic, p.TopicID = nil, [16]byte{}
		if version >= produceFirstTopicID {
			copy(p.TopicID[:], r.Span(16))
		} else {
			p.Topic = r.str()
		}
		np, null := r.arrayLen()
		if !r.Ok() || null {
			return fmt.Errorf("produce response v%d: topic entry %d: %w", version, i, ErrMalformed)
		}
		for j := 0; j < np; j++ {
			p.Partition, p.ErrorCode, p.BaseOffset = readProducePartition(&r, version)
			if !r.Ok() {
				return fmt.Errorf("produce response v%d: topic entry %d partition %d: %w", version, i, j, ErrMalformed)
			}
			visit(p)
		}
		r.skipTags()
		if !r.Ok() {
			return fmt.Errorf("produce response v%d: topic entry %d: %w", version, i, ErrMalformed)
		}
	}
	if version >= 1 {
		r.Int32() // throttle
	}
	r.skipTags() // node endpoints (v10+) and unknown tags
	if !r.Ok() || len(r.Src) != 0 {
		return fmt.Errorf("produce response v%d: after topics: %w", version, ErrMalformed)
	}
	return nil
}

// readProducePartition reads one partition entry of a Produce response: the
// layout both WalkProduceOffsets and the address rewrite walk.
func readProducePartition(r *bodyReader, version int16) (partition int32, errorCode int16, baseOffset int64) {
	partition = r.Int32()
	errorCode = r.Int16()
	baseOffset = r.Int64()
	if version >= 2 {
		r.Int64() // log append time
	}
	if version >= 5 {
		r.Int64() // log start offset
	}
	if version >= 8 {
		ne, _ := r.arrayLen() // record errors
		for k := 0; k < ne && r.Ok(); k++ {
			r.Int32()
			r.nullableStr()
			r.skipTags()
		}
		r.nullableStr() // error message
	}
	r.skipTags() // current leader (tag 0) and unknown tags
	return partition, errorCode, baseOffset
}

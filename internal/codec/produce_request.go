package codec

import (
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
)

// Produce versions and the layout changes between them.
const (
	// ProduceMaxVersion is the highest Produce version the walkers here
	// understand (kmsg v1.15.0's maximum).
	ProduceMaxVersion int16 = 13
	// ProduceMinRecordBatchVersion is the first Produce version that carries
	// RecordBatch v2 (Kafka 0.11); v0-v2 carry the old message sets, which
	// kseal cannot encrypt and rejects.
	ProduceMinRecordBatchVersion int16 = 3

	produceFirstFlexible int16 = 9
	produceFirstTopicID  int16 = 13
)

// MaxProducePartitions bounds the partition entries of one Produce request
// Parse accepts. A partition entry takes as little as 6 bytes on the wire and
// about 20 times that once parsed, so without a bound one 100 MiB request of
// empty partitions would take about 2 GiB. A broker leads far fewer
// partitions than this; a client's request carries at most those.
const MaxProducePartitions = 100_000

// ErrTooManyPartitions reports a Produce request past MaxProducePartitions.
var ErrTooManyPartitions = errors.New("too many partitions")

// ProduceLegacyVersion reports whether a Produce version carries the old
// message-set formats (v0-v2) rather than RecordBatch v2.
func ProduceLegacyVersion(version int16) bool {
	return version < ProduceMinRecordBatchVersion
}

// ProduceRequest is a walked Produce request body. It holds no copies: every
// byte slice in it aliases the body given to Parse, which must stay
// unchanged while the request is in use. A ProduceRequest is meant to be
// reused (one per connection): Parse resets it and keeps its storage, so a
// steady state allocates nothing.
//
// After Parse, a caller may Replace the records of partitions and Reject
// partitions (leave them out of the forwarded request), then AppendTo builds
// the body to forward. The caller answers rejected partitions itself:
// BuildProduceErrorResponse builds a response when the whole request is
// refused.
type ProduceRequest struct {
	Version int16
	// TransactionalID is nil when null (and always before v3).
	TransactionalID []byte
	Acks            int16
	TimeoutMillis   int32
	Topics          []ProduceTopic

	body      []byte
	parts     []ProducePartition
	topicsAt  int // offset of the topics array length
	topicsEnd int // offset after the topics array (top-level tags follow)
}

// ProduceTopic is one topic entry of a Produce request.
type ProduceTopic struct {
	// Name is the topic name (v0-v12); nil from v13.
	Name []byte
	// ID is the topic id (v13+); zero before.
	ID         [16]byte
	Partitions []ProducePartition

	start    int // offset of the entry
	partsAt  int // offset of the partitions array length
	partsEnd int // offset after the partitions array (topic tags follow)
	end      int
	from, to int // range of the request's partitions
}

// ProducePartition is one partition entry of a Produce request.
type ProducePartition struct {
	Partition int32
	// Records is the partition's records (a RecordBatch v2 from v3), nil
	// when null.
	Records []byte

	start, recordsAt, recordsEnd, end int

	newRecords []byte
	replaced   bool
	rejected   bool
	errCode    int16
	errMsg     string
}

// Replace makes AppendTo write records (nil for null) in place of the
// partition's records. records must stay valid until AppendTo has run.
func (p *ProducePartition) Replace(records []byte) {
	p.newRecords = records
	p.replaced = true
}

// Reject removes the partition from the forwarded request and notes code
// and message (Rejected returns them) for the caller's own answer.
func (p *ProducePartition) Reject(code int16, message string) {
	p.rejected = true
	p.errCode = code
	p.errMsg = message
}

// Rejected reports whether Reject was called and with what.
func (p *ProducePartition) Rejected() (code int16, message string, ok bool) {
	return p.errCode, p.errMsg, p.rejected
}

// Parse walks a Produce request body (without request header) of the given
// version. It checks the whole body is well formed, bounding every loop by
// the bytes left, and leaves the records themselves unread.
func (r *ProduceRequest) Parse(body []byte, version int16) error {
	*r = ProduceRequest{
		Version: version,
		Topics:  r.Topics[:0],
		parts:   r.parts[:0],
		body:    body,
	}
	if version < 0 || version > ProduceMaxVersion {
		return fmt.Errorf("produce request v%d: %w", version, ErrUnknownVersion)
	}
	if err := r.parse(); err != nil {
		r.Topics = r.Topics[:0]
		r.parts = r.parts[:0]
		return fmt.Errorf("produce request v%d: %w", version, err)
	}
	for i := range r.Topics {
		t := &r.Topics[i]
		t.Partitions = r.parts[t.from:t.to:t.to]
	}
	return nil
}

func (r *ProduceRequest) parse() error {
	flex := r.Version >= produceFirstFlexible
	br := newBodyReader(r.body, flex)
	if r.Version >= 3 {
		id, null := br.nullableStr()
		if !null {
			r.TransactionalID = id
		}
	}
	r.Acks = br.Int16()
	r.TimeoutMillis = br.Int32()
	r.topicsAt = br.off()
	n, null := br.arrayLen()
	if !br.Ok() || null {
		return fmt.Errorf("topics array: %w", ErrMalformed)
	}
	for i := 0; i < n; i++ {
		t := ProduceTopic{start: br.off()}
		if r.Version >= produceFirstTopicID {
			t.ID = br.Uuid()
		} else {
			t.Name = br.str()
		}
		t.partsAt = br.off()
		np, null := br.arrayLen()
		if !br.Ok() || null {
			return fmt.Errorf("topic %d: partitions array: %w", i, ErrMalformed)
		}
		t.from = len(r.parts)
		for j := 0; j < np; j++ {
			p := ProducePartition{start: br.off()}
			p.Partition = br.Int32()
			p.recordsAt = br.off()
			p.Records = br.nullableBytes()
			p.recordsEnd = br.off()
			br.skipTags()
			p.end = br.off()
			if !br.Ok() {
				return fmt.Errorf("topic %d partition entry %d: %w", i, j, ErrMalformed)
			}
			if len(r.parts) == MaxProducePartitions {
				return fmt.Errorf("more than %d partition entries: %w", MaxProducePartitions, ErrTooManyPartitions)
			}
			r.parts = append(r.parts, p)
		}
		t.to = len(r.parts)
		t.partsEnd = br.off()
		br.skipTags()
		t.end = br.off()
		if !br.Ok() {
			return fmt.Errorf("topic %d: tagged fields: %w", i, ErrMalformed)
		}
		r.Topics = append(r.Topics, t)
	}
	r.topicsEnd = br.off()
	br.skipTags()
	if !br.Ok() {
		return fmt.Errorf("tagged fields: %w", ErrMalformed)
	}
	if len(br.Src) != 0 {
		return fmt.Errorf("%d bytes after the request: %w", len(br.Src), ErrMalformed)
	}
	return nil
}

// Changed reports whether any partition was replaced or rejected, i.e.
// whether the body to forward differs from the one parsed.
func (r *ProduceRequest) Changed() bool {
	for i := range r.parts {
		if r.parts[i].replaced || r.parts[i].rejected {
			return true
		}
	}
	return false
}

// Counts returns how many partitions will be forwarded and how many were
// rejected. A request with nothing left to forward must be answered locally
// (unless acks is 0), e.g. with BuildProduceErrorResponse.
func (r *ProduceRequest) Counts() (forwarded, rejected int) {
	for i := range r.parts {
		if r.parts[i].rejected {
			rejected++
		}
	}
	return len(r.parts) - rejected, rejected
}

// ForwardedSize is an upper bound of what AppendTo appends: the parsed body
// with every replaced partition's records in place of the original (and
// room for its length prefix to grow).
func (r *ProduceRequest) ForwardedSize() int {
	n := len(r.body)
	for i := range r.parts {
		if p := &r.parts[i]; p.replaced && !p.rejected {
			n += len(p.newRecords) + 5
		}
	}
	return n
}

// AppendTo appends the body to forward: the parsed body with replaced
// records and without rejected partitions (and without topics left with no
// partition). Every other byte, tagged fields included, is copied as it came.
// dst grows at most once, by ForwardedSize.
func (r *ProduceRequest) AppendTo(dst []byte) []byte {
	if !r.Changed() {
		return append(dst, r.body...)
	}
	dst = slices.Grow(dst, r.ForwardedSize())
	flex := r.Version >= produceFirstFlexible
	body := r.body
	dst = append(dst, body[:r.topicsAt]...)
	kept := 0
	for i := range r.Topics {
		if r.Topics[i].forwarded() {
			kept++
		}
	}
	dst = appendArrayLen(dst, kept, flex)
	for i := range r.Topics {
		t := &r.Topics[i]
		if !t.forwarded() {
			continue
		}
		dst = append(dst, body[t.start:t.partsAt]...)
		dst = appendArrayLen(dst, t.countForwarded(), flex)
		for j := range t.Partitions {
			p := &t.Partitions[j]
			switch {
			case p.rejected:
			case p.replaced:
				dst = append(dst, body[p.start:p.recordsAt]...)
				dst = appendNullableBytes(dst, p.newRecords, flex)
				dst = append(dst, body[p.recordsEnd:p.end]...)
			default:
				dst = append(dst, body[p.start:p.end]...)
			}
		}
		dst = append(dst, body[t.partsEnd:t.end]...)
	}
	return append(dst, body[r.topicsEnd:]...)
}

// forwarded reports whether the topic stays in the forwarded request: it
// keeps a partition, or it had none to begin with.
func (t *ProduceTopic) forwarded() bool {
	return len(t.Partitions) == 0 || t.countForwarded() > 0
}

func (t *ProduceTopic) countForwarded() int {
	n := 0
	for i := range t.Partitions {
		if !t.Partitions[i].rejected {
			n++
		}
	}
	return n
}

func appendArrayLen(dst []byte, n int, flex bool) []byte {
	if flex {
		return kbin.AppendCompactArrayLen(dst, n)
	}
	return kbin.AppendArrayLen(dst, n)
}

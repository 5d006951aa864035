package filter

import (
	"context"
	"errors"
)

// TopicResolver resolves topic ids (ShareFetch and newer Fetch versions name
// topics only by id).
type TopicResolver interface {
	// TopicName returns the name of a topic id; false when it is not known
	// (and cannot be learned now).
	TopicName(ctx context.Context, id [16]byte) (string, bool)
}

// Conn is what the plumbing (a client connection of the proxy, or a
// Standalone) offers the exchanges it runs. Its methods are safe for
// concurrent use by both sides of a connection.
type Conn interface {
	TopicResolver
	// ClientIdentity is what kseal knows of who the client is (nil:
	// nothing). Filters read it through Exchange.Identity.
	ClientIdentity() *Identity
	// Upstream is kseal's own client of the connection's upstream cluster,
	// never nil.
	Upstream() Upstream
	// NewestBatches reads the newest record batches of every partition of
	// topic from the upstream cluster and hands them to visit, partition by
	// partition (going further back, a bounded number of times, while visit
	// asks for earlier batches). A topic the cluster does not have has no
	// partitions: visit is never called and the answer is nil. Any other
	// failure (no broker reachable, an authorization or leadership error)
	// is an error: the caller cannot know what the topic holds.
	NewestBatches(ctx context.Context, topic string, visit TailVisitor) error
}

// TailVisitor is given the record batches at the end of one partition's
// log (the batch holding its newest offset, or with earlier true an older
// stretch) as the broker sent them; the last batch may be partial. It
// answers whether to look further back in this partition (earlier) and
// whether the whole question is settled (stop: no more partitions are read).
type TailVisitor func(partition int32, records []byte) (earlier, stop bool)

// Upstream is kseal's own client of a virtual cluster's upstream cluster
// for the single-partition topics kseal keeps for itself. Every method
// works on partition 0 of the topic and is safe for concurrent use. Errors
// that are worth retrying later (no broker reachable, a leader that kept
// moving) wrap ErrUpstreamUnavailable.
type Upstream interface {
	// CreateTopic creates topic with one partition, the replication factor
	// given (0: min(3, brokers)) and the topic configs given, unless it
	// exists (then nothing is checked or changed, and the answer is nil).
	CreateTopic(ctx context.Context, topic string, replicationFactor int16, configs map[string]string) error
	// Produce appends one record (key and value not null) with acks=all and
	// returns its offset.
	Produce(ctx context.Context, topic string, key, value []byte) (offset int64, err error)
	// ReadFrom hands visit the records of the topic from offset on, in
	// offset order, up to the high watermark (or fewer: see next), and
	// returns the offset to read from next. Control batches and batches
	// that cannot be read (bad CRC, corrupt, decompressing past 8 MiB,
	// legacy format) are skipped. The slices are valid only during the
	// call (a nil key or value is a null one). visit returning false stops
	// the read; next is then the offset after that record. A topic the
	// cluster does not have reads as empty (next == offset).
	ReadFrom(ctx context.Context, topic string, offset int64, visit func(offset int64, key, value []byte) bool) (next int64, err error)
}

// ErrUpstreamUnavailable wraps own-topic failures that may pass: no broker
// answered, a broker answered with a retriable error code until the tries
// ran out, or the context ended.
var ErrUpstreamUnavailable = errors.New("upstream cluster unavailable for kseal's own topic")

// ErrNoUpstream means there is no upstream connection to ask (an exchange
// outside the proxy, as in filter tests).
var ErrNoUpstream = errors.New("no upstream cluster to ask")

// noUpstream is the Upstream of an exchange outside the proxy.
type noUpstream struct{}

func (noUpstream) CreateTopic(context.Context, string, int16, map[string]string) error {
	return ErrNoUpstream
}

func (noUpstream) Produce(context.Context, string, []byte, []byte) (int64, error) {
	return 0, ErrNoUpstream
}

func (noUpstream) ReadFrom(_ context.Context, _ string, offset int64, _ func(int64, []byte, []byte) bool) (int64, error) {
	return offset, ErrNoUpstream
}

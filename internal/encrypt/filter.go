// Package encrypt is the proxy filter that encrypts records of Produce
// requests (their values in format v1; values, keys and headers as the
// policy rule says in format v2) and decrypts them in Fetch and ShareFetch
// responses (both formats, whatever is written), gluing together policy
// (which KEK, which parts), dek (which data key), detkey (the deterministic
// keys of record keys, through DetKeys), records (batch rewriting) and
// recordcrypt (the record format).
//
// It fails closed: a partition whose records must be encrypted is either
// forwarded encrypted or not forwarded at all; every failure answers the
// client with a Kafka error code (docs/format.md, "Errors") or, where Kafka allows
// no answer (acks=0), closes the connection. It never logs record values or
// key material.
package encrypt

import (
	"context"
	"crypto/cipher"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// Keys is what the filter needs from DEK management.
type Keys interface {
	// Resolve checks that a KEK exists and is usable (kms.ErrKeyNotFound
	// when it does not exist, kms.ErrKeyUnusable when it exists but is
	// disabled or pending deletion, or was deleted after use).
	Resolve(ctx context.Context, name string) (kms.KEKRef, error)
	// Current returns the active data key for kek.
	Current(ctx context.Context, kek kms.KEKRef) (recordcrypt.Key, error)
	// Decryptor returns the AEAD for the data key an EDEK wraps.
	Decryptor(ctx context.Context, edek []byte) (cipher.AEAD, error)
}

// DetKeys is what the filter needs from the deterministic-key store
// (internal/detkey, through internal/app): the key that seals record keys of
// a binding topic under a KEK (format v2). x is the exchange being handled:
// the store reaches kseal's key topic over the upstream connection it
// offers. Both are called once per topic and request (produce) or per key
// id change (fetch), never per record, and must be safe for concurrent use.
type DetKeys interface {
	// ForWrite returns the deterministic key of (topic, kek), creating it
	// in the key topic if it has none yet.
	ForWrite(ctx context.Context, x *filter.Exchange, topic string, kek kms.KEKRef) (*recordcrypt.DetKey, error)
	// ForRead returns the deterministic key with this id; its error wraps
	// ErrUnknownDetKey when the key topic holds no such key.
	ForRead(ctx context.Context, x *filter.Exchange, topic string, id [8]byte) (*recordcrypt.DetKey, error)
}

// ErrUnknownDetKey: a record's sealed key names a deterministic key the key
// topic does not hold (after reading it again), or one of another topic.
var ErrUnknownDetKey = detkey.ErrUnknownKey

// StoreKeys is the DetKeys of a detkey.Store, reaching the key topic over
// kseal's own upstream connection of the exchange's virtual cluster.
type StoreKeys struct{ Store *detkey.Store }

// KeyTopic is the store's topic, for Options.KeyTopic.
func (s StoreKeys) KeyTopic() string { return s.Store.Topic() }

// ForWrite implements DetKeys.
func (s StoreKeys) ForWrite(ctx context.Context, x *filter.Exchange, topic string, kek kms.KEKRef) (*recordcrypt.DetKey, error) {
	return s.Store.ForWrite(ctx, x.Upstream(), topic, kek)
}

// ForRead implements DetKeys.
func (s StoreKeys) ForRead(ctx context.Context, x *filter.Exchange, topic string, id [8]byte) (*recordcrypt.DetKey, error) {
	return s.Store.ForRead(ctx, x.Upstream(), topic, id)
}

// Error codes the filter answers with (docs/format.md, "Errors").
var (
	// errRejected: REJECT policy, topic has no KEK. Not retriable.
	errRejected = kerr.PolicyViolation
	// errNoKey: a DEK could not be had (KMS down or slow). Retriable, so
	// clients retry and recover by themselves when the KMS returns.
	errNoKey = kerr.RequestTimedOut
	// errForgedMarker: a client sent a record already carrying kseal's
	// marker header; accepting it would let it plant a fake envelope.
	errForgedMarker = kerr.InvalidRecord
	// errOldFormat: magic 0/1 records for an encrypted topic.
	errOldFormat = kerr.UnsupportedForMessageFormat
	// errCorrupt: a batch kseal cannot parse.
	errCorrupt = kerr.CorruptMessage
	// errKEKMissing: fetch of records whose KEK no longer exists.
	errKEKMissing = kerr.ResourceNotFound
	// errTampered: fetch of records that fail authentication.
	errTampered = kerr.CorruptMessage
	// errUnknownTopicID: a ShareFetch topic id kseal cannot name. Retriable.
	errUnknownTopicID = kerr.UnknownTopicID
	// errFetchKMS: fetch needs a DEK the KMS cannot give now. Retriable.
	errFetchKMS = kerr.KafkaStorageError
	// errInvalidTopic: a topic name that breaks Kafka's rules.
	errInvalidTopic = kerr.InvalidTopicException
	// errDuplicate: a Produce request naming a partition twice (every
	// partition of the request gets it).
	errDuplicate = kerr.InvalidRequest
	// errControlBatch: a client's batch with the control bit set on an
	// encrypted topic.
	errControlBatch = kerr.InvalidRecord
	// errRequestTooLarge: a batch past the decompression bound, or a
	// request past limits.maxProduceRewriteBytes. Java producers split the
	// batch and retry.
	errRequestTooLarge = kerr.MessageTooLarge
	// errInternal: a bug (a recovered panic) while decrypting a partition.
	errInternal = kerr.UnknownServerError
	// errBusy: limits.maxRewriteBytes stayed full for budgetWait.
	// Retriable.
	errBusy = kerr.RequestTimedOut
	// errNoDetKey: produce to a topic whose rule encrypts keys while its
	// deterministic key cannot be had (key topic unreachable, KMS down).
	// Retriable.
	errNoDetKey = kerr.RequestTimedOut
	// errUnknownDetKey: fetch of a record whose sealed key names a
	// deterministic key the key topic does not hold (tampered key id, or
	// the key topic lost it).
	errUnknownDetKey = kerr.CorruptMessage
	// errKeyTopic: a client's Produce to kseal's key topic (a record
	// there could take the place of a deterministic key: first writer
	// wins).
	errKeyTopic = kerr.TopicAuthorizationFailed
	// errDetKeyLimit: the key topic holds more keys than
	// encryption.keyTopic.maxKeys lets kseal read (produce and fetch). Not
	// retriable: the limit must be raised.
	errDetKeyLimit = kerr.PolicyViolation
)

// Options configure a Filter.
type Options struct {
	Policy *policy.Policy
	Keys   Keys
	Log    *slog.Logger
	// KMSTimeout bounds how long one request waits for key operations.
	KMSTimeout time.Duration
	// MaxDecompressed bounds the decompressed size of one batch.
	MaxDecompressed int
	// MaxProduceRewriteBytes bounds what one Produce request may make the
	// filter decompress and write (DefaultMaxProduceRewriteBytes if 0).
	MaxProduceRewriteBytes int64
	// Budget is the process-wide budget for rewrite buffers, shared by all
	// filters (nil: a default one, DefaultMaxRewriteBytes, shared too).
	Budget *Budget
	// MaxTopicLabels caps the distinct topic label values of
	// kseal_records_total (DefaultMaxTopicLabels if 0). Metrics shared by
	// several filters take the last one's.
	MaxTopicLabels int
	Metrics        *Metrics
	// Audit receives security events (refusals, recovered panics),
	// rate-limited per topic-partition like the log lines. Nil: none.
	Audit audit.Emitter
	// DetKeys holds the deterministic keys of format v2 record keys. Nil:
	// producing to a rule that encrypts keys is refused (retriable), and
	// sealed keys cannot be opened.
	DetKeys DetKeys
	// KeyTopic is the deterministic-key store's topic: clients may not
	// produce to it through kseal ("": no such topic).
	KeyTopic string
	// Shreds tells KEKs destroyed by kseal shred (shred.go). Nil: records
	// whose KEK is gone always get the error, whatever onDestroyedKek says.
	Shreds Shreds
	// FirstOffsets is the first-encrypted-offset index (integrity.go). Nil:
	// partitions of rules enforcing from the first encrypted offset are
	// checked only from the first envelope a fetch shows.
	FirstOffsets FirstOffsets
}

// Filter is the encryption filter; one per virtual cluster.
type Filter struct {
	opts   Options
	log    *slog.Logger
	m      *Metrics
	budget *Budget
	state  atomic.Pointer[state]
	// sealed remembers which topics kseal encrypted before (kekguard.go).
	sealed sealedTopics
	// entities are the entity KEKs in use (shred.go).
	entities entityKEKs

	logLimit logLimiter
}

// state is what a reload swaps: every request uses one consistent state.
type state struct {
	policy *policy.Policy
	keys   Keys
}

// Swap installs a new policy and key source (SIGHUP reload). Requests
// already running finish with the old ones; connections are not touched.
func (f *Filter) Swap(p *policy.Policy, k Keys) {
	f.state.Store(&state{policy: p, keys: k})
}

// New returns a Filter.
func New(opts Options) *Filter {
	if opts.KMSTimeout == 0 {
		opts.KMSTimeout = 10 * time.Second
	}
	if opts.MaxDecompressed == 0 {
		opts.MaxDecompressed = records.DefaultMaxDecompressed
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.MaxProduceRewriteBytes <= 0 {
		opts.MaxProduceRewriteBytes = DefaultMaxProduceRewriteBytes
	}
	if opts.Budget == nil {
		opts.Budget = defaultBudget
	}
	if opts.MaxTopicLabels > 0 {
		opts.Metrics.topics.max.Store(int64(opts.MaxTopicLabels))
	}
	f := &Filter{opts: opts, log: opts.Log, m: opts.Metrics, budget: opts.Budget}
	f.Swap(opts.Policy, opts.Keys)
	return f
}

// MaxVersions caps the APIs whose later versions carry topic ids instead of
// names: kseal needs the name to select the KEK and bind the ciphertext.
var MaxVersions = map[int16]int16{
	int16(kmsg.Produce): 12,
	int16(kmsg.Fetch):   12,
}

// APIKeys implements filter.Filter.
func (f *Filter) APIKeys() []int16 {
	return []int16{int16(kmsg.Produce), int16(kmsg.Fetch), int16(kmsg.ShareFetch)}
}

// ResponseAPIKeys implements filter.ResponseKeyer: Fetch and ShareFetch
// responses, and Produce responses only when first encrypted offsets are
// noted (integrity.go).
func (f *Filter) ResponseAPIKeys() []int16 {
	if f.opts.FirstOffsets == nil {
		return []int16{int16(kmsg.Fetch), int16(kmsg.ShareFetch)}
	}
	return f.APIKeys()
}

// OnRequest implements filter.Filter.
func (f *Filter) OnRequest(ctx context.Context, x *filter.Exchange) error {
	if x.APIKey != int16(kmsg.Produce) {
		return nil
	}
	return f.produce(ctx, x)
}

// OnResponse implements filter.Filter.
func (f *Filter) OnResponse(ctx context.Context, x *filter.Exchange) error {
	switch kmsg.Key(x.APIKey) {
	case kmsg.Fetch, kmsg.ShareFetch:
		return f.fetch(ctx, x)
	case kmsg.Produce:
		return f.produceResponse(x) // integrity.go
	}
	return nil
}

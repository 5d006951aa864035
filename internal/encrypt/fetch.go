package encrypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/proxy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// fetchState is one connection's reusable fetch-side state.
type fetchState struct {
	walker codec.FetchWalker
	share  codec.ShareFetchWalker
	iter   records.BatchIter
	proc   *records.Processor
	out    []byte // the partition's rebuilt record set
	value  []byte // one decrypted value

	// The last EDEK seen and its AEAD: consecutive records almost always
	// share a DEK, so most records skip the cache lookup.
	lastEDEK []byte
	lastAEAD cipher.AEAD
}

var fetchStateKey = new(int)

func (f *Filter) fetchState(x *proxy.Exchange) *fetchState {
	return x.ConnState(fetchStateKey, func() any {
		return &fetchState{proc: records.NewProcessor(records.WithMaxDecompressed(f.opts.MaxDecompressed))}
	}).(*fetchState)
}

// decryptError is a record that cannot be decrypted.
type decryptError struct {
	code   *kerr.Error
	reason string
	offset int64
	dekID  recordcrypt.DEKID
	kek    string
	err    error
}

func (e *decryptError) Error() string { return e.err.Error() }

func (f *Filter) fetch(ctx context.Context, x *proxy.Exchange) error {
	st := f.fetchState(x)
	cur := f.state.Load()
	ctx, cancel := context.WithTimeout(ctx, f.opts.KMSTimeout)
	defer cancel()
	if x.APIKey == int16(kmsg.ShareFetch) {
		return x.RewriteResponse(func(dst, body []byte) ([]byte, bool, error) {
			return st.share.Walk(dst, body, x.APIVersion, func(p *codec.ShareFetchPartition) error {
				if p.ErrorCode != 0 || !mayHoldMarker(p.Records) {
					return nil
				}
				topic, ok := x.TopicName(ctx, p.TopicID)
				if !ok {
					// Without the name there is no binding to check:
					// refuse the records rather than pass ciphertext on.
					f.failPartition(p, fmt.Sprintf("%x", p.TopicID), p.Partition, &decryptError{
						code: errUnknownTopicID, reason: "unknown_topic_id", offset: -1,
						err: errors.New("topic id not found in the cluster's metadata"),
					})
					return nil
				}
				f.fetchPartition(ctx, cur, st, topic, p.Partition, p.Records, p)
				return nil
			})
		})
	}
	return x.RewriteResponse(func(dst, body []byte) ([]byte, bool, error) {
		return st.walker.Walk(dst, body, x.APIVersion, func(p *codec.FetchPartition) error {
			if p.ErrorCode != 0 || !mayHoldMarker(p.Records) {
				return nil
			}
			topic := p.Topic
			if topic == "" { // Fetch v13+ names topics by id
				name, ok := x.TopicName(ctx, p.TopicID)
				if !ok {
					f.failPartition(p, fmt.Sprintf("%x", p.TopicID), p.Partition, &decryptError{
						code: errUnknownTopicID, reason: "unknown_topic_id", offset: -1,
						err: errors.New("topic id not found in the cluster's metadata"),
					})
					return nil
				}
				topic = name
			}
			f.fetchPartition(ctx, cur, st, topic, p.Partition, p.Records, p)
			return nil
		})
	})
}

// partitionSetter is the part of codec.FetchPartition and
// codec.ShareFetchPartition the decrypt stage changes.
type partitionSetter interface {
	SetRecords([]byte)
	SetErrorCode(int16)
}

// mayHoldMarker is the cheap test that lets partitions without encrypted
// records through untouched: the marker's bytes appear in every record set
// holding one, unless compressed.
func mayHoldMarker(set []byte) bool {
	return len(set) > 0 && (bytes.Contains(set, markerKey) || anyCompressed(set))
}

// fetchPartition decrypts the partition's encrypted records. Batches with
// no encrypted record are copied as they came, never re-encoded; if no
// batch has one, the partition is left untouched. A partition that cannot
// be decrypted gets an error code and no records; the others are unaffected.
func (f *Filter) fetchPartition(ctx context.Context, cur *state, st *fetchState, topic string, partition int32, set []byte, p partitionSetter) {
	st.out = st.out[:0]
	building := false
	rebuilt := 0
	var aadTopic string
	st.iter.Reset(set)
	for st.iter.Next() {
		b := st.iter.Batch()
		if b.Kind != records.KindBatch || b.Control() || b.NumRecords == 0 {
			// Partial trailing batches, old formats and control batches are
			// forwarded as the broker sent them.
			if building {
				st.out = append(st.out, b.Raw...)
			}
			continue
		}
		has, err := false, st.proc.Reset(b)
		if err == nil {
			has, err = st.proc.HasHeader(recordcrypt.HeaderKey)
		}
		if err != nil {
			// A batch kseal cannot read may hold envelopes: passing it on
			// would hand ciphertext to the consumer as if it were the value.
			f.failPartition(p, topic, partition, &decryptError{code: errTampered, reason: "corrupt", offset: b.BaseOffset, err: err})
			return
		}
		if !has {
			if building {
				st.out = append(st.out, b.Raw...)
			}
			continue
		}
		if !building {
			building = true
			st.out = append(st.out, set[:st.iter.Offset()]...)
			aadTopic = cur.policy.AADTopic(topic)
		}
		var derr *decryptError
		st.out, err = st.proc.Rewrite(st.out, func(r *records.Record) error {
			if e := f.decryptRecord(ctx, cur, st, aadTopic, b.BaseOffset, r); e != nil {
				derr = e
				return e
			}
			return nil
		})
		if err != nil {
			if derr == nil {
				derr = &decryptError{code: errTampered, reason: "corrupt", offset: b.BaseOffset, err: err}
			}
			f.failPartition(p, topic, partition, derr)
			return
		}
		rebuilt++
	}
	if !building {
		return
	}
	f.m.decryptedBatches.Add(float64(rebuilt))
	p.SetRecords(st.out)
}

// anyCompressed reports whether a batch of a record set is compressed (then
// the marker cannot be seen without decompressing it).
func anyCompressed(set []byte) bool {
	it := records.NewBatchIter(set)
	for it.Next() {
		if b := it.Batch(); b.Kind == records.KindBatch && b.Codec() != records.CodecNone {
			return true
		}
	}
	return false
}

func (f *Filter) failPartition(p partitionSetter, topic string, partition int32, e *decryptError) {
	p.SetErrorCode(e.code.Code)
	p.SetRecords([]byte{})
	f.m.errors.WithLabelValues("fetch", e.reason).Inc()
	// A consumer stuck on a bad record fetches it again and again: log each
	// topic-partition at most once per logEvery, with the count since.
	suppressed, ok := f.logLimit.allow(topic, partition, time.Now())
	if !ok {
		return
	}
	f.log.Error("cannot decrypt records: partition answered with an error",
		"topic", topic, "partition", partition, "batchOffset", e.offset,
		"kek", e.kek, "dek", e.dekID.String(), "error", e.code.Message, "reason", e.err.Error(),
		"suppressedSinceLast", suppressed)
}

// logEvery bounds how often one topic-partition's decrypt failure is logged.
const logEvery = 10 * time.Second

// logLimiter rate-limits log lines per topic-partition (bounded: it starts
// over past 10,000 partitions).
type logLimiter struct {
	mu   sync.Mutex
	last map[logKey]*logEntry
}

type logKey struct {
	topic     string
	partition int32
}

type logEntry struct {
	at         time.Time
	suppressed int
}

func (l *logLimiter) allow(topic string, partition int32, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := logKey{topic, partition}
	if e, ok := l.last[k]; ok && now.Sub(e.at) < logEvery {
		e.suppressed++
		return 0, false
	}
	if l.last == nil || len(l.last) > 10_000 {
		l.last = map[logKey]*logEntry{}
	}
	n := 0
	if e, ok := l.last[k]; ok {
		n = e.suppressed
	}
	// The topic may alias a response buffer: the map keeps its own copy.
	l.last[logKey{strings.Clone(topic), partition}] = &logEntry{at: now}
	return n, true
}

func (f *Filter) decryptRecord(ctx context.Context, cur *state, st *fetchState, aadTopic string, base int64, r *records.Record) *decryptError {
	i := -1
	for j := range r.Headers {
		if string(r.Headers[j].Key) == recordcrypt.HeaderKey {
			i = j
			break
		}
	}
	if i < 0 {
		return nil // a plaintext record (written before the topic was encrypted)
	}
	offset := base + int64(r.OffsetDelta)
	fail := func(code *kerr.Error, reason string, err error) *decryptError {
		return &decryptError{code: code, reason: reason, offset: offset, err: err}
	}
	if r.Value == nil {
		return fail(errTampered, "tampered", errors.New("marker header on a null value"))
	}
	env, err := recordcrypt.Parse(r.Value)
	if err == nil {
		err = recordcrypt.CheckMarker(r.Headers[i].Value, env)
	}
	if err != nil {
		return fail(errTampered, "tampered", err)
	}
	aead := st.lastAEAD
	if aead == nil || !bytes.Equal(env.EDEK, st.lastEDEK) {
		aead, err = cur.keys.Decryptor(ctx, env.EDEK)
		if err != nil {
			var e *decryptError
			switch {
			case errors.Is(err, kms.ErrKeyNotFound):
				e = fail(errKEKMissing, "kek_missing", err)
			case dek.Retriable(err):
				e = fail(errFetchKMS, "kms", err) // transient: consumers retry
			default:
				// The KMS refused the EDEK (altered, or not its key): the
				// record is corrupt for every reader, retrying cannot help.
				e = fail(errTampered, "tampered", err)
			}
			e.dekID = env.DEKID()
			e.kek = describeKEK(cur.keys, env.EDEK)
			return e
		}
		st.lastEDEK = append(st.lastEDEK[:0], env.EDEK...)
		st.lastAEAD = aead
	}
	v, err := recordcrypt.Open(st.value[:0], aead, env, recordcrypt.Binding{Topic: aadTopic, Key: r.Key})
	if err != nil {
		e := fail(errTampered, "tampered", fmt.Errorf("record at offset %d: %w", offset, err))
		e.dekID = env.DEKID()
		return e
	}
	st.value = v
	r.Value = v
	r.Headers = append(r.Headers[:i], r.Headers[i+1:]...)
	return nil
}

// describeKEK names the KEK an EDEK belongs to, for log lines.
func describeKEK(keys Keys, edek []byte) string {
	if d, ok := keys.(interface {
		DescribeEDEK([]byte) (kms.EDEKInfo, error)
	}); ok {
		if info, err := d.DescribeEDEK(edek); err == nil {
			return strings.TrimSpace(info.KEK + " " + info.Version)
		}
	}
	return "unknown"
}

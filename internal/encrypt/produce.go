package encrypt

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/frame"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/proxy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

var marker = []byte{recordcrypt.Version1}

// produceState is one connection's reusable produce-side state.
type produceState struct {
	req   codec.ProduceRequest
	iter  records.BatchIter
	proc  *records.Processor
	out   []byte // every rewritten partition's record set, back to back
	value []byte // one sealed value
}

var produceStateKey = new(int)

func (f *Filter) produceState(x *proxy.Exchange) *produceState {
	return x.ConnState(produceStateKey, func() any {
		return &produceState{proc: records.NewProcessor(records.WithMaxDecompressed(f.opts.MaxDecompressed))}
	}).(*produceState)
}

// partitionError is why one partition cannot be forwarded.
type partitionError struct {
	code   *kerr.Error
	reason string // metric label
	err    error
}

func (f *Filter) produce(ctx context.Context, x *proxy.Exchange) error {
	st := f.produceState(x)
	if codec.ProduceLegacyVersion(x.APIVersion) {
		// Old message formats cannot carry encrypted records; no Kafka 4
		// broker accepts them either. Refuse rather than forward plaintext.
		return fmt.Errorf("produce v%d (legacy message format) refused", x.APIVersion)
	}
	if err := st.req.Parse(x.Request[x.HeaderLen:], x.APIVersion); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.KMSTimeout)
	defer cancel()

	cur := f.state.Load()
	st.out = st.out[:0]
	failed := 0
	var firstErr *partitionError
	for ti := range st.req.Topics {
		t := &st.req.Topics[ti]
		topic := string(t.Name) // one small allocation per topic, not per record
		var idErr *partitionError
		if t.Name == nil {
			// Produce v13 names topics by id. kseal does not advertise it, but
			// a client may send it anyway: without the name neither policy nor
			// binding can be applied, so refuse rather than pass it on.
			name, ok := x.TopicName(ctx, t.ID)
			if !ok {
				idErr = &partitionError{code: errUnknownTopicID, reason: "unknown_topic_id",
					err: fmt.Errorf("topic id %x not found in the cluster's metadata", t.ID)}
			}
			topic = name
		}
		for pi := range t.Partitions {
			p := &t.Partitions[pi]
			pe := idErr
			if pe == nil {
				pe = f.producePartition(ctx, cur, st, topic, p)
			}
			if pe != nil {
				failed++
				p.Reject(pe.code.Code, pe.code.Message)
				f.m.errors.WithLabelValues("produce", pe.reason).Inc()
				f.log.Warn("produce refused", "topic", topic, "partition", p.Partition,
					"error", pe.code.Message, "reason", pe.err.Error())
				if firstErr == nil {
					firstErr = pe
				}
			}
		}
	}
	if failed == 0 {
		if st.req.Changed() {
			out := append(x.Scratch(), x.Request[:x.HeaderLen]...)
			x.Request = st.req.AppendTo(out)
		}
		return nil
	}
	if st.req.Acks == 0 {
		// No response can carry the error: closing is the only refusal.
		return fmt.Errorf("acks=0 produce refused (%s): %w", firstErr.code.Message, firstErr.err)
	}
	// Refuse the whole request: refused partitions get their own code,
	// the others a retriable one, so producers fail exactly the refused
	// batches and send the rest again (nothing was written).
	msg, start := frame.StartResponse(x.Scratch(), x.CorrelationID, respHeaderVersion(x))
	msg = codec.BuildProduceErrorResponse(msg, &st.req, func(t *codec.ProduceTopic, partition int32) int16 {
		for i := range t.Partitions {
			if t.Partitions[i].Partition == partition {
				if code, _, ok := t.Partitions[i].Rejected(); ok {
					return code
				}
			}
		}
		return errNoKey.Code
	})
	if err := frame.FinishFrame(msg, start); err != nil {
		return err
	}
	x.Response = msg[frame.SizeLen:]
	x.Local = true
	return nil
}

func respHeaderVersion(x *proxy.Exchange) int8 {
	v, _ := frame.ResponseHeaderVersion(x.APIKey, x.APIVersion)
	return v
}

// producePartition encrypts one partition's records in place of the
// original (p.Replace) or says why it cannot be forwarded.
func (f *Filter) producePartition(ctx context.Context, cur *state, st *produceState, topic string, p *codec.ProducePartition) *partitionError {
	if p.Records == nil {
		return nil
	}
	sel := cur.policy.Select(topic)
	switch sel.Action {
	case policy.Passthrough:
		f.countPlain(topic, p.Records)
		return nil
	case policy.Unresolved:
		return f.unresolved(cur, topic, p.Records, "no policy rule matches")
	}
	kek, err := cur.keys.Resolve(ctx, sel.KEK)
	if errors.Is(err, kms.ErrKeyNotFound) {
		return f.unresolved(cur, topic, p.Records, fmt.Sprintf("KEK %q does not exist", sel.KEK))
	}
	if err != nil {
		return &partitionError{code: errNoKey, reason: "kms", err: fmt.Errorf("resolve KEK %q: %w", sel.KEK, err)}
	}
	key, err := cur.keys.Current(ctx, kek)
	if err != nil {
		return &partitionError{code: errNoKey, reason: "kms", err: fmt.Errorf("data key for KEK %q: %w", sel.KEK, err)}
	}
	aadTopic := cur.policy.AADTopic(topic)
	start := len(st.out)
	n := 0
	st.iter.Reset(p.Records)
	for st.iter.Next() {
		b := st.iter.Batch()
		if b.Kind != records.KindBatch {
			st.out = st.out[:start]
			if b.Kind == records.KindLegacy {
				return &partitionError{code: errOldFormat, reason: "legacy_format", err: fmt.Errorf("magic %d records cannot be encrypted", b.Magic)}
			}
			return &partitionError{code: errCorrupt, reason: "corrupt", err: errors.New("truncated record batch")}
		}
		if err := st.proc.Reset(b); err != nil {
			st.out = st.out[:start]
			return &partitionError{code: errCorrupt, reason: "corrupt", err: err}
		}
		var sealErr, forged error
		st.out, err = st.proc.Rewrite(st.out, func(r *records.Record) error {
			for i := range r.Headers {
				if string(r.Headers[i].Key) == recordcrypt.HeaderKey {
					forged = fmt.Errorf("record at offset delta %d already has a %q header", r.OffsetDelta, recordcrypt.HeaderKey)
					return forged
				}
			}
			if r.Value == nil {
				return nil // tombstones stay null: compaction needs them
			}
			b := recordcrypt.Binding{Topic: aadTopic, Key: r.Key}
			v, err := recordcrypt.Seal(st.value[:0], key, b, r.Value)
			if errors.Is(err, dek.ErrExhausted) {
				// The DEK reached its cap inside this batch: records are
				// self-describing, so the rest can use the next DEK.
				if key, err = cur.keys.Current(ctx, kek); err == nil {
					v, err = recordcrypt.Seal(st.value[:0], key, b, r.Value)
				}
			}
			if err != nil {
				sealErr = err
				return err
			}
			st.value = v
			r.Value = v
			r.Headers = append(r.Headers, records.RecordHeader{Key: markerKey, Value: marker})
			n++
			return nil
		})
		if err != nil {
			st.out = st.out[:start]
			if forged != nil {
				return &partitionError{code: errForgedMarker, reason: "forged_marker", err: forged}
			}
			if sealErr != nil {
				// The DEK reached its cap mid-batch: the next request gets a new one.
				return &partitionError{code: errNoKey, reason: "dek", err: sealErr}
			}
			return &partitionError{code: errCorrupt, reason: "corrupt", err: err}
		}
	}
	if err := st.iter.Err(); err != nil {
		st.out = st.out[:start]
		return &partitionError{code: errCorrupt, reason: "corrupt", err: err}
	}
	p.Replace(st.out[start:len(st.out):len(st.out)])
	f.m.records.WithLabelValues(topic, "produce", "encrypted").Add(float64(n))
	return nil
}

var markerKey = []byte(recordcrypt.HeaderKey)

// unresolved applies the unresolvedKeyPolicy.
func (f *Filter) unresolved(cur *state, topic string, recs []byte, why string) *partitionError {
	if cur.policy.UnresolvedKeyPolicy() == policy.Reject {
		return &partitionError{code: errRejected, reason: "rejected", err: errors.New(why + " and unresolvedKeyPolicy is REJECT")}
	}
	f.countPlain(topic, recs)
	return nil
}

func (f *Filter) countPlain(topic string, recs []byte) {
	var n int64 // the client's record counts: may be negative or add past int32
	it := records.NewBatchIter(recs)
	for it.Next() {
		if b := it.Batch(); b.Kind == records.KindBatch && !b.Control() && b.NumRecords > 0 {
			n += int64(b.NumRecords)
		}
	}
	f.m.records.WithLabelValues(topic, "produce", "plaintext").Add(float64(n))
}

package encrypt

// Encrypted topics accept only encrypted records (docs/policy.md,
// "Encrypted topics accept only encrypted records"; docs/threat-model.md,
// "Plaintext injection"). On Fetch and ShareFetch, a partition of a topic
// whose rule has requireEncrypted is checked record by record: from its
// first encrypted offset (or from offset 0 with requireEncryptedFrom:
// earliest) a record with something the rule encrypts that is not a kseal
// envelope is refused; at any offset, a version 2 record with a part the
// rule encrypts left in clear and an envelope under a KEK the rule does not
// allow are refused. Refusals are handled like a record that cannot be
// decrypted (CORRUPT_MESSAGE, the batches before delivered). The first
// encrypted offset of a partition is what kseal learns from the broker's
// answers to the Produce requests it encrypted (kept in the key topic,
// internal/detkey firstoffset.go), lowered by any valid envelope a fetch
// shows.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// FirstOffsets is what the filter needs of the first-encrypted-offset index
// (detkey.Store, through StoreKeys). Both are safe for concurrent use.
type FirstOffsets interface {
	// FirstEncrypted returns the first encrypted offset of the partition
	// (ok false: none known). An error (retriable: wraps
	// dek.ErrUnavailable) means it cannot be known now.
	FirstEncrypted(ctx context.Context, x *filter.Exchange, topic string, partition int32) (offset int64, ok bool, err error)
	// NoteEncrypted notes a batch kseal encrypted that the broker appended
	// at offset. It never waits for the upstream cluster, does not keep
	// topic past the call, and allocates nothing when an offset as low is
	// known.
	NoteEncrypted(x *filter.Exchange, topic string, partition int32, offset int64)
}

// FirstEncrypted implements FirstOffsets.
func (s StoreKeys) FirstEncrypted(ctx context.Context, x *filter.Exchange, topic string, partition int32) (int64, bool, error) {
	return s.Store.FirstEncrypted(ctx, x.Upstream(), topic, partition)
}

// NoteEncrypted implements FirstOffsets.
func (s StoreKeys) NoteEncrypted(x *filter.Exchange, topic string, partition int32, offset int64) {
	s.Store.NoteEncrypted(x.Upstream(), topic, partition, offset)
}

// Error codes of the integrity checks (docs/format.md, "Errors").
var (
	// errInjected: a record of a requireEncrypted topic that is not an
	// envelope, lacks a part, or is under a KEK the rule does not allow.
	errInjected = kerr.CorruptMessage
	// errNoFirstOffset: the first encrypted offset cannot be known now
	// (key topic unreadable since start). Retriable, as a KMS outage.
	errNoFirstOffset = errFetchKMS
)

// guard is the requirement being enforced on the partition a fetch worker
// is reading.
type guard struct {
	on    bool
	from  int64 // records at offsets >= from need envelopes (MaxInt64: none yet)
	sel   policy.Selection
	topic string
}

// integrityState is a fetch worker's integrity state: the guard of its
// partition and the EDEKs whose KEK was found allowed, for which topic.
type integrityState struct {
	guard      guard
	allowEDEKs map[string]struct{} // EDEKs of allowTopic found allowed (at most maxAllowedEDEKs)
	allowTopic string
}

// startGuard sets w's guard for a partition of topic selected as sel.
func (f *Filter) startGuard(ctx context.Context, cur *state, x *filter.Exchange, w *fetchWorker, topic string, partition int32, sel policy.Selection) *decryptError {
	req := cur.policy.Require(sel)
	w.integ.guard = guard{on: req.On && sel.Action == policy.Encrypt, from: math.MaxInt64, sel: sel, topic: topic}
	g := &w.integ.guard
	switch {
	case !g.on:
		return nil
	case topic == f.opts.KeyTopic:
		// kseal's own bookkeeping (a rule matching every topic matches it
		// too): its records are never envelopes.
		g.on = false
		return nil
	case req.Earliest:
		g.from = math.MinInt64
		return nil
	case f.opts.FirstOffsets == nil:
		return nil // only what a fetch shows (an envelope) sets from
	}
	from, ok, err := f.opts.FirstOffsets.FirstEncrypted(ctx, x, topic, partition)
	if err != nil {
		return &decryptError{code: errNoFirstOffset, reason: "first_offset", offset: -1,
			err: fmt.Errorf("first encrypted offset of topic %s partition %d: %w", topic, partition, err)}
	}
	if ok {
		g.from = from
	}
	return nil
}

// seen lowers the guard's offset to a valid envelope's: whatever the key
// topic says, kseal had encrypted into the partition by then.
func (g *guard) seen(offset int64) {
	if g.on && offset < g.from {
		g.from = offset
	}
}

// clearParts returns the parts the rule encrypts that r holds in clear: a
// non-null value, a non-null key, a header (not the marker) whose name the
// rule's patterns match. For a record without marker that is exactly what
// sealing would have encrypted (recordcrypt.SealV2's "nothing to encrypt"
// is clearParts == 0).
func clearParts(sel policy.Selection, r *records.Record) policy.Parts {
	var p policy.Parts
	if sel.Parts&policy.PartValue != 0 && r.Value != nil {
		p |= policy.PartValue
	}
	if sel.Parts&policy.PartKey != 0 && r.Key != nil {
		p |= policy.PartKey
	}
	if sel.Parts&policy.PartHeaders != 0 {
		for i := range r.Headers {
			if k := r.Headers[i].Key; string(k) != recordcrypt.HeaderKey && sel.EncryptHeader(k) {
				p |= policy.PartHeaders
				break
			}
		}
	}
	return p
}

// injected is the error for a record of a guarded partition refused.
func (f *Filter) injected(w *fetchWorker, offset int64, reason string, err error) *decryptError {
	f.m.injected.get(w.integ.guard.topic).Inc()
	return &decryptError{code: errInjected, reason: reason, offset: offset, err: err}
}

// plainRecord checks a record without marker of a guarded partition.
func (f *Filter) plainRecord(w *fetchWorker, offset int64, r *records.Record) *decryptError {
	g := &w.integ.guard
	if !g.on || offset < g.from {
		return nil
	}
	if p := clearParts(g.sel, r); p != 0 {
		return f.injected(w, offset, "injected", fmt.Errorf("record at offset %d is not encrypted (%s in clear) on a topic that requires encrypted records from offset %s", offset, p, fromString(g.from)))
	}
	return nil
}

func fromString(from int64) string {
	if from == math.MinInt64 {
		return "0 (requireEncryptedFrom: earliest)"
	}
	return fmt.Sprint(from)
}

// plainBatch checks the records of a loaded batch without marker.
func (f *Filter) plainBatch(w *fetchWorker, b *records.Batch) *decryptError {
	g := &w.integ.guard
	if !g.on || b.BaseOffset+int64(b.LastOffsetDelta) < g.from {
		return nil
	}
	w.proc.Rewind()
	for w.proc.Next() {
		r := w.proc.Record()
		if e := f.plainRecord(w, b.BaseOffset+int64(r.OffsetDelta), r); e != nil {
			return e
		}
	}
	if err := w.proc.Err(); err != nil {
		return &decryptError{code: errTampered, reason: "corrupt", offset: b.BaseOffset, err: err}
	}
	return nil
}

// legacyBatch refuses a magic 0/1 entry at or after the guard's offset:
// kseal never writes one into an encrypted topic.
func (f *Filter) legacyBatch(w *fetchWorker, b *records.Batch) *decryptError {
	g := &w.integ.guard
	if !g.on || b.Kind != records.KindLegacy || b.BaseOffset < g.from {
		return nil
	}
	return f.injected(w, b.BaseOffset, "injected", fmt.Errorf("a magic %d message set at offset %d on a topic that requires encrypted records", b.Magic, b.BaseOffset))
}

// checkPartsV2 refuses a version 2 record that leaves in clear a part the
// rule encrypts: a value or key kseal would have sealed, or any header the
// rule's patterns match (kseal seals every such header; one in clear was
// added by someone else).
func (f *Filter) checkPartsV2(w *fetchWorker, offset int64, rec recordcrypt.RecordV2, r *records.Record) *decryptError {
	g := &w.integ.guard
	if !g.on {
		return nil
	}
	clear := clearParts(g.sel, r)
	missing := clear &^ policy.Parts(rec.Parts) &^ policy.PartHeaders
	missing |= clear & policy.PartHeaders
	if missing != 0 {
		return f.injected(w, offset, "parts_missing", fmt.Errorf("record at offset %d has %s in clear, which the rule encrypts", offset, missing))
	}
	return nil
}

// checkKEK refuses an envelope whose EDEK names a KEK the rule does not
// allow (policy.KEKAllowed; for providers whose EDEKs carry a key id, such
// as AWS, the allowed names resolved to their ids). The EDEKs found allowed
// are remembered per worker and topic (up to maxAllowedEDEKs), so records of
// tenants interleaved under entity KEKs are not described again each time.
func (f *Filter) checkKEK(ctx context.Context, cur *state, w *fetchWorker, offset int64, edek []byte) *decryptError {
	g := &w.integ.guard
	if !g.on {
		return nil
	}
	if w.integ.allowTopic == g.topic {
		if _, ok := w.integ.allowEDEKs[string(edek)]; ok {
			return nil
		}
	}
	d, ok := cur.keys.(interface {
		DescribeEDEK([]byte) (kms.EDEKInfo, error)
	})
	if !ok {
		return nil // a Keys that cannot describe EDEKs (test doubles): not checked
	}
	info, err := d.DescribeEDEK(edek)
	if err != nil {
		return f.injected(w, offset, "kek_not_allowed", fmt.Errorf("record at offset %d: EDEK not of the configured KMS: %w", offset, err))
	}
	allowed := cur.policy.KEKAllowed(g.topic, g.sel, info.KEK)
	if !allowed {
		var retry error
		for _, name := range cur.policy.AllowedKEKNames(g.topic, g.sel) {
			ref, err := cur.keys.Resolve(ctx, name)
			switch {
			case err == nil && ref.ID != "" && ref.ID == info.KEK:
				allowed = true
			case err != nil && !errors.Is(err, kms.ErrKeyNotFound) && !errors.Is(err, kms.ErrKeyUnusable) && retry == nil:
				retry = err
			}
			if allowed {
				break
			}
		}
		if !allowed && retry != nil {
			reason := "kms"
			if errors.Is(retry, kms.ErrAccessDenied) {
				reason = reasonKMSDenied
			}
			return &decryptError{code: errFetchKMS, reason: reason, offset: offset, kek: info.KEK,
				err: fmt.Errorf("record at offset %d: resolving the KEKs the rule allows: %w", offset, retry)}
		}
	}
	if !allowed {
		e := f.injected(w, offset, "kek_not_allowed", fmt.Errorf("record at offset %d is encrypted under KEK %q, which the rule for topic %s does not allow (%s)",
			offset, info.KEK, g.topic, strings.Join(cur.policy.AllowedKEKNames(g.topic, g.sel), ", ")))
		e.kek = info.KEK
		return e
	}
	if w.integ.allowTopic != g.topic {
		w.integ.allowTopic = strings.Clone(g.topic) // g.topic may alias the response
		clear(w.integ.allowEDEKs)
	}
	if w.integ.allowEDEKs == nil {
		w.integ.allowEDEKs = make(map[string]struct{})
	}
	if len(w.integ.allowEDEKs) >= maxAllowedEDEKs {
		clear(w.integ.allowEDEKs)
	}
	w.integ.allowEDEKs[string(edek)] = struct{}{}
	return nil
}

// maxAllowedEDEKs bounds the EDEKs a fetch worker remembers as allowed (a
// few per KEK in use; entity rules have one KEK per tenant).
const maxAllowedEDEKs = 256

// guardIdle reports whether a guarded partition's records need no look:
// no record can hold a marker (so none can lower the offset) and none lies
// at or after the offset checks start from.
func guardIdle(w *fetchWorker, set []byte) bool {
	g := &w.integ.guard
	if !g.on || mayHoldMarker(set) {
		return false
	}
	if g.from == math.MaxInt64 {
		return true
	}
	last := int64(math.MinInt64)
	it := records.NewBatchIter(set)
	for it.Next() {
		if b := it.Batch(); b.Kind != records.KindPartial {
			last = max(last, b.BaseOffset+int64(b.LastOffsetDelta))
		}
	}
	return last < g.from
}

// plainRefused refuses to forward in clear (a KEK that does not exist
// under PASSTHROUGH_UNENCRYPTED) records of a topic whose rule requires
// encrypted records from offset 0: consumers through kseal could not read
// them. With first-encrypted, such a topic has no envelope in its newest
// batches (kekMissing checked), so kseal takes it as never encrypted.
func (f *Filter) plainRefused(cur *state, sel policy.Selection, topic string) *partitionError {
	if req := cur.policy.Require(sel); req.On && req.Earliest {
		return &partitionError{code: errRejected, reason: "rejected",
			err: fmt.Errorf("KEK %q does not exist, and the rule for topic %s requires encrypted records from offset 0 (requireEncryptedFrom: earliest): refusing plaintext", sel.KEK, topic)}
	}
	return nil
}

// noteProduce marks a Produce request whose response should note first
// encrypted offsets: one that encrypted a partition of a rule enforcing
// from the first encrypted offset, and forwarded no partition of an
// encrypting rule in clear. x.State holds the state the request used, so a
// reload between request and response notes nothing.
func (f *Filter) noteProduce(x *filter.Exchange, st *produceState, cur *state) {
	if f.opts.FirstOffsets != nil && st.noteOffsets && !st.passedPlain && st.req.Acks != 0 {
		x.State = cur
	}
}

// produceResponse notes the base offsets of the partitions a Produce
// response accepted, for topics enforcing from the first encrypted offset.
func (f *Filter) produceResponse(x *filter.Exchange) error {
	cur, ok := x.State.(*state)
	if !ok || cur != f.state.Load() || f.opts.FirstOffsets == nil {
		return nil
	}
	err := codec.WalkProduceOffsets(x.Response[x.RespHeaderLen:], x.APIVersion, func(p codec.ProducePartitionResult) {
		if p.ErrorCode != 0 || p.BaseOffset < 0 || len(p.Topic) == 0 {
			return
		}
		sel := cur.policy.SelectBytes(p.Topic)
		if req := cur.policy.Require(sel); sel.Action != policy.Encrypt || !req.On || req.Earliest {
			return
		}
		// The index copies the name if it keeps it.
		f.opts.FirstOffsets.NoteEncrypted(x, unsafe.String(unsafe.SliceData(p.Topic), len(p.Topic)), p.Partition, p.BaseOffset)
	})
	if err != nil {
		// The response goes to the client as it is; only the note is lost
		// (the next encrypted batch makes it).
		f.log.Warn("cannot read the base offsets of a produce response", "error", err)
	}
	return nil
}

// injectedLabels bounds the topic label of
// kseal_injected_records_refused_total like kseal_records_total's: the
// first max topics get their own series, later ones count as "<other>".
type injectedLabels struct {
	vec   *prometheus.CounterVec
	max   *atomic.Int64
	other prometheus.Counter
	mu    sync.Mutex
	m     atomic.Pointer[map[string]prometheus.Counter]
}

func newInjectedLabels(vec *prometheus.CounterVec, max *atomic.Int64) *injectedLabels {
	l := &injectedLabels{vec: vec, max: max, other: vec.WithLabelValues(otherTopics)}
	empty := map[string]prometheus.Counter{}
	l.m.Store(&empty)
	return l
}

func (l *injectedLabels) get(topic string) prometheus.Counter {
	if c, ok := (*l.m.Load())[topic]; ok {
		return c
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := *l.m.Load()
	if c, ok := m[topic]; ok {
		return c
	}
	if !validTopic(topic) || len(m) >= int(l.max.Load()) {
		return l.other
	}
	next := make(map[string]prometheus.Counter, len(m)+1)
	for k, v := range m {
		next[k] = v
	}
	name := strings.Clone(topic)
	next[name] = l.vec.WithLabelValues(name)
	l.m.Store(&next)
	return next[name]
}

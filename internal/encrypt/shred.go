package encrypt

// Crypto-shredding per entity (docs/shredding.md): records of one topic
// encrypted under per-entity KEKs chosen from each record (policy's
// $(header:NAME), $(key), $(key:REGEX)), and the delivery of records whose
// KEK `kseal shred` destroyed.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

var (
	// errEntity: a record of an entity rule whose entity reference is
	// missing, null or not a valid entity. Not retriable.
	errEntity = kerr.InvalidRecord
	// errEntityLimit: a record needing a new entity KEK beyond
	// encryption.policy.maxKeksPerTopic or maxKeks. Not retriable.
	errEntityLimit = kerr.PolicyViolation
	// errEntityKEKMissing: an entity KEK that does not exist in the KMS
	// (never passed through, whatever unresolvedKeyPolicy says).
	errEntityKEKMissing = kerr.PolicyViolation
)

// ShreddedHeader is the header a record whose KEK was shredded is delivered
// with under onDestroyedKek: NULL_VALUE; its value is the KEK name.
const ShreddedHeader = "kseal.shredded"

// Shreds tells a KEK destroyed on purpose (kseal shred wrote a shred record
// into the key topic) from one that is merely gone or unreachable.
type Shreds interface {
	// Shredded reports whether the key topic holds a shred record for kek
	// (a KEK name, or the KMS's id of it as an EDEK names it), and the KEK
	// name it records. An error means it cannot tell: never shredded then.
	Shredded(ctx context.Context, x *filter.Exchange, kek string) (name string, ok bool, err error)
	// KEKOf names the KEK of a deterministic key (a record whose key alone
	// is sealed carries no EDEK).
	KEKOf(id [8]byte) (string, bool)
}

// Shredded implements Shreds.
func (s StoreKeys) Shredded(ctx context.Context, x *filter.Exchange, kek string) (string, bool, error) {
	r, err := s.Store.Shredded(ctx, x.Upstream(), kek)
	if err != nil || r == nil {
		return "", false, err
	}
	return r.KEK, true, nil
}

// KEKOf implements Shreds.
func (s StoreKeys) KEKOf(id [8]byte) (string, bool) { return s.Store.KEKOf(id) }

// shredMetrics are the metrics of this file.
type shredMetrics struct {
	keks     prometheus.Gauge
	refusals *prometheus.CounterVec
	shredded *prometheus.CounterVec

	// topics are kseal_shredded_records_total's children: read through an
	// atomic pointer (no lock), copied under mu for a new topic.
	mu     sync.Mutex
	topics atomic.Pointer[map[string]prometheus.Counter]
}

func newShredMetrics() *shredMetrics {
	m := &shredMetrics{
		keks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kseal_entity_keks",
			Help: "Distinct entity KEKs (rules whose kek uses $(header:...) or $(key...)) in use by this process (at most encryption.policy.maxKeks).",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_entity_kek_refusals_total",
			Help: "Produced partitions refused because a record needed a new entity KEK beyond a bound, by scope (topic: maxKeksPerTopic; process: maxKeks).",
		}, []string{"scope"}),
		shredded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_shredded_records_total",
			Help: "Records delivered with a null value because kseal shred destroyed their KEK (onDestroyedKek: NULL_VALUE), by topic (at most maxTopicLabels topics, the rest as \"<other>\").",
		}, []string{"topic"}),
	}
	empty := map[string]prometheus.Counter{}
	m.topics.Store(&empty)
	return m
}

func (m *shredMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.keks, m.refusals, m.shredded}
}

// shreddedFor returns topic's counter (capped like kseal_records_total).
func (m *shredMetrics) shreddedFor(topic string, max int) prometheus.Counter {
	if c, ok := (*m.topics.Load())[topic]; ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.topics.Load()
	if c, ok := cur[topic]; ok {
		return c
	}
	if len(cur) >= max {
		topic = otherTopics
		if c, ok := cur[topic]; ok {
			return c
		}
	}
	next := make(map[string]prometheus.Counter, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	topic = strings.Clone(topic) // it may alias a response buffer
	c := m.shredded.WithLabelValues(topic)
	next[topic] = c
	m.topics.Store(&next)
	return c
}

// entityKEK is one entity KEK in use: its name, interned once.
type entityKEK struct{ name string }

// entityKEKs are the entity KEKs the process uses, per topic, bounded by
// maxKeksPerTopic and maxKeks. Lookups read immutable maps through atomic
// pointers (no lock, no allocation); adding copies a topic's map under a
// mutex, at most maxKeks times between removals.
type entityKEKs struct {
	mu     sync.Mutex
	total  int
	topics atomic.Pointer[map[string]*topicKEKs]
}

type topicKEKs struct {
	m atomic.Pointer[map[string]*entityKEK]
}

var errKEKLimit = errors.New("entity KEK limit")

func (e *entityKEKs) topic(topic string) *topicKEKs {
	if m := e.topics.Load(); m != nil {
		return (*m)[topic]
	}
	return nil
}

// lookup finds an entity KEK of topic by its rendered name. It allocates
// nothing.
func (e *entityKEKs) lookup(topic string, name []byte) *entityKEK {
	t := e.topic(topic)
	if t == nil {
		return nil
	}
	if m := t.m.Load(); m != nil {
		return (*m)[string(name)]
	}
	return nil
}

// add records name as an entity KEK of topic, unless that would pass a
// bound (the error then says which: "topic" or "process").
func (e *entityKEKs) add(topic, name string, perTopic, max int, gauge prometheus.Gauge) (*entityKEK, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topic(topic)
	var cur map[string]*entityKEK
	if t != nil {
		if m := t.m.Load(); m != nil {
			cur = *m
		}
		if k := cur[name]; k != nil {
			return k, "", nil
		}
	}
	switch {
	case len(cur) >= perTopic:
		return nil, "topic", fmt.Errorf("%w: topic %s already uses %d entity KEKs (encryption.policy.maxKeksPerTopic)", errKEKLimit, topic, len(cur))
	case e.total >= max:
		return nil, "process", fmt.Errorf("%w: this kseal already uses %d entity KEKs (encryption.policy.maxKeks)", errKEKLimit, e.total)
	}
	if t == nil {
		t = &topicKEKs{}
		next := map[string]*topicKEKs{}
		if m := e.topics.Load(); m != nil {
			for k, v := range *m {
				next[k] = v
			}
		}
		next[strings.Clone(topic)] = t
		e.topics.Store(&next)
	}
	k := &entityKEK{name: name}
	next := make(map[string]*entityKEK, len(cur)+1)
	for n, v := range cur {
		next[n] = v
	}
	next[name] = k
	t.m.Store(&next)
	e.total++
	gauge.Set(float64(e.total))
	return k, "", nil
}

// remove forgets an entity KEK (it does not exist or is unusable: it no
// longer counts against the bounds).
func (e *entityKEKs) remove(topic, name string, gauge prometheus.Gauge) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topic(topic)
	if t == nil {
		return
	}
	m := t.m.Load()
	if m == nil || (*m)[name] == nil {
		return
	}
	next := make(map[string]*entityKEK, len(*m))
	for n, v := range *m {
		if n != name {
			next[n] = v
		}
	}
	t.m.Store(&next)
	e.total--
	gauge.Set(float64(e.total))
}

// entityState is a produce connection's per-partition memo of entity KEKs:
// each distinct KEK of the partition is resolved and its DEK fetched once.
type entityState struct {
	buf   []byte             // a rendered KEK name
	idx   map[*entityKEK]int // into memo
	memo  []entityKey        // this partition's KEKs
	order []int              // per record of the batch: its memo index
}

type entityKey struct {
	ref kms.KEKRef
	key recordcrypt.Key
	dk  *recordcrypt.DetKey
}

func (es *entityState) reset() {
	if es.idx == nil {
		es.idx = map[*entityKEK]int{}
	}
	clear(es.idx)
	clear(es.memo) // drop key references
	es.memo = es.memo[:0]
	if cap(es.memo) > maxKeptPartitions {
		es.memo, es.idx = nil, map[*entityKEK]int{}
	}
}

// produceEntity encrypts one partition of a topic whose rule takes its KEK
// from each record (policy Selection.Entity): as producePartition, with the
// KEK of every record chosen before the batch is rewritten, so a record
// that names no valid entity, a KEK beyond the bounds or one the KMS lacks
// refuses the partition before anything is encrypted.
func (f *Filter) produceEntity(ctx context.Context, cur *state, st *produceState, topic string, p *codec.ProducePartition, sel policy.Selection) *partitionError {
	st.ent.reset()
	return f.sealPartition(ctx, cur, st, topic, p, sel, nil)
}

// entityKeys chooses the KEK of every record of the loaded batch (in
// st.ent.order) and returns the longest EDEK among them.
func (f *Filter) entityKeys(ctx context.Context, cur *state, st *produceState, topic, aadTopic string, sel policy.Selection, v2 bool) (int, *partitionError) {
	es := &st.ent
	es.order = es.order[:0]
	edekMax := 0
	st.proc.Rewind()
	for st.proc.Next() {
		r := st.proc.Record()
		name, err := sel.AppendKEK(es.buf[:0], r.Key, r.Headers)
		es.buf = name
		if err != nil {
			return 0, &partitionError{code: errEntity, reason: "entity",
				err: fmt.Errorf("record at offset delta %d: %w", r.OffsetDelta, err)}
		}
		i, pe := f.entityKey(ctx, cur, st, topic, aadTopic, sel, v2, name)
		if pe != nil {
			return 0, pe
		}
		es.order = append(es.order, i)
		edekMax = max(edekMax, len(es.memo[i].key.EDEK()))
	}
	if err := st.proc.Err(); err != nil {
		return 0, &partitionError{code: errCorrupt, reason: "corrupt", err: err}
	}
	return edekMax, nil
}

// entityKey returns the memo index of the KEK named name, resolving it and
// fetching its DEK (and deterministic key) the first time in the partition.
// In steady state (the KEK known to the process) it allocates nothing.
func (f *Filter) entityKey(ctx context.Context, cur *state, st *produceState, topic, aadTopic string, sel policy.Selection, v2 bool, name []byte) (int, *partitionError) {
	es := &st.ent
	ek := f.entities.lookup(topic, name)
	if ek != nil {
		if i, ok := es.idx[ek]; ok {
			return i, nil
		}
	}
	var nameS string
	if ek != nil {
		nameS = ek.name
	} else {
		nameS = string(name)
	}
	ref, err := cur.keys.Resolve(ctx, nameS)
	if err != nil {
		f.entities.remove(topic, nameS, f.m.shred.keks)
		switch {
		case errors.Is(err, kms.ErrKeyNotFound):
			return 0, &partitionError{code: errEntityKEKMissing, reason: "entity_kek_missing",
				err: fmt.Errorf("entity KEK %q (rule %s) does not exist in the KMS: create it first; entity records are never passed through: %w", nameS, sel.KEK, err)}
		case errors.Is(err, kms.ErrKeyUnusable):
			return 0, &partitionError{code: errKEKGone, reason: "kek_unusable", err: fmt.Errorf("entity KEK %q: %w", nameS, err)}
		}
		return 0, &partitionError{code: errNoKey, reason: "kms", err: fmt.Errorf("entity KEK %q: %w", nameS, err)}
	}
	if ek == nil {
		perTopic, total := cur.policy.MaxKeks()
		var scope string
		if ek, scope, err = f.entities.add(topic, nameS, perTopic, total, f.m.shred.keks); err != nil {
			f.m.shred.refusals.WithLabelValues(scope).Inc()
			return 0, &partitionError{code: errEntityLimit, reason: "entity_kek_limit", err: fmt.Errorf("entity KEK %q: %w", nameS, err)}
		}
	}
	key, err := cur.keys.Current(ctx, ref)
	if err != nil {
		if errors.Is(err, kms.ErrKeyUnusable) {
			return 0, &partitionError{code: errKEKGone, reason: "kek_unusable", err: fmt.Errorf("data key for entity KEK %q: %w", nameS, err)}
		}
		return 0, &partitionError{code: errNoKey, reason: "kms", err: fmt.Errorf("data key for entity KEK %q: %w", nameS, err)}
	}
	var dk *recordcrypt.DetKey
	if v2 && sel.Parts&policy.PartKey != 0 {
		var pe *partitionError
		if dk, pe = f.detKeyForWrite(ctx, st, aadTopic, ref); pe != nil {
			return 0, pe
		}
	}
	es.memo = append(es.memo, entityKey{ref: ref, key: key, dk: dk})
	es.idx[ek] = len(es.memo) - 1
	return len(es.memo) - 1, nil
}

// shredFetch is what a fetch worker knows of the partition it decrypts:
// whether records of a shredded KEK are delivered as null values.
type shredFetch struct {
	topic string
	null  bool
}

// shredPartition sets w up for topic's partition.
func (w *fetchWorker) shredPartition(cur *state, topic string) {
	w.shred = shredFetch{topic: topic, null: cur.policy.Select(topic).OnDestroyedKek() == policy.DestroyedNullValue}
}

// destroyed decides a record whose KEK is gone (e, of reason kek_missing):
// under onDestroyedKek NULL_VALUE, when the key topic holds a shred record
// for the KEK, the record is delivered shredded (value null, a sealed key
// null, clear headers kept, marker replaced by kseal.shredded) and destroyed
// returns nil; otherwise e. A KMS that cannot be reached never gets here
// (its reason is kms), and a key topic that cannot be read makes the
// partition's error retriable, never a null value.
func (f *Filter) destroyed(ctx context.Context, cur *state, x *filter.Exchange, w *fetchWorker, e *decryptError, r *records.Record, edek []byte, keyID *[8]byte) *decryptError {
	if e.reason != "kek_missing" || !w.shred.null || f.opts.Shreds == nil {
		return e
	}
	var kek string
	if edek != nil {
		d, ok := cur.keys.(interface {
			DescribeEDEK([]byte) (kms.EDEKInfo, error)
		})
		if !ok {
			return e
		}
		info, err := d.DescribeEDEK(edek)
		if err != nil {
			return e
		}
		kek = info.KEK
	} else if keyID != nil {
		var ok bool
		if kek, ok = f.opts.Shreds.KEKOf(*keyID); !ok {
			return e
		}
	}
	if kek == "" {
		return e
	}
	name, ok, err := f.opts.Shreds.Shredded(ctx, x, kek)
	if err != nil {
		return &decryptError{code: errFetchKMS, reason: "shred_check", offset: e.offset, dekID: e.dekID, kek: e.kek,
			err: fmt.Errorf("KEK %q is gone and whether it was shredded cannot be told now: %w", kek, err)}
	}
	if !ok {
		return e
	}
	sealedKey := false
	mi := -1
	for i := range r.Headers {
		if string(r.Headers[i].Key) == recordcrypt.HeaderKey {
			mi = i
			if m := r.Headers[i].Value; len(m) >= 2 && m[0] == recordcrypt.Version2 {
				sealedKey = recordcrypt.Parts(m[1])&recordcrypt.PartKey != 0
			}
			break
		}
	}
	if mi >= 0 {
		r.Headers = append(r.Headers[:mi], r.Headers[mi+1:]...)
	}
	r.Value = nil
	if sealedKey {
		r.Key = nil // sealed under a deterministic key the KEK wrapped: shredded too
	}
	r.Headers = append(r.Headers, records.RecordHeader{Key: shreddedKey, Value: []byte(name)})
	max := int(f.m.topics.max.Load())
	f.m.shred.shreddedFor(w.shred.topic, max).Inc()
	return nil
}

var shreddedKey = []byte(ShreddedHeader)

package encrypt

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

var marker = []byte{recordcrypt.Version1}

// produceState is one connection's reusable produce-side state.
type produceState struct {
	// req is the exchange's request as parsed (filter.Exchange.
	// ProduceRequest: the connection's one parse, whose storage it keeps).
	req  *codec.ProduceRequest
	iter records.BatchIter
	proc *records.Processor
	out  []byte // every rewritten partition's record set, back to back
	// outAt is how many bytes of the request's rewritten record sets lie in
	// buffers st.out replaced (room), lastOut how many the connection's
	// previous request wrote: room sizes a new buffer for as many.
	outAt, lastOut int
	value          []byte // one sealed value
	tick           ticket
	dups           []topicPartition

	// x is the exchange of the Produce being handled (set by
	// produceState): kekMissing asks the cluster through it.
	x *filter.Exchange

	// Format v2: the sealer, the selection of the partition being sealed
	// and selFn, its header matcher as a func made once per connection (a
	// method value made per partition would be allocated each time).
	sealer recordcrypt.Sealer
	sel    policy.Selection
	selFn  func(name []byte) bool
	// The deterministic key last fetched in this request, for the
	// request's other partitions of the same topic and KEK.
	dkTopic string
	dkKEK   string
	dk      *recordcrypt.DetKey
	// ent is the entity KEKs of the partition being sealed (shred.go).
	ent entityState

	// integrity.go: noteOffsets when a partition of a rule enforcing from
	// the first encrypted offset was encrypted, passedPlain when a
	// partition of an encrypting rule was forwarded in clear.
	noteOffsets, passedPlain bool
}

// topicPartition identifies a partition of a Produce request, for the
// duplicate check.
type topicPartition struct {
	topic     []byte
	id        [16]byte
	partition int32
}

var produceStateKey = new(int)

func (f *Filter) produceState(x *filter.Exchange) *produceState {
	st := x.ConnState(produceStateKey, func() any {
		st := &produceState{proc: records.NewProcessor(records.WithMaxDecompressed(f.opts.MaxDecompressed))}
		st.selFn = func(name []byte) bool { return st.sel.EncryptHeader(name) }
		return st
	}).(*produceState)
	st.x = x
	st.dkTopic, st.dkKEK, st.dk = "", "", nil
	st.noteOffsets, st.passedPlain = false, false
	return st
}

// maxKeptOut bounds the rewrite buffer a connection keeps between requests,
// maxKeptPartitions the partitions its duplicate check is kept for.
const (
	maxKeptOut        = 4 << 20
	maxKeptPartitions = 4096
)

// partitionError is why one partition cannot be forwarded.
type partitionError struct {
	code   *kerr.Error
	reason string // metric label
	err    error
	// identity is the client's, for the audit event of an access denial.
	identity string
}

func (f *Filter) produce(ctx context.Context, x *filter.Exchange) error {
	st := f.produceState(x)
	if codec.ProduceLegacyVersion(x.APIVersion) {
		// Old message formats cannot carry encrypted records; no Kafka 4
		// broker accepts them either. Refuse rather than forward plaintext.
		if f.opts.Audit != nil {
			if n, ok := f.logLimit.allow("", -4, time.Now()); ok {
				f.opts.Audit.Emit(audit.Event{Type: audit.InputRefused, Reason: "legacy_produce_version",
					Detail: fmt.Sprintf("produce v%d", x.APIVersion), Suppressed: n})
			}
		}
		return fmt.Errorf("produce v%d (legacy message format) refused", x.APIVersion)
	}
	defer func() {
		// A request of very many partitions leaves its duplicate check
		// behind: do not keep it for the connection (nor the parse storage:
		// filter.Side.Done).
		if len(st.dups) > maxKeptPartitions {
			st.dups = nil
		}
		st.req = nil
	}()
	req, err := x.ProduceRequest()
	if err != nil {
		return err
	}
	st.req = req
	if tp, dup := st.duplicate(); dup {
		// Kafka answers one partition once: a request naming a partition
		// twice cannot be answered partition by partition, and would let one
		// request make kseal rewrite the same partition again and again.
		return f.refuseAll(x, st, errDuplicate, fmt.Errorf("topic %s partition %d appears more than once", logTopic(tp.topic), tp.partition))
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.KMSTimeout)
	defer cancel()

	cur := f.state.Load()
	st.out, st.outAt = st.out[:0], 0
	st.tick.begin(ctx, f.budget, f.opts.MaxProduceRewriteBytes)
	st.proc.SetLimit(0, st.tick.reserveFn)
	defer func() {
		st.tick.end()
		st.proc.SetLimit(0, nil)
		// The budget no longer accounts the Processor's buffers: do not
		// keep a large batch's for the connection.
		st.proc.Trim()
		st.lastOut = st.outAt + len(st.out)
		if cap(st.out) > maxKeptOut {
			// Too large to keep for this connection: pooled for the next
			// large request of any connection, if the budget has room.
			// Nothing reads it any more: the rebuilt request is a copy.
			f.budget.putBuf(st.out)
			st.out = nil
		}
	}()
	failed := 0
	var firstErr *partitionError
	var firstTopic string
	var firstPartition int32
	for ti := range st.req.Topics {
		t := &st.req.Topics[ti]
		var topic string
		var idErr *partitionError
		switch {
		case t.Name == nil:
			// Produce v13 names topics by id. kseal does not advertise it, but
			// a client may send it anyway: without the name neither policy nor
			// binding can be applied, so refuse rather than pass it on.
			name, ok := x.TopicName(ctx, t.ID)
			switch {
			case !ok:
				idErr = &partitionError{code: errUnknownTopicID, reason: "unknown_topic_id",
					err: fmt.Errorf("topic id %x not found in the cluster's metadata", t.ID)}
			case !validTopic(name):
				idErr = &partitionError{code: errInvalidTopic, reason: "invalid_topic",
					err: fmt.Errorf("topic id %x resolves to the invalid name %s", t.ID, logTopic(name))}
			}
			topic = name
		case !validTopic(t.Name):
			// Checked before the name is used at all: policy, metric
			// labels and log lines only ever see valid names.
			idErr = &partitionError{code: errInvalidTopic, reason: "invalid_topic",
				err: fmt.Errorf("invalid topic name %s", logTopic(t.Name))}
		default:
			topic = string(t.Name) // one small allocation per topic, not per record
		}
		for pi := range t.Partitions {
			p := &t.Partitions[pi]
			pe := idErr
			if pe == nil && failed == 0 {
				// Once one partition is refused the whole request is:
				// the rest are not worth encrypting (they get the
				// retriable code, and any problem of their own shows
				// when the producer sends them again).
				pe = f.producePartition(ctx, cur, st, topic, p)
			}
			if pe != nil {
				failed++
				p.Reject(pe.code.Code, pe.code.Message)
				f.m.errors.WithLabelValues("produce", pe.reason).Inc()
				switch pe.reason {
				case "budget_request":
					f.m.requestRefusals.Inc()
				case "budget_process":
					f.m.processRefusals.Inc()
				}
				if firstErr == nil {
					firstErr, firstTopic, firstPartition = pe, logTopic(t.Name), p.Partition
					if t.Name == nil {
						firstTopic = logTopic(topic)
					}
				}
			}
		}
	}
	if failed == 0 {
		if st.req.Changed() {
			// The rebuilt request is one more copy: reserve it too.
			if err := st.tick.reserve(st.req.ForwardedSize()); err != nil {
				return f.refuseAll(x, st, budgetCode(err), err)
			}
			// Sized once: AppendTo then never grows it. A request too
			// large for the connection's scratch buffers is built in a
			// pooled buffer, which goes back to the pool once written.
			size := x.HeaderLen + st.req.ForwardedSize()
			var out []byte
			if size > filter.MaxKept {
				// A pooled buffer's capacity past size is reserved too.
				if out = f.budget.getBuf(size); out != nil && !st.tick.tryReserve(cap(out)-size) {
					f.budget.putBuf(out)
					out = nil
				}
				if out == nil {
					// With a sixteenth to spare, so that the next request,
					// a few bytes larger, can use it too.
					c := size + size/16
					if !st.tick.tryReserve(c - size) {
						c = size
					}
					out = make([]byte, 0, c)
				}
				x.Lend(out, f.budget.put)
			} else if out = x.Scratch(); cap(out) < size {
				// A sixteenth to spare as above, but never past what the
				// side keeps (append's growth could round it past that).
				out = make([]byte, 0, min(size+size/16, filter.MaxKept))
			}
			out = append(out, x.Request[:x.HeaderLen]...)
			x.Request = st.req.AppendTo(out)
		}
		f.noteProduce(x, st, cur)
		return nil
	}
	f.logRefusal(firstTopic, firstPartition, firstErr, failed)
	if st.req.Acks == 0 {
		// No response can carry the error: closing is the only refusal.
		return fmt.Errorf("acks=0 produce refused (%s): %w", firstErr.code.Message, firstErr.err)
	}
	// Refuse the whole request: refused partitions get their own code,
	// the others a retriable one, so producers fail exactly the refused
	// batches and send the rest again (nothing was written).
	return f.localResponse(x, st, func(_ *codec.ProduceTopic, p *codec.ProducePartition) int16 {
		if code, _, ok := p.Rejected(); ok {
			return code
		}
		return errNoKey.Code
	})
}

// refuseAll answers every partition of the request with code (or, with
// acks=0, closes the connection).
func (f *Filter) refuseAll(x *filter.Exchange, st *produceState, code *kerr.Error, why error) error {
	reason := "duplicate_partition"
	switch code {
	case errRequestTooLarge:
		reason = "budget_request"
		f.m.requestRefusals.Inc()
	case errBusy:
		reason = "budget_process"
		f.m.processRefusals.Inc()
	}
	f.m.errors.WithLabelValues("produce", reason).Inc()
	f.logRefusal("", -1, &partitionError{code: code, reason: reason, err: why}, -1)
	if st.req.Acks == 0 {
		return fmt.Errorf("acks=0 produce refused (%s): %w", code.Message, why)
	}
	return f.localResponse(x, st, func(*codec.ProduceTopic, *codec.ProducePartition) int16 { return code.Code })
}

func (f *Filter) localResponse(x *filter.Exchange, st *produceState, errorFor func(t *codec.ProduceTopic, p *codec.ProducePartition) int16) error {
	return x.Answer(func(dst []byte) []byte {
		return codec.BuildProduceErrorResponse(dst, st.req, errorFor)
	})
}

// logRefusal logs a refused request: one line naming its first refused
// partition, at most once per logEvery for that topic-partition (a client
// may send refused requests in a loop).
func (f *Filter) logRefusal(topic string, partition int32, pe *partitionError, refused int) {
	suppressed, ok := f.logLimit.allow(topic, partition, time.Now())
	if !ok {
		return
	}
	f.auditRefusal(topic, partition, pe, suppressed)
	args := []any{"error", pe.code.Message, "reason", pe.err.Error(), "suppressedSinceLast", suppressed}
	if topic != "" {
		args = append(args, "topic", topic, "partition", partition, "refusedPartitions", refused)
	}
	f.log.Warn("produce refused", args...)
}

// duplicate reports a topic-partition the request names twice. It sorts a
// reused slice: no allocation in the steady state.
func (st *produceState) duplicate() (topicPartition, bool) {
	st.dups = st.dups[:0]
	for i := range st.req.Topics {
		t := &st.req.Topics[i]
		for j := range t.Partitions {
			st.dups = append(st.dups, topicPartition{topic: t.Name, id: t.ID, partition: t.Partitions[j].Partition})
		}
	}
	if len(st.dups) < 2 {
		return topicPartition{}, false
	}
	order := func(a, b topicPartition) int {
		if c := bytes.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		if c := bytes.Compare(a.id[:], b.id[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.partition, b.partition)
	}
	slices.SortFunc(st.dups, order)
	for i := 1; i < len(st.dups); i++ {
		if order(st.dups[i-1], st.dups[i]) == 0 {
			return st.dups[i], true
		}
	}
	return topicPartition{}, false
}

// producePartition encrypts one partition's records in place of the
// original (p.Replace) or says why it cannot be forwarded.
func (f *Filter) producePartition(ctx context.Context, cur *state, st *produceState, topic string, p *codec.ProducePartition) *partitionError {
	if p.Records == nil {
		return nil
	}
	if topic == f.opts.KeyTopic && topic != "" {
		return &partitionError{code: errKeyTopic, reason: "key_topic", err: fmt.Errorf("%s is kseal's key topic: only kseal writes it", topic)}
	}
	sel := cur.policy.Select(topic)
	if pe := f.produceAccess(st.x, topic, sel); pe != nil {
		return pe
	}
	switch sel.Action {
	case policy.Passthrough:
		return f.passPlain(st, topic, p.Records)
	case policy.Unresolved:
		if pe := f.unresolved(cur, topic, p.Records, "no policy rule matches"); pe != nil {
			return pe
		}
		return f.passPlain(st, topic, p.Records)
	}
	if sel.Entity() {
		// The KEK is each record's (shred.go).
		return f.produceEntity(ctx, cur, st, topic, p, sel)
	}
	kek, err := cur.keys.Resolve(ctx, sel.KEK)
	if err != nil {
		// Missing, unusable or unreachable KEK: kekguard.go decides.
		if pe := f.kekMissing(ctx, st.x, cur, topic, sel.KEK, p.Records, err); pe != nil {
			return pe
		}
		if pe := f.plainRefused(cur, sel, topic); pe != nil { // integrity.go
			return pe
		}
		st.passedPlain = true
		return f.passPlain(st, topic, p.Records)
	}
	key, err := cur.keys.Current(ctx, kek)
	if err != nil {
		if errors.Is(err, kms.ErrKeyUnusable) {
			// The KEK was found gone between its check and this request.
			return &partitionError{code: errKEKGone, reason: "kek_unusable", err: fmt.Errorf("data key for KEK %q: %w", sel.KEK, err)}
		}
		return &partitionError{code: errNoKey, reason: "kms", err: fmt.Errorf("data key for KEK %q: %w", sel.KEK, err)}
	}
	var dk *recordcrypt.DetKey
	if cur.policy.WriteVersion() == policy.WriteV2 && sel.Parts&policy.PartKey != 0 {
		var pe *partitionError
		if dk, pe = f.detKeyForWrite(ctx, st, cur.policy.AADTopic(topic), kek); pe != nil {
			return pe
		}
	}
	return f.sealPartition(ctx, cur, st, topic, p, sel, &entityKey{ref: kek, key: key, dk: dk})
}

// sealPartition encrypts the batches of one partition in place of the
// original (p.Replace): every record under one key (one, the topic's KEK),
// or, with one nil, under the KEK entityKeys chose for it (entity rules,
// shred.go). A record sealed after its data key reached its cap gets the
// KEK's next data key; the key kept in one (or in the entity memo) carries
// over to the next batch.
func (f *Filter) sealPartition(ctx context.Context, cur *state, st *produceState, topic string, p *codec.ProducePartition, sel policy.Selection, one *entityKey) *partitionError {
	aadTopic := cur.policy.AADTopic(topic)
	v2 := cur.policy.WriteVersion() == policy.WriteV2
	parts := recordcrypt.Parts(sel.Parts)
	st.sel = sel
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
		if b.Control() {
			// Control batches are the broker's (transaction markers); one
			// from a client would be copied unencrypted, so refuse it.
			st.out = st.out[:start]
			return &partitionError{code: errControlBatch, reason: "control_batch", err: fmt.Errorf("batch at offset %d has the control bit set", b.BaseOffset)}
		}
		if pe := f.loadBatch(st, b); pe != nil {
			st.out = st.out[:start]
			return pe
		}
		var edekMax int
		if one != nil {
			edekMax = len(one.key.EDEK())
		} else {
			var pe *partitionError
			if edekMax, pe = f.entityKeys(ctx, cur, st, topic, aadTopic, sel, v2); pe != nil {
				st.out = st.out[:start]
				return pe
			}
		}
		rebuild, bound := rewriteBound(st.proc, edekMax, v2, sel.Parts)
		if err := st.tick.reserveScratch(scratchRebuild, rebuild); err != nil {
			st.out = st.out[:start]
			return budgetError(err)
		}
		if err := st.tick.charge(bound); err != nil {
			st.out = st.out[:start]
			return budgetError(err)
		}
		start = st.room(start, bound)
		before := len(st.out)
		var sealErr, forged error
		i := 0
		var err error
		st.proc.SetStoredRewrite(cur.policy.StoredRewrite())
		st.out, err = st.proc.Rewrite(st.out, func(r *records.Record) error {
			for j := range r.Headers {
				if string(r.Headers[j].Key) == recordcrypt.HeaderKey {
					forged = fmt.Errorf("record at offset delta %d already has a %q header", r.OffsetDelta, recordcrypt.HeaderKey)
					return forged
				}
			}
			k := one
			if k == nil {
				if i >= len(st.ent.order) {
					return errors.New("the batch holds more records than it did a moment ago")
				}
				k = &st.ent.memo[st.ent.order[i]]
				i++
			}
			sealed, err := f.sealRecord(ctx, cur, st, k, aadTopic, v2, parts, r)
			if err != nil {
				sealErr = err
				return err
			}
			if sealed {
				n++
			}
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
		st.tick.refund(bound - (len(st.out) - before))
		if b.Codec() != records.CodecNone && st.proc.RebuiltSize() > st.proc.Codecs().MaxDecompressed() {
			// Encryption made the batch larger than any reader through
			// kseal (fetch decompresses within the same bound) could open.
			st.out = st.out[:start]
			return &partitionError{code: errRequestTooLarge, reason: "budget_request",
				err: fmt.Errorf("batch at offset %d decompresses to %d bytes once encrypted, more than %d", b.BaseOffset, st.proc.RebuiltSize(), st.proc.Codecs().MaxDecompressed())}
		}
	}
	if err := st.iter.Err(); err != nil {
		st.out = st.out[:start]
		return &partitionError{code: errCorrupt, reason: "corrupt", err: err}
	}
	p.Replace(st.out[start:len(st.out):len(st.out)])
	if one == nil {
		st.ent.reset()
	}
	f.m.topics.get(topic).encrypted.Add(float64(n))
	if req := cur.policy.Require(sel); req.On && !req.Earliest {
		st.noteOffsets = true
	}
	return nil
}

// room makes st.out hold n more bytes (a batch's rewrite bound) without
// growing, for the partition whose output began at start, and returns where
// that output begins now: when st.out is too small, the partition's bytes so
// far move to a new buffer, while the earlier partitions' stay where they
// were written. The new buffer is a pooled one if the budget pools one large
// enough, else one of twice the capacity, or as large as what the
// connection's previous request still wrote from here on (the request is
// likely to be like it: in a steady state a request sizes its buffer once).
// Capacity past the n bytes the caller charged is reserved too (best
// effort: without room in the budget the new buffer is only as large as
// needed), so the rewrite buffers stay accounted.
func (st *produceState) room(start, n int) int {
	if cap(st.out)-len(st.out) >= n {
		return start
	}
	part := st.out[start:]
	need := len(part) + n
	// What the previous request wrote from here on, room for this batch's
	// bound past what it will write, and a sixteenth to spare (requests of
	// the same shape differ by a few bytes).
	like := st.lastOut - st.outAt - start + n
	like += max(0, like/16)
	c := max(need, 2*cap(st.out), like)
	st.outAt += start
	var buf []byte
	if c > maxKeptOut {
		buf = st.tick.b.getBuf(max(need, like))
		if buf != nil && !st.tick.tryReserve(cap(buf)-need) {
			st.tick.b.putBuf(buf)
			buf = nil
		}
	}
	if buf == nil {
		if c > need && !st.tick.tryReserve(c-need) {
			c = need
		}
		buf = make([]byte, 0, c)
	}
	st.out = append(buf, part...)
	return 0
}

// sealRecord seals r under k in the format the policy writes, and reports
// whether r holds something sealed now (false: nothing to encrypt, a
// tombstone in version 1). When k's data key reached its cap it takes the
// KEK's next data key (records are self-describing) and keeps it in k.
func (f *Filter) sealRecord(ctx context.Context, cur *state, st *produceState, k *entityKey, aadTopic string, v2 bool, parts recordcrypt.Parts, r *records.Record) (bool, error) {
	if v2 {
		sealed, err := st.sealer.SealV2(k.key, k.dk, aadTopic, parts, st.selFn, r)
		if errors.Is(err, dek.ErrExhausted) {
			// SealV2 leaves r as it was when it fails.
			if k.key, err = cur.keys.Current(ctx, k.ref); err == nil {
				sealed, err = st.sealer.SealV2(k.key, k.dk, aadTopic, parts, st.selFn, r)
			}
		}
		return sealed, err
	}
	if r.Value == nil {
		return false, nil // tombstones stay null: compaction needs them
	}
	b := recordcrypt.Binding{Topic: aadTopic, Key: r.Key}
	v, err := recordcrypt.Seal(st.value[:0], k.key, b, r.Value)
	if errors.Is(err, dek.ErrExhausted) {
		if k.key, err = cur.keys.Current(ctx, k.ref); err == nil {
			v, err = recordcrypt.Seal(st.value[:0], k.key, b, r.Value)
		}
	}
	if err != nil {
		return false, err
	}
	st.value = v
	r.Value = v
	r.Headers = append(r.Headers, records.RecordHeader{Key: markerKey, Value: marker})
	return true, nil
}

// detKeyForWrite returns the deterministic key of (aadTopic, kek), asking
// the store once per topic and KEK in a request.
func (f *Filter) detKeyForWrite(ctx context.Context, st *produceState, aadTopic string, kek kms.KEKRef) (*recordcrypt.DetKey, *partitionError) {
	if st.dk != nil && st.dkTopic == aadTopic && st.dkKEK == kek.Name {
		return st.dk, nil
	}
	if f.opts.DetKeys == nil {
		return nil, &partitionError{code: errNoDetKey, reason: "det_key", err: errors.New("the rule encrypts record keys but this kseal has no deterministic-key store")}
	}
	dk, err := f.opts.DetKeys.ForWrite(ctx, st.x, aadTopic, kek)
	switch {
	case err == nil && dk == nil:
		err = errors.New("the deterministic-key store returned no key")
	case err == nil:
		st.dkTopic, st.dkKEK, st.dk = aadTopic, kek.Name, dk
		return dk, nil
	}
	switch {
	case errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound):
		return nil, &partitionError{code: errKEKGone, reason: "kek_unusable", err: fmt.Errorf("deterministic key for KEK %q: %w", kek.Name, err)}
	case errors.Is(err, detkey.ErrTooManyKeys):
		return nil, &partitionError{code: errDetKeyLimit, reason: "det_key_limit", err: fmt.Errorf("deterministic key for KEK %q: %w", kek.Name, err)}
	}
	// Key topic unreachable, KMS down or slow: the producer retries.
	return nil, &partitionError{code: errNoDetKey, reason: "det_key", err: fmt.Errorf("deterministic key for KEK %q: %w", kek.Name, err)}
}

// loadBatch decompresses b into st.proc within the request's budget.
func (f *Filter) loadBatch(st *produceState, b *records.Batch) *partitionError {
	st.proc.SetLimit(int(min(st.tick.remaining(), int64(math.MaxInt32))), st.tick.reserveFn)
	err := st.proc.Reset(b)
	if err == nil && b.Codec() != records.CodecNone {
		err = st.tick.count(len(st.proc.Records()))
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errRequestBudget), errors.Is(err, errProcessBudget):
		return budgetError(err)
	case errors.Is(err, records.ErrTooLarge):
		// Past the decompression bound or the request's budget: either way
		// the batch is too large for kseal, and Java producers split a
		// batch answered with MESSAGE_TOO_LARGE.
		return &partitionError{code: errRequestTooLarge, reason: "budget_request", err: err}
	case errors.Is(err, records.ErrLegacyMagic):
		return &partitionError{code: errOldFormat, reason: "legacy_format", err: err}
	}
	return &partitionError{code: errCorrupt, reason: "corrupt", err: err}
}

// rewriteBound bounds what rewriting the loaded batch, sealed under EDEKs
// of at most edekLen bytes, takes: rebuild, the
// uncompressed records rebuilt before compression (0 for an uncompressed
// batch, whose records are rebuilt in place), and out, the bytes appended
// to the output: the records plus, per record, the envelope's overhead and
// the marker header (with length prefixes that may grow), and for a
// compressed batch the compressor's worst case on top.
//
// Format v2 adds per record at most recordcrypt.MaxGrowthV2, with 3 bytes
// (an index) per header sealed; a header takes at least 2 bytes of the
// records, so there are at most n/2 of them.
func rewriteBound(proc *records.Processor, edekLen int, v2 bool, parts policy.Parts) (rebuild, out int) {
	n := len(proc.Records())
	recs := int(proc.Batch().NumRecords)
	perRecord := recordcrypt.Overhead(edekLen, recordcrypt.MaxCounter) + len(recordcrypt.HeaderKey) + 16
	if v2 {
		perRecord = recordcrypt.MaxGrowthV2(edekLen, 0)
	}
	recsOut := n + recs*perRecord
	if v2 && parts&policy.PartHeaders != 0 {
		recsOut += n / 2 * (recordcrypt.MaxGrowthV2(0, 1) - recordcrypt.MaxGrowthV2(0, 0))
	}
	if proc.Batch().Codec() == records.CodecNone {
		return 0, records.HeaderSize + recsOut
	}
	// Encrypted values do not compress: the compressor's worst case, so
	// that the output, sized to this bound (produceState.room), never grows.
	return recsOut, records.HeaderSize + records.MaxCompressedLen(proc.Batch().Codec(), recsOut)
}

func budgetError(err error) *partitionError {
	if errors.Is(err, errProcessBudget) {
		return &partitionError{code: errBusy, reason: "budget_process", err: err}
	}
	return &partitionError{code: errRequestTooLarge, reason: "budget_request", err: err}
}

func budgetCode(err error) *kerr.Error {
	return budgetError(err).code
}

// passPlain checks a record set that is forwarded unencrypted: no record may
// carry kseal's marker header (a consumer through kseal would take it for an
// envelope), and every batch must be readable to tell. It reads the records
// where they lie (a compressed batch is decompressed within the request's
// budget) and rebuilds nothing: the partition is forwarded as it came.
func (f *Filter) passPlain(st *produceState, topic string, recs []byte) *partitionError {
	var n int64
	st.iter.Reset(recs)
	for st.iter.Next() {
		b := st.iter.Batch()
		switch b.Kind {
		case records.KindLegacy:
			continue // magic 0/1 messages have no headers
		case records.KindPartial:
			return &partitionError{code: errCorrupt, reason: "corrupt", err: errors.New("truncated record batch")}
		}
		if pe := f.loadBatch(st, b); pe != nil {
			return pe
		}
		found, err := st.proc.ScanHeader(recordcrypt.HeaderKey)
		if err != nil {
			return &partitionError{code: errCorrupt, reason: "corrupt", err: err}
		}
		if found {
			return &partitionError{code: errForgedMarker, reason: "forged_marker",
				err: fmt.Errorf("a record of the batch at offset %d already has a %q header", b.BaseOffset, recordcrypt.HeaderKey)}
		}
		if !b.Control() && b.NumRecords > 0 {
			n += int64(b.NumRecords) // the client's counts: may be negative or add past int32
		}
	}
	if err := st.iter.Err(); err != nil {
		return &partitionError{code: errCorrupt, reason: "corrupt", err: err}
	}
	f.m.topics.get(topic).plaintext.Add(float64(n))
	return nil
}

var markerKey = []byte(recordcrypt.HeaderKey)

// unresolved applies the unresolvedKeyPolicy to a topic no rule covers or
// whose KEK does not exist (and, under PASSTHROUGH_UNENCRYPTED, was never
// used to encrypt it: see kekMissing).
func (f *Filter) unresolved(cur *state, topic string, recs []byte, why string) *partitionError {
	if cur.policy.UnresolvedKeyPolicy() == policy.Reject {
		return &partitionError{code: errRejected, reason: "rejected", err: errors.New(why + " and unresolvedKeyPolicy is REJECT")}
	}
	return nil
}

package encrypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// fetchState is one connection's reusable fetch-side state.
type fetchState struct {
	tasks []fetchTask
	// outs[i] is task i's output buffer, kept for the connection's next
	// fetch (each task needs its own: all results are spliced in at the end,
	// once the exchange's response is finished).
	outs    [][]byte
	workers []*fetchWorker
	// x is the exchange being handled: the deterministic-key store reads
	// the key topic through it.
	x *filter.Exchange
}

// fetchTask is one partition whose records need decrypting.
type fetchTask struct {
	index     int // the partition's index in the response (filter.Partitions)
	topic     string
	partition int32
	set       []byte
	// encrypted: the policy encrypts the topic (not unresolved). Batches
	// past the decompression bound are then refused; otherwise they cannot
	// be kseal's (it refuses to write them) and are delivered as stored.
	encrypted bool
	// sel is the topic's selection (integrity.go checks what it requires).
	sel policy.Selection

	out     []byte // the rebuilt record set, when changed
	changed bool
	rebuilt int // batches decrypted
	err     *decryptError
}

// fetchWorker holds what one decrypting goroutine reuses.
type fetchWorker struct {
	iter  records.BatchIter
	proc  *records.Processor
	value []byte // one decrypted value

	// The last EDEK seen and its AEAD: consecutive records almost always
	// share a DEK, so most records skip the cache lookup. Dropped at the
	// start of every response (forget).
	lastEDEK []byte
	lastAEAD cipher.AEAD

	// Format v2: the opener, and the last deterministic key found (by id).
	opener    recordcrypt.Opener
	lastKeyID [8]byte
	lastDK    *recordcrypt.DetKey

	// shred: the partition's onDestroyedKek (shred.go).
	shred shredFetch
	// integ is the integrity checks' state (integrity.go).
	integ integrityState
}

var fetchStateKey = new(int)

func (f *Filter) fetchState(x *filter.Exchange) *fetchState {
	return x.ConnState(fetchStateKey, func() any { return &fetchState{} }).(*fetchState)
}

func (f *Filter) worker(st *fetchState, i int) *fetchWorker {
	for len(st.workers) <= i {
		st.workers = append(st.workers, f.newWorker())
	}
	return st.workers[i]
}

func (f *Filter) newWorker() *fetchWorker {
	return &fetchWorker{proc: records.NewProcessor(records.WithMaxDecompressed(f.opts.MaxDecompressed))}
}

// forget drops the worker's EDEK cache.
func (w *fetchWorker) forget() {
	w.lastEDEK = w.lastEDEK[:0]
	w.lastAEAD = nil
	w.lastDK = nil
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

var errNoTopicName = errors.New("topic id not found in the cluster's metadata")

// fetch decrypts a Fetch or ShareFetch response in three steps, on the
// exchange's one scan of it (filter.Exchange.Partitions): the partitions
// holding encrypted records are picked from the scan, decrypted (in
// parallel when there are several and the response is large: a consumer
// waits for the whole response, so the time spent here is latency it sees),
// and their new records and error codes set by index. The plumbing splices
// them in, with the broker endpoints the scan rewrote, in one copy pass once
// the response filters have run.
func (f *Filter) fetch(ctx context.Context, x *filter.Exchange) error {
	st := f.fetchState(x)
	st.x = x
	defer func() { st.x = nil }()
	cur := f.state.Load()
	ctx, cancel := context.WithTimeout(ctx, f.opts.KMSTimeout)
	defer cancel()
	share := x.APIKey == int16(kmsg.ShareFetch)
	parts, err := x.Partitions()
	if err != nil {
		return err
	}

	st.tasks = st.tasks[:0]
	collect := func(index int, errorCode int16, topic string, id [16]byte, partition int32, set []byte) {
		if errorCode != 0 || len(set) == 0 {
			return
		}
		t := fetchTask{index: index, topic: topic, partition: partition, set: set}
		if topic == "" { // ShareFetch, and Fetch v13+, name topics by id
			name, ok := x.TopicName(ctx, id)
			if !ok {
				// Without the name there is no binding to check: refuse the
				// records rather than pass ciphertext on.
				if !mayHoldMarker(set) {
					return
				}
				t.topic = fmt.Sprintf("%x", id)
				t.err = &decryptError{code: errUnknownTopicID, reason: "unknown_topic_id", offset: -1, err: errNoTopicName}
				st.tasks = append(st.tasks, t)
				return
			}
			t.topic = name
		}
		if !validTopic(t.topic) {
			// Brokers send valid names; one that is not never reaches the
			// policy, a label or a log line as it is.
			if !mayHoldMarker(set) {
				return
			}
			t.err = &decryptError{code: errInvalidTopic, reason: "invalid_topic", offset: -1,
				err: fmt.Errorf("the broker names topic %s", logTopic(t.topic))}
			t.topic = "<invalid>"
			st.tasks = append(st.tasks, t)
			return
		}
		t.sel = cur.policy.Select(t.topic)
		sel := t.sel
		switch sel.Action {
		case policy.Passthrough:
			// Not encrypted by policy: the consumer gets exactly what the
			// broker holds (producers cannot plant markers there any more).
			// Replica topics excepted: MirrorMaker copies envelopes into
			// them directly, whatever rule their own name matches.
			if cur.policy.AADTopic(t.topic) == t.topic {
				return
			}
		case policy.Encrypt:
			t.encrypted = true
		}
		if a := readDenied(cur, x, t.topic, sel); a != nil {
			// access.go: as stored, or TOPIC_AUTHORIZATION_FAILED; never
			// decrypted.
			deliver, e := f.fetchAccess(x, a, t.topic, share)
			if !deliver {
				t.err = e
				st.tasks = append(st.tasks, t)
			}
			return
		}
		if !mayHoldMarker(set) && !cur.policy.Require(t.sel).On {
			return
		}
		st.tasks = append(st.tasks, t)
	}
	for i, n := 0, parts.Len(); i < n; i++ {
		collect(i, parts.ErrorCode(i), parts.Topic(i), parts.TopicID(i), parts.Partition(i), parts.Records(i))
	}
	if len(st.tasks) == 0 {
		return nil
	}

	f.decryptTasks(ctx, cur, st)

	for i := range st.tasks {
		t := &st.tasks[i]
		switch {
		case t.err != nil:
			f.failPartition(parts, t.index, t.topic, t.partition, t.err)
		case t.changed:
			f.m.decryptedBatches.Add(float64(t.rebuilt))
			parts.SetRecords(t.index, t.out)
		}
	}
	// The outputs are kept for the next fetch, whose decryption is the
	// first to write them again: they stay valid until the plumbing has
	// spliced them into this response.
	f.keepOutputs(st)
	return nil
}

// parallelMinBytes is the response size below which partitions are
// decrypted one after another: for small fetches starting goroutines costs
// more than it saves.
const parallelMinBytes = 256 << 10

// maxFetchWorkers bounds the goroutines one response is decrypted with.
const maxFetchWorkers = 4

// decryptTasks decrypts every task, with up to GOMAXPROCS goroutines
// (bounded by maxFetchWorkers) taking partitions in turn.
func (f *Filter) decryptTasks(ctx context.Context, cur *state, st *fetchState) {
	for len(st.outs) < len(st.tasks) {
		st.outs = append(st.outs, nil)
	}
	total := 0
	for i := range st.tasks {
		total += len(st.tasks[i].set)
	}
	n := min(len(st.tasks), runtime.GOMAXPROCS(0), maxFetchWorkers)
	if total < parallelMinBytes {
		n = 1
	}
	for i := 0; i < n; i++ {
		// The EDEK cache never outlives a response: a reload (Swap) or a
		// revoked key takes effect at the connection's next fetch.
		f.worker(st, i).forget()
	}
	var next atomic.Int32
	run := func(wi int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(st.tasks) {
				return
			}
			t := &st.tasks[i]
			if t.err == nil {
				f.decryptTask(ctx, cur, st, wi, t, st.outs[i][:0])
			}
		}
	}
	if n == 1 {
		run(0)
		return
	}
	var wg sync.WaitGroup
	var panics filter.Panics // raised again here, where the connection recovers it
	for i := 1; i < n; i++ {
		wg.Go(func() { defer panics.Recover(); run(i) })
	}
	func() { defer panics.Recover(); run(0) }()
	wg.Wait()
	panics.Repanic()
}

// decryptTask runs fetchPartition for t with worker wi. A panic (a bug
// kseal must survive: a goroutine's panic cannot be recovered by the
// connection) fails that partition alone, and the worker, whose state it
// may have left half-changed, is replaced.
func (f *Filter) decryptTask(ctx context.Context, cur *state, st *fetchState, wi int, t *fetchTask, out []byte) {
	defer func() {
		if r := recover(); r != nil {
			f.log.Error("panic while decrypting a fetched partition: partition answered with an error",
				"topic", t.topic, "partition", t.partition, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if f.opts.Audit != nil {
				if n, ok := f.logLimit.allow(t.topic, -3, time.Now()); ok {
					f.opts.Audit.Emit(audit.Event{Type: audit.PanicRecovered, Where: "decrypt", Suppressed: n})
				}
			}
			st.workers[wi] = f.newWorker()
			t.out, t.changed, t.rebuilt = nil, false, 0
			t.err = &decryptError{code: errInternal, reason: "panic", offset: -1, err: fmt.Errorf("panic: %v", r)}
		}
	}()
	t.out, t.changed, t.rebuilt, t.err = f.fetchPartition(ctx, cur, st.x, st.workers[wi], out, t.topic, t.partition, t.set, t.encrypted, t.sel)
}

// keepOutputs keeps the tasks' output buffers for the next fetch (unless
// huge).
func (f *Filter) keepOutputs(st *fetchState) {
	kept := 0
	for i := range st.tasks {
		t := &st.tasks[i]
		if cap(t.out) > 0 && cap(t.out) <= maxKeptBuffer { // failed ones too
			st.outs[i] = t.out[:0]
		}
		*t = fetchTask{}
	}
	// Bound the total too: a response of many partitions must not leave
	// the connection holding a buffer for each.
	for i := range st.outs {
		if kept += cap(st.outs[i]); kept > maxKeptBuffers {
			st.outs[i] = nil
		}
	}
}

// maxKeptBuffer bounds each buffer a connection keeps between fetches, and
// maxKeptBuffers their sum.
const (
	maxKeptBuffer  = 4 << 20
	maxKeptBuffers = 16 << 20
)

// mayHoldMarker is the cheap test that lets partitions without encrypted
// records through untouched: the marker's bytes appear in every record set
// holding one, unless compressed.
func mayHoldMarker(set []byte) bool {
	return len(set) > 0 && (bytes.Contains(set, markerKey) || anyCompressed(set))
}

// fetchPartition decrypts a partition's encrypted records into out. Batches
// with no encrypted record are copied as they came, never re-encoded; if no
// batch has one, changed is false and the partition stays as it is. When a
// batch cannot be read or decrypted, the batches before it are delivered
// (the consumer's next fetch starts at the bad batch and gets the error
// there); only when the first batch is bad is the error returned, for the
// caller to answer the partition with its code. Other partitions are
// unaffected either way.
func (f *Filter) fetchPartition(ctx context.Context, cur *state, x *filter.Exchange, w *fetchWorker, out []byte, topic string, partition int32, set []byte, encrypted bool, sel policy.Selection) (_ []byte, changed bool, rebuilt int, _ *decryptError) {
	if e := f.startGuard(ctx, cur, x, w, topic, partition, sel); e != nil {
		return out, false, 0, e
	}
	if guardIdle(w, set) {
		return out, false, 0, nil
	}
	building := false
	var aadTopic string
	// fail cuts the partition before the batch at set[at:].
	fail := func(at int, e *decryptError) ([]byte, bool, int, *decryptError) {
		if at == 0 {
			return out, false, 0, e
		}
		if !building {
			out = append(out, set[:at]...)
		}
		f.logTruncated(topic, partition, e)
		return out, true, rebuilt, nil
	}
	w.iter.Reset(set)
	for w.iter.Next() {
		b := w.iter.Batch()
		if b.Kind != records.KindBatch || b.Control() || b.NumRecords == 0 {
			// Partial trailing batches, old formats and control batches are
			// forwarded as the broker sent them.
			if e := f.legacyBatch(w, b); e != nil {
				return fail(w.iter.Offset(), e)
			}
			if building {
				out = append(out, b.Raw...)
			}
			continue
		}
		has, err := false, w.proc.Reset(b)
		if err == nil {
			has, err = w.proc.HasHeader(recordcrypt.HeaderKey)
		} else if !encrypted && errors.Is(err, records.ErrTooLarge) {
			// An unresolved topic's batch too large to look into: kseal
			// never writes one (produce refuses them), so it holds no
			// envelope; the consumer gets it as stored.
			err = nil
		}
		if err != nil {
			// A batch kseal cannot read may hold envelopes: passing it on
			// would hand ciphertext to the consumer as if it were the value.
			return fail(w.iter.Offset(), &decryptError{code: errTampered, reason: "corrupt", offset: b.BaseOffset, err: err})
		}
		if !has {
			if e := f.plainBatch(w, b); e != nil {
				return fail(w.iter.Offset(), e)
			}
			if building {
				out = append(out, b.Raw...)
			}
			continue
		}
		if !building {
			building = true
			out = append(out, set[:w.iter.Offset()]...)
			aadTopic = cur.policy.AADTopic(topic)
			w.shredPartition(cur, topic)
		}
		var derr *decryptError
		out, err = w.proc.Rewrite(out, func(r *records.Record) error {
			if e := f.decryptRecord(ctx, cur, x, w, aadTopic, b.BaseOffset, r); e != nil {
				derr = e
				return e
			}
			return nil
		})
		if err != nil {
			if derr == nil {
				derr = &decryptError{code: errTampered, reason: "corrupt", offset: b.BaseOffset, err: err}
			}
			return fail(w.iter.Offset(), derr)
		}
		rebuilt++
	}
	if err := w.iter.Err(); err != nil {
		// A malformed entry: like a batch that cannot be read.
		return fail(w.iter.Offset(), &decryptError{code: errTampered, reason: "corrupt", offset: -1, err: err})
	}
	return out, building, rebuilt, nil
}

// logTruncated logs a partition delivered only up to a batch that cannot
// be decrypted (rate-limited like failPartition's lines).
func (f *Filter) logTruncated(topic string, partition int32, e *decryptError) {
	suppressed, ok := f.logLimit.allow(topic, -2, time.Now())
	if !ok {
		return
	}
	f.auditDecrypt(topic, partition, e, suppressed)
	f.log.Warn("cannot decrypt a fetched batch: records before it delivered, the consumer gets the error when it fetches from there",
		"topic", topic, "batchOffset", e.offset, "kek", e.kek, "dek", e.dekID.String(),
		"error", e.code.Message, "reason", e.err.Error(), "suppressedSinceLast", suppressed)
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

// failPartition answers partition i of parts with e's error code and no
// records.
func (f *Filter) failPartition(parts *filter.Partitions, i int, topic string, partition int32, e *decryptError) {
	if e.reason == reasonAccessDenied {
		denyPartition(parts, i) // counted and logged by fetchAccess
		return
	}
	parts.SetErrorCode(i, e.code.Code)
	parts.SetRecords(i, []byte{})
	f.m.errors.WithLabelValues("fetch", e.reason).Inc()
	// A consumer stuck on a bad record fetches it again and again: log each
	// topic-partition at most once per logEvery, with the count since.
	suppressed, ok := f.logLimit.allow(topic, partition, time.Now())
	if !ok {
		return
	}
	f.auditDecrypt(topic, partition, e, suppressed)
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

func (f *Filter) decryptRecord(ctx context.Context, cur *state, x *filter.Exchange, st *fetchWorker, aadTopic string, base int64, r *records.Record) *decryptError {
	i, markers := -1, 0
	for j := range r.Headers {
		if string(r.Headers[j].Key) == recordcrypt.HeaderKey {
			if markers++; i < 0 {
				i = j
			}
		}
	}
	offset := base + int64(r.OffsetDelta)
	if i < 0 {
		// A plaintext record: written before the topic was encrypted, or
		// with nothing to encrypt, or injected (integrity.go decides).
		return f.plainRecord(st, offset, r)
	}
	fail := func(code *kerr.Error, reason string, err error) *decryptError {
		return &decryptError{code: code, reason: reason, offset: offset, err: err}
	}
	if markers > 1 {
		// kseal writes one; a second would reach the consumer (docs/format.md).
		return fail(errTampered, "tampered", fmt.Errorf("record at offset %d has %d %q headers", offset, markers, recordcrypt.HeaderKey))
	}
	if m := r.Headers[i].Value; len(m) > 0 && m[0] == recordcrypt.Version2 {
		return f.decryptRecordV2(ctx, cur, x, st, aadTopic, offset, r)
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
	if e := f.checkKEK(ctx, cur, st, offset, env.EDEK); e != nil {
		return e
	}
	aead, e := st.decryptor(ctx, cur, offset, env)
	if e != nil {
		return f.destroyed(ctx, cur, x, st, e, r, env.EDEK, nil)
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
	st.integ.guard.seen(offset)
	return nil
}

// reasonKMSDenied is the metric and log reason of a fetch failed because
// the KMS refused kseal's access (kms.ErrAccessDenied).
const reasonKMSDenied = "kms_access_denied"

// decryptor returns the AEAD of env's DEK: the last one when the EDEK is
// the same, else the DEK manager's (its cache, or the KMS).
func (st *fetchWorker) decryptor(ctx context.Context, cur *state, offset int64, env recordcrypt.Envelope) (cipher.AEAD, *decryptError) {
	if st.lastAEAD != nil && bytes.Equal(env.EDEK, st.lastEDEK) {
		return st.lastAEAD, nil
	}
	aead, err := cur.keys.Decryptor(ctx, env.EDEK)
	if err != nil {
		e := &decryptError{offset: offset, err: err, dekID: env.DEKID(), kek: describeKEK(cur.keys, env.EDEK)}
		switch {
		case errors.Is(err, kms.ErrKeyNotFound), errors.Is(err, kms.ErrKeyUnusable):
			e.code, e.reason = errKEKMissing, "kek_missing"
		case dek.Retriable(err):
			e.code, e.reason = errFetchKMS, "kms" // transient: consumers retry
		case errors.Is(err, kms.ErrAccessDenied):
			// kseal's credentials are refused: the records are intact and
			// the key exists, so neither CORRUPT_MESSAGE nor
			// RESOURCE_NOT_FOUND; consumers retry until an operator
			// restores the access (the log line and the reason say so).
			e.code, e.reason = errFetchKMS, reasonKMSDenied
		default:
			// The KMS refused the EDEK (altered, or not its key): the
			// record is corrupt for every reader, retrying cannot help.
			e.code, e.reason = errTampered, "tampered"
		}
		return nil, e
	}
	st.lastEDEK = append(st.lastEDEK[:0], env.EDEK...)
	st.lastAEAD = aead
	return aead, nil
}

// decryptRecordV2 opens a format v2 record (docs/format.md "Version 2"):
// the envelope's DEK comes from the DEK manager as in version 1, a sealed
// key's deterministic key from the key store, both remembered from the
// record before.
func (f *Filter) decryptRecordV2(ctx context.Context, cur *state, x *filter.Exchange, st *fetchWorker, aadTopic string, offset int64, r *records.Record) *decryptError {
	fail := func(code *kerr.Error, reason string, err error) *decryptError {
		return &decryptError{code: code, reason: reason, offset: offset, err: err}
	}
	rec, version, err := recordcrypt.ParseRecord(r)
	if err == nil && version != recordcrypt.Version2 {
		err = fmt.Errorf("%w: marker of version %d", recordcrypt.ErrMalformed, version)
	}
	if err != nil {
		return fail(errTampered, "tampered", fmt.Errorf("record at offset %d: %w", offset, err))
	}
	if e := f.checkPartsV2(st, offset, rec, r); e != nil {
		return e
	}
	var aead cipher.AEAD
	if rec.HasEnvelope() {
		if e := f.checkKEK(ctx, cur, st, offset, rec.Env.EDEK); e != nil {
			return e
		}
		var e *decryptError
		if aead, e = st.decryptor(ctx, cur, offset, rec.Env); e != nil {
			return f.destroyed(ctx, cur, x, st, e, r, rec.Env.EDEK, nil)
		}
	}
	var dk *recordcrypt.DetKey
	if rec.Parts&recordcrypt.PartKey != 0 {
		if st.lastDK != nil && st.lastKeyID == rec.KeyID {
			dk = st.lastDK
		} else {
			var e *decryptError
			if dk, e = f.detKeyForRead(ctx, x, aadTopic, offset, rec.KeyID); e != nil {
				return f.destroyed(ctx, cur, x, st, e, r, nil, &rec.KeyID)
			}
			st.lastKeyID, st.lastDK = rec.KeyID, dk
		}
	}
	if err := st.opener.OpenV2(aead, dk, aadTopic, rec, r); err != nil {
		e := fail(errTampered, "tampered", fmt.Errorf("record at offset %d: %w", offset, err))
		if rec.HasEnvelope() {
			e.dekID = rec.Env.DEKID()
		}
		return e
	}
	st.integ.guard.seen(offset)
	return nil
}

// detKeyForRead asks the key store for the deterministic key id names.
func (f *Filter) detKeyForRead(ctx context.Context, x *filter.Exchange, aadTopic string, offset int64, id [8]byte) (*recordcrypt.DetKey, *decryptError) {
	fail := func(code *kerr.Error, reason string, err error) (*recordcrypt.DetKey, *decryptError) {
		return nil, &decryptError{code: code, reason: reason, offset: offset,
			err: fmt.Errorf("record at offset %d: deterministic key %x: %w", offset, id, err)}
	}
	if f.opts.DetKeys == nil {
		return fail(errUnknownDetKey, "unknown_key_id", fmt.Errorf("%w (this kseal has no deterministic-key store)", ErrUnknownDetKey))
	}
	dk, err := f.opts.DetKeys.ForRead(ctx, x, aadTopic, id)
	switch {
	case err == nil && dk != nil && dk.ID == id:
		return dk, nil
	case err == nil:
		return fail(errInternal, "det_key", errors.New("the deterministic-key store returned another key"))
	case errors.Is(err, ErrUnknownDetKey):
		return fail(errUnknownDetKey, "unknown_key_id", err)
	case errors.Is(err, kms.ErrKeyNotFound), errors.Is(err, kms.ErrKeyUnusable):
		return fail(errKEKMissing, "kek_missing", err)
	case errors.Is(err, detkey.ErrTooManyKeys):
		return fail(errDetKeyLimit, "det_key_limit", err)
	case dek.Retriable(err):
		// Key topic unreachable, KMS down: consumers retry.
		return fail(errFetchKMS, "det_key", err)
	case errors.Is(err, kms.ErrAccessDenied):
		return fail(errFetchKMS, reasonKMSDenied, err) // as for an envelope's DEK
	}
	// The KMS refused the key record's EDEK: as for an envelope's.
	return fail(errTampered, "tampered", err)
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

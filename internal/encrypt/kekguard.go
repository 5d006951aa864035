package encrypt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// What happens when a topic's KEK cannot be resolved (docs/policy.md,
// "When a KEK disappears"):
//
//   - kms.ErrKeyUnusable (the KEK exists but is disabled or pending
//     deletion, or it resolved before in this process and is gone now):
//     produce is refused with RESOURCE_NOT_FOUND (91), whatever the
//     unresolvedKeyPolicy says;
//   - kms.ErrKeyNotFound under REJECT: refused with POLICY_VIOLATION (44);
//   - kms.ErrKeyNotFound under PASSTHROUGH_UNENCRYPTED: before a record goes
//     through in clear, kseal reads the newest batches of the topic's
//     partitions from the cluster (once per topic, cached). If any carries
//     kseal's marker, kseal has been encrypting the topic and its KEK is
//     gone: refused with RESOURCE_NOT_FOUND. If the cluster cannot be asked,
//     refused with the retriable REQUEST_TIMED_OUT (fail closed);
//   - anything else (the KMS is down, refuses kseal): REQUEST_TIMED_OUT.

// errKEKGone: produce to a topic whose KEK is disabled, pending deletion,
// deleted, or missing while the topic holds kseal-encrypted records. Not
// retriable: only an operator (re-enabling or restoring the key) can fix it,
// and producers should fail at once rather than retry for
// delivery.timeout.ms. The same code Fetch answers for records whose KEK is
// gone.
var errKEKGone = errKEKMissing

// sealedTopics caches, per topic, whether its newest batches carry kseal's
// marker: the answer for a topic whose KEK is not found under
// PASSTHROUGH_UNENCRYPTED.
type sealedTopics struct {
	mu     sync.RWMutex
	topics map[string]*sealedEntry

	// tail reads a topic's newest batches; nil means Exchange.NewestBatches
	// (tests replace it).
	tail func(ctx context.Context, x *filter.Exchange, topic string, visit filter.TailVisitor) error
	now  func() time.Time

	// reads bounds the cluster reads running at once (each opens one of
	// kseal's own connections), so clients naming many topics cannot turn
	// into a flood of upstream connections; a request waits at most until
	// its own deadline, then that partition is refused retriably.
	readsOnce sync.Once
	reads     chan struct{}
}

// maxSealedReads is how many topic checks may read the cluster at once.
const maxSealedReads = 4

type sealedEntry struct {
	done   chan struct{} // closed when the check finished
	sealed bool
	err    error
	at     time.Time
}

// kekMissing decides for a partition of topic whose KEK name kek could not
// be resolved (err from Keys.Resolve); nil means forward it unencrypted.
func (f *Filter) kekMissing(ctx context.Context, x *filter.Exchange, cur *state, topic, kek string, recs []byte, err error) *partitionError {
	switch {
	case errors.Is(err, kms.ErrKeyUnusable):
		return &partitionError{code: errKEKGone, reason: "kek_unusable",
			err: fmt.Errorf("KEK %q exists but cannot be used (disabled, pending deletion, or deleted): %w", kek, err)}
	case !errors.Is(err, kms.ErrKeyNotFound):
		return &partitionError{code: errNoKey, reason: "kms", err: fmt.Errorf("resolve KEK %q: %w", kek, err)}
	}
	why := fmt.Sprintf("KEK %q does not exist", kek)
	if cur.policy.UnresolvedKeyPolicy() != policy.PassthroughUnencrypted {
		return f.unresolved(cur, topic, recs, why)
	}
	ttl, size := cur.policy.EncryptedTopicCheck()
	sealed, cerr := f.sealed.check(ctx, x, topic, ttl, size, f.opts.MaxDecompressed, f.m.sealedChecks)
	switch {
	case cerr != nil:
		return &partitionError{code: errNoKey, reason: "kek_check",
			err: fmt.Errorf("%s, and whether kseal encrypted the topic before cannot be checked (refused rather than risk plaintext): %w", why, cerr)}
	case sealed:
		return &partitionError{code: errKEKGone, reason: "kek_gone",
			err: fmt.Errorf("%s, but the topic holds records kseal encrypted: its KEK was deleted; refusing plaintext", why)}
	}
	return f.unresolved(cur, topic, recs, why)
}

// check answers whether topic's newest batches carry kseal's marker, from
// the cache when an answer is younger than ttl. Concurrent checks of one
// topic share one read of the cluster. Failures are not cached.
func (s *sealedTopics) check(ctx context.Context, x *filter.Exchange, topic string, ttl time.Duration, size, maxDecompressed int, reads *prometheus.CounterVec) (bool, error) {
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	// Fast path, taken by every produce to such a topic: a fresh answer,
	// under the read lock only.
	s.mu.RLock()
	if e := s.topics[topic]; e != nil {
		select {
		case <-e.done:
			if e.err == nil && now().Sub(e.at) < ttl {
				s.mu.RUnlock()
				return e.sealed, nil
			}
		default:
		}
	}
	s.mu.RUnlock()
	s.mu.Lock()
	if s.topics == nil {
		s.topics = map[string]*sealedEntry{}
	}
	e := s.topics[topic]
	if e != nil {
		select {
		case <-e.done:
			if now().Sub(e.at) < ttl && e.err == nil {
				s.mu.Unlock()
				return e.sealed, nil
			}
			e = nil
		default:
		}
	}
	owner := e == nil
	if owner {
		if len(s.topics) >= size {
			t := now()
			for k, old := range s.topics {
				select {
				case <-old.done:
					if t.Sub(old.at) >= ttl || len(s.topics) >= size {
						delete(s.topics, k)
					}
				default:
				}
			}
		}
		e = &sealedEntry{done: make(chan struct{})}
		s.topics[topic] = e
	}
	s.mu.Unlock()
	if !owner {
		select {
		case <-e.done:
			return e.sealed, e.err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	s.readsOnce.Do(func() { s.reads = make(chan struct{}, maxSealedReads) })
	var sealed bool
	var err error
	select {
	case s.reads <- struct{}{}:
		sealed, err = s.read(ctx, x, topic, maxDecompressed, reads)
		<-s.reads
	case <-ctx.Done():
		err = fmt.Errorf("waiting for another topic check: %w", ctx.Err())
	}
	s.mu.Lock()
	e.sealed, e.err, e.at = sealed, err, now()
	if err != nil && s.topics[topic] == e {
		delete(s.topics, topic)
	}
	close(e.done)
	s.mu.Unlock()
	return sealed, err
}

// read asks the cluster and counts the outcome.
func (s *sealedTopics) read(ctx context.Context, x *filter.Exchange, topic string, maxDecompressed int, reads *prometheus.CounterVec) (bool, error) {
	tail := s.tail
	if tail == nil {
		tail = func(ctx context.Context, x *filter.Exchange, topic string, visit filter.TailVisitor) error {
			return x.NewestBatches(ctx, topic, visit)
		}
	}
	sealed, err := readSealed(ctx, x, topic, maxDecompressed, tail)
	if reads != nil {
		switch {
		case err != nil:
			reads.WithLabelValues("error").Inc()
		case sealed:
			reads.WithLabelValues("encrypted").Inc()
		default:
			reads.WithLabelValues("plaintext").Inc()
		}
	}
	return sealed, err
}

// readSealed reads the newest batches of every partition of topic and
// reports whether any carries kseal's marker.
func readSealed(ctx context.Context, x *filter.Exchange, topic string, maxDecompressed int,
	tail func(context.Context, *filter.Exchange, string, filter.TailVisitor) error) (bool, error) {
	proc := records.NewProcessor(records.WithMaxDecompressed(maxDecompressed))
	defer proc.Close()
	sealed := false
	err := tail(ctx, x, topic, func(_ int32, recs []byte) (earlier, stop bool) {
		switch batchesVerdict(proc, recs) {
		case verdictSealed:
			sealed = true
			return false, true
		case verdictPlain:
			return false, false
		}
		return true, false
	})
	if err != nil {
		return false, err
	}
	return sealed, nil
}

type verdict uint8

const (
	verdictUnknown verdict = iota // nothing but control batches, tombstones or partial bytes
	verdictPlain                  // a record with a value and no marker
	verdictSealed                 // a record with kseal's marker
)

// batchesVerdict looks at every complete batch of a record set: any marker
// makes it sealed (fail closed: one encrypted batch is enough to refuse
// plaintext), else any plain value makes it plain.
func batchesVerdict(proc *records.Processor, recs []byte) verdict {
	out := verdictUnknown
	it := records.NewBatchIter(recs)
	for it.Next() {
		b := it.Batch()
		if b.Kind != records.KindBatch || b.Control() {
			continue
		}
		if err := proc.Reset(b); err != nil {
			continue
		}
		for proc.Next() {
			r := proc.Record()
			for i := range r.Headers {
				if string(r.Headers[i].Key) == recordcrypt.HeaderKey {
					return verdictSealed
				}
			}
			if r.Value != nil {
				out = verdictPlain
			}
		}
	}
	return out
}

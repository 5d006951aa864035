package detkey

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kseal/kseal/internal/dek"
)

// First-encrypted-offset records (docs/key-topic.md, "First encrypted
// offsets"): for each partition of a topic whose rule requires encrypted
// records, the offset of the first batch kseal encrypted into it. Records
// of the partition from that offset on must be kseal envelopes on Fetch
// (internal/encrypt, integrity.go); the ones before are the topic's
// plaintext past and stay readable.
//
//	key   = 0x00 || "first-encrypted" || 0x00 || T || 0x00 || BE32(partition)
//	value = 0x01 (record version) || BE64(offset)
//
// The leading zero byte makes the key an invalid key record (a key record
// starts with a topic name, which has no zero byte and is never empty), so
// ParseKeyRecord skips these records and ParseFirstOffsetRecord skips key
// records. T is the topic's own name (not the binding topic: offsets belong
// to the partition), partition and offset are not negative. The effective
// offset of a partition is the LOWEST offset of all its valid records (see
// Store.FirstEncrypted).

// firstOffsetPrefix starts the key of every first-encrypted-offset record.
const firstOffsetPrefix = "\x00first-encrypted\x00"

// FirstOffsetVersion is the version byte of first-encrypted-offset records.
const FirstOffsetVersion = 1

// Defaults of the first-encrypted-offset index.
const (
	// DefaultMaxFirstOffsets bounds the partitions whose first encrypted
	// offset a Store keeps (encryption.keyTopic.maxFirstOffsets).
	DefaultMaxFirstOffsets = 100_000
	// DefaultOffsetRefresh is how old the Store's view of the key topic may
	// be before a lookup starts a background re-read.
	DefaultOffsetRefresh = 10 * time.Second
	// offsetWriteBackoff and offsetWriteBackoffMax pace retries of records
	// that could not be written.
	offsetWriteBackoff    = time.Second
	offsetWriteBackoffMax = 30 * time.Second
)

// ErrFirstOffsetsFull: the index holds MaxFirstOffsets partitions.
var ErrFirstOffsetsFull = errors.New("detkey: the first-encrypted-offset index is full (encryption.keyTopic.maxFirstOffsets)")

// FirstOffsetRecord is one first-encrypted-offset record.
type FirstOffsetRecord struct {
	Topic     string
	Partition int32
	Offset    int64
}

// IsFirstOffsetKey reports whether a key-topic record key is a
// first-encrypted-offset record's (it may still be malformed).
func IsFirstOffsetKey(key []byte) bool {
	return len(key) >= len(firstOffsetPrefix) && string(key[:len(firstOffsetPrefix)]) == firstOffsetPrefix
}

// AppendKey appends the record key of r to dst.
func (r FirstOffsetRecord) AppendKey(dst []byte) []byte {
	dst = append(dst, firstOffsetPrefix...)
	dst = append(dst, r.Topic...)
	dst = append(dst, 0)
	return binary.BigEndian.AppendUint32(dst, uint32(r.Partition))
}

// AppendValue appends the record value of r to dst.
func (r FirstOffsetRecord) AppendValue(dst []byte) []byte {
	dst = append(dst, FirstOffsetVersion)
	return binary.BigEndian.AppendUint64(dst, uint64(r.Offset))
}

// Check reports whether r can be written.
func (r FirstOffsetRecord) Check() error {
	if err := checkTopic(r.Topic); err != nil {
		return err
	}
	if r.Partition < 0 || r.Offset < 0 {
		return fmt.Errorf("%w: partition %d, offset %d", ErrMalformed, r.Partition, r.Offset)
	}
	return nil
}

// ParseFirstOffsetRecord parses a first-encrypted-offset record (hostile
// input: it comes from the broker). The result does not alias key or value.
func ParseFirstOffsetRecord(key, value []byte) (FirstOffsetRecord, error) {
	var r FirstOffsetRecord
	if !IsFirstOffsetKey(key) {
		return r, fmt.Errorf("%w: not a first-encrypted-offset key", ErrMalformed)
	}
	rest := key[len(firstOffsetPrefix):]
	if len(rest) < 6 || rest[len(rest)-5] != 0 {
		return r, fmt.Errorf("%w: first-encrypted-offset key without topic and partition", ErrMalformed)
	}
	topic := rest[:len(rest)-5]
	r.Partition = int32(binary.BigEndian.Uint32(rest[len(rest)-4:]))
	if len(value) != 9 || value[0] != FirstOffsetVersion {
		return FirstOffsetRecord{}, fmt.Errorf("%w: first-encrypted-offset value of %d bytes (version %d, 9 bytes)", ErrMalformed, len(value), FirstOffsetVersion)
	}
	r.Offset = int64(binary.BigEndian.Uint64(value[1:]))
	r.Topic = string(topic)
	if err := r.Check(); err != nil {
		return FirstOffsetRecord{}, err
	}
	return r, nil
}

// tpKey is a topic-partition.
type tpKey struct {
	topic     string
	partition int32
}

// offsetIndex is a Store's first-encrypted offsets. Guarded by its own
// mutex (lookups take the read lock only).
type offsetIndex struct {
	recorded  map[tpKey]int64 // lowest offset read from the key topic
	own       map[tpKey]int64 // lowest offset this process noted
	unwritten map[tpKey]int64 // noted offsets not in the key topic yet
	writing   bool            // a writer goroutine runs
	loaded    bool            // the key topic was read to its end once
	loading   chan struct{}   // closed when the running initial read ends
	loadErr   error
	lastRead  time.Time
	refresh   bool // a background re-read runs
}

// firstOffsetMetrics are the index's metrics.
type firstOffsetMetrics struct {
	known  prometheus.Gauge
	writes *prometheus.CounterVec
}

func newFirstOffsetMetrics() *firstOffsetMetrics {
	return &firstOffsetMetrics{
		known: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kseal_first_encrypted_offsets",
			Help: "Partitions whose first encrypted offset this process knows (from the key topic or its own produce responses; at most encryption.keyTopic.maxFirstOffsets per virtual cluster).",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_first_encrypted_offset_writes_total",
			Help: "First-encrypted-offset records written to the key topic, by outcome (ok; error: retried later; full: not kept, encryption.keyTopic.maxFirstOffsets reached).",
		}, []string{"outcome"}),
	}
}

func (m *firstOffsetMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.known, m.writes}
}

// indexFirstOffset adds one first-encrypted-offset record read from the
// key topic: the lowest offset of a partition wins. Called with readSem
// held.
func (s *Store) indexFirstOffset(key, value []byte) {
	r, err := ParseFirstOffsetRecord(key, value)
	if err != nil {
		s.m.skipped.WithLabelValues("malformed").Inc()
		return
	}
	ix := &s.offsets
	s.offMu.Lock()
	defer s.offMu.Unlock()
	k := tpKey{r.Topic, r.Partition}
	if old, ok := ix.recorded[k]; ok {
		if r.Offset < old {
			ix.recorded[k] = r.Offset
		} else {
			s.m.skipped.WithLabelValues("later").Inc()
		}
	} else {
		if _, mine := ix.own[k]; !mine && s.knownLocked() >= s.opts.MaxFirstOffsets {
			s.m.first.writes.WithLabelValues("full").Inc()
			return
		}
		if ix.recorded == nil {
			ix.recorded = map[tpKey]int64{}
		}
		ix.recorded[k] = r.Offset
	}
	if w, ok := ix.unwritten[k]; ok && ix.recorded[k] <= w {
		delete(ix.unwritten, k) // someone (maybe this process) wrote one as low
	}
	s.m.first.known.Set(float64(s.knownLocked()))
}

// knownLocked counts the partitions known (offMu held).
func (s *Store) knownLocked() int {
	n := len(s.offsets.recorded)
	for k := range s.offsets.own {
		if _, ok := s.offsets.recorded[k]; !ok {
			n++
		}
	}
	return n
}

// FirstEncrypted returns the first encrypted offset of topic's partition:
// the lowest of those read from the key topic and those this process noted
// (NoteEncrypted). ok is false when none is known. The first call of a
// Store reads the key topic (once for all callers, within ctx); until that
// read has succeeded every call fails with an error wrapping
// dek.ErrUnavailable, so that a caller enforcing the offset fails closed.
// Afterwards answers come from memory, and a view older than
// OffsetRefresh starts a background re-read (the answer does not wait).
func (s *Store) FirstEncrypted(ctx context.Context, up Upstream, topic string, partition int32) (offset int64, ok bool, err error) {
	s.offMu.RLock()
	ix := &s.offsets
	if !ix.loaded {
		s.offMu.RUnlock()
		if err := s.loadOffsets(ctx, up); err != nil {
			return 0, false, err
		}
		s.offMu.RLock()
	}
	k := tpKey{topic, partition}
	rec, okR := ix.recorded[k]
	own, okO := ix.own[k]
	stale := !ix.refresh && s.opts.now().Sub(ix.lastRead) > s.opts.OffsetRefresh
	s.offMu.RUnlock()
	if stale {
		s.startRefresh(up)
	}
	switch {
	case okR && okO:
		return min(rec, own), true, nil
	case okR:
		return rec, true, nil
	case okO:
		return own, true, nil
	}
	return 0, false, nil
}

// loadOffsets reads the key topic to its end once (the first read of the
// Store), all concurrent callers waiting for the same read.
func (s *Store) loadOffsets(ctx context.Context, up Upstream) error {
	s.offMu.Lock()
	ix := &s.offsets
	if ix.loaded {
		s.offMu.Unlock()
		return nil
	}
	ch := ix.loading
	if ch == nil {
		ch = make(chan struct{})
		ix.loading = ch
		go func() {
			rctx, cancel := context.WithTimeout(context.Background(), s.opts.UpstreamTimeout)
			defer cancel()
			_, err := s.catchUp(rctx, up)
			if errors.Is(err, ErrTooManyKeys) {
				err = nil // read as far as kseal reads it (docs/key-topic.md)
			}
			s.offMu.Lock()
			ix.loadErr = err
			if err == nil {
				ix.loaded = true
				ix.lastRead = s.opts.now()
			}
			ix.loading = nil
			s.offMu.Unlock()
			close(ch)
		}()
	}
	s.offMu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return fmt.Errorf("%w: reading first encrypted offsets from key topic %q: %w", dek.ErrUnavailable, s.opts.Topic, ctx.Err())
	}
	s.offMu.RLock()
	defer s.offMu.RUnlock()
	if ix.loaded {
		return nil
	}
	return fmt.Errorf("%w: reading first encrypted offsets from key topic %q: %w", dek.ErrUnavailable, s.opts.Topic, ix.loadErr)
}

// startRefresh re-reads the key topic in the background (one at a time).
func (s *Store) startRefresh(up Upstream) {
	s.offMu.Lock()
	if s.offsets.refresh {
		s.offMu.Unlock()
		return
	}
	s.offsets.refresh = true
	s.offMu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.UpstreamTimeout)
		defer cancel()
		_, err := s.catchUp(ctx, up)
		s.offMu.Lock()
		if err == nil || errors.Is(err, ErrTooManyKeys) {
			s.offsets.lastRead = s.opts.now()
		} else {
			// Try again after a tenth of the interval, not at once.
			s.offsets.lastRead = s.opts.now().Add(-s.opts.OffsetRefresh + s.opts.OffsetRefresh/10)
		}
		s.offsets.refresh = false
		s.offMu.Unlock()
	}()
}

// NoteEncrypted notes that kseal encrypted a batch of topic's partition
// that the broker appended at offset (a successful Produce response). When
// neither the key topic nor an earlier note has an offset as low, the
// offset takes effect in this process at once and a record is written to
// the key topic in the background (retried until it is written): the
// caller never waits. Cheap when an offset as low is known (a read lock
// and a map lookup, no allocation).
func (s *Store) NoteEncrypted(up Upstream, topic string, partition int32, offset int64) {
	if offset < 0 || partition < 0 {
		return
	}
	k := tpKey{topic, partition}
	s.offMu.RLock()
	ix := &s.offsets
	if v, ok := ix.own[k]; ok && v <= offset {
		s.offMu.RUnlock()
		return
	}
	if v, ok := ix.recorded[k]; ok && v <= offset {
		s.offMu.RUnlock()
		return
	}
	s.offMu.RUnlock()
	if checkTopic(topic) != nil {
		return
	}
	s.offMu.Lock()
	defer s.offMu.Unlock()
	if v, ok := ix.own[k]; ok && v <= offset {
		return
	}
	_, okR := ix.recorded[k]
	_, okO := ix.own[k]
	if !okR && !okO && s.knownLocked() >= s.opts.MaxFirstOffsets {
		s.m.first.writes.WithLabelValues("full").Inc()
		return
	}
	k.topic = strings.Clone(topic) // topic may alias a response buffer
	if ix.own == nil {
		ix.own = map[tpKey]int64{}
		ix.unwritten = map[tpKey]int64{}
	}
	ix.own[k] = offset
	ix.unwritten[k] = offset
	s.m.first.known.Set(float64(s.knownLocked()))
	if !ix.writing && up != nil {
		ix.writing = true
		go s.writeOffsets(up)
	}
}

// writeOffsets writes the unwritten first-encrypted-offset records one by
// one, retrying failures with backoff, and returns when none is left.
func (s *Store) writeOffsets(up Upstream) {
	backoff := offsetWriteBackoff
	for {
		s.offMu.Lock()
		var r FirstOffsetRecord
		found := false
		for k, v := range s.offsets.unwritten {
			r, found = FirstOffsetRecord{Topic: k.topic, Partition: k.partition, Offset: v}, true
			break
		}
		if !found {
			s.offsets.writing = false
			s.offMu.Unlock()
			return
		}
		s.offMu.Unlock()
		err := s.writeOffset(up, r)
		s.offMu.Lock()
		k := tpKey{r.Topic, r.Partition}
		if err == nil {
			if v, ok := s.offsets.unwritten[k]; ok && v >= r.Offset {
				delete(s.offsets.unwritten, k)
			}
		}
		s.offMu.Unlock()
		if err == nil {
			s.m.first.writes.WithLabelValues("ok").Inc()
			backoff = offsetWriteBackoff
			continue
		}
		s.m.first.writes.WithLabelValues("error").Inc()
		time.Sleep(backoff)
		backoff = min(2*backoff, offsetWriteBackoffMax)
	}
}

func (s *Store) writeOffset(up Upstream, r FirstOffsetRecord) error {
	if err := r.Check(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.UpstreamTimeout)
	defer cancel()
	if !s.created.Load() {
		if err := up.CreateTopic(ctx, s.opts.Topic, s.opts.ReplicationFactor, TopicConfigs); err != nil {
			return s.upstreamErr("create", err)
		}
		s.created.Store(true)
	}
	if _, err := up.Produce(ctx, s.opts.Topic, r.AppendKey(nil), r.AppendValue(nil)); err != nil {
		return s.upstreamErr("write a first-encrypted-offset record to", err)
	}
	return nil
}

// WaitOffsetsWritten waits until every noted offset is in the key topic or
// ctx ends (tests and shutdown).
func (s *Store) WaitOffsetsWritten(ctx context.Context) error {
	for {
		s.offMu.RLock()
		n := len(s.offsets.unwritten)
		s.offMu.RUnlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

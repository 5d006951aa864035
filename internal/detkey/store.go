// Package detkey keeps the deterministic record-key keys of format v2: one
// AES-256-SIV key per (binding topic T, KEK name), the same in every kseal
// replica and across restarts, so equal plaintext record keys of a topic
// are sealed to equal bytes and compaction keeps working.
//
// The keys live wrapped in kseal's own key topic of the upstream cluster
// (encryption.keyTopic.name, default __kseal_keys; one partition,
// cleanup.policy=delete, retention forever). A key record holds T, the KEK
// name and an EDEK (a fresh DEK from the KMS, wrapped by the KEK); the key
// is HKDF-SHA256 of the DEK and T. For each (T, KEK) the record with the
// lowest offset wins: offsets of one partition are totally ordered, so
// every replica that reads the topic agrees on it. A replica that finds no
// record writes a candidate, reads the topic again past it and takes the
// first one, its own or another's (docs/key-topic.md).
//
// Keys are unwrapped once and kept for the life of the Store (bounded by
// MaxKeys): in steady state ForWrite and ForRead make no KMS call and no
// upstream request, and take no lock but a read lock.
//
// One Store serves one upstream cluster (one virtual cluster): its caches
// are those of that cluster's key topic. docs/key-topic.md is the
// operator's view.
package detkey

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/siv"
)

// Defaults of Options (and of encryption.keyTopic).
const (
	DefaultTopic          = "__kseal_keys"
	DefaultMaxKeys        = 10_000
	DefaultRereadInterval = time.Second
	// DefaultUpstreamTimeout bounds one pass over the key topic (reading
	// it, creating it, writing a candidate and reading it back).
	DefaultUpstreamTimeout = 30 * time.Second
	// maxNegative bounds the key ids remembered as unknown.
	maxNegative = 1024
	// maxCatchUps bounds the reads after writing a candidate until the
	// Store has read past it.
	maxCatchUps = 8
)

var (
	// ErrUnknownKey means a sealed record key names a key id the key
	// topic does not hold (after a re-read), or one of another topic: the
	// record cannot be opened. Not retriable (Fetch: CORRUPT_MESSAGE).
	ErrUnknownKey = errors.New("detkey: unknown deterministic key id")
	// ErrTooManyKeys means the key topic holds more records than MaxKeys
	// (encryption.keyTopic.maxKeys): the Store reads no further and
	// refuses keys it has not read yet. Not retriable.
	ErrTooManyKeys = errors.New("detkey: the key topic holds more records than encryption.keyTopic.maxKeys")
)

// Retriable reports whether an error of ForWrite or ForRead may pass (the
// KMS or the key topic could not be reached in time): it wraps
// dek.ErrUnavailable, like a DEK that could not be had.
func Retriable(err error) bool { return dek.Retriable(err) }

// KMS is what a Store needs of a KMS (kms.KMS has it).
type KMS interface {
	GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error)
	DecryptDEK(ctx context.Context, edek []byte) ([]byte, error)
}

// Upstream is kseal's own access to the key topic in the upstream cluster
// (filter.Upstream has it: pass Exchange.Upstream()). Every method works on
// partition 0.
type Upstream interface {
	// CreateTopic creates topic with one partition, the replication factor
	// (0: min(3, brokers)) and configs given, unless it exists.
	CreateTopic(ctx context.Context, topic string, replicationFactor int16, configs map[string]string) error
	// Produce appends one record with acks=all and returns its offset.
	Produce(ctx context.Context, topic string, key, value []byte) (int64, error)
	// ReadFrom visits the records from offset on up to the high watermark
	// and returns the offset to read next (see filter.Upstream).
	ReadFrom(ctx context.Context, topic string, offset int64, visit func(offset int64, key, value []byte) bool) (int64, error)
}

// Options configure a Store. Zero fields take the defaults.
type Options struct {
	// Topic is the key topic (DefaultTopic).
	Topic string
	// ReplicationFactor of the key topic when kseal creates it; 0 means
	// min(3, brokers).
	ReplicationFactor int16
	// MaxKeys bounds the records read from the key topic, and so the keys
	// kept (DefaultMaxKeys).
	MaxKeys int
	// RereadInterval is the least time between two re-reads of the key
	// topic for key ids the Store does not know (DefaultRereadInterval); a
	// key id still unknown after one is refused for that long without
	// another.
	RereadInterval time.Duration
	// UpstreamTimeout bounds one pass over the key topic.
	UpstreamTimeout time.Duration
	// RecheckAfter, if not 0, is the age after its unwrap at which a key in
	// use is unwrapped again in the background (one KMS call): if the KMS
	// then refuses (the KEK was deleted or disabled, or kseal's permission
	// withdrawn), the key is dropped and the next call fails with the
	// KMS's answer. Give it dek's DecryptCacheMaxAge so record keys stop
	// opening after a KEK revocation within the bound values do. A KMS
	// that cannot be reached then does not drop the key (it is checked
	// again after an eighth of RecheckAfter). 0: keys are kept for the life
	// of the Store.
	RecheckAfter time.Duration
	// KMSTimeout, KMSAttempts, KMSBackoff and KMSBackoffMax are as in
	// dek.Options (and take its defaults).
	KMSTimeout    time.Duration
	KMSAttempts   int
	KMSBackoff    time.Duration
	KMSBackoffMax time.Duration
	// NotFoundTTL is how long a KMS's refusal to unwrap a key record's
	// EDEK (other than "unavailable") is remembered, so a deleted KEK is
	// not asked again on every request (dek.DefaultNotFoundTTL).
	NotFoundTTL time.Duration
	// MaxFirstOffsets bounds the partitions whose first encrypted offset
	// is kept (DefaultMaxFirstOffsets; firstoffset.go).
	MaxFirstOffsets int
	// OffsetRefresh is how old the view of first encrypted offsets may get
	// before a lookup re-reads the key topic (DefaultOffsetRefresh).
	OffsetRefresh time.Duration
	// Metrics receives the Store's metrics (nil: none).
	Metrics *Metrics
	// now is the clock (tests).
	now func() time.Time
}

func (o *Options) defaults() {
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.RereadInterval == 0 {
		o.RereadInterval = DefaultRereadInterval
	}
	if o.UpstreamTimeout == 0 {
		o.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if o.KMSTimeout == 0 {
		o.KMSTimeout = dek.DefaultKMSTimeout
	}
	if o.KMSAttempts == 0 {
		o.KMSAttempts = dek.DefaultKMSAttempts
	}
	if o.KMSBackoff == 0 {
		o.KMSBackoff = dek.DefaultKMSBackoff
	}
	if o.KMSBackoffMax == 0 {
		o.KMSBackoffMax = dek.DefaultKMSBackoffMax
	}
	if o.NotFoundTTL == 0 {
		o.NotFoundTTL = dek.DefaultNotFoundTTL
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.MaxFirstOffsets == 0 {
		o.MaxFirstOffsets = DefaultMaxFirstOffsets
	}
	if o.OffsetRefresh == 0 {
		o.OffsetRefresh = DefaultOffsetRefresh
	}
	if o.now == nil {
		o.now = time.Now
	}
}

// TopicConfigs are the configs kseal creates the key topic with: records
// are kept forever and never compacted (compaction keeps the last record
// of a key, first writer wins needs the first).
var TopicConfigs = map[string]string{
	"cleanup.policy":  "delete",
	"retention.ms":    "-1",
	"retention.bytes": "-1",
}

// Store is the deterministic keys of one upstream cluster's key topic.
// It is safe for concurrent use.
type Store struct {
	kms  KMS
	opts Options
	m    *Metrics

	mu   sync.RWMutex
	byTK map[tkKey]*entry      // the winning record of each (T, KEK)
	byID map[[8]byte]*entry    // the same records by key id
	neg  map[[8]byte]time.Time // key ids unknown after a re-read, and when
	// shreds are the shred records read (shred.go).
	shreds shredIndex

	// readSem serializes reads of the key topic (a lock that gives up with
	// ctx); next and read are guarded by it.
	readSem chan struct{}
	next    int64 // the offset to read from next
	read    int   // records read so far
	created atomic.Bool

	flightMu sync.Mutex
	flights  map[any]*call

	// First encrypted offsets of partitions (firstoffset.go).
	offMu   sync.RWMutex
	offsets offsetIndex

	// The re-read flight for unknown key ids (guarded by flightMu).
	reread     *call
	rereadSeq  uint64
	lastReread time.Time
}

type tkKey struct{ topic, kek string }

// entry is one winning key record; dk is set once it is unwrapped.
type entry struct {
	topic, kek string
	id         [8]byte
	edek       []byte
	offset     int64
	dk         atomic.Pointer[recordcrypt.DetKey]
	// unwrapped is when the KMS last unwrapped (or confirmed) the DEK,
	// in unix nanoseconds; rechecking is set while a recheck runs.
	unwrapped  atomic.Int64
	rechecking atomic.Bool
	// refused is the KMS's last refusal to unwrap the DEK, if any.
	refused atomic.Pointer[refusal]
}

// refusal is a KMS's refusal and when it came.
type refusal struct {
	err error
	at  time.Time
}

// New returns a Store that unwraps keys with k.
func New(k KMS, opts Options) (*Store, error) {
	opts.defaults()
	if err := CheckTopicName(opts.Topic); err != nil {
		return nil, fmt.Errorf("detkey: key topic: %w", err)
	}
	if opts.MaxKeys < 0 || opts.ReplicationFactor < 0 {
		return nil, errors.New("detkey: negative MaxKeys or ReplicationFactor")
	}
	return &Store{
		kms:     k,
		opts:    opts,
		m:       opts.Metrics,
		byTK:    map[tkKey]*entry{},
		byID:    map[[8]byte]*entry{},
		neg:     map[[8]byte]time.Time{},
		readSem: make(chan struct{}, 1),
		flights: map[any]*call{},
	}, nil
}

// Topic is the key topic's name.
func (s *Store) Topic() string { return s.opts.Topic }

// ForWrite returns the deterministic key of (topic, kek) to seal record
// keys with (topic is the binding topic, policy's AADTopic), making it (one KMS GenerateDEK and one record in the key
// topic, whichever replica is first) if the key topic has none. Errors:
// kms.ErrKeyUnusable (the KEK is gone or cannot make or unwrap keys; not
// retriable), ErrTooManyKeys, or one wrapping dek.ErrUnavailable
// (Retriable: the KMS or the key topic did not answer in time).
func (s *Store) ForWrite(ctx context.Context, up Upstream, topic string, kek kms.KEKRef) (*recordcrypt.DetKey, error) {
	s.mu.RLock()
	e := s.byTK[tkKey{topic, kek.Name}]
	s.mu.RUnlock()
	if e != nil {
		if dk := e.dk.Load(); dk != nil {
			s.maybeRecheck(e)
			return dk, nil
		}
	}
	if err := checkTopic(topic); err != nil {
		return nil, fmt.Errorf("detkey: binding topic: %w", err)
	}
	if err := checkKEKName(kek.Name); err != nil {
		return nil, fmt.Errorf("detkey: KEK: %w", err)
	}
	return s.do(ctx, tkKey{topic, kek.Name}, func(fctx context.Context) (*recordcrypt.DetKey, error) {
		return s.write(fctx, up, topic, kek)
	})
}

// ForRead returns the deterministic key with key id id, which a record of
// topic (the binding topic) was sealed under. A key id the Store has not read makes it read
// the key topic again (at most once per RereadInterval for all callers).
// Errors: ErrUnknownKey (not retriable), kms.ErrKeyNotFound (the KEK is
// gone), ErrTooManyKeys, one wrapping dek.ErrUnavailable (Retriable), or
// the KMS's refusal of the EDEK.
func (s *Store) ForRead(ctx context.Context, up Upstream, topic string, id [8]byte) (*recordcrypt.DetKey, error) {
	s.mu.RLock()
	e := s.byID[id]
	s.mu.RUnlock()
	if e == nil {
		var err error
		if e, err = s.find(ctx, up, id); err != nil {
			return nil, err
		}
	}
	if e.topic != topic {
		s.m.refusals.WithLabelValues("unknown_key").Inc()
		return nil, fmt.Errorf("%w: key id %x belongs to another topic", ErrUnknownKey, id)
	}
	if dk := e.dk.Load(); dk != nil {
		s.maybeRecheck(e)
		return dk, nil
	}
	return s.do(ctx, id, func(fctx context.Context) (*recordcrypt.DetKey, error) {
		return s.unwrap(fctx, e, false)
	})
}

// find looks up a key id the Store has not indexed: it waits for a re-read
// of the key topic that started after the miss.
func (s *Store) find(ctx context.Context, up Upstream, id [8]byte) (*entry, error) {
	now := s.opts.now()
	s.flightMu.Lock()
	after := s.rereadSeq
	s.flightMu.Unlock()
	s.mu.RLock()
	at, negative := s.neg[id]
	s.mu.RUnlock()
	if negative && now.Sub(at) < s.opts.RereadInterval {
		s.m.refusals.WithLabelValues("unknown_key").Inc()
		return nil, fmt.Errorf("%w: %x", ErrUnknownKey, id)
	}
	err := s.rereadAfter(ctx, up, after)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.byID[id]; e != nil {
		return e, nil
	}
	if err != nil {
		return nil, err
	}
	if len(s.neg) >= maxNegative {
		clear(s.neg)
	}
	s.neg[id] = s.opts.now()
	s.m.refusals.WithLabelValues("unknown_key").Inc()
	return nil, fmt.Errorf("%w: %x (not in key topic %q)", ErrUnknownKey, id, s.opts.Topic)
}

// rereadAfter waits for a re-read of the key topic numbered above after,
// starting one (no sooner than RereadInterval after the last) if none is
// running.
func (s *Store) rereadAfter(ctx context.Context, up Upstream, after uint64) error {
	for {
		s.flightMu.Lock()
		c := s.reread
		if c == nil {
			s.rereadSeq++
			c = newCall(s.rereadSeq)
			s.reread = c
			wait := s.lastReread.Add(s.opts.RereadInterval).Sub(s.opts.now())
			go s.runReread(c, up, wait)
		}
		s.flightMu.Unlock()
		_, err := c.wait(ctx)
		if c.seq > after {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
	}
}

func (s *Store) runReread(c *call, up Upstream, wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.UpstreamTimeout+max(wait, 0))
	defer cancel()
	if wait > 0 {
		t := time.NewTimer(wait)
		<-t.C
	}
	s.flightMu.Lock()
	s.lastReread = s.opts.now()
	s.flightMu.Unlock()
	_, err := s.catchUp(ctx, up)
	s.flightMu.Lock()
	s.reread = nil
	s.flightMu.Unlock()
	c.finish(nil, err)
}

// write finds or makes the key of (topic, kek).
func (s *Store) write(ctx context.Context, up Upstream, topic string, kek kms.KEKRef) (*recordcrypt.DetKey, error) {
	k := tkKey{topic, kek.Name}
	e := s.winner(k)
	if e == nil {
		_, err := s.catchUp(ctx, up)
		// A winner read before a failure (or before MaxKeys) is final.
		if e = s.winner(k); e == nil && err != nil {
			return nil, err
		}
	}
	if e != nil {
		return s.unwrap(ctx, e, true)
	}
	if !s.created.Load() {
		if err := up.CreateTopic(ctx, s.opts.Topic, s.opts.ReplicationFactor, TopicConfigs); err != nil {
			return nil, s.upstreamErr("create", err)
		}
		s.created.Store(true)
	}
	d, err := callKMS(ctx, s, func(ctx context.Context) (kms.DEK, error) { return s.kms.GenerateDEK(ctx, kek) },
		func(d kms.DEK) { clear(d.Key) })
	if err != nil {
		return nil, writeErr(kek.Name, "GenerateDEK", err)
	}
	defer clear(d.Key)
	rec := KeyRecord{Topic: topic, KEK: kek.Name, EDEK: d.EDEK}
	if err := rec.Check(); err != nil {
		return nil, fmt.Errorf("%w: the KMS's data key for KEK %q: %w", dek.ErrUnavailable, kek.Name, err)
	}
	if len(d.Key) != 32 {
		return nil, fmt.Errorf("%w: the KMS returned a %d-byte data key for KEK %q", dek.ErrUnavailable, len(d.Key), kek.Name)
	}
	offset, err := up.Produce(ctx, s.opts.Topic, AppendKey(nil, topic, kek.Name), rec.AppendValue(nil))
	if err != nil {
		return nil, s.upstreamErr("write a key record to", err)
	}
	s.m.candidates.Inc()
	for i := 0; ; i++ {
		next, err := s.catchUp(ctx, up)
		if err != nil {
			return nil, err
		}
		if next > offset {
			break
		}
		if i == maxCatchUps {
			return nil, fmt.Errorf("%w: key topic %q: the key record kseal wrote at offset %d did not come back", dek.ErrUnavailable, s.opts.Topic, offset)
		}
		// The broker asked may not know the new record (or a topic
		// created a moment ago) yet.
		t := time.NewTimer(time.Duration(10<<i) * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: key topic %q: reading back the key record at offset %d: %w", dek.ErrUnavailable, s.opts.Topic, offset, ctx.Err())
		}
	}
	e = s.winner(k)
	if e == nil {
		return nil, fmt.Errorf("%w: key topic %q: no key record for topic %q and KEK %q after writing one at offset %d", dek.ErrUnavailable, s.opts.Topic, topic, kek.Name, offset)
	}
	if e.id != KeyID(d.EDEK) {
		s.m.lostRaces.Inc()
		return s.unwrap(ctx, e, true)
	}
	return s.install(e, d.Key)
}

func (s *Store) winner(k tkKey) *entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byTK[k]
}

// unwrap asks the KMS for e's DEK and installs the key made from it.
func (s *Store) unwrap(ctx context.Context, e *entry, forWrite bool) (*recordcrypt.DetKey, error) {
	if dk := e.dk.Load(); dk != nil {
		return dk, nil
	}
	var key []byte
	var err error
	if r := e.refused.Load(); r != nil && s.opts.now().Sub(r.at) < s.opts.NotFoundTTL {
		err = r.err
	} else {
		key, err = callKMS(ctx, s, func(ctx context.Context) ([]byte, error) { return s.kms.DecryptDEK(ctx, e.edek) },
			func(b []byte) { clear(b) })
		if err != nil && !Retriable(classify(err)) {
			e.refused.Store(&refusal{err: err, at: s.opts.now()})
		}
	}
	if err != nil {
		if forWrite {
			return nil, writeErr(e.kek, "DecryptDEK", err)
		}
		return nil, fmt.Errorf("detkey: key %x of topic %q (KEK %q): %w", e.id, e.topic, e.kek, classify(err))
	}
	defer clear(key)
	if len(key) != 32 {
		return nil, fmt.Errorf("detkey: the KMS unwrapped a %d-byte key for KEK %q", len(key), e.kek)
	}
	return s.install(e, key)
}

// install derives e's deterministic key from its DEK and caches it.
func (s *Store) install(e *entry, dekKey []byte) (*recordcrypt.DetKey, error) {
	k, err := DeriveKey(dekKey, e.topic)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	a, err := siv.New(k)
	if err != nil {
		return nil, err
	}
	dk := &recordcrypt.DetKey{ID: e.id, AEAD: a}
	e.unwrapped.Store(s.opts.now().UnixNano())
	if e.dk.CompareAndSwap(nil, dk) {
		s.m.cached.Inc()
		return dk, nil
	}
	return e.dk.Load(), nil
}

// maybeRecheck starts a background unwrap of e's DEK when it is older than
// RecheckAfter (see Options.RecheckAfter).
func (s *Store) maybeRecheck(e *entry) {
	after := int64(s.opts.RecheckAfter)
	if after <= 0 {
		return
	}
	now := s.opts.now().UnixNano()
	if now-e.unwrapped.Load() < after || !e.rechecking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.rechecking.Store(false)
		key, err := callKMS(context.Background(), s, func(ctx context.Context) ([]byte, error) { return s.kms.DecryptDEK(ctx, e.edek) },
			func(b []byte) { clear(b) })
		clear(key)
		s.m.rechecks.Inc()
		switch {
		case err == nil:
			e.unwrapped.Store(s.opts.now().UnixNano())
		case Retriable(classify(err)) || errors.Is(err, dek.ErrProviderPanic):
			// Try again after an eighth of the interval.
			e.unwrapped.Store(s.opts.now().UnixNano() - after + after/8)
		default:
			if e.dk.Swap(nil) != nil {
				s.m.cached.Dec()
				s.m.dropped.Inc()
			}
		}
	}()
}

// catchUp reads the key topic from where the Store stopped to the end,
// indexing every key record, and returns the offset it reached.
func (s *Store) catchUp(ctx context.Context, up Upstream) (int64, error) {
	select {
	case s.readSem <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: waiting for a read of key topic %q: %w", dek.ErrUnavailable, s.opts.Topic, ctx.Err())
	}
	defer func() { <-s.readSem }()
	if s.read >= s.opts.MaxKeys {
		// Full: nothing more is read, so no request is made.
		s.m.refusals.WithLabelValues("max_keys").Inc()
		return s.next, fmt.Errorf("%w (%d): key topic %q", ErrTooManyKeys, s.opts.MaxKeys, s.opts.Topic)
	}
	if up == nil {
		return s.next, s.upstreamErr("read", errors.New("no upstream cluster"))
	}
	full := false
	var fullAt int64
	next, err := up.ReadFrom(ctx, s.opts.Topic, s.next, func(offset int64, key, value []byte) bool {
		if IsFirstOffsetKey(key) {
			// Not a key record: bounded by MaxFirstOffsets, not MaxKeys.
			s.indexFirstOffset(key, value)
			return true
		}
		if s.read >= s.opts.MaxKeys {
			full, fullAt = true, offset
			return false
		}
		s.read++
		s.index(offset, key, value)
		return true
	})
	if full {
		next = fullAt
	}
	if next > s.next {
		s.next = next
	}
	if err != nil {
		s.m.reads.WithLabelValues("error").Inc()
		return s.next, s.upstreamErr("read", err)
	}
	s.m.reads.WithLabelValues("ok").Inc()
	if full {
		s.m.refusals.WithLabelValues("max_keys").Inc()
		return s.next, fmt.Errorf("%w (%d): key topic %q, offset %d", ErrTooManyKeys, s.opts.MaxKeys, s.opts.Topic, fullAt)
	}
	return s.next, nil
}

// index adds one record of the key topic: the first valid record of each
// (T, KEK) wins; malformed records, later candidates and records repeating
// a key id already indexed are skipped. Every replica reads the same
// records in the same order, so all take the same decisions.
func (s *Store) index(offset int64, key, value []byte) {
	if IsShredKey(key) {
		s.indexShred(key, value)
		return
	}
	r, err := ParseKeyRecord(key, value)
	if err != nil {
		s.m.skipped.WithLabelValues("malformed").Inc()
		return
	}
	id := KeyID(r.EDEK)
	k := tkKey{r.Topic, r.KEK}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byID[id] != nil:
		s.m.skipped.WithLabelValues("duplicate").Inc()
	case s.byTK[k] != nil:
		s.m.skipped.WithLabelValues("later").Inc()
	default:
		e := &entry{topic: r.Topic, kek: r.KEK, id: id, edek: r.EDEK, offset: offset}
		s.byTK[k] = e
		s.byID[id] = e
		delete(s.neg, id)
	}
}

func (s *Store) upstreamErr(what string, err error) error {
	return fmt.Errorf("%w: %s key topic %q: %w", dek.ErrUnavailable, what, s.opts.Topic, err)
}

// writeErr words a KMS failure on the write side as dek.Current does: a
// KEK that is missing or unusable is kms.ErrKeyUnusable (it was resolved,
// so it is gone now), anything else means "no key now" (dek.ErrUnavailable).
func writeErr(kek, op string, err error) error {
	switch {
	case errors.Is(err, kms.ErrKeyUnusable):
		return fmt.Errorf("detkey: %s for KEK %q: %w", op, kek, err)
	case errors.Is(err, kms.ErrKeyNotFound):
		return fmt.Errorf("detkey: %s: %w: KEK %q was in use and is gone (%v)", op, kms.ErrKeyUnusable, kek, err)
	case errors.Is(err, dek.ErrUnavailable):
		return fmt.Errorf("detkey: %s for KEK %q: %w", op, kek, err)
	}
	return fmt.Errorf("detkey: %s for KEK %q: %w: %w", op, kek, dek.ErrUnavailable, err)
}

// classify wraps transient KMS failures in dek.ErrUnavailable and leaves
// a missing KEK and refusals as they are.
func classify(err error) error {
	if errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, dek.ErrUnavailable) {
		return err
	}
	if errors.Is(err, kms.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", dek.ErrUnavailable, err)
	}
	return err
}

// call is one operation any number of callers wait for.
type call struct {
	seq  uint64
	done chan struct{}
	val  *recordcrypt.DetKey
	err  error
}

func newCall(seq uint64) *call { return &call{seq: seq, done: make(chan struct{})} }

func (c *call) finish(v *recordcrypt.DetKey, err error) {
	c.val, c.err = v, err
	close(c.done)
}

func (c *call) wait(ctx context.Context) (*recordcrypt.DetKey, error) {
	select {
	case <-c.done:
		return c.val, c.err
	default:
	}
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a deterministic key: %w", dek.ErrUnavailable, ctx.Err())
	}
}

// do runs fn once for any number of concurrent callers with the same key,
// in its own goroutine bounded by the Store's timeouts (a caller that gives
// up does not cancel it for the others). Failures are not remembered.
func (s *Store) do(ctx context.Context, key any, fn func(context.Context) (*recordcrypt.DetKey, error)) (*recordcrypt.DetKey, error) {
	s.flightMu.Lock()
	c := s.flights[key]
	if c == nil {
		c = newCall(0)
		s.flights[key] = c
		go func() {
			fctx, cancel := context.WithTimeout(context.Background(), s.opts.UpstreamTimeout+s.opts.KMSTimeout)
			defer cancel()
			var v *recordcrypt.DetKey
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("detkey: panic while getting a deterministic key: %v", p)
					}
				}()
				v, err = fn(fctx)
			}()
			s.flightMu.Lock()
			delete(s.flights, key)
			s.flightMu.Unlock()
			c.finish(v, err)
		}()
	}
	s.flightMu.Unlock()
	return c.wait(ctx)
}

// callKMS runs f with the store's KMS timeout and retries, the way the
// DEK manager calls its KMS (dek.CallKMS).
func callKMS[T any](ctx context.Context, s *Store, f func(context.Context) (T, error), discard func(T)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.KMSTimeout)
	defer cancel()
	r := dek.Retry{Attempts: s.opts.KMSAttempts, Backoff: s.opts.KMSBackoff, BackoffMax: s.opts.KMSBackoffMax}
	return dek.CallKMS(ctx, r, f, discard, func(time.Duration, error) { s.m.kmsCalls.Inc() })
}

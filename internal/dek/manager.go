package dek

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// Manager holds the DEKs of one KMS (one per virtual cluster). It is safe
// for concurrent use.
type Manager struct {
	kms  kms.KMS
	opts Options

	encMu sync.RWMutex
	enc   map[kms.KEKRef]*encEntry

	decMu      sync.RWMutex
	dec        map[string]*decEntry // by EDEK bytes
	decFlights map[string]*call[cipher.AEAD]

	resMu sync.RWMutex
	res   map[string]*resEntry // by KEK name
	// used holds every KEK name that ever resolved (Options.UsedKEKs).
	used *UsedKEKs

	stats *Counters

	// changes reads the KMS's change counter (kms.Changes); nil when the
	// KMS does not report changes.
	changes func() uint64
}

// changesNow is the KMS's change counter (0 when it reports none). Read it
// before a KMS call whose refusal is remembered: an answer is then dropped
// when the keys changed after the call started.
func (m *Manager) changesNow() uint64 {
	if m.changes == nil {
		return 0
	}
	return m.changes()
}

// changedSince reports whether the KMS's keys changed after gen was read.
func (m *Manager) changedSince(gen uint64) bool {
	return m.changes != nil && m.changes() != gen
}

// New makes a Manager over k.
func New(k kms.KMS, opts Options) (*Manager, error) {
	if k == nil {
		return nil, errors.New("dek: nil KMS")
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("dek: options: %w", err)
	}
	stats := opts.Counters
	if stats == nil {
		stats = new(Counters)
	}
	used := opts.UsedKEKs
	if used == nil {
		used = new(UsedKEKs)
	}
	var changes func() uint64
	if c, ok := k.(kms.Changes); ok {
		changes = c.Changes
	}
	return &Manager{
		changes:    changes,
		kms:        k,
		opts:       opts,
		stats:      stats,
		enc:        make(map[kms.KEKRef]*encEntry),
		dec:        make(map[string]*decEntry),
		decFlights: make(map[string]*call[cipher.AEAD]),
		res:        make(map[string]*resEntry),
		used:       used,
	}, nil
}

// UsedKEKs remembers every KEK name that ever resolved. It grows only with
// keys that exist in the KMS (a client cannot create those), never with
// client input. A later "not found" for such a name means the KEK was
// deleted: kms.ErrKeyUnusable, never unresolved. Managers that replace one
// another on reload share one (Options.UsedKEKs). The zero value is ready.
type UsedKEKs struct {
	mu    sync.RWMutex
	names map[string]struct{}
}

func (u *UsedKEKs) has(name string) bool {
	u.mu.RLock()
	defer u.mu.RUnlock()
	_, ok := u.names[name]
	return ok
}

func (u *UsedKEKs) add(name string) {
	if u.has(name) {
		return
	}
	u.mu.Lock()
	if u.names == nil {
		u.names = map[string]struct{}{}
	}
	u.names[name] = struct{}{}
	u.mu.Unlock()
}

// encEntry is the active DEK of one KEK.
type encEntry struct {
	key atomic.Pointer[Key] // nil until the first DEK arrives
	// gone is set when the KMS reported the KEK deleted, disabled or
	// otherwise unusable: Current refuses until it resolves again.
	gone atomic.Pointer[error]

	mu      sync.Mutex
	flight  *call[*Key] // the GenerateDEK in progress, if any
	retryAt time.Time   // no background refresh before this, after a failure
	lastFP  [16]byte    // fingerprint of the last DEK, see ErrReusedDEK
	hasFP   bool
}

// Current returns the active DEK for kek, making one if there is none or it
// expired or is exhausted. It waits only when there is no usable DEK, and
// never longer than ctx allows (nor than KMSTimeout). Every error means "no
// DEK": the Produce must fail, never pass plaintext. Errors wrap
// ErrUnavailable (retriable), or kms.ErrKeyUnusable if the KEK is gone,
// disabled or otherwise unusable (its current DEK is then dropped; an
// operator must act, so not retriable).
//
// A caller sealing many records calls Current once per batch, and again if
// Seal fails with ErrExhausted (at most once more per batch).
func (m *Manager) Current(ctx context.Context, kek kms.KEKRef) (*Key, error) {
	e := m.encEntry(kek)
	if g := e.gone.Load(); g != nil {
		return nil, fmt.Errorf("dek: data key for KEK %q: %w", kek.Name, *g)
	}
	now := m.opts.Now()
	if k := e.key.Load(); k != nil && m.usable(k, now) {
		m.stats.encHits.Add(1)
		if m.stale(k, now) {
			m.refresh(e, kek, now)
		}
		return k, nil
	}
	m.stats.encMisses.Add(1)
	e.mu.Lock()
	// A flight may have finished between the check above and the lock:
	// take its key rather than start another GenerateDEK.
	if k := e.key.Load(); k != nil && m.usable(k, m.opts.Now()) {
		e.mu.Unlock()
		return k, nil
	}
	c := e.flight
	if c == nil {
		c = m.startGenerate(e, kek)
	}
	e.mu.Unlock()
	k, err := c.wait(ctx)
	if err != nil {
		if !errors.Is(err, kms.ErrKeyNotFound) && !errors.Is(err, kms.ErrKeyUnusable) && !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("dek: data key for KEK %q: %w", kek.Name, err)
	}
	return k, nil
}

func (m *Manager) encEntry(kek kms.KEKRef) *encEntry {
	m.encMu.RLock()
	e := m.enc[kek]
	m.encMu.RUnlock()
	if e != nil {
		return e
	}
	m.encMu.Lock()
	defer m.encMu.Unlock()
	if e = m.enc[kek]; e == nil {
		e = &encEntry{}
		m.enc[kek] = e
	}
	return e
}

func (m *Manager) usable(k *Key, now time.Time) bool {
	return now.Sub(k.created) < m.opts.ExpireAfterWrite && !k.Exhausted()
}

// stale reports whether a background refresh is due: by age, or because 7/8
// of the counters are used (so the cap is rarely hit with nothing ready).
func (m *Manager) stale(k *Key, now time.Time) bool {
	return now.Sub(k.created) >= m.opts.RefreshAfterWrite || k.Used() >= k.limit-k.limit/8
}

// refresh starts a background GenerateDEK unless one is running or a recent
// one failed. It never waits.
func (m *Manager) refresh(e *encEntry, kek kms.KEKRef, now time.Time) {
	e.mu.Lock()
	if e.flight == nil && !now.Before(e.retryAt) {
		m.stats.refreshes.Add(1)
		m.startGenerate(e, kek)
	}
	e.mu.Unlock()
}

// startGenerate starts the one GenerateDEK flight of e. Call with e.mu held.
func (m *Manager) startGenerate(e *encEntry, kek kms.KEKRef) *call[*Key] {
	c := newCall[*Key]()
	e.flight = c
	go m.generate(e, kek, c)
	return c
}

func (m *Manager) generate(e *encEntry, kek kms.KEKRef, c *call[*Key]) {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.KMSTimeout)
	defer cancel()
	d, err := callKMS(ctx, m, OpGenerateDEK, func(ctx context.Context) (kms.DEK, error) {
		return m.kms.GenerateDEK(ctx, kek)
	}, func(d kms.DEK) { clear(d.Key) })

	var k *Key
	var fp [16]byte
	if err == nil {
		fp = fingerprint(d.Key)
		var aead cipher.AEAD
		aead, err = newAEAD(d.Key)
		clear(d.Key)
		if err == nil && len(d.EDEK) == 0 {
			err = errors.New("dek: KMS returned an empty EDEK")
		}
		if err == nil {
			k = &Key{
				aead:    aead,
				edek:    d.EDEK,
				kek:     kek,
				created: m.opts.Now(),
				limit:   m.opts.MaxEncryptionsPerDEK,
			}
		}
	}

	if err != nil && errors.Is(err, kms.ErrKeyNotFound) {
		// kek came from a successful ResolveKEK: it existed, so it was
		// deleted since. Never "not found", which could mean plaintext.
		err = gone(kek.Name, err)
	}
	if errors.Is(err, kms.ErrKeyUnusable) {
		m.dropDEKs(kek.Name, err)
	}
	e.mu.Lock()
	if err == nil && e.hasFP && e.lastFP == fp {
		err = ErrReusedDEK
	}
	if err == nil {
		e.lastFP, e.hasFP = fp, true
		e.key.Store(k)
		e.retryAt = time.Time{}
		m.stats.generated.Add(1)
	} else {
		k = nil
		e.retryAt = m.opts.Now().Add(m.opts.KMSBackoffMax)
		m.stats.generateFailures.Add(1)
	}
	e.flight = nil
	e.mu.Unlock()
	if k != nil && m.opts.Hooks.OnDEKGenerated != nil {
		m.opts.Hooks.OnDEKGenerated(kek, k.edek)
	}
	if h := m.opts.Hooks.OnKEKState; h != nil && errors.Is(err, kms.ErrKeyUnusable) {
		h(kek.Name, err)
	}
	c.finish(k, classify(err))
}

// call is one in-flight KMS operation that any number of callers wait for.
type call[T any] struct {
	done chan struct{}
	val  T
	err  error
}

func newCall[T any]() *call[T] { return &call[T]{done: make(chan struct{})} }

func (c *call[T]) finish(v T, err error) {
	c.val, c.err = v, err
	close(c.done)
}

// wait returns the call's result, or gives up when ctx ends; the call goes
// on for the other waiters and its result is cached for the next caller.
func (c *call[T]) wait(ctx context.Context) (T, error) {
	select {
	case <-c.done:
		return c.val, c.err
	default:
	}
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: waiting for the KMS: %w", ErrUnavailable, ctx.Err())
	}
}

// callKMS runs f with the Manager's retry settings and reports each
// attempt to its counters and hooks (CallKMS).
func callKMS[T any](ctx context.Context, m *Manager, op Op, f func(context.Context) (T, error), discard func(T)) (T, error) {
	r := Retry{Attempts: m.opts.KMSAttempts, Backoff: m.opts.KMSBackoff, BackoffMax: m.opts.KMSBackoffMax}
	return CallKMS(ctx, r, f, discard, func(took time.Duration, err error) {
		m.stats.kmsCalls.Add(1)
		if h := m.opts.Hooks.OnKMSCall; h != nil {
			h(op, took, err)
		}
		if err != nil {
			m.stats.kmsErrors.Add(1)
		}
	})
}

// Retry is how CallKMS retries: up to Attempts tries in all, the pause
// before the next one starting at Backoff and doubling up to BackoffMax.
type Retry struct {
	Attempts            int
	Backoff, BackoffMax time.Duration
}

// CallKMS runs f, kseal's one way to call a KMS (the DEK manager and the
// deterministic-key store use it): retries only for kms.ErrUnavailable,
// with jittered exponential backoff; a provider panic becomes
// ErrProviderPanic, never a key; and it returns by ctx's deadline even if f
// ignores ctx, the attempt then abandoned and its late result handed to
// discard (to wipe key bytes). onAttempt, if not nil, is told each
// attempt's duration and error.
func CallKMS[T any](ctx context.Context, r Retry, f func(context.Context) (T, error), discard func(T), onAttempt func(time.Duration, error)) (T, error) {
	backoff := r.Backoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		v, err := attemptKMS(ctx, f, discard)
		if onAttempt != nil {
			onAttempt(time.Since(start), err)
		}
		if err == nil {
			return v, nil
		}
		if attempt >= r.Attempts || !errors.Is(err, kms.ErrUnavailable) || ctx.Err() != nil {
			return v, err
		}
		// Full jitter in [backoff/2, backoff) keeps many proxies from retrying
		// in lockstep against a recovering KMS.
		pause := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return v, err
		}
		backoff = min(2*backoff, r.BackoffMax)
	}
}

func attemptKMS[T any](ctx context.Context, f func(context.Context) (T, error), discard func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// A provider that panics on what its KMS answered (a bug, or a
		// hostile answer) would end the process from this goroutine: the
		// call fails instead, as a refusal, never as a key.
		defer func() {
			if p := recover(); p != nil {
				ch <- result{err: fmt.Errorf("%w: %v", ErrProviderPanic, p)}
			}
		}()
		v, err := f(ctx)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && discard != nil {
				discard(r.v)
			}
		}()
		var zero T
		return zero, fmt.Errorf("KMS call abandoned: %w", ctx.Err())
	}
}

// Stats are cumulative counters (and the decrypt cache's current size) for
// metrics.
type Stats struct {
	EncryptHits      uint64 // Current served an active DEK
	EncryptMisses    uint64 // Current had to wait for a DEK
	Refreshes        uint64 // background refreshes started
	DEKsGenerated    uint64
	GenerateFailures uint64

	DecryptHits         uint64
	DecryptMisses       uint64 // had to unwrap (or wait for an unwrap)
	DecryptNegativeHits uint64 // answered from a remembered refusal
	DecryptEvictions    uint64 // dropped for size, TTL or maximum age
	DecryptRefreshes    uint64 // background unwraps of cached DEKs nearing DecryptCacheMaxAge
	DecryptCached       int    // entries now cached

	ResolveHits   uint64
	ResolveMisses uint64

	KEKChecks   uint64 // background re-resolutions of KEKs in use
	KEKUnusable uint64 // times a KEK was found deleted, disabled or unusable

	KMSCalls  uint64 // attempts, including retries
	KMSErrors uint64
}

// Counters are the cumulative counters behind Stats, safe for concurrent
// use by several Managers (see Options.Counters). The zero value is ready.
type Counters struct {
	encHits, encMisses, refreshes, generated, generateFailures atomic.Uint64
	decHits, decMisses, decNegHits, decEvictions               atomic.Uint64
	decRefreshes                                               atomic.Uint64
	resHits, resMisses                                         atomic.Uint64
	kmsCalls, kmsErrors                                        atomic.Uint64
	kekChecks, kekUnusable                                     atomic.Uint64
}

// Stats returns a snapshot of the counters (those of every Manager sharing
// them) and of this Manager's decrypt cache size.
func (m *Manager) Stats() Stats {
	m.decMu.RLock()
	cached := len(m.dec)
	m.decMu.RUnlock()
	s := m.stats
	return Stats{
		EncryptHits: s.encHits.Load(), EncryptMisses: s.encMisses.Load(),
		Refreshes: s.refreshes.Load(), DEKsGenerated: s.generated.Load(),
		GenerateFailures: s.generateFailures.Load(),
		DecryptHits:      s.decHits.Load(), DecryptMisses: s.decMisses.Load(),
		DecryptNegativeHits: s.decNegHits.Load(), DecryptEvictions: s.decEvictions.Load(),
		DecryptCached: cached, DecryptRefreshes: s.decRefreshes.Load(),
		ResolveHits: s.resHits.Load(), ResolveMisses: s.resMisses.Load(),
		KMSCalls: s.kmsCalls.Load(), KMSErrors: s.kmsErrors.Load(),
		KEKChecks: s.kekChecks.Load(), KEKUnusable: s.kekUnusable.Load(),
	}
}

// Sweep drops everything expired: encryption DEKs past ExpireAfterWrite,
// decryption DEKs unused for DecryptCacheTTL or older than
// DecryptCacheMaxAge, remembered refusals and KEK
// names past their TTL. Lookups ignore expired entries anyway; sweeping
// releases them (and their key schedules) without waiting for a lookup.
func (m *Manager) Sweep() {
	now := m.opts.Now()

	m.encMu.Lock()
	for ref, e := range m.enc {
		e.mu.Lock()
		// An entry whose KEK was found unusable stays, to keep refusing.
		if k := e.key.Load(); e.flight == nil && e.gone.Load() == nil && (k == nil || !m.usable(k, now)) {
			delete(m.enc, ref)
		}
		e.mu.Unlock()
	}
	m.encMu.Unlock()

	m.decMu.Lock()
	for edek, e := range m.dec {
		if m.decExpired(e, now) {
			delete(m.dec, edek)
			m.stats.decEvictions.Add(1)
		}
	}
	m.decMu.Unlock()

	m.resMu.Lock()
	for name, e := range m.res {
		if e.flight == nil && m.resExpired(e, now) {
			delete(m.res, name)
		}
	}
	m.resMu.Unlock()
}

// Run sweeps every interval, and re-checks the KEKs in use every
// KEKCheckInterval (CheckKEKs), until ctx ends.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	c := time.NewTicker(m.opts.KEKCheckInterval)
	defer c.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Sweep()
		case <-c.C:
			m.CheckKEKs(ctx)
		}
	}
}

// checkConcurrency bounds the KMS calls one CheckKEKs makes at a time.
const checkConcurrency = 8

// CheckKEKs re-resolves every KEK name whose positive answer is cached and
// that Resolve returned within KEKExpireAfter: those are the KEKs records
// may be sealed under right now (a DEK is only used after Resolve answered
// from this cache or the KMS; a name unused for longer is not checked, and
// its cached answer expires KEKExpireAfter after its last check, so its next
// use asks the KMS). A KEK the KMS now reports missing or unusable gets its
// DEKs dropped and is refused (kms.ErrKeyUnusable) from then on; a transient
// failure changes nothing. It returns when every check has finished or ctx
// ended.
func (m *Manager) CheckKEKs(ctx context.Context) {
	now := m.opts.Now().UnixNano()
	m.resMu.RLock()
	names := make([]string, 0, len(m.res))
	for name, e := range m.res {
		if e.known && e.err == nil && now-e.used.Load() < int64(m.opts.KEKExpireAfter) {
			names = append(names, name)
		}
	}
	m.resMu.RUnlock()
	sem := make(chan struct{}, checkConcurrency)
	var wg sync.WaitGroup
	for _, name := range names {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		m.stats.kekChecks.Add(1)
		m.resMu.Lock()
		e := m.res[name]
		var c *call[kms.KEKRef]
		if e != nil {
			if c = e.flight; c == nil {
				c = m.startResolve(name, e)
			}
		}
		m.resMu.Unlock()
		if c == nil {
			<-sem
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.wait(ctx)
			<-sem
		}()
	}
	wg.Wait()
}

// gone turns a "not found" for a KEK that resolved before into
// kms.ErrKeyUnusable (and drops kms.ErrKeyNotFound from the chain, so no
// caller can mistake it for a KEK that never existed).
func gone(name string, err error) error {
	return fmt.Errorf("%w: KEK %q was in use and is gone (%v)", kms.ErrKeyUnusable, name, err)
}

// dropDEKs forgets the active DEKs of every reference of the KEK name and
// refuses new ones until it resolves again: nothing more is sealed under a
// KEK the KMS reported unusable.
func (m *Manager) dropDEKs(name string, err error) {
	m.stats.kekUnusable.Add(1)
	m.encMu.RLock()
	defer m.encMu.RUnlock()
	for ref, e := range m.enc {
		if ref.Name == name {
			e.gone.Store(&err)
			e.key.Store(nil)
		}
	}
}

// revive lets the KEK name make DEKs again after it resolved.
func (m *Manager) revive(name string) {
	m.encMu.RLock()
	defer m.encMu.RUnlock()
	for ref, e := range m.enc {
		if ref.Name == name && e.gone.Load() != nil {
			e.gone.Store(nil)
		}
	}
}

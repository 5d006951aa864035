package dek

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// resEntry is a resolved KEK name, a remembered "not found", or (neither
// set) a first resolution still in flight.
type resEntry struct {
	ref    kms.KEKRef
	err    error     // a non-transient refusal, remembered for NotFoundTTL
	at     time.Time // when ref or err was learned
	gen    uint64    // the KMS's change counter before err was asked for
	known  bool      // ref or err is set
	flight *call[kms.KEKRef]
	// used is when Resolve last returned this entry (unix ns, updated at
	// most once a second): CheckKEKs checks only names in use.
	used atomic.Int64
}

// touch records a use of e at now, writing at most once a second.
func (e *resEntry) touch(now time.Time) {
	if n := now.UnixNano(); n-e.used.Load() >= int64(time.Second) {
		e.used.Store(n)
	}
}

// Resolve maps a KEK name chosen by policy to the KMS's reference, caching
// it: found names are re-resolved in the background after KEKRefreshAfter
// and not used after KEKExpireAfter; "not found" is remembered for
// NotFoundTTL, or until the KMS reports a change of its keys (kms.Changes).
// Errors wrap kms.ErrKeyNotFound (no such KEK: the caller
// may apply its unresolvedKeyPolicy), kms.ErrKeyUnusable (the KEK exists but
// is disabled or pending deletion, or it resolved before (Options.UsedKEKs)
// and is now gone: refuse, never pass plaintext), or ErrUnavailable.
// Run re-checks the names cached as found every KEKCheckInterval.
func (m *Manager) Resolve(ctx context.Context, name string) (kms.KEKRef, error) {
	now := m.opts.Now()
	m.resMu.RLock()
	e := m.res[name]
	var ref kms.KEKRef
	var err error
	hit, refresh := false, false
	if e != nil && e.known && !m.resExpired(e, now) {
		hit = true
		ref, err = e.ref, e.err
		refresh = err == nil && now.Sub(e.at) >= m.opts.KEKRefreshAfter && e.flight == nil
	}
	m.resMu.RUnlock()
	if hit {
		e.touch(now)
		m.stats.resHits.Add(1)
		if refresh {
			m.resMu.Lock()
			if e.flight == nil {
				m.startResolve(name, e)
			}
			m.resMu.Unlock()
		}
		return ref, err
	}

	m.stats.resMisses.Add(1)
	m.resMu.Lock()
	if e = m.res[name]; e == nil {
		e = &resEntry{}
		m.insertRes(name, e, now)
	}
	e.touch(now)
	c := e.flight
	if c == nil {
		c = m.startResolve(name, e)
	}
	m.resMu.Unlock()
	return c.wait(ctx)
}

func (m *Manager) resExpired(e *resEntry, now time.Time) bool {
	if !e.known {
		return true
	}
	if e.err != nil {
		return now.Sub(e.at) >= m.opts.NotFoundTTL || m.changedSince(e.gen)
	}
	return now.Sub(e.at) >= m.opts.KEKExpireAfter
}

// startResolve starts e's flight. Call with resMu held.
func (m *Manager) startResolve(name string, e *resEntry) *call[kms.KEKRef] {
	c := newCall[kms.KEKRef]()
	e.flight = c
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.opts.KMSTimeout)
		defer cancel()
		gen := m.changesNow()
		ref, err := callKMS(ctx, m, OpResolveKEK, func(ctx context.Context) (kms.KEKRef, error) {
			return m.kms.ResolveKEK(ctx, name)
		}, nil)
		now := m.opts.Now()
		m.resMu.Lock()
		if err != nil {
			err = classify(err)
			if errors.Is(err, kms.ErrKeyNotFound) && m.used.has(name) {
				err = gone(name, err)
			}
			err = fmt.Errorf("dek: resolve KEK %q: %w", name, err)
		}
		e.flight = nil
		switch {
		case err == nil:
			m.used.add(name)
			e.ref, e.err, e.at, e.known = ref, nil, now, true
		case !transient(err):
			e.ref, e.err, e.at, e.gen, e.known = kms.KEKRef{}, err, now, gen, true
		default:
			// Transient: a still-valid earlier answer keeps serving until it
			// expires; nothing new is remembered.
		}
		if m.res[name] != e && e.known {
			m.insertRes(name, e, now) // evicted while in flight; put it back
		}
		m.resMu.Unlock()
		switch {
		case err == nil:
			m.revive(name)
		case errors.Is(err, kms.ErrKeyUnusable):
			m.dropDEKs(name, err)
		}
		if h := m.opts.Hooks.OnKEKState; h != nil && (err == nil || !transient(err)) {
			h(name, err)
		}
		c.finish(ref, err)
	}()
	return c
}

// insertRes adds an entry, making room first: expired entries go, then
// arbitrary ones (names are cheap to resolve again; the bound exists so a
// client naming endless topics cannot grow the cache). Call with resMu held.
func (m *Manager) insertRes(name string, e *resEntry, now time.Time) {
	if len(m.res) >= m.opts.KEKCacheSize {
		for k, old := range m.res {
			if old.flight == nil && m.resExpired(old, now) {
				delete(m.res, k)
			}
		}
		for k, old := range m.res {
			if len(m.res) < m.opts.KEKCacheSize {
				break
			}
			if old.flight == nil {
				delete(m.res, k)
			}
		}
	}
	m.res[name] = e
}

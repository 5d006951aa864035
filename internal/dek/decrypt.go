package dek

import (
	"context"
	"crypto/cipher"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// decEntry is an unwrapped DEK, or a remembered refusal (aead nil, err set).
// Times are unix nanoseconds on the Manager's clock.
type decEntry struct {
	aead       cipher.AEAD
	err        error
	expires    time.Time // refusals only
	gen        uint64    // refusals only: the KMS's change counter before the call
	created    int64     // keys only: when the KMS unwrapped it
	lastAccess atomic.Int64
	// refreshAt (keys only) is when a hit starts a background unwrap of the
	// same EDEK: 7/8 of DecryptCacheMaxAge after created, later again after
	// a failed attempt, math.MaxInt64 while one runs.
	refreshAt atomic.Int64
}

// Decryptor returns an AEAD that opens records sealed under edek. The AEAD
// only opens: sealing with it panics. Hits take a read lock and a map lookup;
// callers opening a batch should reuse the AEAD while the EDEK repeats.
//
// An unwrapped DEK is kept for at most DecryptCacheMaxAge after the KMS
// unwrapped it, however often it is used, so a KEK deleted or disabled in
// the KMS (or a policy that no longer lets kseal decrypt) stops decryption
// within that bound. A DEK in use is unwrapped again in the background from
// 7/8 of that age (one KMS call per EDEK, callers keep the cached key
// meanwhile), so a healthy KMS never makes a fetch wait; if the KMS says
// the KEK is gone, the refusal replaces the key at once.
//
// Errors wrap kms.ErrKeyNotFound when the KEK is missing or destroyed
// (remembered for NotFoundTTL, like any other refusal), ErrUnavailable when
// the KMS could not answer in time (not remembered), or the KMS's refusal.
func (m *Manager) Decryptor(ctx context.Context, edek []byte) (cipher.AEAD, error) {
	now := m.opts.Now()
	m.decMu.RLock()
	e := m.dec[string(edek)] // no allocation: the conversion is only a map key
	m.decMu.RUnlock()
	if e != nil && !m.decExpired(e, now) {
		if e.aead != nil {
			n := now.UnixNano()
			e.lastAccess.Store(n)
			if n >= e.refreshAt.Load() {
				m.refreshDec(e, edek, n)
			}
			m.stats.decHits.Add(1)
			return e.aead, nil
		}
		m.stats.decNegHits.Add(1)
		return nil, e.err
	}
	m.stats.decMisses.Add(1)

	m.decMu.Lock()
	c := m.decFlights[string(edek)]
	if c == nil {
		key := string(edek) // copied: the caller's buffer is reused after we return
		c = newCall[cipher.AEAD]()
		m.decFlights[key] = c
		go m.unwrap(key, c, nil)
	}
	m.decMu.Unlock()
	return c.wait(ctx)
}

// DecryptCacheMaxAge is how long an AEAD Decryptor returns may be used:
// callers keeping one beyond a single request (a connection's last-EDEK
// cache) must drop it within this age so a revoked KEK takes effect.
func (m *Manager) DecryptCacheMaxAge() time.Duration { return m.opts.DecryptCacheMaxAge }

// refreshDec starts the background unwrap of a cached key's EDEK, unless
// another caller just did or an unwrap of it is already running. It never
// waits for the KMS.
func (m *Manager) refreshDec(e *decEntry, edek []byte, now int64) {
	at := e.refreshAt.Load()
	if now < at || !e.refreshAt.CompareAndSwap(at, math.MaxInt64) {
		return
	}
	m.decMu.Lock()
	if m.decFlights[string(edek)] == nil {
		key := string(edek)
		c := newCall[cipher.AEAD]()
		m.decFlights[key] = c
		m.stats.decRefreshes.Add(1)
		go m.unwrap(key, c, e)
	}
	m.decMu.Unlock()
}

// decExpired reports whether an entry may no longer be used: a refusal
// after NotFoundTTL or a change of the KMS's keys, a key unused for DecryptCacheTTL or unwrapped
// DecryptCacheMaxAge ago.
func (m *Manager) decExpired(e *decEntry, now time.Time) bool {
	if e.aead == nil {
		return !now.Before(e.expires) || m.changedSince(e.gen)
	}
	n := now.UnixNano()
	return n-e.lastAccess.Load() >= int64(m.opts.DecryptCacheTTL) || n-e.created >= int64(m.opts.DecryptCacheMaxAge)
}

// newDecKey is the cache entry of a key unwrapped at now.
func (m *Manager) newDecKey(aead cipher.AEAD, now time.Time) *decEntry {
	n := now.UnixNano()
	e := &decEntry{aead: aead, created: n}
	e.lastAccess.Store(n)
	e.refreshAt.Store(n + int64(m.opts.DecryptCacheMaxAge-m.opts.DecryptCacheMaxAge/8))
	return e
}

// unwrap asks the KMS for the key of edek and caches the answer. prev is
// the cached key this call refreshes (nil after a miss): a transient
// failure leaves it in place, to be tried again after KMSBackoffMax, until
// DecryptCacheMaxAge ends it.
func (m *Manager) unwrap(edek string, c *call[cipher.AEAD], prev *decEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.KMSTimeout)
	defer cancel()
	gen := m.changesNow()
	raw, err := callKMS(ctx, m, OpDecryptDEK, func(ctx context.Context) ([]byte, error) {
		return m.kms.DecryptDEK(ctx, []byte(edek))
	}, func(raw []byte) { clear(raw) })
	var aead cipher.AEAD
	if err == nil {
		aead, err = newAEAD(raw)
		clear(raw)
	}
	if err != nil {
		err = fmt.Errorf("dek: unwrap EDEK %s: %w", edekID([]byte(edek)), classify(err))
	}

	now := m.opts.Now()
	m.decMu.Lock()
	delete(m.decFlights, edek)
	switch {
	case err == nil:
		aead = openOnly{aead}
		m.insertDec(edek, m.newDecKey(aead, now), now)
	case !transient(err):
		// Also replaces a key being refreshed: a KEK deleted since it was
		// unwrapped stops decryption now, not at DecryptCacheMaxAge.
		m.insertDec(edek, &decEntry{err: err, expires: now.Add(m.opts.NotFoundTTL), gen: gen}, now)
	case prev != nil:
		// Transient: the cached key serves on until its maximum age; try
		// again a little later rather than at every hit.
		prev.refreshAt.Store(now.Add(m.opts.KMSBackoffMax).UnixNano())
	default:
		// Transient: remember nothing, the next caller tries again.
	}
	m.decMu.Unlock()
	c.finish(aead, err)
}

// insertDec adds an entry, making room first: expired entries go, then the
// least recently used. The scan is linear, but it runs only after a KMS
// round trip, which costs far more. Call with decMu held.
func (m *Manager) insertDec(edek string, e *decEntry, now time.Time) {
	if _, ok := m.dec[edek]; !ok && len(m.dec) >= m.opts.DecryptCacheSize {
		for k, old := range m.dec {
			if m.decExpired(old, now) {
				delete(m.dec, k)
				m.stats.decEvictions.Add(1)
			}
		}
		for len(m.dec) >= m.opts.DecryptCacheSize && len(m.dec) > 0 {
			var victim string
			oldest := int64(0)
			first := true
			for k, old := range m.dec {
				// A refusal is cheap to learn again; evict it before any key.
				at := old.lastAccess.Load()
				if old.aead == nil {
					at = -1
				}
				if first || at < oldest {
					victim, oldest, first = k, at, false
				}
			}
			delete(m.dec, victim)
			m.stats.decEvictions.Add(1)
		}
	}
	if m.opts.DecryptCacheSize > 0 {
		m.dec[edek] = e
	}
}

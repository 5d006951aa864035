package dek

import (
	"context"
	"crypto/cipher"
	"fmt"
	"sync/atomic"
	"time"
)

// decEntry is an unwrapped DEK, or a remembered refusal (aead nil, err set).
type decEntry struct {
	aead       cipher.AEAD
	err        error
	expires    time.Time    // refusals only
	lastAccess atomic.Int64 // unix nanoseconds on the Manager's clock
}

// Decryptor returns an AEAD that opens records sealed under edek. The AEAD
// only opens: sealing with it panics. Hits take a read lock and a map lookup;
// callers opening a batch should reuse the AEAD while the EDEK repeats.
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
			e.lastAccess.Store(now.UnixNano())
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
		go m.unwrap(key, c)
	}
	m.decMu.Unlock()
	return c.wait(ctx)
}

func (m *Manager) decExpired(e *decEntry, now time.Time) bool {
	if e.aead == nil {
		return !now.Before(e.expires)
	}
	return now.UnixNano()-e.lastAccess.Load() >= int64(m.opts.DecryptCacheTTL)
}

func (m *Manager) unwrap(edek string, c *call[cipher.AEAD]) {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.KMSTimeout)
	defer cancel()
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
		e := &decEntry{aead: aead}
		e.lastAccess.Store(now.UnixNano())
		m.insertDec(edek, e, now)
	case !transient(err):
		m.insertDec(edek, &decEntry{err: err, expires: now.Add(m.opts.NotFoundTTL)}, now)
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

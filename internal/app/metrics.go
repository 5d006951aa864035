package app

import (
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/kms"
)

// kmsMetrics are the KMS and DEK cache metrics of every virtual cluster.
type kmsMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newKMSMetrics(reg prometheus.Registerer) *kmsMetrics {
	m := &kmsMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_kms_operations_total",
			Help: "KMS operation attempts (retries included), by provider, operation (resolve_kek, generate_dek, decrypt_dek) and outcome (success, not_found, unusable, error).",
		}, []string{"virtual_cluster", "provider", "operation", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kseal_kms_operation_duration_seconds",
			Help:    "Latency of KMS operation attempts.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"virtual_cluster", "provider", "operation"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.duration)
	}
	return m
}

func (m *kmsMetrics) hook(vc, provider string) func(op dek.Op, d time.Duration, err error) {
	return func(op dek.Op, d time.Duration, err error) {
		outcome := "success"
		switch {
		case errors.Is(err, kms.ErrKeyNotFound):
			outcome = "not_found"
		case errors.Is(err, kms.ErrKeyUnusable):
			outcome = "unusable"
		case err != nil:
			outcome = "error"
		}
		m.calls.WithLabelValues(vc, provider, string(op), outcome).Inc()
		m.duration.WithLabelValues(vc, provider, string(op)).Observe(d.Seconds())
	}
}

// dekCollector exposes a Manager's counters. It is registered once per
// encrypting virtual cluster, through clusterRegisterer, which adds the
// virtual_cluster label.
type dekCollector struct {
	mgr *atomic.Pointer[dek.Manager] // the current one, across reloads
}

var (
	dekHitsDesc = prometheus.NewDesc("kseal_dek_cache_hits_total",
		"DEK cache lookups answered from the cache, by cache (encrypt: active DEK; decrypt: unwrapped DEKs; resolve: KEK names).",
		[]string{"cache"}, nil)
	dekMissesDesc = prometheus.NewDesc("kseal_dek_cache_misses_total",
		"DEK cache lookups that needed the KMS, by cache.", []string{"cache"}, nil)
	dekEvictionsDesc = prometheus.NewDesc("kseal_dek_cache_evictions_total",
		"Unwrapped DEKs dropped from the decrypt cache for size, TTL or maximum age (their bytes are wiped).", nil, nil)
	dekDecryptRefreshesDesc = prometheus.NewDesc("kseal_dek_decrypt_refreshes_total",
		"Unwrapped DEKs in use unwrapped again through the KMS as they neared decryptCacheMaxAge.", nil, nil)
	dekEntriesDesc = prometheus.NewDesc("kseal_dek_cache_entries",
		"Unwrapped DEKs now in the decrypt cache.", nil, nil)
	dekGeneratedDesc = prometheus.NewDesc("kseal_deks_generated_total",
		"Data keys generated (each wrapped by its KEK in the KMS).", nil, nil)
	kekChecksDesc = prometheus.NewDesc("kseal_kek_checks_total",
		"Background re-checks of KEKs in use (encryption.dek.kekCheckInterval).", nil, nil)
	kekUnusableDesc = prometheus.NewDesc("kseal_kek_unusable_total",
		"Times a KEK was found deleted, disabled or otherwise unusable: its DEK was dropped and produce to its topics refused.", nil, nil)
)

func (c dekCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dekHitsDesc
	ch <- dekMissesDesc
	ch <- dekEvictionsDesc
	ch <- dekDecryptRefreshesDesc
	ch <- dekEntriesDesc
	ch <- dekGeneratedDesc
	ch <- kekChecksDesc
	ch <- kekUnusableDesc
}

func (c dekCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.mgr.Load().Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(dekHitsDesc, s.EncryptHits, "encrypt")
	counter(dekHitsDesc, s.DecryptHits+s.DecryptNegativeHits, "decrypt")
	counter(dekHitsDesc, s.ResolveHits, "resolve")
	counter(dekMissesDesc, s.EncryptMisses, "encrypt")
	counter(dekMissesDesc, s.DecryptMisses, "decrypt")
	counter(dekMissesDesc, s.ResolveMisses, "resolve")
	counter(dekEvictionsDesc, s.DecryptEvictions)
	counter(dekDecryptRefreshesDesc, s.DecryptRefreshes)
	counter(dekGeneratedDesc, s.DEKsGenerated)
	counter(kekChecksDesc, s.KEKChecks)
	counter(kekUnusableDesc, s.KEKUnusable)
	ch <- prometheus.MustNewConstMetric(dekEntriesDesc, prometheus.GaugeValue, float64(s.DecryptCached))
}

// kmsConns is a virtual cluster's view of its KMS's own connection pool
// (kms.ConnPool: kmip) across reloads. A reload opens a new KMS client;
// the counters of the one it replaces are carried over (per provider), so
// the exported counters never go back. Requests still finishing on a
// replaced client are not counted.
type kmsConns struct {
	mu       sync.Mutex
	provider string
	pool     kms.ConnPool // nil: the provider keeps no pool of its own
	carried  map[string]kms.ConnStats
}

// set makes k, of provider, the current KMS client.
func (c *kmsConns) set(provider string, k kms.KMS) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pool != nil {
		if c.carried == nil {
			c.carried = map[string]kms.ConnStats{}
		}
		c.carried[c.provider] = addConnCounters(c.carried[c.provider], c.pool.ConnStats())
	}
	c.provider = provider
	c.pool, _ = k.(kms.ConnPool)
}

// addConnCounters adds b's counters to a's (not the gauges).
func addConnCounters(a, b kms.ConnStats) kms.ConnStats {
	a.Dials += b.Dials
	a.DialErrors += b.DialErrors
	a.Broken += b.Broken
	a.Waits += b.Waits
	return a
}

// kmsConnCollector exposes kmsConns. It is registered once per encrypting
// virtual cluster, through clusterRegisterer; a provider without a pool of
// its own exports nothing.
type kmsConnCollector struct {
	c *kmsConns
}

var (
	kmsConnsDesc = prometheus.NewDesc("kseal_kms_connections",
		"Connections of the KMS provider's own pool (kmip), by state: in_use (carrying a request), idle.",
		[]string{"provider", "state"}, nil)
	kmsDialsDesc = prometheus.NewDesc("kseal_kms_connection_dials_total",
		"Connections the KMS provider's pool opened (TLS handshake included), by outcome (success, error).",
		[]string{"provider", "outcome"}, nil)
	kmsConnErrorsDesc = prometheus.NewDesc("kseal_kms_connection_errors_total",
		"Pooled KMS connections closed after a failed exchange (write or read error, timeout, oversized response).",
		[]string{"provider"}, nil)
	kmsConnWaitsDesc = prometheus.NewDesc("kseal_kms_connection_waits_total",
		"KMS requests that found every pooled connection busy (the provider's maxConnections) and waited for one.",
		[]string{"provider"}, nil)
)

func (kmsConnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- kmsConnsDesc
	ch <- kmsDialsDesc
	ch <- kmsConnErrorsDesc
	ch <- kmsConnWaitsDesc
}

func (cc kmsConnCollector) Collect(ch chan<- prometheus.Metric) {
	c := cc.c
	c.mu.Lock()
	counters := maps.Clone(c.carried)
	var cur kms.ConnStats
	if c.pool != nil {
		cur = c.pool.ConnStats()
		if counters == nil {
			counters = map[string]kms.ConnStats{}
		}
		counters[c.provider] = addConnCounters(counters[c.provider], cur)
		ch <- prometheus.MustNewConstMetric(kmsConnsDesc, prometheus.GaugeValue, float64(cur.InUse), c.provider, "in_use")
		ch <- prometheus.MustNewConstMetric(kmsConnsDesc, prometheus.GaugeValue, float64(cur.Idle), c.provider, "idle")
	}
	c.mu.Unlock()
	for p, s := range counters {
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{p}, labels...)...)
		}
		counter(kmsDialsDesc, s.Dials-s.DialErrors, "success")
		counter(kmsDialsDesc, s.DialErrors, "error")
		counter(kmsConnErrorsDesc, s.Broken)
		counter(kmsConnWaitsDesc, s.Waits)
	}
}

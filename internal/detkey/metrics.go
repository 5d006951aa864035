package detkey

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the key store's Prometheus metrics. One Metrics may serve
// several Stores (one per virtual cluster).
type Metrics struct {
	cached     prometheus.Gauge
	reads      *prometheus.CounterVec
	candidates prometheus.Counter
	lostRaces  prometheus.Counter
	skipped    *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	kmsCalls   prometheus.Counter
	rechecks   prometheus.Counter
	dropped    prometheus.Counter
	first      *firstOffsetMetrics // firstoffset.go
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		cached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kseal_detkeys_cached",
			Help: "Deterministic record-key keys unwrapped and kept (at most encryption.keyTopic.maxKeys per virtual cluster).",
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_key_topic_reads_total",
			Help: "Reads of the key topic (from the last offset read to its end), by outcome (ok, error).",
		}, []string{"outcome"}),
		candidates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kseal_key_topic_candidates_total",
			Help: "Key records this process wrote to the key topic (candidates: the first record of a topic and KEK wins).",
		}),
		lostRaces: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kseal_key_topic_lost_races_total",
			Help: "Candidates this process wrote that another writer's earlier record beat (its key is used instead).",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_key_topic_skipped_records_total",
			Help: "Key-topic records not used, by reason (malformed; duplicate: a key id already read; later: a topic and KEK that already has a key).",
		}, []string{"reason"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_detkey_refusals_total",
			Help: "Deterministic keys refused, by reason (unknown_key: a key id the key topic does not hold; max_keys: the key topic holds more records than encryption.keyTopic.maxKeys).",
		}, []string{"reason"}),
		kmsCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kseal_detkey_kms_calls_total",
			Help: "KMS calls (GenerateDEK, DecryptDEK, retries included) made for deterministic keys.",
		}),
		rechecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kseal_detkey_rechecks_total",
			Help: "Background unwraps of deterministic keys in use older than their recheck age (Options.RecheckAfter).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kseal_detkeys_dropped_total",
			Help: "Deterministic keys dropped because the KMS refused to unwrap their DEK again (KEK deleted, disabled or no longer permitted).",
		}),
	}
	m.first = newFirstOffsetMetrics()
	if reg != nil {
		reg.MustRegister(m.cached, m.reads, m.candidates, m.lostRaces, m.skipped, m.refusals, m.kmsCalls, m.rechecks, m.dropped)
		reg.MustRegister(m.first.collectors()...)
	}
	return m
}

package encrypt

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the encryption filter's Prometheus metrics.
type Metrics struct {
	records *prometheus.CounterVec
	errors  *prometheus.CounterVec
	batches *prometheus.CounterVec

	decryptedBatches prometheus.Counter
	// sealedChecks counts reads of a topic's newest batches made because
	// its KEK was not found under PASSTHROUGH_UNENCRYPTED (kekguard.go).
	sealedChecks *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_records_total",
			Help: "Records seen by the encryption filter, by topic and outcome (encrypted, plaintext on produce; decrypted, plaintext on fetch).",
		}, []string{"topic", "direction", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_encryption_errors_total",
			Help: "Partitions refused or failed by the encryption filter, by direction and reason.",
		}, []string{"direction", "reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_fetch_batches_total",
			Help: "Fetched record batches rebuilt with their records decrypted.",
		}, []string{"outcome"}),
	}
	m.decryptedBatches = m.batches.WithLabelValues("decrypted")
	m.sealedChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kseal_encrypted_topic_checks_total",
		Help: "Reads of a topic's newest batches, made before passing it through because its KEK does not exist, by outcome (encrypted: refused; plaintext: passed through; error: refused, retriable).",
	}, []string{"outcome"})
	if reg != nil {
		reg.MustRegister(m.records, m.errors, m.batches, m.sealedChecks)
	}
	return m
}

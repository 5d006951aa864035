package encrypt

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the encryption filter's Prometheus metrics.
type Metrics struct {
	records *prometheus.CounterVec
	errors  *prometheus.CounterVec
	batches *prometheus.CounterVec

	decryptedBatches prometheus.Counter
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
	m.decryptedBatches = m.batches.WithLabelValues("decrypted")
	if reg != nil {
		reg.MustRegister(m.records, m.errors, m.batches)
	}
	return m
}

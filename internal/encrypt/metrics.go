package encrypt

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the encryption filter's Prometheus metrics.
type Metrics struct {
	records *prometheus.CounterVec
	errors  *prometheus.CounterVec
	batches *prometheus.CounterVec
	budget  *prometheus.CounterVec

	topics           *topicLabels
	decryptedBatches prometheus.Counter
	requestRefusals  prometheus.Counter
	processRefusals  prometheus.Counter
	// sealedChecks counts reads of a topic's newest batches made because
	// its KEK was not found under PASSTHROUGH_UNENCRYPTED (kekguard.go).
	sealedChecks *prometheus.CounterVec
	// shred are the entity KEK and shredding metrics (shred.go).
	shred *shredMetrics
	// access counts denials of rules' access sections (access.go).
	access *accessMetrics
	// injected counts records refused by the integrity checks
	// (integrity.go), per topic.
	injected *injectedLabels
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_records_total",
			Help: "Records produced through the encryption filter, by topic (at most maxTopicLabels topics, the rest as \"<other>\") and outcome (encrypted, plaintext).",
		}, []string{"topic", "direction", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_encryption_errors_total",
			Help: "Partitions refused or failed by the encryption filter, by direction and reason.",
		}, []string{"direction", "reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_fetch_batches_total",
			Help: "Fetched record batches rebuilt with their records decrypted.",
		}, []string{"outcome"}),
		budget: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_budget_refusals_total",
			Help: "Produce requests refused for memory: scope request (over limits.maxProduceRewriteBytes) or process (limits.maxRewriteBytes in use by other requests).",
		}, []string{"scope"}),
	}
	m.topics = newTopicLabels(m.records)
	m.decryptedBatches = m.batches.WithLabelValues("decrypted")
	m.requestRefusals = m.budget.WithLabelValues("request")
	m.processRefusals = m.budget.WithLabelValues("process")
	m.sealedChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kseal_encrypted_topic_checks_total",
		Help: "Reads of a topic's newest batches, made before passing it through because its KEK does not exist, by outcome (encrypted: refused; plaintext: passed through; error: refused, retriable).",
	}, []string{"outcome"})
	m.shred = newShredMetrics()
	m.access = newAccessMetrics()
	injected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kseal_injected_records_refused_total",
		Help: "Fetched records of topics whose rule requires encrypted records that were refused (not an envelope, a part in clear, or a KEK the rule does not allow), by topic (at most maxTopicLabels topics, the rest as \"<other>\"); counted each time a fetch stops at one.",
	}, []string{"topic"})
	m.injected = newInjectedLabels(injected, &m.topics.max)
	if reg != nil {
		reg.MustRegister(m.records, m.errors, m.batches, m.budget, m.sealedChecks, m.access.vec, injected)
		reg.MustRegister(m.shred.collectors()...)
	}
	return m
}

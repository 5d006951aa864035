package proxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Metrics are the plumbing's Prometheus metrics. Filters register their own.
type Metrics struct {
	connections *prometheus.GaugeVec
	connTotal   *prometheus.CounterVec
	requests    *prometheus.CounterVec
	reqBytes    *prometheus.CounterVec
	respBytes   *prometheus.CounterVec
	latency     *prometheus.HistogramVec
}

// NewMetrics creates the plumbing metrics and registers them with reg
// (nil: not registered, e.g. in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kseal_client_connections", Help: "Open client connections.",
		}, []string{"virtual_cluster"}),
		connTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_client_connections_total", Help: "Client connections accepted and paired with an upstream connection.",
		}, []string{"virtual_cluster"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_requests_total", Help: "Kafka requests received from clients, by API.",
		}, []string{"virtual_cluster", "api"}),
		reqBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_request_bytes_total", Help: "Bytes of Kafka requests received from clients, by API.",
		}, []string{"virtual_cluster", "api"}),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_response_bytes_total", Help: "Bytes of Kafka responses written to clients, by API.",
		}, []string{"virtual_cluster", "api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kseal_request_duration_seconds",
			Help:    "Time from reading a request to writing its response, by API (includes the broker's time).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"virtual_cluster", "api"}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.connTotal, m.requests, m.reqBytes, m.respBytes, m.latency)
	}
	return m
}

func (m *Metrics) connOpened(vc string) {
	m.connections.WithLabelValues(vc).Inc()
	m.connTotal.WithLabelValues(vc).Inc()
}

func (m *Metrics) connClosed(vc string) { m.connections.WithLabelValues(vc).Dec() }

func (m *Metrics) request(vc string, key int16, n int) {
	api := apiName(key)
	m.requests.WithLabelValues(vc, api).Inc()
	m.reqBytes.WithLabelValues(vc, api).Add(float64(n))
}

func (m *Metrics) response(vc string, key int16, n int, d time.Duration) {
	api := apiName(key)
	m.respBytes.WithLabelValues(vc, api).Add(float64(n))
	m.latency.WithLabelValues(vc, api).Observe(d.Seconds())
}

// apiNames caches names so the hot path does not format strings.
var apiNames = func() map[int16]string {
	names := map[int16]string{}
	for k := int16(0); k < 200; k++ {
		if n := kmsg.NameForKey(k); n != "Unknown" && n != "" {
			names[k] = n
		}
	}
	return names
}()

func apiName(key int16) string {
	if n, ok := apiNames[key]; ok {
		return n
	}
	return "Unknown(" + strconv.Itoa(int(key)) + ")"
}

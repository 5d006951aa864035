package proxy

import (
	"strconv"
	"sync/atomic"
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
	added       *prometheus.HistogramVec
	refused     *prometheus.CounterVec
	idleClosed  *prometheus.CounterVec
	panics      *prometheus.CounterVec
	identities  *prometheus.CounterVec
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
		added: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kseal_proxy_added_latency_seconds",
			Help: "Time kseal itself spends on an exchange, by API: its request-side filters, plus from reading the broker's response (or dequeuing a local answer) to writing it to the client. Excludes the network to the broker and the broker's time.",
			// 10 µs to about 1.5 s.
			Buckets: prometheus.ExponentialBuckets(0.00001, 2.5, 14),
		}, []string{"virtual_cluster", "api"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_connections_refused_total",
			Help: "Client connections closed before being served, by reason: max_connections (limits.maxConnections reached), tls_handshake, sni (no broker for the server name), upstream_unreachable.",
		}, []string{"virtual_cluster", "reason"}),
		idleClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_connections_idle_closed_total", Help: "Client connections closed after limits.idleTimeout without traffic.",
		}, []string{"virtual_cluster"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_panics_total",
			Help: "Panics recovered (each is a bug, logged with its stack), by where: request and response (the connection is closed), setup (TLS handshake, routing, broker dial), accept, discovery.",
		}, []string{"virtual_cluster", "side"}),
	}
	m.identities = newIdentityMetric()
	if reg != nil {
		reg.MustRegister(m.connections, m.connTotal, m.requests, m.reqBytes, m.respBytes, m.latency, m.added,
			m.refused, m.idleClosed, m.panics, m.identities)
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

// apiObservers is one virtual cluster's series of a histogram, one per API
// key, looked up in the Vec once and then cached: observing on the hot path
// neither hashes label values nor allocates. A series is made on first use,
// so only the APIs a cluster sees are exported.
type apiObservers struct {
	vec *prometheus.HistogramVec
	vc  string
	obs [apiKeySlots]atomic.Pointer[observer]
}

// apiKeySlots covers every API key kseal serves (unknown keys close the
// connection before any exchange is made); a key beyond it is looked up
// each time.
const apiKeySlots = 128

type observer struct{ prometheus.Observer }

func newAPIObservers(vec *prometheus.HistogramVec, vc string) *apiObservers {
	return &apiObservers{vec: vec, vc: vc}
}

func (a *apiObservers) observe(key int16, d time.Duration) {
	if key < 0 || int(key) >= len(a.obs) {
		a.vec.WithLabelValues(a.vc, apiName(key)).Observe(d.Seconds())
		return
	}
	o := a.obs[key].Load()
	if o == nil {
		// Concurrent first uses get the same series from the Vec.
		o = &observer{a.vec.WithLabelValues(a.vc, apiName(key))}
		a.obs[key].Store(o)
	}
	o.Observe(d.Seconds())
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

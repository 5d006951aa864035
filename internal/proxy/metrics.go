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
	spliced     *prometheus.CounterVec
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
		spliced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_spliced_bytes_total",
			Help: "Bytes of streamed responses (a Fetch partition's records, any other streamed response's body) moved from a broker's socket to the client's with splice(2) in runs of 64 KiB or more, never copied through kseal's memory (Linux, plaintext TCP on both sides).",
		}, []string{"virtual_cluster"}),
	}
	m.identities = newIdentityMetric()
	if reg != nil {
		reg.MustRegister(m.connections, m.connTotal, m.requests, m.reqBytes, m.respBytes, m.latency, m.added,
			m.refused, m.idleClosed, m.panics, m.identities, m.spliced)
	}
	return m
}

func (m *Metrics) connOpened(vc string) {
	m.connections.WithLabelValues(vc).Inc()
	m.connTotal.WithLabelValues(vc).Inc()
}

func (m *Metrics) connClosed(vc string) { m.connections.WithLabelValues(vc).Dec() }

// apiMetrics are one virtual cluster's series of the per-exchange metrics
// for one API key.
type apiMetrics struct {
	requests, reqBytes, respBytes prometheus.Counter
	latency, added                prometheus.Observer
}

// apiSeries caches a virtual cluster's per-API series, looked up in the Vecs
// once and then kept: counting an exchange neither hashes label values nor
// takes the Vecs' locks nor allocates. A key's series are made on first
// use, so only the APIs a cluster sees are exported.
type apiSeries struct {
	m    *Metrics
	vc   string
	keys [apiKeySlots]atomic.Pointer[apiMetrics]
}

// apiKeySlots covers every API key kseal serves (unknown keys close the
// connection before any exchange is made); a key beyond it is looked up
// each time.
const apiKeySlots = 128

func newAPISeries(m *Metrics, vc string) *apiSeries {
	return &apiSeries{m: m, vc: vc}
}

// of returns key's series.
func (a *apiSeries) of(key int16) *apiMetrics {
	if key >= 0 && int(key) < len(a.keys) {
		if s := a.keys[key].Load(); s != nil {
			return s
		}
	}
	api := apiName(key)
	s := &apiMetrics{
		requests:  a.m.requests.WithLabelValues(a.vc, api),
		reqBytes:  a.m.reqBytes.WithLabelValues(a.vc, api),
		respBytes: a.m.respBytes.WithLabelValues(a.vc, api),
		latency:   a.m.latency.WithLabelValues(a.vc, api),
		added:     a.m.added.WithLabelValues(a.vc, api),
	}
	if key >= 0 && int(key) < len(a.keys) {
		// Concurrent first uses get the same series from the Vecs.
		a.keys[key].Store(s)
	}
	return s
}

// request counts a request of n bytes.
func (a *apiSeries) request(key int16, n int) {
	s := a.of(key)
	s.requests.Inc()
	s.reqBytes.Add(float64(n))
}

// response counts a response of n bytes written d after its request was
// read, of which kseal's own time was added.
func (a *apiSeries) response(key int16, n int, d, added time.Duration) {
	s := a.of(key)
	s.respBytes.Add(float64(n))
	s.latency.Observe(d.Seconds())
	s.added.Observe(added.Seconds())
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

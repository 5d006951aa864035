package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/frame"
)

// limitsProxy is a proxy in front of upstream with a registry, a log sink,
// extra filters and limitsYAML (a flow map) as its limits section.
type limitsProxy struct {
	srv       *Server
	metrics   *Metrics
	log       *logSink
	bootstrap string
}

func startLimitsProxy(t *testing.T, upstream []string, limitsYAML string, filters ...filter.Filter) *limitsProxy {
	t.Helper()
	base := freePortRange(t, 9)
	doc := fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 8}
    limits: %s
`, strings.Join(upstream, ","), base, base+1, limitsYAML)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{t: t}
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := New(cfg, slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})), m,
		map[string]ClusterOptions{"test": {Filters: filters}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &limitsProxy{srv: srv, metrics: m, log: sink, bootstrap: srv.BootstrapAddr("test")}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// apiVersions sends an ApiVersions v2 request with corr on c and reads its
// answer; it returns an error if the connection ends instead.
func apiVersions(c net.Conn, corr int32) error {
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(2)
	msg := appendRequestHeader(nil, int16(kmsg.ApiVersions), 2, corr, "t", false)
	msg = req.AppendTo(msg)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
		return err
	}
	resp, err := frame.ReadResponse(c, nil, 1<<20)
	if err != nil {
		return err
	}
	if got := int32(binary.BigEndian.Uint32(resp[frame.SizeLen:])); got != corr {
		return fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	return nil
}

// panicFilter panics on ApiVersions requests with correlation id
// panicOnRequest and on the responses to panicOnResponse.
type panicFilter struct{}

const (
	panicOnRequest  = 666
	panicOnResponse = 667
)

func (panicFilter) APIKeys() []int16 { return []int16{int16(kmsg.ApiVersions)} }

func (panicFilter) OnRequest(_ context.Context, x *filter.Exchange) error {
	if x.CorrelationID == panicOnRequest {
		var none []byte
		_ = none[x.CorrelationID] // index out of range: a real bug's panic
	}
	return nil
}

func (panicFilter) OnResponse(_ context.Context, x *filter.Exchange) error {
	if x.CorrelationID == panicOnResponse {
		panic(fmt.Sprintf("response filter bug (correlation id %d)", x.CorrelationID))
	}
	return nil
}

// A panic in a filter, on either side, closes that connection only: it is
// logged once with its stack and counted, and the proxy keeps serving the
// connections open before and after it.
func TestPanicClosesOnlyThatConnection(t *testing.T) {
	fake := newFake(t)
	p := startLimitsProxy(t, fake.ListenAddrs()[:1], "{}", panicFilter{})
	bystander := rawConn(t, p.bootstrap)
	if err := apiVersions(bystander, 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		side  string
		corr  int32
		trace string // a frame the logged stack must show
	}{
		{sideRequest, panicOnRequest, "panicFilter.OnRequest"},
		{sideResponse, panicOnResponse, "panicFilter.OnResponse"},
	} {
		t.Run(tc.side, func(t *testing.T) {
			c := rawConn(t, p.bootstrap)
			if err := apiVersions(c, 2); err != nil {
				t.Fatal(err)
			}
			if err := apiVersions(c, tc.corr); err == nil {
				t.Fatal("answered the request whose filter panicked")
			}
			expectClosed(t, c, 3*time.Second)
			if n := counterValue(p.metrics.panics.WithLabelValues("test", tc.side)); n != 1 {
				t.Errorf("kseal_panics_total{side=%q} = %v, want 1", tc.side, n)
			}
			logs := p.log.String()
			var lines []string
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, "panic recovered") && strings.Contains(l, "side="+tc.side) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("%d panic log lines for side %s, want 1:\n%s", len(lines), tc.side, logs)
			}
			for _, want := range []string{"level=ERROR", "virtualCluster=test", "client=127.0.0.1:", tc.trace} {
				if !strings.Contains(lines[0], want) {
					t.Errorf("panic log line lacks %q: %s", want, lines[0])
				}
			}
			if strings.Contains(logs, "closing client connection") {
				t.Errorf("the panic was logged a second time as the connection closed:\n%s", logs)
			}
			// The connection open before, and a new one, are served.
			if err := apiVersions(bystander, tc.corr+100); err != nil {
				t.Fatalf("connection open before the panic: %v", err)
			}
			if err := apiVersions(rawConn(t, p.bootstrap), 3); err != nil {
				t.Fatalf("new connection after the panic: %v", err)
			}
		})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t1", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce after the panics: %v", err)
	}
}

// Past limits.maxConnections new connections are closed at once, counted and
// logged; the open ones keep working, and a freed slot is usable again.
func TestMaxConnections(t *testing.T) {
	fake := newFake(t)
	p := startLimitsProxy(t, fake.ListenAddrs()[:1], "{maxConnections: 2}")
	a, b := rawConn(t, p.bootstrap), rawConn(t, p.bootstrap)
	for i, c := range []net.Conn{a, b} {
		if err := apiVersions(c, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		extra := rawConn(t, p.bootstrap)
		if took := expectClosed(t, extra, 3*time.Second); took > time.Second {
			t.Errorf("connection over the limit closed after %s", took)
		}
	}
	if n := counterValue(p.metrics.refused.WithLabelValues("test", refusedMaxConnections)); n != 3 {
		t.Errorf("kseal_connections_refused_total{reason=max_connections} = %v, want 3", n)
	}
	if n := p.log.count("limits.maxConnections are open"); n != 1 {
		t.Errorf("%d log lines for refused connections, want 1 (rate-limited)", n)
	}
	for i, c := range []net.Conn{a, b} {
		if err := apiVersions(c, int32(10+i)); err != nil {
			t.Fatalf("open connection %d after refusals: %v", i, err)
		}
	}
	a.Close()
	waitFor(t, 5*time.Second, "a freed slot", func() bool {
		c, err := net.Dial("tcp", p.bootstrap)
		if err != nil {
			return false
		}
		defer c.Close()
		return apiVersions(c, 20) == nil
	})
}

// slowResponses holds the response to correlation id 99 for a while.
type slowResponses struct {
	filter.NopFilter
	d time.Duration
}

func (slowResponses) APIKeys() []int16 { return []int16{int16(kmsg.ApiVersions)} }

func (f slowResponses) OnResponse(_ context.Context, x *filter.Exchange) error {
	if x.CorrelationID == 99 {
		time.Sleep(f.d)
	}
	return nil
}

// A connection without traffic for limits.idleTimeout is closed and counted;
// one that keeps sending requests, or waits for a response, is not. The busy
// client sends every 10ms against an 800ms timeout, so only a stall of the
// whole machine longer than ~0.8s makes it look idle.
func TestIdleTimeout(t *testing.T) {
	fake := newFake(t)
	const (
		idle = 800 * time.Millisecond
		slow = idle + idle/4 // waiting's answer: later than one idle period
		loop = idle + idle/2 // busy sends past quiet's close and waiting's answer
		tick = 10 * time.Millisecond
	)
	p := startLimitsProxy(t, fake.ListenAddrs()[:1], "{idleTimeout: 800ms}", slowResponses{d: slow})

	quiet, busy, waiting := rawConn(t, p.bootstrap), rawConn(t, p.bootstrap), rawConn(t, p.bootstrap)
	for i, c := range []net.Conn{quiet, busy} {
		if err := apiVersions(c, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// waiting's only request is answered after more than an idle period:
	// it is not idle meanwhile.
	waited := make(chan error, 1)
	go func() { waited <- apiVersions(waiting, 99) }()
	for time.Since(start) < loop {
		if err := apiVersions(busy, 5); err != nil {
			t.Fatalf("busy connection: %v", err)
		}
		time.Sleep(tick)
	}
	if err := <-waited; err != nil {
		t.Fatalf("connection waiting for a slow response: %v", err)
	}
	expectClosed(t, quiet, 3*time.Second)
	if time.Since(start) > loop+2*time.Second {
		t.Errorf("idle connection closed late")
	}
	expectClosed(t, waiting, 3*time.Second) // idle after its answer
	if n := counterValue(p.metrics.idleClosed.WithLabelValues("test")); n != 2 {
		t.Errorf("kseal_connections_idle_closed_total = %v, want 2", n)
	}
	if err := apiVersions(busy, 6); err != nil {
		t.Fatalf("busy connection after the idle ones closed: %v", err)
	}
	if strings.Contains(p.log.String(), "closing client connection") {
		t.Errorf("idle close logged as a failure:\n%s", p.log.String())
	}
}

// A client that stops in the middle of a frame is idle too.
func TestIdleTimeoutPartialFrame(t *testing.T) {
	fake := newFake(t)
	p := startLimitsProxy(t, fake.ListenAddrs()[:1], "{idleTimeout: 200ms}")
	c := rawConn(t, p.bootstrap)
	c.Write([]byte{0, 0, 0, 100, 0, 18})
	expectClosed(t, c, 3*time.Second)
	if n := counterValue(p.metrics.idleClosed.WithLabelValues("test")); n != 1 {
		t.Errorf("kseal_connections_idle_closed_total = %v, want 1", n)
	}
}

// An encrypting virtual cluster behind a plaintext client listener is
// warned about once at start; one with gateway.tls is not.
func TestPlaintextListenerWarning(t *testing.T) {
	doc := `
virtualClusters:
  - name: enc
    upstream: {bootstrapServers: ["127.0.0.1:1"]}
    gateway: {bootstrapPort: 19092}
    encryption: {kms: {type: local}}
  - name: plain
    upstream: {bootstrapServers: ["127.0.0.1:1"]}
    gateway: {bootstrapPort: 29092}
`
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{t: t}
	if _, err := New(cfg, slog.New(slog.NewTextHandler(sink, nil)), nil, nil); err != nil {
		t.Fatal(err)
	}
	logs := sink.String()
	if n := strings.Count(logs, "client listener is plaintext"); n != 1 {
		t.Fatalf("%d plaintext listener warnings, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "virtualCluster=enc") {
		t.Errorf("warning does not name the cluster at WARN level:\n%s", logs)
	}
}

// Connections to node ids kseal does not know (an SNI name a client made
// up, say) ask the cluster for its brokers at most once a second together,
// not once each.
func TestUnknownNodeRefreshRateLimited(t *testing.T) {
	var asked atomic.Int32
	var addr string
	b := startScriptBroker(t, func(h frame.RequestHeader, body []byte) []byte {
		if h.APIKey != int16(kmsg.Metadata) {
			return nil
		}
		asked.Add(1)
		return metadataReply(h, addr)
	})
	addr = b.addr
	p := startOwnProxy(t, b.addr, "")
	waitFor(t, 5*time.Second, "broker 0's port", func() bool { return p.listening(0) })
	before := asked.Load()
	start := time.Now()
	for i := 0; i < 20; i++ {
		if _, err := p.vc.upstreamFor(int32(1000 + i)); err == nil {
			t.Fatalf("node %d resolved", 1000+i)
		}
	}
	if n := asked.Load() - before; n > 1 {
		t.Errorf("20 lookups of unknown nodes made %d metadata requests, want at most 1", n)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("20 lookups of unknown nodes took %s", took)
	}
}

// Connections refused while being set up are counted by reason.
func TestRefusedSetupCounted(t *testing.T) {
	pki := newPKI(t)
	cert, key, _ := pki.issue(t, "proxy", "*.kseal.test", "bootstrap.kseal.test")
	port := freePortRange(t, 1)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: ["127.0.0.1:1"]}
    gateway:
      bindAddress: 127.0.0.1
      bootstrapPort: %d
      tls: {certFile: %q, keyFile: %q}
      sni: {bootstrapHost: bootstrap.kseal.test, brokerHostPattern: 'broker-$(nodeId).kseal.test'}
`, port, cert, key)))
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{t: t}
	m := NewMetrics(prometheus.NewRegistry())
	srv, err := New(cfg, slog.New(slog.NewTextHandler(sink, nil)), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	plain := rawConn(t, addr)
	plain.Write([]byte("not a TLS client hello, not at all"))
	expectClosed(t, plain, 3*time.Second)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, ServerName: "evil.kseal.test"})
	if err == nil {
		expectClosed(t, c, 3*time.Second)
		c.Close()
	}
	for reason, want := range map[string]float64{refusedTLS: 1, refusedSNI: 1} {
		waitFor(t, 3*time.Second, "refused{reason="+reason+"}", func() bool {
			return counterValue(m.refused.WithLabelValues("test", reason)) == want
		})
	}
}

// A request of a version kseal does not know is refused, never forwarded:
// no filter could read it, and ApiVersions never offered it.
func TestUnknownVersionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan [2]int16, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					msg, err := frame.ReadRequest(c, nil, 1<<20)
					if err != nil || len(msg) < frame.SizeLen+4 {
						return
					}
					msg = msg[frame.SizeLen:]
					key, v := int16(binary.BigEndian.Uint16(msg)), int16(binary.BigEndian.Uint16(msg[2:]))
					seen <- [2]int16{key, v}
					h, err := frame.ParseRequestHeader(msg)
					if err != nil || !h.Known() || key != int16(kmsg.Metadata) {
						return
					}
					c.Write(metadataReply(h, ln.Addr().String()))
				}
			}()
		}
	}()
	p := startLimitsProxy(t, []string{ln.Addr().String()}, "{}")
	for _, key := range []kmsg.Key{kmsg.ListGroups, kmsg.Metadata} {
		c := rawConn(t, p.bootstrap)
		msg := appendRequestHeader(nil, int16(key), 99, 1, "t", false)
		c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg)+4)), append(msg, 0, 0, 0, 0)...))
		expectClosed(t, c, 3*time.Second)
	}
	for {
		select {
		case kv := <-seen:
			if kv[1] == 99 {
				t.Errorf("api %d v99 forwarded to the broker", kv[0])
			}
			continue
		default:
		}
		break
	}
}

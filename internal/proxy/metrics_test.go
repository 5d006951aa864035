package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/filter"
)

// slowFilter stands for kseal's own work on one API: it sleeps on both sides.
type slowFilter struct {
	key           int16
	onReq, onResp time.Duration
}

func (f slowFilter) APIKeys() []int16 { return []int16{f.key} }
func (f slowFilter) OnRequest(context.Context, *filter.Exchange) error {
	time.Sleep(f.onReq)
	return nil
}
func (f slowFilter) OnResponse(context.Context, *filter.Exchange) error {
	time.Sleep(f.onResp)
	return nil
}

// histogram returns the sample count and sum of name{api} in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name, api string) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue(m, "api") == api && labelValue(m, "virtual_cluster") == "test" {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// kseal_proxy_added_latency_seconds counts kseal's own time (request and
// response filters) and not the broker's, which kseal_request_duration_seconds
// includes.
func TestProxyAddedLatencyExcludesBrokerTime(t *testing.T) {
	const (
		onReq, onResp = 30 * time.Millisecond, 40 * time.Millisecond
		brokerTime    = 400 * time.Millisecond
	)
	fake := newFake(t)
	fake.ControlKey(int16(kmsg.ListGroups), func(kmsg.Request) (kmsg.Response, error, bool) {
		time.Sleep(brokerTime)
		return nil, nil, false // then answered as usual
	})
	base := freePortRange(t, 9)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 8}
`, fake.ListenAddrs()[0], base, base+1)))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), NewMetrics(reg), map[string]ClusterOptions{
		"test": {Filters: []filter.Filter{slowFilter{key: int16(kmsg.ListGroups), onReq: onReq, onResp: onResp}}},
	})
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

	// One ListGroups v0 request (header v1: key, version, correlation id,
	// empty client id; empty body).
	c := rawConn(t, srv.BootstrapAddr("test"))
	msg := binary.BigEndian.AppendUint16(nil, uint16(kmsg.ListGroups))
	msg = binary.BigEndian.AppendUint16(msg, 0)
	msg = binary.BigEndian.AppendUint32(msg, 42)
	msg = binary.BigEndian.AppendUint16(msg, 0)
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, resp); err != nil || binary.BigEndian.Uint32(resp) != 42 {
		t.Fatalf("response: %v, correlation id %d", err, binary.BigEndian.Uint32(resp))
	}

	// The response is written before it is observed: wait for the sample.
	var n uint64
	var added float64
	for deadline := time.Now().Add(5 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		n, added = histogram(t, reg, "kseal_proxy_added_latency_seconds", "ListGroups")
	}
	if n != 1 {
		t.Fatalf("kseal_proxy_added_latency_seconds{api=ListGroups} has %d samples, want 1", n)
	}
	own := (onReq + onResp).Seconds()
	if added < own || added >= own+brokerTime.Seconds()/2 {
		t.Errorf("added latency %.3fs, want kseal's own %.3fs (and not the broker's %.3fs)", added, own, brokerTime.Seconds())
	}
	if _, total := histogram(t, reg, "kseal_request_duration_seconds", "ListGroups"); total < own+brokerTime.Seconds() {
		t.Errorf("request duration %.3fs, want at least %.3fs (kseal and broker)", total, own+brokerTime.Seconds())
	}
}

// Counting an exchange of a known API costs no allocation once its series
// exist.
func TestProxyAPISeriesAllocs(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	a := newAPISeries(m, "test")
	count := func() {
		a.request(int16(kmsg.Produce), 100)
		a.response(int16(kmsg.Produce), 50, 2*time.Millisecond, time.Millisecond)
	}
	count()
	if n := testing.AllocsPerRun(1000, count); n != 0 {
		t.Errorf("counting an exchange allocates %.1f times, want 0", n)
	}
	if got := sampleCount(t, m.added, "test", "Produce"); got != 1002 { // AllocsPerRun runs it once more to warm up
		t.Errorf("%d samples, want 1002", got)
	}
	if got := sampleCount(t, m.latency, "test", "Produce"); got != 1002 {
		t.Errorf("%d latency samples, want 1002", got)
	}
	if got := testutil.ToFloat64(m.reqBytes.WithLabelValues("test", "Produce")); got != 100*1002 {
		t.Errorf("request bytes %v, want %v", got, 100*1002)
	}
}

// BenchmarkAPISeries is the metrics work of one exchange.
func BenchmarkAPISeries(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	a := newAPISeries(m, "test")
	b.ReportAllocs()
	for b.Loop() {
		a.request(int16(kmsg.Produce), 100)
		a.response(int16(kmsg.Produce), 50, 2*time.Millisecond, time.Millisecond)
	}
}

func sampleCount(t *testing.T, vec *prometheus.HistogramVec, vc, api string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(vc, api).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

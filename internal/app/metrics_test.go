package app

import (
	"context"
	"maps"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms"
)

// counterValues gathers every counter of reg whose name starts with prefix,
// keyed by name and labels.
func counterValues(t *testing.T, reg *prometheus.Registry, prefix string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

// A SIGHUP reload builds a new DEK manager; the DEK counters carry on from
// the old one's totals instead of restarting at zero.
func TestDEKCountersSurviveReload(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	ctx := context.Background()
	p := client(t, e.bootstrap)
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumeN(t, client(t, e.bootstrap, kgo.ConsumeTopics("orders")), 1)
	before := counterValues(t, e.reg, "kseal_dek")
	if before[`kseal_deks_generated_total{virtual_cluster=test}`] != 1 ||
		before[`kseal_dek_cache_misses_total{cache=decrypt,virtual_cluster=test}`] < 1 {
		t.Fatalf("before the reload: %v", before)
	}

	cfg, err := config.Parse([]byte(e.doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	after := counterValues(t, e.reg, "kseal_dek")
	for k, v := range before {
		if after[k] < v {
			t.Errorf("%s went from %v to %v across the reload", k, v, after[k])
		}
	}
	// The new manager makes its own DEK: the total counts both.
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if n := counterValues(t, e.reg, "kseal_dek")[`kseal_deks_generated_total{virtual_cluster=test}`]; n != 2 {
		t.Errorf("kseal_deks_generated_total after the reload and one more DEK = %v, want 2", n)
	}
}

// pooledKMS is a KMS with a connection pool of its own (as kmip has); only
// ConnStats is called.
type pooledKMS struct {
	kms.KMS
	stats kms.ConnStats
}

func (p *pooledKMS) ConnStats() kms.ConnStats { return p.stats }

// The kseal_kms_connection* metrics show the current KMS client's pool, and
// their counters carry on across a reload that replaces the client (and
// across a change of provider).
func TestKMSConnMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	var c kmsConns
	clusterRegisterer(reg, "test").MustRegister(kmsConnCollector{c: &c})
	gauges := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetGauge() == nil {
					continue
				}
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
			}
		}
		return out
	}

	c.set("vault", nil)
	if n := len(counterValues(t, reg, "kseal_kms_connection")) + len(gauges()); n != 0 {
		t.Fatalf("a provider without a pool exports %d connection metrics", n)
	}
	first := &pooledKMS{stats: kms.ConnStats{InUse: 1, Idle: 2, Dials: 5, DialErrors: 2, Broken: 1, Waits: 4}}
	c.set("kmip", first)
	want := map[string]float64{
		"kseal_kms_connection_dials_total{outcome=success,provider=kmip,virtual_cluster=test}": 3,
		"kseal_kms_connection_dials_total{outcome=error,provider=kmip,virtual_cluster=test}":   2,
		"kseal_kms_connection_errors_total{provider=kmip,virtual_cluster=test}":                1,
		"kseal_kms_connection_waits_total{provider=kmip,virtual_cluster=test}":                 4,
	}
	if got := counterValues(t, reg, "kseal_kms_connection"); !maps.Equal(got, want) {
		t.Fatalf("counters %v, want %v", got, want)
	}
	if g := gauges(); g["kseal_kms_connections{provider=kmip,state=in_use,virtual_cluster=test}"] != 1 ||
		g["kseal_kms_connections{provider=kmip,state=idle,virtual_cluster=test}"] != 2 || len(g) != 2 {
		t.Fatalf("gauges %v", g)
	}

	// A reload: a new client with counters of its own.
	c.set("kmip", &pooledKMS{stats: kms.ConnStats{Idle: 1, Dials: 1}})
	want["kseal_kms_connection_dials_total{outcome=success,provider=kmip,virtual_cluster=test}"] = 4
	if got := counterValues(t, reg, "kseal_kms_connection"); !maps.Equal(got, want) {
		t.Fatalf("after a reload: counters %v, want %v", got, want)
	}
	if g := gauges(); g["kseal_kms_connections{provider=kmip,state=in_use,virtual_cluster=test}"] != 0 ||
		g["kseal_kms_connections{provider=kmip,state=idle,virtual_cluster=test}"] != 1 {
		t.Fatalf("after a reload: gauges %v", g)
	}

	// Another provider: the kmip counters stay, the gauges go.
	c.set("vault", nil)
	if got := counterValues(t, reg, "kseal_kms_connection"); !maps.Equal(got, want) {
		t.Fatalf("after switching to vault: counters %v, want %v", got, want)
	}
	if g := gauges(); len(g) != 0 {
		t.Fatalf("after switching to vault: gauges %v", g)
	}
}

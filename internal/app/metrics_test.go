package app

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/config"
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

package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/admin"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms/local"
)

// TestTwoEncryptingVirtualClusters: two virtual clusters with encryption in
// one process, in front of two clusters, one sharing the other's local KMS
// store (same KEK names) and one with a store of its own. Build used to
// panic registering the second cluster's DEK metrics. Both encrypt and
// decrypt, a reload swaps both, and every filter and DEK metric is labelled
// with its virtual cluster.
func TestTwoEncryptingVirtualClusters(t *testing.T) {
	ctx := context.Background()
	fakes := map[string]*kfake.Cluster{}
	for _, name := range []string{"a", "b", "c"} {
		f, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders", "plain"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		fakes[name] = f
	}
	store := func(dir string) *local.Config {
		kcfg := local.NewConfig()
		kcfg.KeyStore, kcfg.MasterKeyFile = filepath.Join(dir, "keys.json"), filepath.Join(dir, "master.key")
		if _, err := local.Init(ctx, kcfg); err != nil {
			t.Fatal(err)
		}
		k, err := local.New(ctx, kcfg, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		if _, err := k.Create(ctx, "KEK-orders"); err != nil {
			t.Fatal(err)
		}
		return kcfg
	}
	shared, own := store(t.TempDir()), store(t.TempDir())
	var doc strings.Builder
	doc.WriteString("virtualClusters:\n")
	var bases []int // each virtual cluster's 6 ports: nothing binds them before Build
	for _, vc := range []struct {
		name string
		kcfg *local.Config
	}{{"a", shared}, {"b", shared}, {"c", own}} {
		base := 0
		for clash := true; clash; {
			base, clash = freePorts(t, 6), false
			for _, b := range bases {
				clash = clash || base < b+6 && b < base+6
			}
		}
		bases = append(bases, base)
		fmt.Fprintf(&doc, `  - name: %s
    upstream: {bootstrapServers: [%q]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 4}
    encryption:
      kms: {type: local, config: {keyStore: %q, masterKeyFile: %q, reloadInterval: 100ms}}
      policy: {rules: [{topics: [plain], passthrough: true}, {topicRegex: '.*', kek: 'KEK-$(topicName)'}]}
`, vc.name, fakes[vc.name].ListenAddrs()[0], base, base+1, vc.kcfg.KeyStore, vc.kcfg.MasterKeyFile)
	}
	cfg, err := config.Parse([]byte(doc.String()))
	if err == nil {
		err = Validate(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a := startApp(t, ctx, cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), reg)

	roundTrip := func(round int) {
		t.Helper()
		for name, f := range fakes {
			value := fmt.Sprintf("%s-%s-%d", canary, name, round)
			p := client(t, a.Server.BootstrapAddr(name))
			if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte(value)}, &kgo.Record{Topic: "plain", Value: []byte(value)}).FirstErr(); err != nil {
				t.Fatalf("cluster %s: %v", name, err)
			}
			for _, r := range consumeN(t, client(t, f.ListenAddrs()[0], kgo.ConsumeTopics("orders")), round) {
				if bytes.Contains(r.Value, []byte(canary)) {
					t.Errorf("cluster %s: plaintext at rest: %q", name, r.Value)
				}
			}
			found := false
			for _, r := range consumeN(t, client(t, a.Server.BootstrapAddr(name), kgo.ConsumeTopics("orders")), round) {
				found = found || string(r.Value) == value
			}
			if !found {
				t.Errorf("cluster %s: %q not read back through kseal", name, value)
			}
		}
	}
	roundTrip(1)
	if err := a.Ready(); err != nil {
		t.Errorf("ready: %v", err)
	}
	// A reload (SIGHUP) opens new KMS clients and DEK managers for each.
	if err := a.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	roundTrip(2)

	srv, err := admin.Listen("127.0.0.1:0", reg, func(context.Context) error { return a.Ready() }, slog.Default(), admin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(ctx)
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	for _, name := range []string{"a", "b", "c"} {
		for _, want := range []string{
			fmt.Sprintf(`kseal_records_total{direction="produce",outcome="encrypted",topic="orders",virtual_cluster=%q} 2`, name),
			fmt.Sprintf(`kseal_records_total{direction="produce",outcome="plaintext",topic="plain",virtual_cluster=%q} 2`, name),
			fmt.Sprintf(`kseal_fetch_batches_total{outcome="decrypted",virtual_cluster=%q}`, name),
			// One DEK before the reload, one after.
			fmt.Sprintf(`kseal_deks_generated_total{virtual_cluster=%q} 2`, name),
			fmt.Sprintf(`kseal_dek_cache_hits_total{cache="encrypt",virtual_cluster=%q}`, name),
			fmt.Sprintf(`kseal_dek_cache_entries{virtual_cluster=%q}`, name),
			fmt.Sprintf(`kseal_kms_operations_total{operation="generate_dek",outcome="success",provider="local",virtual_cluster=%q} 2`, name),
			fmt.Sprintf(`kseal_requests_total{api="Produce",virtual_cluster=%q}`, name),
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	}
	for _, family := range []string{"kseal_records_total", "kseal_deks_generated_total", "kseal_dek_cache_hits_total"} {
		if n := strings.Count(metrics, "# TYPE "+family+" "); n != 1 {
			t.Errorf("/metrics has %d TYPE lines for %s, want 1", n, family)
		}
	}
}

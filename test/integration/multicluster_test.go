//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// TestTwoEncryptingClusters: one kseal in front of two Kafka clusters (the
// suite's and a second one-broker cluster), with two encrypting virtual
// clusters sharing one local KMS store and a topic of the same name on
// both. Records produced through either are stored encrypted on its own
// cluster and read back through it; the metrics tell the clusters apart; a
// SIGHUP reload of that config keeps both working. kseal used to panic at
// start with a second encrypting virtual cluster.
func TestTwoEncryptingClusters(t *testing.T) {
	e2eSkipDirect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	second, err := testenv.StartCluster(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := second.Stop(); err != nil {
			t.Error(err)
		}
		if !t.Failed() {
			_ = second.Remove()
		}
	})

	topic := e2eTopic(t, "multi", 3, nil)
	adm := kadm.NewClient(testenv.Kgo(t, second.Bootstrap))
	if resp, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create %s on the second cluster: %v %v", topic, err, resp.Err)
	}
	k := newE2ELocalKMS(t)
	k.create(t, "KEK-"+topic)

	gwA, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens on gwA's ports yet, so a second pick may land on them.
	var gwB testenv.Gateway
	for {
		if gwB, err = testenv.NewGateway(); err != nil {
			t.Fatal(err)
		}
		clash := gwA.Owns(gwB.Host, gwB.BootstrapPort) || gwB.Owns(gwA.Host, gwA.BootstrapPort)
		for port := gwB.BrokerPortStart; port < gwB.BrokerPortStart+gwB.BrokerPortCount; port++ {
			clash = clash || gwA.Owns(gwB.Host, port)
		}
		if !clash {
			break
		}
	}
	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	enc := "    encryption:\n" + k.section() + "      policy:\n        rules:\n          - {topicRegex: '.*', kek: 'KEK-$(topicName)'}\n"
	cfg := fmt.Sprintf("admin: {listen: %q}\n", admin) + testenv.KsealConfig(cluster.Bootstrap, gwA, enc) +
		fmt.Sprintf("  - name: second\n    upstream:\n      bootstrapServers: [%q]\n", second.Bootstrap[0]) +
		fmt.Sprintf("    gateway:\n      bindAddress: %s\n      advertisedHost: %s\n      bootstrapPort: %d\n      brokerPortStart: %d\n      brokerPortCount: %d\n",
			gwB.Host, gwB.Host, gwB.BootstrapPort, gwB.BrokerPortStart, gwB.BrokerPortCount) + enc
	p := e2eStartKseal(t, cfg)

	sides := []struct {
		vc, proxy string
		direct    []string
	}{
		{"it", gwA.Bootstrap(), cluster.Bootstrap},
		{"second", gwB.Bootstrap(), second.Bootstrap},
	}
	const n = 20
	round := func(r int) {
		t.Helper()
		for _, s := range sides {
			canary := uniq(fmt.Sprintf("canary-%s-%d", s.vc, r))
			var recs []*kgo.Record
			for i := 0; i < n; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("%s %03d", canary, i))})
			}
			pctx, pcancel := context.WithTimeout(ctx, 60*time.Second)
			err := testenv.Kgo(t, []string{s.proxy}).ProduceSync(pctx, recs...).FirstErr()
			pcancel()
			if err != nil {
				t.Fatalf("round %d, produce through %s: %v", r, s.vc, err)
			}
			raw := e2eMustConsume(t, "direct consumer of "+s.vc, strings.Join(s.direct, ","), r*n, []string{topic})
			e2eAssertSealed(t, raw, canary)
			got := e2eMustConsume(t, "consumer through "+s.vc, s.proxy, r*n, []string{topic})
			seen := 0
			for _, rec := range got {
				if strings.HasPrefix(string(rec.Value), canary+" ") {
					seen++
				}
			}
			if seen != n {
				t.Errorf("round %d, %s: read %d of this round's %d records back through kseal", r, s.vc, seen, n)
			}
		}
	}
	round(1)
	for _, s := range sides {
		if got := e2eMetric(t, admin, "kseal_records_total", map[string]string{"virtual_cluster": s.vc, "topic": topic, "outcome": "encrypted"}); got != n {
			t.Errorf("kseal_records_total for %s = %v, want %d", s.vc, got, n)
		}
		if got := e2eMetric(t, admin, "kseal_deks_generated_total", map[string]string{"virtual_cluster": s.vc}); got < 1 {
			t.Errorf("kseal_deks_generated_total for %s = %v", s.vc, got)
		}
	}

	p.reload(t, cfg)
	p.waitLog(t, "reloaded encryption policy and KMS settings", 1, 15*time.Second)
	round(2)
	for _, s := range sides {
		if got := e2eMetric(t, admin, "kseal_records_total", map[string]string{"virtual_cluster": s.vc, "topic": topic, "outcome": "encrypted"}); got != 2*n {
			t.Errorf("after the reload, kseal_records_total for %s = %v, want %d", s.vc, got, 2*n)
		}
	}
}

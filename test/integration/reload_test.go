//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// TestReload: while an idempotent franz-go producer (acks=all) sends a
// steady stream through kseal, SIGHUP applies a new policy that encrypts the
// topic. Every record is acknowledged and stored exactly once, no broker
// connection of the client is dropped, records acknowledged before the
// SIGHUP are plaintext and records sent after the reload encrypted. Two bad configs sent with
// SIGHUP afterwards (an unknown key, and a changed listener port, which
// needs a restart) are refused with a log line and the running policy
// stays in force.
func TestReload(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	k := newE2ELocalKMS(t)
	topic := e2eTopic(t, "reload", 3, nil)
	k.create(t, "KEK-"+topic)
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	config := func(gw testenv.Gateway, rule string) string {
		return testenv.KsealConfig(cluster.Bootstrap, gw, "    encryption:\n"+k.section()+
			"      policy:\n        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\n        rules:\n          - "+rule+"\n")
	}
	plainCfg := config(gw, fmt.Sprintf("{topics: [%q], passthrough: true}", topic))
	encCfg := config(gw, fmt.Sprintf("{topics: [%q], kek: %q}", topic, "KEK-"+topic))
	p := e2eStartKseal(t, plainCfg)

	var disconnects e2eDisconnects
	cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.WithHooks(&disconnects))
	canary := uniq("canary")

	// The stream: one record every 5ms, each remembering when it was
	// handed to the client and whether it was acknowledged.
	type sent struct {
		at, ackedAt time.Time
		acked       bool
		err         error
	}
	var (
		mu      sync.Mutex
		records []*sent
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		stopped = make(chan struct{})
	)
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s := &sent{at: time.Now()}
			mu.Lock()
			records = append(records, s)
			mu.Unlock()
			wg.Add(1)
			cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)),
				Value: []byte(fmt.Sprintf("%06d %s", i, canary))}, func(_ *kgo.Record, err error) {
				mu.Lock()
				s.acked, s.ackedAt, s.err = err == nil, time.Now(), err
				mu.Unlock()
				wg.Done()
			})
		}
	}()
	waitRecords := func(n int) {
		t.Helper()
		e2eEventually(t, 30*time.Second, 20*time.Millisecond, fmt.Sprintf("the stream did not reach %d more records", n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(records) >= n
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(records)
	}

	// Some records acknowledged, so some are known to precede the reload.
	e2eEventually(t, 60*time.Second, 20*time.Millisecond, "no 100 records acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		acked := 0
		for _, s := range records {
			if s.acked {
				acked++
			}
		}
		return acked >= 100
	})
	sighup := time.Now()
	p.reload(t, encCfg)
	p.waitLog(t, "reloaded encryption policy and KMS settings", 1, 15*time.Second)
	applied := time.Now()
	waitRecords(count() + 200)

	// A config that does not decode, and one that changes the listeners.
	bad := strings.Replace(encCfg, "    encryption:\n", "    bogus: 1\n    encryption:\n", 1)
	p.reload(t, bad)
	p.waitLog(t, "reload refused", 1, 15*time.Second)
	moved := gw
	moved.BootstrapPort = e2eFreePort(t)
	p.reload(t, config(moved, fmt.Sprintf("{topics: [%q], passthrough: true}", topic)))
	p.waitLog(t, "reload refused", 2, 15*time.Second)
	refused := time.Now()
	waitRecords(count() + 200)
	close(stop)
	<-stopped

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("records still unacknowledged 60s after the stream stopped")
	}
	if err := syscall.Kill(p.pid(t), 0); err != nil {
		t.Fatalf("kseal is gone after the refused reloads: %v", err)
	}
	n := len(records)
	for i, s := range records {
		if !s.acked {
			t.Errorf("record %d not acknowledged: %v", i, s.err)
		}
	}
	if got := e2eSum(e2eEndOffsets(t, topic)); got != int64(n) {
		t.Errorf("%d records stored, %d sent: not exactly once", got, n)
	}
	if d := disconnects.n(); d > 0 {
		t.Errorf("the producer lost %d broker connections during the reloads", d)
	}

	// Each record stored once, in plaintext before the reload, encrypted
	// after it (and after the refused reloads); through kseal all read
	// back.
	var before, after, encrypted int
	for _, r := range e2eRaw(t, n, topic) {
		var i int
		if _, err := fmt.Sscanf(string(r.Key), "%d", &i); err != nil || i >= n {
			t.Fatalf("stored record with key %q", r.Key)
		}
		_, markers := e2eMarker(r)
		if markers > 0 {
			encrypted++
		}
		switch at := records[i].at; {
		case records[i].ackedAt.Before(sighup) && markers > 0:
			t.Errorf("record %d, acknowledged before the SIGHUP, is encrypted", i)
		case records[i].ackedAt.Before(sighup):
			before++
		case at.After(applied) && markers == 0:
			what := "after the reload"
			if at.After(refused) {
				what = "after the refused reloads"
			}
			t.Errorf("record %d, sent %s, is stored in plaintext", i, what)
		case at.After(applied):
			after++
			if strings.Contains(string(r.Value), canary) {
				t.Errorf("record %d: encrypted value holds the plaintext", i)
			}
		}
	}
	t.Logf("%d records: %d acknowledged before the SIGHUP (plaintext), %d sent after the reload applied (encrypted), %d encrypted in all; reload applied %v after SIGHUP",
		n, before, after, encrypted, applied.Sub(sighup).Round(time.Millisecond))
	if before == 0 || after == 0 {
		t.Errorf("the stream did not span the reload: %d records before, %d after", before, after)
	}
	seen := make([]bool, n)
	for _, r := range e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, n, []string{topic}) {
		var i int
		fmt.Sscanf(string(r.Key), "%d", &i)
		if string(r.Value) != fmt.Sprintf("%06d %s", i, canary) || seen[i] {
			t.Errorf("record %d through kseal: %q (seen before: %v)", i, r.Value, seen[i])
		}
		seen[i] = true
	}
	if strings.Count(p.Logs(), "reload refused") != 2 {
		t.Errorf("kseal logged %d refused reloads, want 2", strings.Count(p.Logs(), "reload refused"))
	}
}

// e2eDisconnects counts lost connections to real brokers (node ids >= 0;
// franz-go's seed connections have negative ids and are closed once
// metadata names the brokers).
type e2eDisconnects struct {
	mu    sync.Mutex
	count int
}

func (d *e2eDisconnects) OnBrokerDisconnect(meta kgo.BrokerMetadata, _ net.Conn) {
	if meta.NodeID >= 0 {
		d.mu.Lock()
		d.count++
		d.mu.Unlock()
	}
}

func (d *e2eDisconnects) n() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.count
}

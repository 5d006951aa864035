//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// TestIntegrityInjection (requireEncrypted, docs/policy.md): on a topic
// whose old records are plaintext written before kseal, a plaintext record
// produced straight to the broker after kseal started encrypting is not
// delivered through kseal (the records before it are, then
// CORRUPT_MESSAGE); a second kseal process, which learns the first
// encrypted offset from the key topic, refuses it even when the fetch
// starts at it; the records after it are delivered once the consumer
// seeks past it; and the refusal is counted per topic.
func TestIntegrityInjection(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	k := newE2ELocalKMS(t)
	topic := uniq("it-integrity")
	k.create(t, "KEK-"+topic)
	e2eCreateTopic(t, topic, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	direct := testenv.Kgo(t, cluster.Bootstrap, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(cl *kgo.Client, vals ...string) {
		t.Helper()
		for _, v := range vals {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", v, err)
			}
		}
	}
	// Offsets 0, 1: the topic's plaintext past, before kseal.
	produce(direct, "old-0", "old-1")

	start := func() (*e2eProxy, string) {
		gw, err := testenv.NewGateway()
		if err != nil {
			t.Fatal(err)
		}
		admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
		return e2eStartKseal(t, fmt.Sprintf("admin: {listen: %q}\n", admin)+testenv.KsealConfig(cluster.Bootstrap, gw, e2eEncSection(k, "REJECT"))), admin
	}
	p1, admin1 := start()
	through := testenv.Kgo(t, []string{p1.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce(through, "enc-2", "enc-3") // offsets 2, 3: kseal's first encrypted batch at 2
	produce(direct, "evil-4")          // offset 4: injected around kseal
	produce(through, "enc-5")          // offset 5

	values := func(recs []*kgo.Record) string {
		var s []string
		for _, r := range recs {
			s = append(s, string(r.Value))
		}
		return strings.Join(s, " ")
	}
	corrupt := func(errs []error) bool {
		for _, err := range errs {
			if errors.Is(err, kerr.CorruptMessage) {
				return true
			}
		}
		return false
	}
	// From the start: the old plaintext and kseal's records before the
	// injected one, then the error.
	recs, errs := e2eConsume(t, p1.Bootstrap, 6, 15*time.Second, []string{topic}, kgo.KeepRetryableFetchErrors())
	if got := values(recs); got != "old-0 old-1 enc-2 enc-3" || !corrupt(errs) {
		t.Fatalf("through kseal from the start: %q, errors %v; want the 4 records before the injected one and CORRUPT_MESSAGE", got, errs)
	}
	if n := e2eMetric(t, admin1, "kseal_injected_records_refused_total", map[string]string{"topic": topic}); n < 1 {
		t.Errorf("kseal_injected_records_refused_total{topic=%s} = %v", topic, n)
	}
	// The first kseal wrote the first encrypted offset to the key topic.
	e2eEventually(t, 30*time.Second, 100*time.Millisecond, "first encrypted offset not written", func() bool {
		return e2eMetric(t, admin1, "kseal_first_encrypted_offset_writes_total", map[string]string{"outcome": "ok"}) >= 1
	})

	// A second kseal process: a fetch starting at the injected record (no
	// envelope before it in the response) is refused from what the key
	// topic says.
	p2, _ := start()
	at := func(offset int64) kgo.Opt {
		return kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(offset)}})
	}
	recs, errs = e2eConsume(t, p2.Bootstrap, 1, 15*time.Second, nil, at(4), kgo.KeepRetryableFetchErrors())
	if len(recs) != 0 || !corrupt(errs) {
		t.Fatalf("second kseal from offset 4: %q, errors %v; want CORRUPT_MESSAGE", values(recs), errs)
	}
	// Past it, the records are delivered.
	recs, errs = e2eConsume(t, p2.Bootstrap, 1, 15*time.Second, nil, at(5))
	if values(recs) != "enc-5" || len(errs) != 0 {
		t.Fatalf("second kseal from offset 5: %q, errors %v", values(recs), errs)
	}
	// Straight from the broker the injected record is there, plaintext.
	if raw := e2eRaw(t, 6, topic); string(raw[4].Value) != "evil-4" || strings.Contains(string(raw[2].Value), "enc-2") {
		t.Fatalf("stored: %q, %q", raw[4].Value, raw[2].Value)
	}
}

//go:build integration

package integration

// Issue 17, proof 3: encrypted topics accept only encrypted records. On a
// topic whose rule encrypts (requireEncrypted, on by default), a record
// produced straight to the broker, bypassing kseal, is not delivered as
// data through kseal, in franz-go, librdkafka and Java: the records before
// it are, then the partition error; the records after it are, read from
// past it. An envelope under a KEK the rule does not name (sealed by
// another kseal whose rule says another KEK) is refused the same way. A
// topic that turned encryption on later still reads its old plaintext
// records. Refusals are counted per topic in
// kseal_injected_records_refused_total.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/testenv"
)

// p17InjectSection encrypts topics it-p17inj-* under kek (a template),
// with requireEncrypted left at its default.
func p17InjectSection(k *e2eLocalKMS, keyTopic, kek string) string {
	return "    encryption:\n" + k.section() + fmt.Sprintf(`      keyTopic: {name: %s}
      policy:
        rules:
          - topicPrefix: 'it-p17inj-'
            kek: '%s'
        unresolvedKeyPolicy: REJECT
`, keyTopic, kek)
}

// p17Expect is what a read from one offset must give: exactly the records
// at offsets want (in clear, as sent), then (when refusedAt >= 0) no record
// at or past refusedAt.
type p17Expect struct {
	topic     string
	from      int64
	want      []int64
	refusedAt int64
}

func TestInjectionRefused(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	k := newE2ELocalKMS(t)
	inj, mig := uniq("it-p17inj-direct"), uniq("it-p17inj-later")
	rogueKEK := uniq("KEK-rogue")
	for _, kek := range []string{"KEK-" + inj, "KEK-" + mig, rogueKEK} {
		k.create(t, kek)
	}
	p := p17Start(t, cluster.Bootstrap, p17InjectSection(k, uniq("it-p17-keys"), "KEK-$(topicName)"))
	// Another kseal, on the same KMS, whose rule seals these topics under
	// a KEK the first one's rule does not name.
	rogue := p17Start(t, cluster.Bootstrap, p17InjectSection(k, uniq("it-p17-keys"), rogueKEK))
	e2eCreateTopic(t, inj, 1, nil)
	e2eCreateTopic(t, mig, 1, nil)

	canary := uniq("inj-canary")
	sent := map[string]map[int64]testenv.BinRecord{inj: {}, mig: {}}
	manual := kgo.RecordPartitioner(kgo.ManualPartitioner())
	clients := map[string]*kgo.Client{
		"kseal":  testenv.Kgo(t, []string{p.Bootstrap}, manual),
		"direct": testenv.Kgo(t, cluster.Bootstrap, manual),
		"rogue":  testenv.Kgo(t, []string{rogue.Bootstrap}, manual),
	}
	// put writes one record to partition 0 of topic by way of via and
	// returns its offset.
	put := func(topic, via, what string) int64 {
		t.Helper()
		r := &kgo.Record{Topic: topic, Partition: 0, Key: []byte(what),
			Value:   []byte(fmt.Sprintf("%s via %s %s", what, via, canary)),
			Headers: []kgo.RecordHeader{{Key: "via", Value: []byte(via)}}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := clients[via].ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %s to %s via %s: %v", what, topic, via, err)
		}
		sent[topic][r.Offset] = testenv.BinFromKgo(r)
		return r.Offset
	}

	// The encrypted topic: good records, one injected in clear, good ones,
	// one sealed under the rogue KEK, one more good one.
	var good1, good2 []int64
	for i := range 3 {
		good1 = append(good1, put(inj, "kseal", fmt.Sprint("before-", i)))
	}
	injected := put(inj, "direct", "injected")
	for i := range 2 {
		good2 = append(good2, put(inj, "kseal", fmt.Sprint("after-", i)))
	}
	rogueAt := put(inj, "rogue", "rogue-kek")
	last := put(inj, "kseal", "last")

	// The topic that turned encryption on later: records from before (in
	// clear, written while nothing encrypted it), then kseal's, then one
	// injected, then one more of kseal's.
	var old, newer []int64
	for i := range 3 {
		old = append(old, put(mig, "direct", fmt.Sprint("old-", i)))
	}
	for i := range 2 {
		newer = append(newer, put(mig, "kseal", fmt.Sprint("new-", i)))
	}
	migInjected := put(mig, "direct", "injected")
	migLast := put(mig, "kseal", "new-last")

	// What the brokers hold: kseal's records sealed (the rogue one under
	// the rogue KEK), the others in clear.
	for _, topic := range []string{inj, mig} {
		for _, r := range e2eRaw(t, len(sent[topic]), topic) {
			via := string(sent[topic][r.Offset].Headers[0].Value)
			edek := p17EDEK(r)
			switch via {
			case "direct":
				if edek != nil {
					t.Errorf("%s@%d: the record written straight to the broker has an envelope", topic, r.Offset)
				}
			default:
				if edek == nil {
					t.Errorf("%s@%d: the record kseal (%s) wrote is not sealed", topic, r.Offset, via)
					continue
				}
				if strings.Contains(string(r.Value), canary) {
					t.Errorf("%s@%d: sealed record holds plaintext", topic, r.Offset)
				}
				info, err := local.DescribeEDEK(edek)
				want := "KEK-" + topic
				if via == "rogue" {
					want = rogueKEK
				}
				if err != nil || info.KEK != want {
					t.Errorf("%s@%d via %s: EDEK under %q (%v), want %s", topic, r.Offset, via, info.KEK, err, want)
				}
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	cat := func(a ...[]int64) []int64 {
		var out []int64
		for _, x := range a {
			out = append(out, x...)
		}
		return out
	}
	expects := []p17Expect{
		{inj, 0, good1, injected},
		{inj, injected + 1, good2, rogueAt},
		{inj, rogueAt + 1, []int64{last}, -1},
		{mig, 0, cat(old, newer), migInjected},
		{mig, migInjected + 1, []int64{migLast}, -1},
	}
	check := func(client string, e p17Expect, recs []testenv.BinRecord, errText string, corrupt bool) {
		t.Helper()
		who := fmt.Sprintf("%s reading %s from %d", client, e.topic, e.from)
		got := map[int64]testenv.BinRecord{}
		for _, r := range recs {
			got[r.Offset] = r
			if e.refusedAt >= 0 && r.Offset >= e.refusedAt {
				kind := "the injected plaintext"
				if r.Offset == rogueAt && e.topic == inj {
					kind = "the record under the rogue KEK"
				}
				if r.Offset > e.refusedAt {
					kind = "a record past the refused one"
				}
				t.Errorf("%s: DELIVERED %s at offset %d: %s", who, kind, r.Offset, r.Content())
			}
		}
		for _, off := range e.want {
			r, ok := got[off]
			switch {
			case !ok:
				t.Errorf("%s: record at offset %d not delivered (%d records, error %q)", who, off, len(recs), errText)
			case r.Content() != sent[e.topic][off].Content():
				t.Errorf("%s @%d:\n got  %s\n want %s", who, off, r.Content(), sent[e.topic][off].Content())
			}
		}
		if e.refusedAt >= 0 && !corrupt {
			t.Errorf("%s: error %q, want CORRUPT_MESSAGE at offset %d", who, errText, e.refusedAt)
		}
		if e.refusedAt < 0 && errText != "" {
			t.Errorf("%s: error %q after the refused records", who, errText)
		}
	}

	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for _, e := range expects {
			n := len(e.want) + 1
			recs, errs := p17Partition(t, p.Bootstrap, e.topic, 0, e.from, n, true, 10*time.Second)
			var bin []testenv.BinRecord
			for _, r := range recs {
				bin = append(bin, testenv.BinFromKgo(r))
			}
			errText := ""
			if len(errs) > 0 {
				errText = p17Errs(errs)
			}
			check("franz-go", e, bin, errText, p17AnyErr(errs, kerr.CorruptMessage))
		}
	}()
	probe := func(client string, run func([]testenv.ProbeStep) []testenv.ProbeResult, corrupt func(string) bool) {
		defer wg.Done()
		var steps []testenv.ProbeStep
		for _, e := range expects {
			steps = append(steps, testenv.ProbeStep{Consume: true, Bootstrap: p.Bootstrap, Topic: e.topic, Partition: 0,
				Offset: e.from, N: len(e.want) + 1, Timeout: 10 * time.Second})
		}
		res := run(steps)
		for i, e := range expects {
			t.Logf("%s reading %s from %d: %d records, error %q", client, e.topic, e.from, len(res[i].Records), res[i].Err)
			check(client, e, res[i].Records, res[i].Err, corrupt(res[i].Err))
		}
	}
	go probe("librdkafka", func(s []testenv.ProbeStep) []testenv.ProbeResult { return testenv.RdkafkaProbe(t, s) },
		// librdkafka names error code 2 INVALID_MSG ("Broker: Invalid message").
		func(s string) bool { return strings.Contains(s, "code=INVALID_MSG,val=2,") })
	go probe("java", func(s []testenv.ProbeStep) []testenv.ProbeResult { return testenv.JavaProbe(t, cluster, s) },
		func(s string) bool {
			return strings.Contains(s, "KafkaException: Encountered corrupt message when fetching offset")
		})
	wg.Wait()

	// The refused records are counted per topic.
	if !p.metricExists(t, "kseal_injected_records_refused_total") {
		t.Error("/metrics has no kseal_injected_records_refused_total")
	}
	for _, topic := range []string{inj, mig} {
		if n := p.metric(t, "kseal_injected_records_refused_total", map[string]string{"topic": topic}); n < 1 {
			t.Errorf("kseal_injected_records_refused_total{topic=%q} = %v, want at least 1", topic, n)
		}
	}
	// The rogue kseal reads its own record (its rule names its KEK) but not
	// the other kseal's: the refusal is about the KEK, not the envelope.
	recs, errs := p17Partition(t, rogue.Bootstrap, inj, 0, rogueAt, 1, true, 10*time.Second)
	if len(recs) != 1 || testenv.BinFromKgo(recs[0]).Content() != sent[inj][rogueAt].Content() {
		t.Errorf("rogue kseal reading its own record at %d: %d records, errors %s", rogueAt, len(recs), p17Errs(errs))
	}
	recs, errs = p17Partition(t, rogue.Bootstrap, inj, 0, last, 1, true, 10*time.Second)
	if len(recs) != 0 || !p17AnyErr(errs, kerr.CorruptMessage) {
		t.Errorf("rogue kseal reading the other kseal's record at %d: %d records, errors %s; want CORRUPT_MESSAGE", last, len(recs), p17Errs(errs))
	}
}

//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSoak: idempotent acks=all producers and a consumer group send
// self-checking records (producer id, sequence number, payload, CRC-32C,
// canary) through an encrypting kseal for KSEAL_SOAK_DURATION (default
// 20s; scripts/soak.sh runs minutes). Every record sent must be
// acknowledged and consumed exactly once, intact, in send order per
// partition; the canary must never reach the disk; kseal's memory must
// stay flat.
//
// Knobs: KSEAL_SOAK_PRODUCERS (4), KSEAL_SOAK_CONSUMERS (3),
// KSEAL_SOAK_RATE records/s per producer (500), KSEAL_SOAK_MAX_RSS_MIB
// (256).
//
// The memory rule, on kseal's VmRSS sampled every second: after a warm-up
// of a quarter of the run (at least 3s), the peak of the second half of the
// remaining samples may exceed the peak of the first half by at most 25%
// plus 16 MiB (a leak grows it; GC noise does not), and no sample may
// exceed KSEAL_SOAK_MAX_RSS_MIB.
func TestSoak(t *testing.T) {
	dur := envDuration(t, "KSEAL_SOAK_DURATION", 20*time.Second)
	producers := envInt(t, "KSEAL_SOAK_PRODUCERS", 4)
	consumers := envInt(t, "KSEAL_SOAK_CONSUMERS", 3)
	rate := envInt(t, "KSEAL_SOAK_RATE", 500)
	maxRSSMiB := envInt(t, "KSEAL_SOAK_MAX_RSS_MIB", 256)

	kek := uniq("KEK-soak")
	// DEKs turn over every 20,000 records or 10s, so the run exercises DEK
	// rotation under load and the consumers' decrypt-side cache.
	p := startEncProxy(t, newLocalKMS(t, kek), "it-soak", kek,
		"      dek: {maxEncryptionsPerDek: 20000, refreshAfterWrite: 10s, expireAfterWrite: 20s}\n")
	topic := newTopic(t, "soak", nil)
	canary := newCanary(t, topic)

	sampler := sampleRSS(p, time.Second)
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	s := startStream(t, streamOpts{
		Bootstrap: p.Bootstrap, Topic: topic, Canary: canary,
		Producers: producers, Consumers: consumers, Rate: rate,
		ProducerOpts: func(i int) []kgo.Opt {
			return []kgo.Opt{kgo.ProducerBatchCompression(codecs[i%len(codecs)])}
		},
	})
	t.Logf("soak: %d producers x %d rec/s, %d consumers, %v, topic %s", producers, rate, consumers, dur, topic)
	start := time.Now()
	for time.Since(start) < dur {
		step := min(30*time.Second, dur-time.Since(start))
		time.Sleep(step)
		if dur >= time.Minute {
			t.Logf("soak: %v: %d acknowledged, %d consumed, kseal RSS %s",
				time.Since(start).Round(time.Second), s.led.acks(), s.led.consumed(), mib(sampler.last().RSS))
		}
	}
	s.finish(60 * time.Second)
	samples := sampler.Stop()
	t.Logf("soak: %d records acknowledged in %v (%.0f/s)", s.led.acks(), dur, float64(s.led.acks())/dur.Seconds())

	if race := p.raceBuild(); race != "" {
		t.Logf("memory rule not applied: %s (RSS peaked at %s)", race, mib(maxRSS(samples)))
	} else {
		checkRSSFlat(t, samples, dur, int64(maxRSSMiB)<<20)
	}
	assertNoCanaryOnDisk(t, canary)
}

// checkRSSFlat applies TestSoak's memory rule (see there).
func checkRSSFlat(t *testing.T, samples []rssSample, dur time.Duration, limit int64) {
	t.Helper()
	if len(samples) == 0 {
		t.Fatal("no RSS sample of kseal was taken")
	}
	peak := maxRSS(samples)
	t.Logf("kseal RSS: first %s, peak %s, last %s (%d samples)",
		mib(samples[0].RSS), mib(peak), mib(samples[len(samples)-1].RSS), len(samples))
	if peak > limit {
		t.Errorf("kseal RSS peaked at %s, over the %s bound", mib(peak), mib(limit))
	}
	warm := max(3*time.Second, dur/4)
	var rest []rssSample
	for _, s := range samples {
		if s.At >= warm {
			rest = append(rest, s)
		}
	}
	if len(rest) < 4 {
		t.Logf("only %d samples after the %v warm-up: growth rule not applied", len(rest), warm)
		return
	}
	a, b := maxRSS(rest[:len(rest)/2]), maxRSS(rest[len(rest)/2:])
	allowed := a + a/4 + 16<<20
	t.Logf("kseal RSS after warm-up: first-half peak %s, second-half peak %s (allowed %s)", mib(a), mib(b), mib(allowed))
	if b > allowed {
		t.Errorf("kseal RSS grew from a peak of %s to %s during the run: not flat (allowed %s)\n%s",
			mib(a), mib(b), mib(allowed), rssTrace(samples))
	}
}

func rssTrace(ss []rssSample) string {
	out := ""
	for _, s := range ss {
		out += fmt.Sprintf("  %6.1fs %s\n", s.At.Seconds(), mib(s.RSS))
	}
	return out
}

package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Kgo returns a franz-go client seeded with bootstrap (comma-separated
// addresses are split), closed at test cleanup. KSEAL_IT_KGO_LOG=debug
// (or info, warn) logs what the client does to stderr.
func Kgo(t testing.TB, bootstrap []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	var seeds []string
	for _, b := range bootstrap {
		seeds = append(seeds, strings.Split(b, ",")...)
	}
	// A short metadata min age: a transactional Produce to a partition new
	// to the transaction is answered with a retriable error by Kafka 4.x
	// brokers, and franz-go retries after a metadata refresh, which it
	// otherwise spaces 5s apart.
	base := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(250 * time.Millisecond)}
	if lv := os.Getenv("KSEAL_IT_KGO_LOG"); lv != "" {
		level, ok := map[string]kgo.LogLevel{"debug": kgo.LogLevelDebug, "info": kgo.LogLevelInfo,
			"warn": kgo.LogLevelWarn, "error": kgo.LogLevelError}[lv]
		if ok {
			name := t.Name()
			base = append(base, kgo.WithLogger(kgo.BasicLogger(os.Stderr, level, func() string {
				return time.Now().Format("15:04:05.000 ") + name + " "
			})))
		}
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// KgoProduce produces recs synchronously and fails the test on any error.
func KgoProduce(t testing.TB, cl *kgo.Client, recs []Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = ToKgo(r)
	}
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatalf("franz-go produce %d records: %v", len(recs), err)
	}
}

// KgoConsume polls until n records arrived or timeout passed, and returns
// what it got (possibly fewer: the caller asserts). Fetch errors fail the
// test.
func KgoConsume(t testing.TB, cl *kgo.Client, n int, timeout time.Duration) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []Record
	for len(out) < n {
		fs := cl.PollRecords(ctx, n-len(out))
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Errorf("franz-go fetch %s[%d]: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) { out = append(out, FromKgo(r)) })
	}
	return out
}

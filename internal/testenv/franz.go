package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Kgo returns a franz-go client seeded with bootstrap (comma-separated
// addresses are split), closed at test cleanup.
func Kgo(t testing.TB, bootstrap []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	var seeds []string
	for _, b := range bootstrap {
		seeds = append(seeds, strings.Split(b, ",")...)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
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

//go:build integration

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/testenv"
)

// TestConsumerGroup: each client joins a group through kseal, consumes and
// commits half of the topic, leaves, and a new member of the same group
// continues exactly from the committed offsets. The committed offsets are
// checked with an OffsetFetch through kseal as well.
func TestConsumerGroup(t *testing.T) {
	t.Parallel()
	tg := startProxy(t)
	topic := newTopic(t, "group", nil)
	const n = 24
	want := makeRecords(topic, "group", n, roundRobin, nil)
	testenv.KgoProduce(t, testenv.Kgo(t, []string{tg.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner())), want)
	adm := kadm.NewClient(testenv.Kgo(t, []string{tg.Bootstrap}))

	// committed sums the group's committed offsets: with every partition
	// consumed in order from 0, that is the number of records consumed.
	committed := func(t *testing.T, group string) int64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("OffsetFetch for group %s through kseal: %v", group, err)
		}
		var sum int64
		resp.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic {
				sum += o.At
			}
		})
		return sum
	}

	// Each consumer returns what one group member consumed, leaving the
	// group with exactly those records committed.
	consumers := []struct {
		name    string
		consume func(t *testing.T, group string, limit int) []testenv.Record
	}{
		{"franz-go", func(t *testing.T, group string, limit int) []testenv.Record {
			cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(tg.Bootstrap, ",")...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
				kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close() // leaves the group
			got := testenv.KgoConsume(t, cl, limit, 60*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			offs := map[int32]kgo.EpochOffset{}
			for _, r := range got {
				if o := r.Offset + 1; o > offs[r.Partition].Offset {
					offs[r.Partition] = kgo.EpochOffset{Epoch: -1, Offset: o}
				}
			}
			// Commit only what was consumed, as this member: the client
			// may hold more records than it returned.
			var cerr error
			cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{topic: offs},
				func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
					cerr = err
					for _, tp := range resp.Topics {
						for _, p := range tp.Partitions {
							if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
								cerr = err
							}
						}
					}
				})
			if cerr != nil {
				t.Fatalf("franz-go commit: %v", cerr)
			}
			return got
		}},
		{"kcat", func(t *testing.T, group string, limit int) []testenv.Record {
			return testenv.KcatGroupConsume(t, tg.Bootstrap, group, topic, limit)
		}},
		{"java-classic", func(t *testing.T, group string, limit int) []testenv.Record {
			// One record per poll, so the offsets committed on close are
			// exactly those of the records printed.
			return testenv.JavaConsume(t, cluster, tg.Bootstrap, topic, limit, "--group", group,
				"--command-property", "max.poll.records=1", "--command-property", "auto.offset.reset=earliest")
		}},
		{"java-consumer-protocol", func(t *testing.T, group string, limit int) []testenv.Record {
			// KIP-848's group protocol (ConsumerGroupHeartbeat).
			return testenv.JavaConsume(t, cluster, tg.Bootstrap, topic, limit, "--group", group,
				"--command-property", "group.protocol=consumer",
				"--command-property", "max.poll.records=1", "--command-property", "auto.offset.reset=earliest")
		}},
	}
	for _, c := range consumers {
		t.Run(c.name, func(t *testing.T) {
			group := uniq("it-group-" + c.name)
			first := c.consume(t, group, n/2)
			if len(first) != n/2 {
				t.Fatalf("first member consumed %d records, want %d", len(first), n/2)
			}
			if got := committed(t, group); got != n/2 {
				t.Fatalf("after the first member left, committed offsets sum to %d, want %d", got, n/2)
			}
			second := c.consume(t, group, n/2)
			assertSameRecords(t, c.name+" group members together", append(first, second...), want)
			if got := committed(t, group); got != n {
				t.Errorf("after the second member left, committed offsets sum to %d, want %d", got, n)
			}
		})
	}
}

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

// TestIdempotentProducer: the idempotent producer of each client works
// through kseal (InitProducerId, sequence numbers), every record lands
// exactly once, and the batches on disk carry a producer id.
func TestIdempotentProducer(t *testing.T) {
	t.Parallel()
	tg := startProxy(t)
	topic := newTopic(t, "idempotent", nil)

	franzRecs := makeRecords(topic, "franz", 12, roundRobin, nil)
	kcatRecs := makeRecords(topic, "kcat", 12, nil, nil)
	javaRecs := makeRecords(topic, "java", 12, nil, nil)
	// franz-go is idempotent unless told otherwise; say so anyway.
	testenv.KgoProduce(t, testenv.Kgo(t, []string{tg.Bootstrap},
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks())), franzRecs)
	testenv.KcatProduce(t, tg.Bootstrap, topic, kcatRecs, "-X", "enable.idempotence=true")
	testenv.JavaProduce(t, cluster, tg.Bootstrap, topic, javaRecs, "--command-property", "enable.idempotence=true")

	want := append(append(append([]testenv.Record{}, franzRecs...), kcatRecs...), javaRecs...)
	cons := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	assertSameRecords(t, "franz-go consumer", testenv.KgoConsume(t, cons, len(want), 60*time.Second), want)

	batches, err := cluster.TopicBatches(topic)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for p, bs := range batches {
		for _, b := range bs {
			n += int(b.NumRecords)
			if b.ProducerID < 0 || b.BaseSequence < 0 {
				t.Errorf("partition %d offset %d: batch on disk has producer id %d sequence %d: not idempotent",
					p, b.BaseOffset, b.ProducerID, b.BaseSequence)
			}
		}
	}
	if n != len(want) {
		t.Errorf("%d records on disk, want %d", n, len(want))
	}
}

// TestTransactions: transactional producers (franz-go and the Java client)
// commit one transaction and abort another through kseal. read_committed
// consumers (all three clients) see only the committed records, a
// read_uncommitted one sees both, and offsets sent in a transaction are
// committed to the group only when it commits.
func TestTransactions(t *testing.T) {
	t.Parallel()
	tg := startProxy(t)
	topic := newTopic(t, "txn", nil)

	franzCommit := makeRecords(topic, "franz-commit", 6, roundRobin, nil)
	franzAbort := makeRecords(topic, "franz-abort", 6, roundRobin, nil)
	javaCommit := makeRecords(topic, "java-commit", 6, roundRobin, nil)
	javaAbort := makeRecords(topic, "java-abort", 6, roundRobin, nil)

	t.Run("franz-go producer", func(t *testing.T) {
		cl := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.TransactionalID(uniq("it-txn-franz")),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		txn := func(recs []testenv.Record, end kgo.TransactionEndTry) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := cl.BeginTransaction(); err != nil {
				t.Fatalf("begin: %v", err)
			}
			testenv.KgoProduce(t, cl, recs)
			if err := cl.EndTransaction(ctx, end); err != nil {
				t.Fatalf("end transaction (commit=%v): %v", end, err)
			}
		}
		txn(franzCommit, kgo.TryCommit)
		txn(franzAbort, kgo.TryAbort)
	})

	group := uniq("it-txn-group")
	t.Run("java producer", func(t *testing.T) {
		var script strings.Builder
		send := func(recs []testenv.Record) {
			for _, r := range recs {
				fmt.Fprintf(&script, "send %s %d %s %s\n", r.Topic, r.Partition, r.Key, r.Value)
			}
		}
		// Offsets sent with a transaction (AddOffsetsToTxn and
		// TxnOffsetCommit, routed to the group coordinator) become
		// visible only if it commits.
		script.WriteString("begin\n")
		send(javaCommit)
		fmt.Fprintf(&script, "offsets %s %s 0 42\ncommit\nbegin\n", group, topic)
		send(javaAbort)
		fmt.Fprintf(&script, "offsets %s %s 1 7\nabort\n", group, topic)
		out := testenv.JavaTxn(t, cluster, tg.Bootstrap, uniq("it-txn-java"), script.String())
		if got := strings.Count(out, "ok "); got != 6+len(javaCommit)+len(javaAbort) {
			t.Fatalf("java transactional producer ran %d of its commands:\n%s", got, out)
		}
	})
	if t.Failed() {
		return
	}

	committed := append(append([]testenv.Record{}, franzCommit...), javaCommit...)
	all := append(append(append([]testenv.Record{}, committed...), franzAbort...), javaAbort...)

	rc := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	assertSameRecords(t, "franz-go read_committed", testenv.KgoConsume(t, rc, len(committed), 60*time.Second), committed)
	assertSameRecords(t, "kcat read_committed",
		testenv.KcatConsume(t, tg.Bootstrap, topic, "-X", "isolation.level=read_committed"), committed)
	assertSameRecords(t, "java read_committed",
		testenv.JavaConsume(t, cluster, tg.Bootstrap, topic, len(committed), "--isolation-level", "read_committed"), committed)
	// The aborted records did reach the log: without this the test would
	// pass if abort silently dropped them before the broker.
	ru := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	assertSameRecords(t, "franz-go read_uncommitted", testenv.KgoConsume(t, ru, len(all), 60*time.Second), all)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(testenv.Kgo(t, []string{tg.Bootstrap})).FetchOffsets(ctx, group)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatalf("OffsetFetch %s: %v", group, err)
	}
	if o, ok := offs.Lookup(topic, 0); !ok || o.At != 42 {
		t.Errorf("offset committed in the committed transaction: got %+v (found %v), want 42", o, ok)
	}
	if o, ok := offs.Lookup(topic, 1); ok && o.At >= 0 {
		t.Errorf("offset sent in the aborted transaction is committed: %+v", o)
	}

	batches, err := cluster.TopicBatches(topic)
	if err != nil {
		t.Fatal(err)
	}
	var txnBatches, markers int
	for _, bs := range batches {
		for _, b := range bs {
			if b.Control {
				markers++
			} else if b.Transactional {
				txnBatches++
			}
		}
	}
	if txnBatches == 0 || markers == 0 {
		t.Errorf("on disk: %d transactional batches and %d control markers, want some of each", txnBatches, markers)
	}
}

package proxy

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestParseTailMetadata(t *testing.T) {
	resp := kmsg.NewPtrMetadataResponse()
	resp.SetVersion(tailMetadataVersion)
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = 2, "broker-2", 9092
	resp.Brokers = []kmsg.MetadataResponseBroker{b}
	other := kmsg.NewMetadataResponseTopic()
	other.Topic = kmsg.StringPtr("other")
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = kmsg.StringPtr("orders")
	for i := range int32(3) {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition, p.Leader, p.Replicas, p.ISR = i, 2, []int32{1, 2, 3}, []int32{2}
		mt.Partitions = append(mt.Partitions, p)
	}
	resp.Topics = []kmsg.MetadataResponseTopic{other, mt}
	body := resp.AppendTo(nil)
	parts, brokers, err := parseTailMetadata(body, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 || parts[2] != (tailPartition{id: 2, leader: 2}) || brokers[2] != "broker-2:9092" {
		t.Fatalf("parts %+v brokers %v", parts, brokers)
	}

	// A topic the cluster does not have: no partitions, no error.
	mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
	mt.Partitions = nil
	resp.Topics = []kmsg.MetadataResponseTopic{mt}
	if parts, _, err := parseTailMetadata(resp.AppendTo(nil), "orders"); err != nil || len(parts) != 0 {
		t.Fatalf("unknown topic: %v, %v", parts, err)
	}
	// Not authorized: an error (the caller cannot know what it holds).
	mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
	resp.Topics = []kmsg.MetadataResponseTopic{mt}
	if _, _, err := parseTailMetadata(resp.AppendTo(nil), "orders"); err == nil {
		t.Fatal("authorization failure accepted")
	}
	// Truncated or absurd input fails fast.
	for n := range len(body) {
		parseTailMetadata(body[:n], "orders")
	}
	start := time.Now()
	if _, _, err := parseTailMetadata([]byte{0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff}, "orders"); err == nil {
		t.Fatal("huge broker count accepted")
	}
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Fatalf("took %v", d)
	}
}

func TestParseTailListOffsetsAndFetch(t *testing.T) {
	lo := kmsg.NewPtrListOffsetsResponse()
	lo.SetVersion(tailListOffsetsVersion)
	lt := kmsg.NewListOffsetsResponseTopic()
	lt.Topic = "orders"
	for i := range int32(2) {
		p := kmsg.NewListOffsetsResponseTopicPartition()
		p.Partition, p.Offset = i, int64(10*i)
		lt.Partitions = append(lt.Partitions, p)
	}
	lo.Topics = []kmsg.ListOffsetsResponseTopic{lt}
	ends, err := parseTailListOffsets(lo.AppendTo(nil), "orders")
	if err != nil || ends[0] != 0 || ends[1] != 10 {
		t.Fatalf("ends %v, %v", ends, err)
	}
	lt.Partitions[1].ErrorCode = kerr.NotLeaderForPartition.Code
	lo.Topics = []kmsg.ListOffsetsResponseTopic{lt}
	if _, err := parseTailListOffsets(lo.AppendTo(nil), "orders"); err == nil {
		t.Fatal("partition error accepted")
	}

	fr := kmsg.NewPtrFetchResponse()
	fr.SetVersion(tailFetchVersion)
	ft := kmsg.NewFetchResponseTopic()
	ft.Topic = "orders"
	fp := kmsg.NewFetchResponseTopicPartition()
	fp.Partition, fp.LogStartOffset, fp.RecordBatches = 1, 4, []byte("batches")
	fp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 1, FirstOffset: 2}}
	ft.Partitions = []kmsg.FetchResponseTopicPartition{fp}
	fr.Topics = []kmsg.FetchResponseTopic{ft}
	recs, logStart, err := parseTailFetch(fr.AppendTo(nil), "orders", 1)
	if err != nil || logStart != 4 || !bytes.Equal(recs, []byte("batches")) {
		t.Fatalf("fetch: %q %d %v", recs, logStart, err)
	}
	if _, _, err := parseTailFetch(fr.AppendTo(nil), "orders", 0); err == nil {
		t.Fatal("missing partition accepted")
	}
	fr.ErrorCode = kerr.UnknownServerError.Code
	if _, _, err := parseTailFetch(fr.AppendTo(nil), "orders", 1); err == nil {
		t.Fatal("top-level error accepted")
	}
}

// FuzzTailResponses feeds the broker answers kseal's own tail requests read
// (Metadata v8, ListOffsets v5, Fetch v11) to their bounded decoders: they
// must never panic, and must finish in time linear in the input.
func FuzzTailResponses(f *testing.F) {
	md := kmsg.NewPtrMetadataResponse()
	md.SetVersion(tailMetadataVersion)
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = kmsg.StringPtr("t")
	mp := kmsg.NewMetadataResponseTopicPartition()
	mp.Replicas = []int32{1}
	mt.Partitions = []kmsg.MetadataResponseTopicPartition{mp}
	md.Topics = []kmsg.MetadataResponseTopic{mt}
	md.Brokers = []kmsg.MetadataResponseBroker{{NodeID: 1, Host: "h", Port: 1}}
	f.Add(md.AppendTo(nil))
	lo := kmsg.NewPtrListOffsetsResponse()
	lo.SetVersion(tailListOffsetsVersion)
	lo.Topics = []kmsg.ListOffsetsResponseTopic{{Topic: "t", Partitions: []kmsg.ListOffsetsResponseTopicPartition{{Offset: 3}}}}
	f.Add(lo.AppendTo(nil))
	fr := kmsg.NewPtrFetchResponse()
	fr.SetVersion(tailFetchVersion)
	fp := kmsg.NewFetchResponseTopicPartition()
	fp.RecordBatches = []byte("x")
	fr.Topics = []kmsg.FetchResponseTopic{{Topic: "t", Partitions: []kmsg.FetchResponseTopicPartition{fp}}}
	f.Add(fr.AppendTo(nil))
	f.Add([]byte{0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		start := time.Now()
		parseTailMetadata(body, "t")
		parseTailListOffsets(body, "t")
		parseTailFetch(body, "t", 0)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%d bytes took %v", len(body), d)
		}
	})
}

// newestBatches against kfake: every partition's tail reaches the visitor,
// a transaction marker at the end makes it step back to the data batch
// before, and a topic the cluster does not have has no partitions.
func TestNewestBatchesAgainstKfake(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(3, "tail"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	p := startProxy(t, fake.ListenAddrs()[:1], nil)
	vc := p.srv.clusters[0]

	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...), kgo.TransactionalID("tail-txn"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	plain := &kgo.Record{Topic: "tail", Partition: 0, Value: []byte("plain")}
	marked := &kgo.Record{Topic: "tail", Partition: 1, Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "kseal", Value: []byte{1}}}}
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, plain, marked).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	seen := map[int32]int{}
	var withHeader []int32
	err = vc.newestBatches(ctx, "tail", func(part int32, recs []byte) (earlier, stop bool) {
		seen[part]++
		if bytes.Contains(recs, []byte("kseal")) {
			withHeader = append(withHeader, part)
			return false, false
		}
		// The commit marker alone says nothing: ask for older batches
		// until the data batch shows up.
		return !bytes.Contains(recs, []byte("plain")), false
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(withHeader) != 1 || withHeader[0] != 1 {
		t.Fatalf("partitions with the header: %v, want [1]", withHeader)
	}
	if seen[0] < 2 || seen[1] < 2 {
		t.Fatalf("visits %v: want a step back over the commit markers of partitions 0 and 1", seen)
	}
	if seen[2] != 0 {
		t.Fatalf("empty partition 2 visited %d times", seen[2])
	}

	calls := 0
	if err := vc.newestBatches(ctx, "no-such-topic", func(int32, []byte) (bool, bool) { calls++; return false, false }); err != nil || calls != 0 {
		t.Fatalf("unknown topic: %d visits, %v", calls, err)
	}
}

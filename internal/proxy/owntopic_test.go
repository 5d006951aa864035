package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/records"
)

type ownRecord struct {
	offset     int64
	key, value string
}

func readAll(t *testing.T, up filter.Upstream, topic string, from int64) ([]ownRecord, int64) {
	t.Helper()
	var got []ownRecord
	next, err := up.ReadFrom(context.Background(), topic, from, func(o int64, k, v []byte) bool {
		got = append(got, ownRecord{o, string(k), string(v)})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, next
}

// The own-topic client against kfake: a topic that does not exist reads as
// empty, CreateTopic makes it (and again is fine), concurrent Produces get
// distinct offsets, ReadFrom reads from any offset to the end, and visit
// can stop it.
func TestOwnTopicAgainstKfake(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	p := startProxy(t, fake.ListenAddrs()[:1], nil)
	up := p.srv.Upstream("test")
	if up == nil || p.srv.Upstream("nope") != nil {
		t.Fatal("Server.Upstream by name")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if got, next := readAll(t, up, "__keys", 0); len(got) != 0 || next != 0 {
		t.Fatalf("missing topic: %v, %d", got, next)
	}
	cfgs := map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
	for range 2 {
		if err := up.CreateTopic(ctx, "__keys", 0, cfgs); err != nil {
			t.Fatal(err)
		}
	}
	// The configs reached the broker.
	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dreq := kmsg.NewPtrDescribeConfigsRequest()
	dr := kmsg.NewDescribeConfigsRequestResource()
	dr.ResourceType, dr.ResourceName = kmsg.ConfigResourceTypeTopic, "__keys"
	dreq.Resources = []kmsg.DescribeConfigsRequestResource{dr}
	dresp, err := dreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, r := range dresp.Resources {
		for _, c := range r.Configs {
			if c.Value != nil {
				seen[c.Name] = *c.Value
			}
		}
	}
	for k, v := range cfgs {
		if seen[k] != v {
			t.Errorf("config %s = %q, want %q", k, seen[k], v)
		}
	}

	const n = 8
	offsets := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o, err := up.Produce(ctx, "__keys", fmt.Appendf(nil, "k%d", i), fmt.Appendf(nil, "v%d", i))
			if err != nil {
				t.Error(err)
			}
			offsets[i] = o
		})
	}
	wg.Wait()
	got, next := readAll(t, up, "__keys", 0)
	if len(got) != n || next != n {
		t.Fatalf("read %d records, next %d", len(got), next)
	}
	for i, r := range got {
		if r.offset != int64(i) {
			t.Fatalf("record %d at offset %d", i, r.offset)
		}
		var k int
		fmt.Sscanf(r.key, "k%d", &k)
		if offsets[k] != r.offset || r.value != fmt.Sprintf("v%d", k) {
			t.Fatalf("record %+v: produce said offset %d", r, offsets[k])
		}
	}
	if got, next := readAll(t, up, "__keys", 5); len(got) != 3 || got[0].offset != 5 || next != n {
		t.Fatalf("from 5: %v, %d", got, next)
	}
	stopped, err := up.ReadFrom(ctx, "__keys", 0, func(o int64, _, _ []byte) bool { return o < 2 })
	if err != nil || stopped != 3 {
		t.Fatalf("stop at offset 2: next %d, %v", stopped, err)
	}
}

// The batch Produce sends is one a broker takes: it parses with a good CRC
// and holds the record.
func TestOneRecordBatch(t *testing.T) {
	for _, c := range []struct{ key, value []byte }{{[]byte("k"), []byte("v")}, {nil, []byte{}}, {[]byte{}, nil}} {
		b := appendOneRecordBatch(nil, c.key, c.value, 1234)
		batch, err := records.ParseBatch(b)
		if err != nil || batch.Kind != records.KindBatch || len(batch.Raw) != len(b) {
			t.Fatalf("%v %v", batch.Kind, err)
		}
		p := records.NewProcessor(records.WithVerifyCRC(true))
		if err := p.Reset(&batch); err != nil {
			t.Fatal(err)
		}
		if !p.Next() {
			t.Fatal(p.Err())
		}
		r := p.Record()
		if (r.Key == nil) != (c.key == nil) || string(r.Key) != string(c.key) ||
			(r.Value == nil) != (c.value == nil) || string(r.Value) != string(c.value) || p.Next() {
			t.Fatalf("record %+v", r)
		}
		if batch.MaxTimestamp != 1234 {
			t.Fatal(batch.MaxTimestamp)
		}
	}
}

func TestParseOwnResponses(t *testing.T) {
	ct := kmsg.NewPtrCreateTopicsResponse()
	ct.SetVersion(ownCreateTopicsVersion)
	rt := kmsg.NewCreateTopicsResponseTopic()
	rt.Topic, rt.ErrorCode, rt.ErrorMessage = "k", kerr.InvalidReplicationFactor.Code, kmsg.StringPtr("rf 3 > 1 broker\n")
	ct.Topics = []kmsg.CreateTopicsResponseTopic{rt}
	code, msg, err := parseOwnCreateTopics(ct.AppendTo(nil), "k")
	if err != nil || code != kerr.InvalidReplicationFactor.Code || msg != ": rf 3 > 1 broker?" {
		t.Fatalf("%d %q %v", code, msg, err)
	}
	if _, _, err := parseOwnCreateTopics(ct.AppendTo(nil), "other"); err == nil {
		t.Fatal("missing topic accepted")
	}

	pr := kmsg.NewPtrProduceResponse()
	pr.SetVersion(ownProduceVersion)
	prt := kmsg.NewProduceResponseTopic()
	prt.Topic = "k"
	pp := kmsg.NewProduceResponseTopicPartition()
	pp.BaseOffset = 42
	prt.Partitions = []kmsg.ProduceResponseTopicPartition{pp}
	pr.Topics = []kmsg.ProduceResponseTopic{prt}
	if code, off, err := parseOwnProduce(pr.AppendTo(nil), "k"); err != nil || code != 0 || off != 42 {
		t.Fatalf("%d %d %v", code, off, err)
	}
	body := pr.AppendTo(nil)
	for n := range len(body) - 4 { // the throttle time at the end is not read

		if _, _, err := parseOwnProduce(body[:n], "k"); err == nil {
			t.Fatalf("truncated at %d accepted", n)
		}
	}

	fr := kmsg.NewPtrFetchResponse()
	fr.SetVersion(tailFetchVersion)
	fp := kmsg.NewFetchResponseTopicPartition()
	fp.ErrorCode = kerr.OffsetOutOfRange.Code
	fr.Topics = []kmsg.FetchResponseTopic{{Topic: "k", Partitions: []kmsg.FetchResponseTopicPartition{fp}}}
	if _, err := parseOwnFetch(fr.AppendTo(nil), "k", 0); !errors.Is(err, kerr.OffsetOutOfRange) {
		t.Fatalf("fetch error code: %v", err)
	}
	fp.ErrorCode, fp.HighWatermark = 0, 7
	fr.Topics = []kmsg.FetchResponseTopic{{Topic: "k", Partitions: []kmsg.FetchResponseTopicPartition{fp}}}
	if f, err := parseOwnFetch(fr.AppendTo(nil), "k", 0); err != nil || f.hw != 7 {
		t.Fatalf("%+v %v", f, err)
	}
	start := time.Now()
	huge := []byte{0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff}
	parseOwnCreateTopics(huge, "k")
	parseOwnProduce(huge[4:], "k")
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Fatalf("took %v", d)
	}
}

// FuzzOwnTopicResponses feeds the answers kseal's own-topic requests read
// (CreateTopics v4, Produce v7) to their bounded decoders: no panic, time
// linear in the input.
func FuzzOwnTopicResponses(f *testing.F) {
	ct := kmsg.NewPtrCreateTopicsResponse()
	ct.SetVersion(ownCreateTopicsVersion)
	ct.Topics = []kmsg.CreateTopicsResponseTopic{{Topic: "k", ErrorMessage: kmsg.StringPtr("m")}}
	f.Add(ct.AppendTo(nil))
	pr := kmsg.NewPtrProduceResponse()
	pr.SetVersion(ownProduceVersion)
	pr.Topics = []kmsg.ProduceResponseTopic{{Topic: "k", Partitions: []kmsg.ProduceResponseTopicPartition{{BaseOffset: 1}}}}
	f.Add(pr.AppendTo(nil))
	f.Add([]byte{0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		start := time.Now()
		parseOwnCreateTopics(body, "k")
		parseOwnProduce(body, "k")
		parseOwnFetch(body, "k", 0)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%d bytes took %v", len(body), d)
		}
	})
}

// ReadFrom skips a batch it cannot read (here: records that do not parse,
// under a good CRC) and reads compressed batches.
func TestOwnTopicSkipsUnreadableBatches(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "k"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	p := startProxy(t, fake.ListenAddrs(), nil)
	up := p.srv.Upstream("test")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := up.Produce(ctx, "k", []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	// A batch whose one record is garbage, with a correct CRC.
	bad := appendOneRecordBatch(nil, []byte("b"), []byte("2"), 1)
	bad[len(bad)-3] = 0x7e // the value's length (63) now runs past the batch
	binary.BigEndian.PutUint32(bad[17:], crc32.Checksum(bad[21:], castagnoli))
	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...), kgo.ProducerBatchCompression(kgo.GzipCompression()),
		kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	own := up.(ownUpstream)
	addr, _, err := own.leader(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := own.produceAt(ctx, addr, "k", bad); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "k", Key: []byte("c"), Value: []byte("3")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got, next := readAll(t, up, "k", 0)
	if len(got) != 2 || got[0] != (ownRecord{0, "a", "1"}) || got[1] != (ownRecord{2, "c", "3"}) || next != 3 {
		t.Fatalf("%+v next %d", got, next)
	}
}

// A panic in an own-client operation (here in the caller's visit, which
// runs on records from the broker) fails that operation and is counted; it
// does not end the process, whose key-store goroutines have no other
// recover.
func TestOwnTopicPanicIsAnError(t *testing.T) {
	fake := newFake(t)
	p := startLimitsProxy(t, fake.ListenAddrs()[:1], "{}")
	up := p.srv.Upstream("test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := up.CreateTopic(ctx, "__keys", 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := up.Produce(ctx, "__keys", []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	next, err := up.ReadFrom(ctx, "__keys", 0, func(int64, []byte, []byte) bool { panic("a bug on broker bytes") })
	if !errors.Is(err, errPanicked) || next != 0 {
		t.Fatalf("ReadFrom with a panicking visit: next %d, err %v", next, err)
	}
	if n := counterValue(p.metrics.panics.WithLabelValues("test", sideOwnClient)); n != 1 {
		t.Fatalf("kseal_panics_total{side=own_client} = %v, want 1", n)
	}
	// The client still works.
	if got, _ := readAll(t, up, "__keys", 0); len(got) != 1 {
		t.Fatalf("read after the panic: %v", got)
	}
}

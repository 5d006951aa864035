//go:build integration

package integration

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// TestRoundTrip: records produced by each client through kseal come back to
// every client with key, value, headers, partition and order intact.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tg := startProxy(t)
	topic := newTopic(t, "roundtrip", nil)

	hdr := func(src string) func(int) []testenv.Header {
		return func(i int) []testenv.Header {
			return []testenv.Header{testenv.H("src", src), testenv.H("i", fmt.Sprint(i))}
		}
	}
	franzRecs := makeRecords(topic, "franz", 12, roundRobin, hdr("franz"))
	// One record without key or headers: null keys must survive too.
	franzRecs = append(franzRecs, testenv.Record{Topic: topic, Partition: 3, Value: "franz no key " + uniq("")})
	var kcatRecs []testenv.Record
	for p := int32(0); p < partitions; p++ {
		kcatRecs = append(kcatRecs, makeRecords(topic, fmt.Sprintf("kcat-p%d", p), 2,
			func(int) int32 { return p }, func(int) []testenv.Header { return []testenv.Header{testenv.H("src", "kcat")} })...)
	}
	javaRecs := makeRecords(topic, "java", 8, nil, hdr("java"))

	prod := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	testenv.KgoProduce(t, prod, franzRecs)
	for p := 0; p < partitions; p++ {
		testenv.KcatProduce(t, tg.Bootstrap, topic, kcatRecs[2*p:2*p+2])
	}
	testenv.JavaProduce(t, cluster, tg.Bootstrap, topic, javaRecs)

	want := append(append(append([]testenv.Record{}, franzRecs...), kcatRecs...), javaRecs...)
	// Where each record should be: known for the producers that chose a
	// partition, learned from franz-go's view for the Java partitioner.
	wantPart := map[string]int32{}
	for _, r := range append(append([]testenv.Record{}, franzRecs...), kcatRecs...) {
		wantPart[r.Content()] = r.Partition
	}

	cons := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	byFranz := testenv.KgoConsume(t, cons, len(want), 60*time.Second)
	byKcat := testenv.KcatConsume(t, tg.Bootstrap, topic)
	byJava := testenv.JavaConsume(t, cluster, tg.Bootstrap, topic, len(want))

	assertSameRecords(t, "franz-go consumer", byFranz, want)
	assertSameRecords(t, "kcat consumer", byKcat, want)
	assertSameRecords(t, "java consumer", byJava, want)

	// Partition and offset of each record as franz-go saw it; the other
	// consumers must agree exactly.
	type pos struct {
		p int32
		o int64
	}
	ref := map[string]pos{}
	for _, r := range byFranz {
		ref[r.Content()] = pos{r.Partition, r.Offset}
		if p, ok := wantPart[r.Content()]; ok && p != r.Partition {
			t.Errorf("record %v landed in partition %d, produced to %d", r, r.Partition, p)
		}
	}
	for who, got := range map[string][]testenv.Record{"kcat": byKcat, "java": byJava} {
		for _, r := range got {
			if want, ok := ref[r.Content()]; ok && want != (pos{r.Partition, r.Offset}) {
				t.Errorf("%s sees %v at %d/%d, franz-go at %d/%d", who, r, r.Partition, r.Offset, want.p, want.o)
			}
		}
	}

	// Without encryption configured, kseal passes values through: the
	// on-disk segments of all three replicas hold them in the clear.
	assertOnDisk(t, franzRecs[0].Value, replication)

	// Per producer and partition, offsets follow production order.
	order := map[string]int{}
	for i, r := range want {
		order[r.Content()] = i
	}
	byPart := map[int32][]testenv.Record{}
	for _, r := range byFranz {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	for p, rs := range byPart {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Offset < rs[j].Offset })
		for i := 1; i < len(rs); i++ {
			if order[rs[i].Content()] < order[rs[i-1].Content()] && sameProducer(rs[i], rs[i-1]) {
				t.Errorf("partition %d: %v (offset %d) was produced before %v (offset %d)",
					p, rs[i], rs[i].Offset, rs[i-1], rs[i-1].Offset)
			}
		}
	}
}

// sameProducer compares the "src" header (records without one come from
// franz-go).
func sameProducer(a, b testenv.Record) bool {
	src := func(r testenv.Record) string {
		for _, h := range r.Headers {
			if h.Key == "src" {
				return h.Value
			}
		}
		return "franz"
	}
	return src(a) == src(b)
}

// assertOnDisk checks that value appears in exactly replicas segment files.
func assertOnDisk(t *testing.T, value string, replicas int) {
	t.Helper()
	hits, err := cluster.GrepSegments([]byte(value))
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != replicas {
		t.Errorf("value %q found in %d segment files, want %d: %v", value, len(hits), replicas, hits)
	}
}

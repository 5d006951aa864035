package codec

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// benchManyPartitionsBody is a v16 Fetch response with 50 topics x 20
// partitions of 200 bytes of records each and three node endpoints: a walk
// of it costs the layout, not the copies.
func benchManyPartitionsBody() []byte {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 16
	for t := range 50 {
		topic := kmsg.NewFetchResponseTopic()
		topic.TopicID = [16]byte{byte(t + 1)}
		for p := range 20 {
			part := kmsg.NewFetchResponseTopicPartition()
			part.Partition = int32(p)
			part.HighWatermark, part.LastStableOffset, part.LogStartOffset = 1e6, 1e6, 0
			part.RecordBatches = bytes.Repeat([]byte{byte(p)}, 200)
			topic.Partitions = append(topic.Partitions, part)
		}
		resp.Topics = append(resp.Topics, topic)
	}
	resp.Brokers = fetchBrokers(1, 2, 3)
	return resp.AppendTo(nil)
}

// benchMapper maps nodes 1-3 to fixed names as long as the fixtures'
// broker names, without allocating.
var benchMapper = MapperFunc(func(id int32, _ string, port int32) (string, int32, bool) {
	switch id {
	case 1:
		return "k1.internal", port, true
	case 2:
		return "k2.internal", port, true
	case 3:
		return "k3.internal", port, true
	}
	return "", 0, false
})

// BenchmarkFetchWalkManyPartitions walks 1000 small partitions with the
// endpoint rewrite, replacing nothing (what the plumbing's walk of a Fetch
// response no filter edits used to cost).
func BenchmarkFetchWalkManyPartitions(b *testing.B) {
	body := benchManyPartitionsBody()
	w := FetchWalker{Mapper: benchMapper}
	dst := make([]byte, 0, len(body)+64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		out, changed, err := w.Walk(dst[:0], body, 16, nil)
		if !changed || err != nil {
			b.Fatal(changed, err)
		}
		dst = out
	}
}

// BenchmarkFetchWalkManyPartitionsReplace replaces every other partition's
// records (the decrypt stage's splice over a mixed response).
func BenchmarkFetchWalkManyPartitionsReplace(b *testing.B) {
	body := benchManyPartitionsBody()
	repl := bytes.Repeat([]byte("p"), 180)
	w := FetchWalker{Mapper: benchMapper}
	fn := func(p *FetchPartition) error {
		if p.Partition%2 == 0 {
			p.SetRecords(repl)
		}
		return nil
	}
	dst := make([]byte, 0, len(body)+64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		out, changed, err := w.Walk(dst[:0], body, 16, fn)
		if !changed || err != nil {
			b.Fatal(changed, err)
		}
		dst = out
	}
}

// benchStream forwards body through a FetchStream with a 64 KiB read buffer.
func benchStream(b *testing.B, body []byte) {
	fs := FetchStream{Mapper: benchMapper}
	src := bytes.NewReader(body)
	br := bufio.NewReaderSize(src, 64<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(body)
		br.Reset(src)
		if err := fs.Forward(io.Discard, br, len(body), 16); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFetchStreamLarge(b *testing.B) { benchStream(b, benchFetchBody()) }

func BenchmarkFetchStreamManyPartitions(b *testing.B) { benchStream(b, benchManyPartitionsBody()) }

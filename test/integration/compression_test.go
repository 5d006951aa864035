//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// TestCompression: for each codec, every client that can produce with it
// does so through kseal, the batches on disk carry that codec, and every
// client consumes all of them (so each reads what the others compressed).
func TestCompression(t *testing.T) {
	t.Parallel()
	tg := startProxy(t)
	codecs := []struct {
		name  string
		codec testenv.Codec
		franz kgo.CompressionCodec
	}{
		{"gzip", testenv.CodecGzip, kgo.GzipCompression()},
		{"snappy", testenv.CodecSnappy, kgo.SnappyCompression()},
		{"lz4", testenv.CodecLz4, kgo.Lz4Compression()},
		{"zstd", testenv.CodecZstd, kgo.ZstdCompression()},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			topic := newTopic(t, "codec-"+c.name, nil)
			// Values that compress well: librdkafka sends a batch
			// uncompressed when compression would not shrink it.
			pad := func(rs []testenv.Record) []testenv.Record {
				for i := range rs {
					rs[i].Value += " " + strings.Repeat("compressible "+c.name+" ", 40)
				}
				return rs
			}
			franzRecs := pad(makeRecords(topic, "franz-"+c.name, 10, roundRobin,
				func(int) []testenv.Header { return []testenv.Header{testenv.H("codec", c.name)} }))
			kcatRecs := pad(makeRecords(topic, "kcat-"+c.name, 10, func(int) int32 { return 2 },
				func(int) []testenv.Header { return []testenv.Header{testenv.H("codec", c.name)} }))
			javaRecs := pad(makeRecords(topic, "java-"+c.name, 10, nil,
				func(int) []testenv.Header { return []testenv.Header{testenv.H("codec", c.name)} }))

			testenv.KgoProduce(t, testenv.Kgo(t, []string{tg.Bootstrap},
				kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(c.franz)), franzRecs)
			testenv.KcatProduce(t, tg.Bootstrap, topic, kcatRecs, "-z", c.name)
			testenv.JavaProduce(t, cluster, tg.Bootstrap, topic, javaRecs, "--compression-codec", c.name)
			want := append(append(append([]testenv.Record{}, franzRecs...), kcatRecs...), javaRecs...)

			batches, err := cluster.TopicBatches(topic)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for p, bs := range batches {
				for _, b := range bs {
					n += int(b.NumRecords)
					if b.Codec != c.codec {
						t.Errorf("partition %d offset %d: batch on disk is %v, want %v", p, b.BaseOffset, b.Codec, c.codec)
					}
				}
			}
			if n != len(want) {
				t.Errorf("%d records on disk, want %d", n, len(want))
			}
			// Found inside compressed batches (GrepSegments decompresses).
			assertOnDisk(t, kcatRecs[3].Value, replication)

			cons := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			assertSameRecords(t, "franz-go consumer", testenv.KgoConsume(t, cons, len(want), 60*time.Second), want)
			assertSameRecords(t, "kcat consumer", testenv.KcatConsume(t, tg.Bootstrap, topic), want)
			assertSameRecords(t, "java consumer", testenv.JavaConsume(t, cluster, tg.Bootstrap, topic, len(want)), want)
		})
	}
}

package records

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// benchBatch is a ~1 MiB batch of 1 KiB records, each with a 16-byte key and
// one header, compressed by franz-go.
func benchBatch(tb testing.TB, c Codec) (Batch, int) {
	tb.Helper()
	data := compressible(1 << 20)
	var recs []kmsg.Record
	for i := 0; (i+1)*1024 <= len(data); i++ {
		recs = append(recs, kmsg.Record{
			OffsetDelta:      int32(i),
			TimestampDelta64: int64(i),
			Key:              fmt.Appendf(nil, "key-%012d", i),
			Value:            data[i*1024 : (i+1)*1024],
			Headers:          []kmsg.Header{{Key: "trace", Value: []byte("abc")}},
		})
	}
	h := sampleHeader()
	h.LastOffsetDelta = int32(len(recs) - 1)
	b, err := ParseBatch(buildBatch(tb, h, c, recs))
	if err != nil {
		tb.Fatal(err)
	}
	return b, len(recs)
}

// recordBytes is the uncompressed size of a batch's records: benchmarks
// report MB/s of records whatever the codec, so codecs compare.
func recordBytes(tb testing.TB, b Batch) int64 {
	p := NewProcessor()
	if err := p.Reset(&b); err != nil {
		tb.Fatal(err)
	}
	return int64(len(p.Records()))
}

// sealLike stands in for the encrypt stage: it replaces each value with a
// same-sized-plus-overhead buffer and adds a marker header in front.
type sealLike struct{ scratch []byte }

var markerKey, markerVal = []byte("kseal"), []byte{1}

func (s *sealLike) edit(r *Record) error {
	if r.Value == nil {
		return nil
	}
	s.scratch = append(append(s.scratch[:0], r.Value...), make([]byte, 40)...)
	r.Value = s.scratch
	r.Headers = append(r.Headers, RecordHeader{})
	copy(r.Headers[1:], r.Headers)
	r.Headers[0] = RecordHeader{Key: markerKey, Value: markerVal}
	return nil
}

var benchCodecs = []Codec{CodecNone, CodecLz4, CodecZstd, CodecSnappy, CodecGzip}

func BenchmarkIterate(b *testing.B) {
	for _, c := range benchCodecs {
		b.Run(c.String(), func(b *testing.B) {
			batch, n := benchBatch(b, c)
			p := NewProcessor()
			b.SetBytes(recordBytes(b, batch))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Reset(&batch); err != nil {
					b.Fatal(err)
				}
				got := 0
				for p.Next() {
					got++
				}
				if got != n || p.Err() != nil {
					b.Fatalf("%d records, %v", got, p.Err())
				}
			}
		})
	}
}

func BenchmarkHasHeader(b *testing.B) {
	for _, c := range []Codec{CodecNone, CodecZstd} {
		b.Run(c.String(), func(b *testing.B) {
			batch, _ := benchBatch(b, c)
			p := NewProcessor()
			b.SetBytes(recordBytes(b, batch))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Reset(&batch); err != nil {
					b.Fatal(err)
				}
				if has, err := p.HasHeader("kseal"); has || err != nil {
					b.Fatal(has, err)
				}
			}
		})
	}
}

func BenchmarkRewrite(b *testing.B) { benchmarkRewrite(b, false) }

// BenchmarkRewriteStored is BenchmarkRewrite writing stored blocks
// (SetStoredRewrite), as produce does for batches it encrypted.
func BenchmarkRewriteStored(b *testing.B) { benchmarkRewrite(b, true) }

func benchmarkRewrite(b *testing.B, stored bool) {
	for _, c := range benchCodecs {
		b.Run(c.String(), func(b *testing.B) {
			batch, _ := benchBatch(b, c)
			p := NewProcessor(WithStoredRewrite(stored))
			s := &sealLike{}
			fn := s.edit
			var dst []byte
			b.SetBytes(recordBytes(b, batch))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Reset(&batch); err != nil {
					b.Fatal(err)
				}
				var err error
				if dst, err = p.Rewrite(dst[:0], fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSteadyStateAllocs holds the hot path to its promise: once buffers have
// grown, reading and rewriting a batch allocates nothing per record.
func TestSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 1 MiB batches")
	}
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops entries); make unit runs the allocation tests again without -race")
	}
	for _, stored := range []bool{false, true} {
		for _, c := range benchCodecs {
			t.Run(fmt.Sprintf("%s/stored=%v", c, stored), func(t *testing.T) {
				batch, n := benchBatch(t, c)
				p := NewProcessor(WithStoredRewrite(stored))
				fn := (&sealLike{}).edit
				var dst []byte
				run := func() {
					if err := p.Reset(&batch); err != nil {
						t.Fatal(err)
					}
					for p.Next() {
					}
					if _, err := p.HasHeader("trace"); err != nil {
						t.Fatal(err)
					}
					var err error
					if dst, err = p.Rewrite(dst[:0], fn); err != nil {
						t.Fatal(err)
					}
				}
				run()
				allocs := testing.AllocsPerRun(5, run)
				// A handful per batch is codec internals; per record would
				// be about n.
				if allocs > 4 {
					t.Errorf("%v allocations per batch of %d records", allocs, n)
				}
			})
		}
	}
}

package encrypt

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/records"
)

// forwardedSection returns the records section of the one batch forwarded
// for topic, with its codec.
func forwardedSection(t *testing.T, res produceResult, topic string) (records.Codec, []byte) {
	t.Helper()
	for _, rt := range res.forwarded.Topics {
		if rt.Topic != topic {
			continue
		}
		b, err := records.ParseBatch(rt.Partitions[0].Records)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.VerifyCRC(); err != nil {
			t.Fatal(err)
		}
		return b.Codec(), b.Raw[records.HeaderSize:]
	}
	t.Fatalf("%s not forwarded", topic)
	return 0, nil
}

// An encrypted zstd batch is forwarded with the zstd attribute and Raw
// blocks (encryption.format.recompress: stored, the default), its records
// sealed; a passthrough batch is forwarded as it came; with
// recompress: compressed the encrypted batch is compressed again.
func TestProduceEncryptedZstdStored(t *testing.T) {
	vals := make([][]byte, 200)
	for i := range vals {
		vals[i] = fmt.Appendf(nil, "value %d %s", i, bytes.Repeat([]byte("a"), 1000))
	}
	plain := codecBatch(vals, records.CodecZstd)
	for _, recompress := range []bool{false, true} {
		f := newMixedFilter(t, func(o *Options) {
			pol, err := policy.Compile(&policy.Config{Rules: mixedRules, UnresolvedKeyPolicy: policy.PassthroughUnencrypted, Recompress: recompress})
			if err != nil {
				t.Fatal(err)
			}
			o.Policy = pol
		})
		res := produceThrough(t, f, -1, []producePart{
			{"enc-a", 0, codecBatch(vals, records.CodecZstd)},
			{"plain-x", 0, plain},
		})
		if res.err != nil || res.local {
			t.Fatalf("refused: %v %v", res.err, res.codes)
		}
		checkSealed(t, f, res.forwarded)
		codec, section := forwardedSection(t, res, "enc-a")
		if codec != records.CodecZstd {
			t.Fatalf("recompress=%v: codec %s, want zstd", recompress, codec)
		}
		types, err := records.ZstdBlockTypes(section)
		if err != nil || len(types) == 0 {
			t.Fatalf("block types %v: %v", types, err)
		}
		for _, ty := range types {
			if raw := ty == 0; raw == recompress {
				t.Fatalf("recompress=%v: block types %v", recompress, types)
			}
		}
		if _, got := forwardedSection(t, res, "plain-x"); !bytes.Equal(got, plain[records.HeaderSize:]) {
			t.Fatalf("recompress=%v: passthrough batch changed", recompress)
		}

		// A reload (Swap) to the other setting applies to the next request.
		pol, err := policy.Compile(&policy.Config{Rules: mixedRules, UnresolvedKeyPolicy: policy.PassthroughUnencrypted, Recompress: !recompress})
		if err != nil {
			t.Fatal(err)
		}
		f.Swap(pol, f.state.Load().keys)
		res = produceThrough(t, f, -1, []producePart{{"enc-a", 0, codecBatch(vals, records.CodecZstd)}})
		if res.err != nil || res.local {
			t.Fatalf("refused: %v %v", res.err, res.codes)
		}
		_, section = forwardedSection(t, res, "enc-a")
		if types, err = records.ZstdBlockTypes(section); err != nil || (types[0] == 0) == !recompress {
			t.Fatalf("after reload to recompress=%v: block types %v, %v", !recompress, types, err)
		}
	}
}

// BenchmarkProduceCompressed is the produce filter per record (1000 records
// of 1 KiB per request) for a compressed batch it encrypts, written back as
// stored blocks (the default) or compressed again.
func BenchmarkProduceCompressed(b *testing.B) {
	const n = 1000
	vals := make([][]byte, n)
	for i := range vals {
		vals[i] = fmt.Appendf(nil, "%08d %s", i, bytes.Repeat([]byte("order shipped to warehouse "), 38))[:1024]
	}
	for _, c := range []records.Codec{records.CodecZstd, records.CodecLz4, records.CodecSnappy, records.CodecGzip} {
		batch := codecBatch(vals, c)
		for _, mode := range []string{"stored", "compressed"} {
			b.Run(c.String()+"/"+mode, func(b *testing.B) {
				f := newMixedFilter(b, func(o *Options) {
					pol, err := policy.Compile(&policy.Config{Rules: mixedRules, UnresolvedKeyPolicy: policy.PassthroughUnencrypted, Recompress: mode == "compressed"})
					if err != nil {
						b.Fatal(err)
					}
					o.Policy = pol
				})
				fr, hl := produceFrame(-1, []producePart{{"enc-a", 0, batch}})
				var s filter.Standalone
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					x := s.Exchange(int16(kmsg.Produce), produceVersion, bytes.Clone(fr), hl, nil, 0)
					if err := f.OnRequest(ctx, x); err != nil || x.Local {
						b.Fatalf("refused: %v", err)
					}
					s.Done(x)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
			})
		}
	}
}

package records

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// fuzzLimit keeps fuzzed decompression small and fast.
const fuzzLimit = 1 << 20

// Fuzz targets reuse their codec state and Processors across inputs: making
// a zstd or gzip encoder per input costs milliseconds, and reuse is how the
// proxy runs them, so state leaking from one batch to the next shows up too.
var (
	fuzzMu        sync.Mutex
	fuzzCodecs    = NewCodecs(0)
	fuzzProc      = NewProcessor(WithMaxDecompressed(fuzzLimit))
	fuzzCheckProc = NewProcessor(WithMaxDecompressed(fuzzLimit), WithVerifyCRC(true))
)

// FuzzRecordSet feeds arbitrary record sets through the batch iterator and
// every complete batch through Reset, Next, HasHeader and an identity
// Rewrite, checking that nothing panics, errors are typed, entries tile the
// input, and a rewritten batch reads back to the same records.
func FuzzRecordSet(f *testing.F) {
	f.Fuzz(func(t *testing.T, set []byte) {
		fuzzMu.Lock()
		defer fuzzMu.Unlock()
		p := fuzzProc
		it := NewBatchIter(set)
		covered := 0
		for it.Next() {
			b := it.Batch()
			if it.Offset() != covered {
				t.Fatalf("entry at %d, previous ended at %d", it.Offset(), covered)
			}
			covered += len(b.Raw)
			if b.Kind == KindBatch {
				checkBatch(t, p, b)
			}
		}
		if err := it.Err(); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped iterator error %v", err)
			}
			if it.Offset() != covered {
				t.Fatalf("error at %d, previous entry ended at %d", it.Offset(), covered)
			}
		} else if covered != len(set) {
			t.Fatalf("entries cover %d of %d bytes", covered, len(set))
		}
	})
}

// FuzzBatchRecords wraps an arbitrary records section (compressed first
// with our codec when compress is set) in a valid batch header, so the
// fuzzer spends its time on record parsing and decompression.
func FuzzBatchRecords(f *testing.F) {
	f.Fuzz(func(t *testing.T, section []byte, codec uint8, count int32, compress bool) {
		fuzzMu.Lock()
		defer fuzzMu.Unlock()
		c := Codec(codec & 7)
		if compress && c <= CodecZstd {
			var err error
			if section, err = fuzzCodecs.Compress(nil, section, c); err != nil {
				t.Fatal(err)
			}
		}
		raw := buildBatchRaw(sampleHeader(), c, int(count), section)
		b, err := ParseBatch(raw)
		if err != nil || b.Kind != KindBatch {
			t.Fatalf("ParseBatch of a built batch: %s, %v", b.Kind, err)
		}
		checkBatch(t, fuzzProc, &b)
	})
}

// checkBatch runs one batch through the Processor and checks the identity
// rewrite round trip when the batch reads cleanly.
func checkBatch(t *testing.T, p *Processor, b *Batch) {
	t.Helper()
	if err := p.Reset(b); err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("untyped Reset error %v", err)
		}
		return
	}
	var before []wantRecord
	for p.Next() {
		before = append(before, fromRecord(p.Record()))
	}
	if err := p.Err(); err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("untyped Next error %v", err)
		}
		out, err := p.Rewrite(nil, nil)
		switch {
		case b.Control():
			// Control batches pass through whatever they hold.
			if err != nil || !bytes.Equal(out, b.Raw) {
				t.Fatalf("control batch not passed through: %v", err)
			}
		case !errors.Is(err, ErrCorrupt):
			t.Fatalf("Rewrite of a batch Next rejects: %v", err)
		}
		return
	}
	if _, err := p.HasHeader("kseal"); err != nil {
		t.Fatalf("HasHeader on a batch Next accepts: %v", err)
	}
	out, err := p.Rewrite(nil, nil)
	if err != nil {
		t.Fatalf("identity Rewrite of a readable batch: %v", err)
	}
	if b.Control() || b.NumRecords == 0 {
		// Empty batches read cleanly only when they hold no record bytes.
		if !bytes.Equal(out, b.Raw) {
			t.Fatal("control or empty batch changed")
		}
		return
	}
	q := fuzzCheckProc
	nb, err := ParseBatch(out)
	if err != nil || nb.Kind != KindBatch || len(nb.Raw) != len(out) {
		t.Fatalf("rewritten batch does not parse: %s, %v", nb.Kind, err)
	}
	if err := q.Reset(&nb); err != nil {
		t.Fatalf("rewritten batch does not load: %v", err)
	}
	i := 0
	for q.Next() {
		if i >= len(before) || !sameRecord(fromRecord(q.Record()), before[i]) {
			t.Fatalf("record %d differs after identity rewrite", i)
		}
		i++
	}
	if q.Err() != nil || i != len(before) {
		t.Fatalf("rewritten batch: %d of %d records, %v", i, len(before), q.Err())
	}
}

// TestWriteFuzzSeeds regenerates the committed seed corpus when
// KSEAL_WRITE_FUZZ_SEEDS=1; plain `go test` runs the committed seeds.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KSEAL_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set KSEAL_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	small := []kmsg.Record{
		{Key: nil, Value: []byte("v")},
		{OffsetDelta: 1, TimestampDelta64: -3, Key: []byte{}, Value: nil,
			Headers: []kmsg.Header{{Key: "kseal", Value: []byte{2}}, {Key: "n", Value: nil}}},
	}
	ctrl := sampleHeader()
	ctrl.Attributes = 0x30
	sets := map[string][]byte{
		"control":    buildBatch(t, ctrl, CodecNone, []kmsg.Record{{Key: []byte{0, 0, 0, 0}, Value: []byte{0, 0, 0, 0, 0, 1}}}),
		"legacy":     cat(legacyV0(1, nil, []byte("a")), legacyV1(2, []byte("k"), nil)),
		"empty-zstd": buildBatchRaw(sampleHeader(), CodecZstd, 0, nil),
		"partial":    buildBatch(t, sampleHeader(), CodecNone, small)[:40],
		"two-and-partial": cat(buildBatch(t, sampleHeader(), CodecNone, small), buildBatch(t, sampleHeader(), CodecLz4, small),
			buildBatch(t, sampleHeader(), CodecNone, small)[:70]),
	}
	var sections [][]byte
	for _, c := range allCodecs {
		sets["small-"+c.String()] = buildBatch(t, sampleHeader(), c, small)
		sets["sample-"+c.String()] = buildBatch(t, sampleHeader(), c, sampleRecords())
	}
	sections = append(sections, encodeRecords(small), encodeRecords(sampleRecords()))
	writeSeeds(t, "FuzzRecordSet", len(sets), func(i int) string {
		keys := slices.Sorted(maps.Keys(sets))
		return fmt.Sprintf("[]byte(%q)\n", sets[keys[i]])
	})
	type brSeed struct {
		section  []byte
		codec    Codec
		count    int32
		compress bool
	}
	var br []brSeed
	for _, c := range allCodecs {
		br = append(br, brSeed{sections[0], c, 2, true}, brSeed{sections[1], c, 5, true})
	}
	br = append(br, brSeed{sections[0], CodecNone, 2, false}, brSeed{sections[1], CodecNone, 4, false},
		brSeed{sections[0], CodecSnappy, 2, false}, brSeed{sections[0], 6, 2, true})
	writeSeeds(t, "FuzzBatchRecords", len(br), func(i int) string {
		s := br[i]
		return fmt.Sprintf("[]byte(%q)\nbyte(%q)\nint32(%d)\nbool(%v)\n", s.section, byte(s.codec), s.count, s.compress)
	})
}

func writeSeeds(t *testing.T, name string, n int, body func(int) string) {
	dir := filepath.Join("testdata", "fuzz", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		data := "go test fuzz v1\n" + body(i)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

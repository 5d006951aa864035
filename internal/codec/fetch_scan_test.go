package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kbin"
)

// scanViews lists what a scan recorded, in the form expectedViews gives.
func scanViews(s *FetchScan, version int16, body []byte) []fetchView {
	var out []fetchView
	var p FetchPartition
	for i := range s.Len() {
		s.fill(&p, i, s.Topic(i), s.TopicID(i))
		if p.Topic != s.Topic(i) || p.TopicID != s.TopicID(i) || p.Partition != s.Partition(i) || p.ErrorCode != s.ErrorCode(i) {
			panic("fill and the accessors disagree")
		}
		out = append(out, viewOf(&p))
	}
	return out
}

// fetchEdit is an edit rule applied the same way through FetchScan and
// FetchWalker.
type fetchEdit func(partition int32, errorCode int16, records []byte) (recs []byte, setRecs bool, code int16, setCode bool)

var fetchEdits = map[string]fetchEdit{
	"none": func(int32, int16, []byte) ([]byte, bool, int16, bool) { return nil, false, 0, false },
	"replace middle, fail one, null one": func(p int32, code int16, recs []byte) ([]byte, bool, int16, bool) {
		switch p {
		case 3:
			return bytes.Repeat([]byte("R"), 37+len(recs)%5), true, 0, false
		case 1:
			return []byte{}, true, 91, true
		case 5:
			return nil, true, 0, false
		}
		return nil, false, 0, false
	},
	"same error code": func(_ int32, code int16, _ []byte) ([]byte, bool, int16, bool) { return nil, false, code, true },
	"halve every record set": func(_ int32, _ int16, recs []byte) ([]byte, bool, int16, bool) {
		return recs[:len(recs)/2], true, 0, false
	},
}

// scanSplice scans body, applies edit by index and splices.
func scanSplice(s *FetchScan, body []byte, v int16, m AddressMapper, edit fetchEdit) ([]byte, bool, error) {
	if err := s.Scan(body, v, m); err != nil {
		return nil, false, err
	}
	for i := range s.Len() {
		recs, setRecs, code, setCode := edit(s.Partition(i), s.ErrorCode(i), s.Records(i))
		if setCode {
			s.SetErrorCode(i, code)
		}
		if setRecs {
			s.SetRecords(i, recs)
		}
	}
	out, changed := s.Splice(rwDst())
	return out, changed, nil
}

// walkEdit does the same through FetchWalker.
func walkEdit(w *FetchWalker, body []byte, v int16, edit fetchEdit) ([]byte, bool, error) {
	return w.Walk(rwDst(), body, v, func(p *FetchPartition) error {
		recs, setRecs, code, setCode := edit(p.Partition, p.ErrorCode, p.Records)
		if setCode {
			p.SetErrorCode(code)
		}
		if setRecs {
			p.SetRecords(recs)
		}
		return nil
	})
}

func TestFetchScanEveryVersion(t *testing.T) {
	var s FetchScan
	for v := int16(0); v <= FetchMaxVersion; v++ {
		for _, brokers := range [][]int32{nil, {1, 2, 3}} {
			if brokers != nil && v < fetchFirstFlexible {
				continue
			}
			resp := fetchFixture(v, 20)
			resp.Brokers = fetchBrokers(brokers...)
			body := resp.AppendTo(nil)
			if err := s.Scan(body, v, rwFuzzMapper); err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			if got, want := scanViews(&s, v, body), expectedViews(resp); !reflect.DeepEqual(got, want) {
				t.Fatalf("v%d: scan saw\n%+v\nwant\n%+v", v, got, want)
			}
			for name, edit := range fetchEdits {
				for _, m := range []AddressMapper{rwFuzzMapper, rwIdentity, nil} {
					w := FetchWalker{Mapper: m}
					want, wantChanged, err := walkEdit(&w, body, v, edit)
					if err != nil {
						t.Fatal(err)
					}
					got, changed, err := scanSplice(&s, body, v, m, edit)
					if err != nil || changed != wantChanged || !bytes.Equal(got, want) {
						t.Fatalf("v%d %s (%d brokers): scan+splice changed=%v err=%v\n got %x\nwant %x", v, name, len(brokers), changed, err, got, want)
					}
				}
			}
		}
	}
}

// TestFetchScanMatchesKmsg checks Scan+Splice against kmsg's encoding of
// the same edits, independently of FetchWalker.
func TestFetchScanMatchesKmsg(t *testing.T) {
	var s FetchScan
	for v := int16(0); v <= FetchMaxVersion; v++ {
		body := fetchFixture(v, 20).AppendTo(nil)
		out, changed, err := scanSplice(&s, body, v, nil, fetchEdits["replace middle, fail one, null one"])
		if err != nil || !changed {
			t.Fatalf("v%d: changed=%v err=%v", v, changed, err)
		}
		want := fetchFixture(v, 20)
		for ti := range want.Topics {
			want.Topics[ti].Partitions[1].RecordBatches = bytes.Repeat([]byte("R"), 37+(20+10*ti+1)%5)
			want.Topics[ti].Partitions[0].ErrorCode = 91
			want.Topics[ti].Partitions[0].RecordBatches = []byte{}
			want.Topics[ti].Partitions[2].RecordBatches = nil
		}
		rwCheckAppended(t, out, want.AppendTo(nil))
	}
}

func TestFetchScanErrors(t *testing.T) {
	var s FetchScan
	if err := s.Scan(nil, FetchMaxVersion+1, nil); !errors.Is(err, ErrUnknownVersion) || s.Len() != 0 {
		t.Fatalf("err=%v len=%d", err, s.Len())
	}
	for v := int16(0); v <= FetchMaxVersion; v++ {
		resp := fetchFixture(v, 3)
		if v >= 12 {
			resp.Brokers = fetchBrokers(1)
		}
		body := resp.AppendTo(nil)
		for i := 0; i < len(body); i++ {
			if err := s.Scan(body[:i], v, rwFuzzMapper); !errors.Is(err, ErrMalformed) || s.Len() != 0 {
				t.Fatalf("v%d cut at %d/%d: err=%v len=%d", v, i, len(body), err, s.Len())
			}
			if out, changed := s.Splice(rwDst()); changed || !bytes.Equal(out, rwHdr) {
				t.Fatal("a failed scan splices something")
			}
		}
		if err := s.Scan(append(bytes.Clone(body), 0), v, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("v%d trailing byte: err=%v", v, err)
		}
	}
}

func TestFetchScanAllocatesNothing(t *testing.T) {
	body := benchManyPartitionsBody()
	var s FetchScan
	repl := bytes.Repeat([]byte("d"), 100)
	dst := make([]byte, 0, 2*len(body))
	if err := s.Scan(body, 16, nil); err != nil { // sizes the storage
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(50, func() {
		// A nil mapper: a mapper is handed a copy of each broker's host
		// (mappers keep what they learn), which allocates.
		if err := s.Scan(body, 16, nil); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < s.Len(); i += 2 {
			s.SetRecords(i, repl)
		}
		out, changed := s.Splice(dst[:0])
		if !changed || &out[0] != &dst[:1][0] {
			t.Fatal("splice did not reuse dst")
		}
		s.Reset()
	}); allocs != 0 {
		t.Fatalf("%v allocs per scan and splice, want 0", allocs)
	}
}

// streamSpec is what FetchStream is specified to write for a body the scan
// accepted, given the scan's (unedited) splice: the original when the scan
// changed nothing; otherwise the body up to the top-level tagged fields,
// then the scan's rewritten tags padded to the original section's length,
// or, when they cannot fit, the original tags without the endpoints (tag
// 0), padded. ok is false when neither fits (ErrTagsNoFit).
func streamSpec(body, spliced []byte, changed bool, tagsAt int) (want []byte, ok bool) {
	if !changed {
		return body, true
	}
	r := kbin.Reader{Src: spliced[tagsAt:]}
	tags, _ := ReadTags(&r, nil)
	size := len(body) - tagsAt
	if out, ok := padTags(bytes.Clone(body[:tagsAt]), tags, size); ok {
		return out, true
	}
	kept := tags[:0]
	for _, t := range tags {
		if t.Key != 0 {
			kept = append(kept, t)
		}
	}
	return padTags(bytes.Clone(body[:tagsAt]), kept, size)
}

// checkScanStream runs the buffered scan and the stream over body and
// checks that they accept the same bodies and write what they are
// specified to.
func checkScanStream(t *testing.T, s *FetchScan, m AddressMapper, body []byte, v int16, bufSize int) {
	t.Helper()
	serr := s.Scan(body, v, m)
	got, err := forward(t, m, body, v, bufSize)
	if (err == nil) != (serr == nil) && !errors.Is(err, ErrTagsNoFit) {
		t.Fatalf("v%d: stream err = %v, scan err = %v", v, err, serr)
	}
	if serr != nil {
		return
	}
	spliced, changed := s.Splice(nil)
	want, ok := streamSpec(body, spliced, changed, s.tagsAt)
	if !ok {
		if !errors.Is(err, ErrTagsNoFit) {
			t.Fatalf("v%d: tags cannot fit, stream err = %v", v, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("v%d: stream: %v", v, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("v%d: stream wrote\n%x\nwant\n%x", v, got, want)
	}
}

// fetchStreamFuzzMapper decides by node id: dropped, a shorter name, a
// longer one.
var fetchStreamFuzzMapper = MapperFunc(func(id int32, host string, port int32) (string, int32, bool) {
	switch id % 3 {
	case 0:
		return "", 0, false
	case 1:
		return "p", port, true
	}
	return host + ".longer", port, true
})

func TestFetchScanAndStreamAgree(t *testing.T) {
	var s FetchScan
	mappers := []AddressMapper{sameLenMapper, shortMapper, longMapper, rwFuzzMapper, rwIdentity, fetchStreamFuzzMapper, nil}
	for v := int16(0); v <= FetchMaxVersion; v++ {
		for _, recordSize := range []int{0, 8, 40_000} {
			for mi, m := range mappers {
				t.Run(fmt.Sprintf("v%d/%dB/mapper %d", v, recordSize, mi), func(t *testing.T) {
					resp := fetchFixture(v, recordSize)
					if v >= fetchFirstFlexible {
						resp.Brokers = fetchBrokers(1, 2, 3)
					}
					body := resp.AppendTo(nil)
					checkScanStream(t, &s, m, body, v, 4096)
					checkScanStream(t, &s, m, body, v, 16)
				})
			}
		}
	}
}

func TestWriteFetchScanSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzFetchScan", fetchSeeds())
	rwWriteSeeds(t, "FuzzFetchScanStream", fetchSeeds())
}

// FuzzFetchScan checks Scan+Splice against FetchWalker.Walk for the same
// edits, and that a spliced body scans again with nothing left to change.
func FuzzFetchScan(f *testing.F) {
	for _, s := range fetchSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	var s, again FetchScan
	edit := fetchEdits["halve every record set"]
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (FetchMaxVersion + 1)
		w := FetchWalker{Mapper: rwFuzzMapper}
		want, wantChanged, werr := walkEdit(&w, body, v, edit)
		got, changed, err := scanSplice(&s, body, v, rwFuzzMapper, edit)
		if (err == nil) != (werr == nil) {
			t.Fatalf("scan err = %v, walk err = %v", err, werr)
		}
		if err != nil {
			return
		}
		if s.Len() > len(body)/8 {
			t.Fatalf("%d partitions in %d bytes", s.Len(), len(body))
		}
		for i := range s.Len() {
			if r := s.Records(i); r != nil && (cap(r) != len(r) || len(r) > len(body)) {
				t.Fatalf("partition %d: records of len %d cap %d", i, len(r), cap(r))
			}
		}
		if changed != wantChanged || !bytes.Equal(got, want) {
			t.Fatalf("scan+splice changed=%v, walk changed=%v\n got %x\nwant %x", changed, wantChanged, got, want)
		}
		if !changed {
			return
		}
		if err := again.Scan(got[len(rwHdr):], v, rwFuzzMapper); err != nil {
			t.Fatalf("spliced body: %v", err)
		}
		if out, changed := again.Splice(nil); changed {
			t.Fatalf("spliced body changes again: %x", out)
		}
	})
}

// FuzzFetchScanStream is the differential check of the two modes of the
// one Fetch layout: the buffered scan and the stream accept the same
// bodies, and the stream writes what streamSpec derives from the scan.
func FuzzFetchScanStream(f *testing.F) {
	for _, s := range fetchSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	var s FetchScan
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (FetchMaxVersion + 1)
		checkScanStream(t, &s, fetchStreamFuzzMapper, body, v, 16)
	})
}

func BenchmarkFetchScanSpliceManyPartitions(b *testing.B) {
	body := benchManyPartitionsBody()
	var s FetchScan
	dst := make([]byte, 0, len(body)+64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Scan(body, 16, benchMapper); err != nil {
			b.Fatal(err)
		}
		out, changed := s.Splice(dst[:0])
		if !changed {
			b.Fatal("unchanged")
		}
		dst = out
	}
}

func BenchmarkFetchScanSpliceReplaceOne(b *testing.B) {
	body := benchFetchBody()
	repl := bytes.Repeat([]byte("p"), 1<<20)
	var s FetchScan
	dst := make([]byte, 0, len(body)+64)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Scan(body, 16, nil); err != nil {
			b.Fatal(err)
		}
		for i := range s.Len() {
			if s.TopicID(i)[0] == 2 && s.Partition(i) == 1 {
				s.SetRecords(i, repl)
			}
		}
		out, changed := s.Splice(dst[:0])
		if !changed {
			b.Fatal("unchanged")
		}
		dst = out
	}
}

// TestScannedPartSize keeps scannedPart's comment (and the bound on a
// scan's storage it gives) true.
func TestScannedPartSize(t *testing.T) {
	if got := unsafe.Sizeof(scannedPart{}); got != 24 {
		t.Fatalf("scannedPart takes %d bytes: update its comment", got)
	}
	if got := unsafe.Sizeof(partEdit{}); got != 32 {
		t.Fatalf("partEdit takes %d bytes: update scannedPart's comment", got)
	}
}

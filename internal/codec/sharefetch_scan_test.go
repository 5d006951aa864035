package codec

import (
	"bytes"
	"errors"
	"testing"
)

// shareScanSplice scans body, applies edit by index and splices.
func shareScanSplice(s *ShareFetchScan, body []byte, v int16, m AddressMapper, edit fetchEdit) ([]byte, bool, error) {
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

func shareWalkEdit(w *ShareFetchWalker, body []byte, v int16, edit fetchEdit) ([]byte, bool, error) {
	return w.Walk(rwDst(), body, v, func(p *ShareFetchPartition) error {
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

func TestShareFetchScanEveryVersion(t *testing.T) {
	var s ShareFetchScan
	for v := int16(0); v <= ShareFetchMaxVersion; v++ {
		for _, endpoints := range [][]int32{nil, {1, 2, 3}} {
			resp := shareFetchFixture(v, endpoints...)
			body := resp.AppendTo(nil)
			if err := s.Scan(body, v, nil); err != nil {
				t.Fatal(err)
			}
			i := 0
			for _, tp := range resp.Topics {
				for _, p := range tp.Partitions {
					if s.TopicID(i) != tp.TopicID || s.Partition(i) != p.Partition || s.ErrorCode(i) != p.ErrorCode ||
						s.AcknowledgeErrorCode(i) != p.AcknowledgeErrorCode || !bytes.Equal(s.Records(i), p.Records) || (s.Records(i) == nil) != (p.Records == nil) {
						t.Fatalf("v%d partition %d differs", v, i)
					}
					i++
				}
			}
			if s.Len() != i {
				t.Fatalf("v%d: %d partitions, want %d", v, s.Len(), i)
			}
			for name, edit := range fetchEdits {
				for _, m := range []AddressMapper{rwFuzzMapper, rwIdentity, nil} {
					w := ShareFetchWalker{Mapper: m}
					want, wantChanged, err := shareWalkEdit(&w, body, v, edit)
					if err != nil {
						t.Fatal(err)
					}
					got, changed, err := shareScanSplice(&s, body, v, m, edit)
					if err != nil || changed != wantChanged || !bytes.Equal(got, want) {
						t.Fatalf("v%d %s: scan+splice changed=%v err=%v", v, name, changed, err)
					}
				}
			}
			// Every strict prefix is malformed.
			for cut := 0; cut < len(body); cut++ {
				if err := s.Scan(body[:cut], v, nil); !errors.Is(err, ErrMalformed) || s.Len() != 0 {
					t.Fatalf("v%d cut %d: err=%v", v, cut, err)
				}
			}
		}
	}
}

func TestWriteShareFetchScanSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzShareFetchScan", shareFetchSeeds())
}

// FuzzShareFetchScan checks Scan+Splice against ShareFetchWalker.Walk for
// the same edits, and that a spliced body scans again unchanged.
func FuzzShareFetchScan(f *testing.F) {
	for _, s := range shareFetchSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	var s, again ShareFetchScan
	edit := fetchEdits["replace middle, fail one, null one"]
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (ShareFetchMaxVersion + 1)
		w := ShareFetchWalker{Mapper: rwFuzzMapper}
		want, wantChanged, werr := shareWalkEdit(&w, body, v, edit)
		got, changed, err := shareScanSplice(&s, body, v, rwFuzzMapper, edit)
		if (err == nil) != (werr == nil) {
			t.Fatalf("scan err = %v, walk err = %v", err, werr)
		}
		if err != nil {
			return
		}
		if s.Len() > len(body)/8 {
			t.Fatalf("%d partitions in %d bytes", s.Len(), len(body))
		}
		if changed != wantChanged || !bytes.Equal(got, want) {
			t.Fatalf("scan+splice changed=%v, walk changed=%v", changed, wantChanged)
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

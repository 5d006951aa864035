package records

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestRecordsEveryCodec(t *testing.T) {
	want := sampleRecords()
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			raw := buildBatch(t, sampleHeader(), c, want)
			got := readAll(t, NewProcessor(), raw)
			if len(got) != len(want) {
				t.Fatalf("got %d records, want %d", len(got), len(want))
			}
			for i := range want {
				if w := fromKmsg(want[i]); !sameRecord(got[i], w) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], w)
				}
			}
		})
	}
}

func TestNullVersusEmpty(t *testing.T) {
	raw := buildBatch(t, sampleHeader(), CodecNone, sampleRecords())
	got := readAll(t, NewProcessor(), raw)
	checks := []struct {
		name    string
		b       []byte
		wantNil bool
	}{
		{"record 0 key null", got[0].key, true},
		{"record 1 key empty", got[1].key, false},
		{"record 1 value empty", got[1].val, false},
		{"record 2 value null", got[2].val, true},
		{"record 1 header 0 value null", got[1].hdrs[0].Value, true},
		{"record 1 header 1 value empty", got[1].hdrs[1].Value, false},
	}
	for _, c := range checks {
		if (c.b == nil) != c.wantNil {
			t.Errorf("%s: nil = %v, want %v", c.name, c.b == nil, c.wantNil)
		}
	}
}

func TestRewriteIdentityEveryCodec(t *testing.T) {
	h := sampleHeader()
	h.Attributes = 0x10 | 0x08 | 0x40 // transactional, log append time, delete horizon
	recs := sampleRecords()
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			raw := buildBatch(t, h, c, recs)
			p := NewProcessor(WithVerifyCRC(true))
			b, err := ParseBatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Reset(&b); err != nil {
				t.Fatal(err)
			}
			prefix := []byte("prefix")
			out, err := p.Rewrite(prefix, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out, []byte("prefix")) {
				t.Fatal("Rewrite did not append to dst")
			}
			out = out[len(prefix):]
			checkRewrittenHeader(t, raw, out)
			got := readAll(t, NewProcessor(WithVerifyCRC(true)), out)
			for i := range recs {
				if w := fromKmsg(recs[i]); !sameRecord(got[i], w) {
					t.Errorf("record %d after rewrite:\n got %+v\nwant %+v", i, got[i], w)
				}
			}
			// An independent consumer reads the same records.
			kr := kgoDecode(t, out)
			if len(kr) != len(recs) {
				t.Fatalf("franz-go decoded %d records, want %d", len(kr), len(recs))
			}
			for i, r := range kr {
				if r.Offset != h.FirstOffset+int64(recs[i].OffsetDelta) || !bytes.Equal(r.Value, recs[i].Value) ||
					!bytes.Equal(r.Key, recs[i].Key) || len(r.Headers) != len(recs[i].Headers) {
					t.Errorf("franz-go record %d: offset %d key %q value %q", i, r.Offset, r.Key, r.Value)
				}
				if r.ProducerID != h.ProducerID || r.ProducerEpoch != h.ProducerEpoch || !r.Attrs.IsTransactional() {
					t.Errorf("franz-go record %d: producer %d/%d transactional %v", i, r.ProducerID, r.ProducerEpoch, r.Attrs.IsTransactional())
				}
			}
		})
	}
}

// checkRewrittenHeader asserts everything but length and CRC is kept, and
// that the CRC is right.
func checkRewrittenHeader(t *testing.T, in, out []byte) {
	t.Helper()
	if len(out) < HeaderSize {
		t.Fatalf("rewritten batch is %d bytes", len(out))
	}
	keep := [][2]int{{0, offLength}, {offLeaderEpoch, offCRC}, {offAttributes, HeaderSize}}
	for _, r := range keep {
		if !bytes.Equal(in[r[0]:r[1]], out[r[0]:r[1]]) {
			t.Errorf("header bytes %d..%d changed: % x -> % x", r[0], r[1], in[r[0]:r[1]], out[r[0]:r[1]])
		}
	}
	if l := binary.BigEndian.Uint32(out[offLength:]); int(l) != len(out)-12 {
		t.Errorf("batchLength %d, want %d", l, len(out)-12)
	}
	want := crc32.Checksum(out[offAttributes:], crc32.MakeTable(crc32.Castagnoli))
	if got := binary.BigEndian.Uint32(out[offCRC:]); got != want {
		t.Errorf("CRC %08x, want %08x", got, want)
	}
}

func TestRewriteEdits(t *testing.T) {
	recs := sampleRecords()
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			raw := buildBatch(t, sampleHeader(), c, recs)
			p := NewProcessor()
			b, _ := ParseBatch(raw)
			if err := p.Reset(&b); err != nil {
				t.Fatal(err)
			}
			scratch := make([]byte, 0, 64)
			calls := 0
			out, err := p.Rewrite(nil, func(r *Record) error {
				calls++
				// Drop header "a", then mark and replace non-null values,
				// reusing one scratch buffer for every record.
				r.Headers = slices.DeleteFunc(r.Headers, func(h RecordHeader) bool { return string(h.Key) == "a" })
				if r.Value == nil {
					return nil
				}
				r.Headers = slices.Insert(r.Headers, 0, RecordHeader{Key: []byte("enc"), Value: []byte{2}})
				scratch = append(append(scratch[:0], "X:"...), r.Value...)
				r.Value = scratch
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls != len(recs) {
				t.Errorf("callback ran %d times, want %d", calls, len(recs))
			}
			got := readAll(t, NewProcessor(WithVerifyCRC(true)), out)
			for i, r := range recs {
				w := fromKmsg(r)
				w.hdrs = slices.DeleteFunc(w.hdrs, func(h RecordHeader) bool { return string(h.Key) == "a" })
				if w.val != nil {
					w.val = append([]byte("X:"), w.val...)
					w.hdrs = append([]RecordHeader{{Key: []byte("enc"), Value: []byte{2}}}, w.hdrs...)
				}
				if !sameRecord(got[i], w) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], w)
				}
			}
			if n := len(kgoDecode(t, out)); n != len(recs) {
				t.Errorf("franz-go decoded %d records", n)
			}
			if out[offAttributes+1]&7 != byte(c) {
				t.Errorf("codec changed to %d", out[offAttributes+1]&7)
			}
		})
	}
}

func TestRewriteCallbackError(t *testing.T) {
	raw := buildBatch(t, sampleHeader(), CodecZstd, sampleRecords())
	p := NewProcessor()
	b, _ := ParseBatch(raw)
	if err := p.Reset(&b); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	dst := []byte("keep")
	out, err := p.Rewrite(dst, func(r *Record) error {
		if r.OffsetDelta == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if string(out) != "keep" {
		t.Errorf("dst = %q after failed rewrite", out)
	}
	// The Processor still works after a failed rewrite.
	if _, err := p.Rewrite(nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestControlBatchUntouched(t *testing.T) {
	h := sampleHeader()
	h.Attributes = 0x10 | 0x20 // transactional control
	h.LastOffsetDelta = 0
	key := []byte{0, 0, 0, 1} // version 0, type 1 (commit)
	ctrl := []kmsg.Record{{Key: key, Value: []byte{0, 0, 0, 0, 0, 5}}}
	for _, c := range []Codec{CodecNone, CodecZstd} {
		raw := buildBatch(t, h, c, ctrl)
		p := NewProcessor()
		b, _ := ParseBatch(raw)
		if !b.Control() || !b.Transactional() {
			t.Fatalf("attributes %x: control %v transactional %v", b.Attributes, b.Control(), b.Transactional())
		}
		if err := p.Reset(&b); err != nil {
			t.Fatal(err)
		}
		out, err := p.Rewrite(nil, func(*Record) error { t.Error("callback called for a control batch"); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, raw) {
			t.Errorf("%s control batch changed by Rewrite", c)
		}
		if has, err := p.HasHeader(""); has || err != nil {
			t.Errorf("HasHeader on control batch = %v, %v", has, err)
		}
		// Its records are still readable.
		if got := readAll(t, p, raw); len(got) != 1 || !bytes.Equal(got[0].key, key) {
			t.Errorf("control records: %+v", got)
		}
	}
}

func TestHasHeader(t *testing.T) {
	withKey := sampleRecords()
	without := sampleRecords()
	without[3].Headers = without[3].Headers[:1]
	tests := []struct {
		name string
		recs []kmsg.Record
		key  string
		want bool
	}{
		{"present", withKey, "kseal", true},
		{"absent key bytes nowhere", withKey, "nope", false},
		{"key bytes only in a value", without, "kseal", false},
		{"header with null value", withKey, "h-null", true},
		{"prefix of a key is not a key", withKey, "h-", false},
	}
	for _, c := range []Codec{CodecNone, CodecLz4} {
		for _, tt := range tests {
			t.Run(c.String()+"/"+tt.name, func(t *testing.T) {
				raw := buildBatch(t, sampleHeader(), c, tt.recs)
				p := NewProcessor()
				b, _ := ParseBatch(raw)
				if err := p.Reset(&b); err != nil {
					t.Fatal(err)
				}
				got, err := p.HasHeader(tt.key)
				if err != nil || got != tt.want {
					t.Fatalf("HasHeader(%q) = %v, %v; want %v", tt.key, got, err, tt.want)
				}
				// Iteration starts over afterwards.
				n := 0
				for p.Next() {
					n++
				}
				if n != len(tt.recs) {
					t.Errorf("iterated %d records after HasHeader", n)
				}
			})
		}
	}
}

func TestEmptyBatch(t *testing.T) {
	// Compaction can leave a batch with no records; its codec bits may
	// still say compressed while its records section is empty.
	raw := buildBatchRaw(sampleHeader(), CodecZstd, 0, nil)
	p := NewProcessor()
	b, _ := ParseBatch(raw)
	if err := p.Reset(&b); err != nil {
		t.Fatal(err)
	}
	if p.Next() || p.Err() != nil {
		t.Fatalf("Next on empty batch: err %v", p.Err())
	}
	out, err := p.Rewrite(nil, nil)
	if err != nil || !bytes.Equal(out, raw) {
		t.Fatalf("Rewrite of empty batch: %v, equal %v", err, bytes.Equal(out, raw))
	}
}

func TestResetErrors(t *testing.T) {
	good := buildBatch(t, sampleHeader(), CodecNone, sampleRecords())
	mut := func(f func([]byte)) []byte { b := bytes.Clone(good); f(b); return b }
	recs := encodeRecords(sampleRecords())
	tests := []struct {
		name   string
		raw    []byte
		verify bool
		want   error
	}{
		{"crc mismatch with verify", mut(func(b []byte) { b[len(b)-1] ^= 1 }), true, ErrCRCMismatch},
		{"unknown codec", buildBatchRaw(sampleHeader(), 5, 5, recs), false, ErrUnknownCodec},
		{"count larger than bytes allow", buildBatchRaw(sampleHeader(), CodecNone, 1<<20, recs), false, ErrCorrupt},
		{"negative count", buildBatchRaw(sampleHeader(), CodecNone, -1, recs), false, ErrCorrupt},
		{"gzip garbage", buildBatchRaw(sampleHeader(), CodecGzip, 5, recs), false, ErrCorrupt},
		{"snappy garbage", buildBatchRaw(sampleHeader(), CodecSnappy, 5, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), false, ErrCorrupt},
		{"lz4 garbage", buildBatchRaw(sampleHeader(), CodecLz4, 5, recs), false, ErrCorrupt},
		{"zstd garbage", buildBatchRaw(sampleHeader(), CodecZstd, 5, recs), false, ErrCorrupt},
		{"truncated zstd", buildBatchRaw(sampleHeader(), CodecZstd, 5, kgoCompress(t, CodecZstd, recs)[:20]), false, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBatch(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			err = NewProcessor(WithVerifyCRC(tt.verify)).Reset(&b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Reset = %v, want %v", err, tt.want)
			}
		})
	}
	// Without Verify, a bad CRC is the broker's business.
	b, _ := ParseBatch(mut(func(b []byte) { b[len(b)-1] ^= 1 }))
	if err := NewProcessor().Reset(&b); err != nil {
		t.Errorf("Reset without verify = %v", err)
	}
}

func TestMalformedRecords(t *testing.T) {
	one := func(r []byte, count int) []byte { return buildBatchRaw(sampleHeader(), CodecNone, count, r) }
	rec := encodeRecords([]kmsg.Record{{Key: []byte("k"), Value: []byte("v")}})
	tests := []struct {
		name string
		raw  []byte
	}{
		{"trailing bytes after last record", one(append(bytes.Clone(rec), 0, 0, 0, 0, 0, 0, 0, 0), 1)},
		{"record length past end", one(append([]byte{0x7e}, rec[1:]...), 1)},
		{"negative record length", one(append([]byte{0x03}, rec[1:]...), 1)},
		{"key length -2", one([]byte{12, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0}, 1)},
		{"null header key", one([]byte{10, 0, 0, 0, 1, 1, 2, 1, 1, 0, 0}, 1)},
		{"header count beyond bytes", one([]byte{8, 0, 0, 0, 1, 1, 0x7e, 0, 0, 0}, 1)},
		{"fewer records than count", one(append(bytes.Clone(rec), rec...), 3)},
		{"varint too long", one([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBatch(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			p := NewProcessor()
			if err := p.Reset(&b); err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Reset = %v", err)
				}
				return
			}
			for p.Next() {
			}
			if !errors.Is(p.Err(), ErrCorrupt) {
				t.Errorf("Next err = %v, want ErrCorrupt", p.Err())
			}
			if _, err := p.Rewrite(nil, nil); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Rewrite err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestResetRejectsNonV2(t *testing.T) {
	p := NewProcessor()
	legacy := Batch{Kind: KindLegacy, BatchHeader: BatchHeader{Magic: 1}}
	if err := p.Reset(&legacy); !errors.Is(err, ErrLegacyMagic) {
		t.Errorf("legacy: %v", err)
	}
	partial := Batch{Kind: KindPartial}
	if err := p.Reset(&partial); !errors.Is(err, ErrPartial) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("partial: %v", err)
	}
	if p.Next() {
		t.Error("Next true after failed Reset")
	}
	if _, err := p.Rewrite(nil, nil); err == nil {
		t.Error("Rewrite after failed Reset succeeded")
	}
}

// TestRefusedBombLeavesNoBuffer: a batch refused for its decompressed size
// does not leave its buffer in the Processor (DecompressLimit gives back
// the buffer it was given), and Trim drops a large batch's buffers (a pooled Processor would keep them, unaccounted, until
// the connection's next batch).
func TestRefusedBombLeavesNoBuffer(t *testing.T) {
	const limit = 2 * retainLimit
	p := NewProcessor(WithMaxDecompressed(limit))
	defer p.Close()
	load := func(value int) error {
		recs := sampleRecords()[:1]
		recs[0].Value = make([]byte, value)
		raw := buildBatch(t, sampleHeader(), CodecGzip, recs)
		b, _ := ParseBatch(raw)
		return p.Reset(&b)
	}
	if err := load(limit + 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Reset = %v, want ErrTooLarge", err)
	}
	if cap(p.dec) > retainLimit {
		t.Errorf("a refused batch left a %d MiB buffer behind", cap(p.dec)>>20)
	}
	if err := load(retainLimit + 1); err != nil {
		t.Fatal(err)
	}
	p.Trim()
	if cap(p.dec) > retainLimit || p.Next() || p.Records() != nil {
		t.Errorf("after Trim: %d MiB buffer kept, batch still loaded %v", cap(p.dec)>>20, p.Records() != nil)
	}
	if err := load(1000); err != nil {
		t.Fatal(err)
	}
	p.Trim()
	if p.Records() == nil {
		t.Error("Trim unloaded a batch whose buffers it keeps")
	}
}

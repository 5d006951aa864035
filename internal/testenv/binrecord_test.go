package testenv

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
)

// The line format carries null, empty and binary bytes and repeated
// headers without loss.
func TestBinLineRoundTrip(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	recs := []BinRecord{
		{Partition: -1},
		{Partition: 2, Key: []byte{}, Value: []byte{}, Headers: []BinHeader{{Key: "a", Value: []byte{}}}},
		{Partition: 0, Key: all, Value: []byte("v\t\n,="), Headers: []BinHeader{{Key: "dup", Value: []byte("x")}, {Key: "n"}, {Key: "dup", Value: all}, {Key: ""}}},
	}
	in := binProduceInput(recs)
	// A consumer's line is the producer's with the offset after the
	// partition.
	var out string
	for i, line := range strings.Split(strings.TrimSuffix(in, "\n"), "\n") {
		_, rest, _ := strings.Cut(line, "\t")
		out += "7\t" + strconv.Itoa(i) + "\t" + rest + "\n"
	}
	got := parseBinRecords(t, "test", "t", []byte(out))
	if len(got) != len(recs) {
		t.Fatalf("got %d records", len(got))
	}
	for i := range recs {
		if got[i].Content() != recs[i].Content() || got[i].Offset != int64(i) || got[i].Partition != 7 {
			t.Errorf("record %d: %v, want %v", i, got[i], recs[i])
		}
	}
	if (BinRecord{Key: []byte{}}).Content() == (BinRecord{}).Content() {
		t.Error("Content does not tell an empty key from a null one")
	}
}

// SegmentBatch.Parse reads records as Kafka writes them: null and empty
// keys and values apart, headers in order.
func TestSegmentBatchParse(t *testing.T) {
	var recs []byte
	rec := func(delta int64, key, value []byte, hs ...BinHeader) {
		var body []byte
		body = append(body, 0)                  // attributes
		body = binary.AppendVarint(body, 0)     // timestamp delta
		body = binary.AppendVarint(body, delta) // offset delta
		bs := func(b []byte) {
			if b == nil {
				body = binary.AppendVarint(body, -1)
				return
			}
			body = binary.AppendVarint(body, int64(len(b)))
			body = append(body, b...)
		}
		bs(key)
		bs(value)
		body = binary.AppendVarint(body, int64(len(hs)))
		for _, h := range hs {
			bs([]byte(h.Key))
			bs(h.Value)
		}
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	rec(0, nil, []byte("v"))
	rec(1, []byte{}, nil, BinHeader{Key: "a"}, BinHeader{Key: "a", Value: []byte{}})
	seg := batch(t, 10, 0, -1, 2, recs)
	bs, err := ParseSegment(seg)
	if err != nil || len(bs) != 1 {
		t.Fatalf("ParseSegment: %d batches, %v", len(bs), err)
	}
	got, err := bs[0].Parse()
	if err != nil || len(got) != 2 {
		t.Fatalf("Parse: %d records, %v", len(got), err)
	}
	a := BinRecord{Offset: got[0].Offset, Key: got[0].Key, Value: got[0].Value, Headers: got[0].Headers}
	b := BinRecord{Offset: got[1].Offset, Key: got[1].Key, Value: got[1].Value, Headers: got[1].Headers}
	if a.Offset != 10 || a.Content() != (BinRecord{Value: []byte("v")}).Content() {
		t.Errorf("record 0: %v", a)
	}
	if b.Offset != 11 || b.Content() != (BinRecord{Key: []byte{}, Headers: []BinHeader{{Key: "a"}, {Key: "a", Value: []byte{}}}}).Content() {
		t.Errorf("record 1: %v", b)
	}
	seg = batch(t, 10, 0, -1, 3, recs) // claims a record more than it holds
	bs, _ = ParseSegment(seg)
	if _, err := bs[0].Parse(); err == nil {
		t.Error("a batch with a missing record parsed")
	}
}

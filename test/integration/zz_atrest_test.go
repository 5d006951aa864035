//go:build integration

package integration

// This file sorts last so that TestZZAtRest runs after every other
// sequential test of the package (go test runs top-level tests in source
// order, files by name). Parallel tests resume only after all sequential
// ones, so TestMain should also call atRestSweep after m.Run.

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestAtRestScanner: the scanner finds a canary in raw segment bytes and
// inside a gzip batch, names the topic, and finds nothing in a clean file.
// Without this the at-rest check could pass by finding nothing ever.
func TestAtRestScanner(t *testing.T) {
	dir := t.TempDir()
	batch := func(records []byte, codec uint16) []byte {
		b := make([]byte, 61, 61+len(records))
		binary.BigEndian.PutUint32(b[8:12], uint32(61-12+len(records)))
		b[16] = 2 // magic
		binary.BigEndian.PutUint16(b[21:23], codec)
		binary.BigEndian.PutUint32(b[57:61], 1)
		return append(b, records...)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("xx" + canaryPrefix + "-zipped-1|rest"))
	zw.Close()
	write := func(part string, data []byte) {
		if err := os.MkdirAll(filepath.Join(dir, part), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, part, "00000000000000000000.log"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("enc-topic-0", batch([]byte("value "+canaryPrefix+"-raw-7|p=1"), 0))
	write("zip-topic-3", batch(gz.Bytes(), 1))
	write("other-topic-0.0123abcd-delete", batch([]byte("custom-needle-42 here"), 0))
	write("clean-topic-0", batch([]byte("nothing to see"), 0))

	hits, st, err := scanAtRest([]string{dir}, []string{"custom-needle-42"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]atRestHit{}
	for _, h := range hits {
		got[h.Canary] = h
	}
	want := map[string]atRestHit{
		canaryPrefix + "-raw-7":    {Topic: "enc-topic"},
		canaryPrefix + "-zipped-1": {Topic: "zip-topic", Compressed: true},
		"custom-needle-42":         {Topic: "other-topic"},
	}
	if len(hits) != len(want) || st.Segments != 4 {
		t.Errorf("scan found %v in %d segments, want %d hits in 4", hits, st.Segments, len(want))
	}
	for c, w := range want {
		h, ok := got[c]
		if !ok || h.Topic != w.Topic || h.Compressed != w.Compressed {
			t.Errorf("canary %q: got %+v (found %v), want topic %s compressed %v", c, h, ok, w.Topic, w.Compressed)
		}
	}
	for _, h := range hits {
		if h.Topic == "clean-topic" {
			t.Errorf("the clean segment was reported: %v", h)
		}
	}
}

// TestZZAtRest: no plaintext canary of an encrypted topic is in any log
// segment on any broker after the tests that ran before it.
func TestZZAtRest(t *testing.T) {
	extra, topics := registeredCanaries()
	st, err := atRestSweep(cluster)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("no canary in %d segments (%s): prefix %s, %d other registered canaries, %d encrypted topics registered",
		st.Segments, mib(st.Bytes), canaryPrefix, len(extra), len(topics))
}

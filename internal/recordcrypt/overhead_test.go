package recordcrypt

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strings"
	"testing"
)

// The overhead table in docs/format.md is measured here; the test fails when
// the document and the measurement disagree. Print the table with:
//
//	go test ./internal/recordcrypt -run TestOverheadTable -print-overhead
var printOverhead = flag.Bool("print-overhead", false, "print the overhead table of docs/format.md")

// encodeRecord encodes one Kafka v2 record with zero offset and timestamp
// deltas: length, attributes, deltas, key, value, headers (zig-zag varints,
// -1 for null).
func encodeRecord(key, value []byte, headers [][2][]byte) []byte {
	appendBytes := func(b, v []byte) []byte {
		if v == nil {
			return binary.AppendVarint(b, -1)
		}
		return append(binary.AppendVarint(b, int64(len(v))), v...)
	}
	body := []byte{0}                   // attributes
	body = binary.AppendVarint(body, 0) // timestamp delta
	body = binary.AppendVarint(body, 0) // offset delta
	body = appendBytes(body, key)
	body = appendBytes(body, value)
	body = binary.AppendVarint(body, int64(len(headers)))
	for _, h := range headers {
		body = appendBytes(body, h[0])
		body = appendBytes(body, h[1])
	}
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

var markerHeader = [][2][]byte{{[]byte(HeaderKey), {Version1}}}

type overheadScenario struct {
	name         string
	edekLen      int
	kroxylicious string
}

var overheadScenarios = []overheadScenario{
	{"local KMS (`KEK-orders` v1, docs/local-kms.md)", 53, "~112 B (in-memory KMS)"},
	// The provider's binary EDEK: format, name, version, Transit's 60 bytes
	// (docs/kms-vault.md).
	{"Vault Transit (`KEK-orders` v1, docs/kms-vault.md)", 1 + 1 + 10 + 1 + 60, "~160 B"},
	// Key id reference (17 B) + a 184 B CiphertextBlob (docs/kms-aws.md).
	{"AWS KMS (17 B key reference + 184 B CiphertextBlob, docs/kms-aws.md)", 17 + 184, "~285 B"},
}

// Under the default cap of 5,000,000 encryptions the largest counter is
// 4,999,999, a 4-byte varint.
const worstDefaultCounter = 4_999_999

// recordOverhead is how many bytes encryption adds to one stored record:
// the marker header plus the envelope, with every length varint that grows.
func recordOverhead(t *testing.T, edekLen, valueLen int, counter uint64) int {
	t.Helper()
	k := randomKey(t, edekLen)
	k.next.Store(counter)
	value := make([]byte, valueLen)
	sealed := mustSeal(t, k, Binding{Topic: "orders"}, value)
	return len(encodeRecord(nil, sealed, markerHeader)) - len(encodeRecord(nil, value, nil))
}

// gzipOverhead is the per-record cost after compression, for a batch of n
// records of valueLen random (incompressible) bytes under one DEK: the EDEK
// repeats in every record, and compression removes most of that repetition.
func gzipOverhead(t *testing.T, edekLen, n, valueLen int) int {
	t.Helper()
	k := randomKey(t, edekLen)
	rng := mrand.New(mrand.NewChaCha8([32]byte{1}))
	var plain, enc []byte
	for range n {
		value := make([]byte, valueLen)
		for i := range value {
			value[i] = byte(rng.Uint32())
		}
		plain = append(plain, encodeRecord(nil, value, nil)...)
		enc = append(enc, encodeRecord(nil, mustSeal(t, k, Binding{Topic: "orders"}, value), markerHeader)...)
	}
	gz := func(b []byte) int {
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		w.Write(b)
		w.Close()
		return buf.Len()
	}
	return (gz(enc) - gz(plain) + n/2) / n
}

func overheadTable(t *testing.T) string {
	var sb strings.Builder
	sb.WriteString("| Scenario | EDEK | Value grows by (counter 0 … 4,999,999) | 1 B value becomes | Kroxylicious: 1 B value becomes | Record grows by (1 B value, header, varints) | Per record after gzip (batch of 100 × 100 B) |\n")
	sb.WriteString("|---|---|---|---|---|---|---|\n")
	for _, s := range overheadScenarios {
		worst := Overhead(s.edekLen, worstDefaultCounter)
		fmt.Fprintf(&sb, "| %s | %d B | %d … %d B | %d B | %s | %d B | %d B |\n",
			s.name, s.edekLen, Overhead(s.edekLen, 0), worst, 1+worst, s.kroxylicious,
			recordOverhead(t, s.edekLen, 1, worstDefaultCounter), gzipOverhead(t, s.edekLen, 100, 100))
	}
	return sb.String()
}

func TestOverheadTable(t *testing.T) {
	table := overheadTable(t)
	if *printOverhead {
		fmt.Print(table)
	}
	doc, err := os.ReadFile(formatDoc)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- overhead-table:begin -->\n", "<!-- overhead-table:end -->"
	_, rest, ok := strings.Cut(string(doc), begin)
	section, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("%s has no %q ... %q section", formatDoc, begin, end)
	}
	if section != table {
		t.Fatalf("the overhead table in %s is stale; measured:\n%s", formatDoc, table)
	}
}

// The record overhead must stay as the spec states it: the envelope plus an
// 8-byte marker header, plus at most two grown length varints.
func TestRecordOverheadBreakdown(t *testing.T) {
	for _, edekLen := range []int{1, 70, 184} {
		for _, valueLen := range []int{0, 1, 100, 1024, 70000} {
			got := recordOverhead(t, edekLen, valueLen, worstDefaultCounter)
			env := Overhead(edekLen, worstDefaultCounter)
			const header = 1 + len(HeaderKey) + 1 + 1
			if got < env+header || got > env+header+2 {
				t.Errorf("EDEK %d B, value %d B: record grows by %d, want %d..%d", edekLen, valueLen, got, env+header, env+header+2)
			}
		}
	}
}

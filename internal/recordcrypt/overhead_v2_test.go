package recordcrypt

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/kseal/kseal/internal/records"
)

// The version 2 overhead table in docs/format.md ("Version 2", "Per-record
// overhead") is measured here; print it with -print-overhead.

// overheadV2 is how many bytes one stored record grows by when sealed with
// parts (version 2) or Seal and a version 1 marker (parts 0), against the
// same record in plaintext.
func overheadV2(t *testing.T, edekLen int, parts Parts, key, value []byte, headers []records.RecordHeader) int {
	t.Helper()
	k := randomKey(t, edekLen)
	k.next.Store(worstDefaultCounter)
	enc := func(r *records.Record) []byte {
		var hs [][2][]byte
		for _, h := range r.Headers {
			hs = append(hs, [2][]byte{h.Key, h.Value})
		}
		return encodeRecord(r.Key, r.Value, hs)
	}
	orig := &records.Record{Key: key, Value: value, Headers: headers}
	r := cloneRecord(orig)
	if parts == 0 {
		r.Value = mustSeal(t, k, Binding{Topic: "orders", Key: key}, value)
		r.Headers = append(r.Headers, records.RecordHeader{Key: []byte(HeaderKey), Value: []byte{Version1}})
	} else {
		var s Sealer
		if _, err := s.SealV2(k, testDetKey(t, 1), "orders", parts, nil, r); err != nil {
			t.Fatal(err)
		}
	}
	return len(enc(r)) - len(enc(orig))
}

func overheadV2Table(t *testing.T) string {
	key := []byte("customer-0000042") // 16 B
	value := make([]byte, 100)
	three := hdrs("trace-id", "0af7651916cd43dd", "content-type", "application/json", "tenant", "acme")
	wire := len(encodeRecord(nil, nil, [][2][]byte{{three[0].Key, three[0].Value}, {three[1].Key, three[1].Value}, {three[2].Key, three[2].Value}})) -
		len(encodeRecord(nil, nil, nil))
	var sb strings.Builder
	fmt.Fprintf(&sb, "| Record (16 B key, 100 B value, 3 headers: %d B on the wire) | Encrypted parts | Record grows by (Vault EDEK, 73 B) | … with an AWS EDEK (201 B) |\n", wire)
	sb.WriteString("|---|---|---|---|\n")
	for _, c := range []struct {
		name  string
		parts Parts
		value []byte
	}{
		{"version 1", 0, value},
		{"version 2", PartValue, value},
		{"version 2", PartValue | PartKey, value},
		{"version 2", PartValue | PartHeaders, value},
		{"version 2", PartValue | PartKey | PartHeaders, value},
		{"version 2", PartKey, value},
		{"version 2", PartHeaders, value},
		{"version 2, tombstone", PartKey | PartHeaders, nil},
	} {
		parts := "value"
		if c.parts != 0 {
			parts = c.parts.String()
		}
		fmt.Fprintf(&sb, "| %s | %s | %d B | %d B |\n", c.name, parts,
			overheadV2(t, 73, c.parts, key, c.value, three), overheadV2(t, 201, c.parts, key, c.value, three))
	}
	return sb.String()
}

func TestOverheadTableV2(t *testing.T) {
	table := overheadV2Table(t)
	if *printOverhead {
		fmt.Print(table)
	}
	doc, err := os.ReadFile(formatDoc)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- overhead-v2-table:begin -->\n", "<!-- overhead-v2-table:end -->"
	_, rest, ok := strings.Cut(string(doc), begin)
	section, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("%s has no %q ... %q section", formatDoc, begin, end)
	}
	if section != table {
		t.Fatalf("the version 2 overhead table in %s is stale; measured:\n%s", formatDoc, table)
	}
}

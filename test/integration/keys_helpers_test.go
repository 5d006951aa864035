//go:build integration

package integration

// Helpers of the format v2 proofs (issue #14: record keys and headers
// encrypted, compaction kept working), in keys_test.go. Every name starts
// with v2 so it cannot collide with the other integration tests' helpers.
//
// The stored records are read here with a parser of the v2 layout written
// from docs/format.md ("Version 2") and V2.md, independently of
// internal/recordcrypt: the tests check what reaches the brokers against
// the specification, not against the code that wrote it.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// The parts bits of a v2 marker.
const (
	v2PartValue   = 1 << 0
	v2PartKey     = 1 << 1
	v2PartHeaders = 1 << 2
)

// v2SealedKeyOverhead is what deterministic sealing adds to a record key:
// version byte, 8-byte key id, 16-byte SIV.
const v2SealedKeyOverhead = 1 + 8 + 16

// v2Env is a local KMS and the kseal configuration the v2 tests share: a
// rule encrypting every topic named it-v2-* under KEK-<topic>, and a key
// topic of the test's own (so that no test reads another's deterministic
// keys).
type v2Env struct {
	k        *e2eLocalKMS
	keyTopic string
}

const v2TopicPrefix = "it-v2-"

func newV2Env(t *testing.T) *v2Env {
	t.Helper()
	return &v2Env{k: newE2ELocalKMS(t), keyTopic: uniq("it-kseal-keys")}
}

// topic names a topic the rule encrypts and creates its KEK (not the
// topic: the caller does, with the partitions and configs it needs). KEKs
// are best made before kseal starts (it then loads them at once).
func (e *v2Env) topic(t *testing.T, prefix string) string {
	t.Helper()
	name := uniq(v2TopicPrefix + prefix)
	e.k.create(t, "KEK-"+name)
	return name
}

// section renders the encryption section. writeVersion 0 leaves out
// `format` and `keyTopic` (a configuration from before format v2);
// encrypt is the rule's `encrypt` flow map ("" leaves it out); dek is the
// `dek` flow map ("" for the defaults).
func (e *v2Env) section(writeVersion int, encrypt, dek string) string {
	var b strings.Builder
	b.WriteString("    encryption:\n" + e.k.section())
	if writeVersion > 0 {
		fmt.Fprintf(&b, "      format: {writeVersion: %d}\n", writeVersion)
		fmt.Fprintf(&b, "      keyTopic: {name: %s}\n", e.keyTopic)
	}
	b.WriteString("      policy:\n        rules:\n")
	fmt.Fprintf(&b, "          - topicPrefix: '%s'\n            kek: 'KEK-$(topicName)'\n", v2TopicPrefix)
	if encrypt != "" {
		fmt.Fprintf(&b, "            encrypt: %s\n", encrypt)
	}
	b.WriteString("        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\n")
	if dek != "" {
		fmt.Fprintf(&b, "      dek: %s\n", dek)
	}
	return b.String()
}

// start runs a kseal with this section in front of the shared cluster.
func (e *v2Env) start(t *testing.T, writeVersion int, encrypt, dek string) *e2eProxy {
	t.Helper()
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	return e2eStartKseal(t, testenv.KsealConfig(cluster.Bootstrap, gw, e.section(writeVersion, encrypt, dek)))
}

// v2Stored is what a stored v2 record shows: its parts, the EDEK of its
// envelope (nil without one), the key id of its sealed key (nil without
// one), and its headers other than the marker, in order.
type v2Stored struct {
	Parts        byte
	EDEK         []byte
	KeyID        []byte
	ClearHeaders []testenv.BinHeader
}

// v2Inspect reads a stored record as format v2: exactly one kseal header
// (the marker) whose value is 0x02, a parts byte with only the three
// defined bits (not 0), and the envelope where the parts say it is; a
// sealed key when the KEY bit is set.
func v2Inspect(r testenv.BinRecord) (v2Stored, error) {
	var s v2Stored
	var marker []byte
	markers := 0
	for _, h := range r.Headers {
		if h.Key == "kseal" {
			marker = h.Value
			markers++
			continue
		}
		s.ClearHeaders = append(s.ClearHeaders, h)
	}
	if markers != 1 {
		return s, fmt.Errorf("%d kseal headers, want 1", markers)
	}
	if len(marker) < 2 || marker[0] != 0x02 {
		return s, fmt.Errorf("marker %x: want 0x02 and a parts byte", marker)
	}
	s.Parts = marker[1]
	if s.Parts == 0 || s.Parts&^(v2PartValue|v2PartKey|v2PartHeaders) != 0 {
		return s, fmt.Errorf("marker %x: bad parts byte", marker)
	}
	var env []byte
	switch {
	case s.Parts&v2PartValue != 0:
		if r.Value == nil || len(marker) != 2 {
			return s, fmt.Errorf("VALUE set but value null or marker %x longer than 2 bytes", marker)
		}
		env = r.Value
	case s.Parts&v2PartHeaders != 0:
		env = marker[2:]
	default:
		if len(marker) != 2 {
			return s, fmt.Errorf("key-only marker %x longer than 2 bytes", marker)
		}
	}
	if env != nil {
		// 0x02 | flags | uvarint EDEK length | EDEK | uvarint counter | ciphertext | tag
		if len(env) < 3 || env[0] != 0x02 || env[1] != 0 {
			return s, fmt.Errorf("envelope %.8x...: want version 2, flags 0", env)
		}
		n, w := binary.Uvarint(env[2:])
		if w <= 0 || n == 0 || n > 4096 || uint64(len(env)-2-w) < n+16 {
			return s, fmt.Errorf("envelope: bad EDEK length")
		}
		s.EDEK = env[2+w : 2+w+int(n)]
	}
	if s.Parts&v2PartKey != 0 {
		if len(r.Key) < v2SealedKeyOverhead || r.Key[0] != 0x02 {
			return s, fmt.Errorf("KEY set but key %x is no sealed key", r.Key)
		}
		s.KeyID = r.Key[1:9]
	}
	return s, nil
}

// v2CheckKey checks that stored is plain sealed: null stays null; anything
// else, even empty, is 25 bytes longer, starts with the version, and does
// not hold the plaintext.
func v2CheckKey(stored, plain []byte, parts byte) error {
	if plain == nil {
		if stored != nil || parts&v2PartKey != 0 {
			return fmt.Errorf("null key stored as %x with parts %b, want null and no KEY bit", stored, parts)
		}
		return nil
	}
	switch {
	case parts&v2PartKey == 0:
		return fmt.Errorf("key %q stored without the KEY bit (parts %b)", plain, parts)
	case len(stored) != len(plain)+v2SealedKeyOverhead:
		return fmt.Errorf("key %q (%d bytes) stored in %d bytes, want %d", plain, len(plain), len(stored), len(plain)+v2SealedKeyOverhead)
	case len(plain) >= 6 && bytes.Contains(stored, plain):
		return fmt.Errorf("stored key holds the plaintext key %q", plain)
	}
	return nil
}

// v2Raw reads n records of topic straight from the brokers.
func v2Raw(t *testing.T, n int, topic string) []testenv.BinRecord {
	t.Helper()
	return v2Bin(e2eRaw(t, n, topic))
}

func v2Bin(rs []*kgo.Record) []testenv.BinRecord {
	out := make([]testenv.BinRecord, len(rs))
	for i, r := range rs {
		out[i] = testenv.BinFromKgo(r)
	}
	return out
}

// v2Pos is a record's position.
func v2Pos(r testenv.BinRecord) string {
	return fmt.Sprintf("%s[%d]@%d", r.Topic, r.Partition, r.Offset)
}

// v2AssertSame checks that got holds exactly want's records, byte for byte
// (key, value, headers with null and empty apart), as a multiset; when
// byPos, also each at the position want says.
func v2AssertSame(t *testing.T, who string, got, want []testenv.BinRecord, byPos bool) {
	t.Helper()
	if byPos {
		at := map[string]string{}
		for _, r := range want {
			at[fmt.Sprintf("%d@%d", r.Partition, r.Offset)] = r.Content()
		}
		for _, r := range got {
			pos := fmt.Sprintf("%d@%d", r.Partition, r.Offset)
			if w, ok := at[pos]; !ok {
				t.Errorf("%s: a record at %s, where none was produced: %s", who, pos, r.Content())
			} else if w != r.Content() {
				t.Errorf("%s: record at %s differs:\n got  %s\n want %s", who, pos, r.Content(), w)
			}
		}
	}
	count := func(rs []testenv.BinRecord) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Content())
		}
		sort.Strings(out)
		return out
	}
	g, w := count(got), count(want)
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		missing, extra := v2Diff(w, g), v2Diff(g, w)
		t.Errorf("%s: %d records, want %d\n missing: %q\n unexpected: %q", who, len(got), len(want), missing, extra)
	}
}

// v2Diff is a minus b, as sorted multisets.
func v2Diff(a, b []string) []string {
	left := map[string]int{}
	for _, s := range b {
		left[s]++
	}
	var out []string
	for _, s := range a {
		if left[s] > 0 {
			left[s]--
			continue
		}
		out = append(out, s)
	}
	return out
}

// v2Partition is the partition Kafka's default partitioner (murmur2 of the
// key, made positive, modulo the partition count; the Java client's and
// franz-go's) picks for a keyed record.
func v2Partition(topic string, key []byte, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: key}, n))
}

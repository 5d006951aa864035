package tools

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// fixedKey seals with a constant DEK and a local-KMS-shaped EDEK.
type fixedKey struct {
	aead cipher.AEAD
	edek []byte
	n    uint64
}

func (k *fixedKey) AEAD() cipher.AEAD { return k.aead }
func (k *fixedKey) EDEK() []byte      { return k.edek }
func (k *fixedKey) Next() (uint64, error) {
	k.n++
	return k.n - 1, nil
}

// localEDEK builds an EDEK in the local KMS layout (docs/local-kms.md) for
// kek at version, with stand-in wrapped bytes.
func localEDEK(kek string, version uint64) []byte {
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(len(kek)))
	b = append(b, kek...)
	b = binary.AppendUvarint(b, version)
	return append(b, make([]byte, 40)...)
}

func sealed(t testing.TB, edek []byte, value string) []byte {
	t.Helper()
	block, _ := aes.NewCipher(make([]byte, 32))
	aead, _ := cipher.NewGCM(block)
	v, err := recordcrypt.Seal(nil, &fixedKey{aead: aead, edek: edek}, recordcrypt.Binding{Topic: "t", Key: []byte("k")}, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func marker(v byte) kgo.RecordHeader {
	return kgo.RecordHeader{Key: recordcrypt.HeaderKey, Value: []byte{v}}
}

func TestClassify(t *testing.T) {
	describe, _ := kms.LookupDescriber("local")
	env := sealed(t, localEDEK("KEK-a", 7), "hello")
	foreign := sealed(t, []byte("some other provider's EDEK"), "hi")
	tests := []struct {
		name    string
		rec     kgo.Record
		state   State
		kek     string
		problem string
	}{
		{"plaintext", kgo.Record{Key: []byte("k"), Value: []byte("v")}, Plaintext, "", ""},
		{"plaintext empty value", kgo.Record{Value: []byte{}}, Plaintext, "", ""},
		{"tombstone", kgo.Record{Key: []byte("k")}, Tombstone, "", ""},
		{"encrypted", kgo.Record{Key: []byte("k"), Value: env, Headers: []kgo.RecordHeader{{Key: "h"}, marker(1)}}, Encrypted, "KEK-a v7", ""},
		{"encrypted, EDEK unknown to the describer", kgo.Record{Value: foreign, Headers: []kgo.RecordHeader{marker(1)}}, Encrypted, "", ""},
		{"marker on a null value", kgo.Record{Headers: []kgo.RecordHeader{marker(1)}}, Malformed, "", "null value"},
		{"two markers", kgo.Record{Value: env, Headers: []kgo.RecordHeader{marker(1), marker(1)}}, Malformed, "", "2 \"kseal\" headers"},
		{"marker disagrees", kgo.Record{Value: env, Headers: []kgo.RecordHeader{marker(3)}}, Malformed, "", "unsupported"},
		{"not an envelope", kgo.Record{Value: []byte("plain text"), Headers: []kgo.RecordHeader{marker(1)}}, Malformed, "", "unsupported"},
		{"truncated envelope", kgo.Record{Value: env[:20], Headers: []kgo.RecordHeader{marker(1)}}, Malformed, "", "malformed"},
	}
	c := NewClassifier(describe)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Classify(&tt.rec)
			if got.State != tt.state || !strings.Contains(got.Problem, tt.problem) || (tt.problem == "") != (got.Problem == "") {
				t.Fatalf("state %s problem %q, want %s %q", got.State, got.Problem, tt.state, tt.problem)
			}
			if (got.Envelope != nil) != (tt.state == Encrypted) {
				t.Fatalf("envelope %+v on a %s record", got.Envelope, got.State)
			}
			if e := got.Envelope; e != nil {
				if e.KEKLabel() != tt.kek || e.Format != 1 || !e.KeyBound || len(e.DEK) != 16 || e.PlaintextSize != len(tt.rec.Value)-recordcrypt.Overhead(e.EDEKSize, e.Counter) {
					t.Fatalf("envelope %+v (KEK %q, want %q)", e, e.KEKLabel(), tt.kek)
				}
			}
			if got.ValueSize != size(tt.rec.Value) || got.KeySize != size(tt.rec.Key) || got.Headers != len(tt.rec.Headers) {
				t.Fatalf("sizes %+v", got)
			}
		})
	}
}

// FuzzClassify: any value and marker byte is classified without panicking,
// and a record reported encrypted parses as an envelope.
func FuzzClassify(f *testing.F) {
	f.Add(sealed(f, localEDEK("KEK-a", 1), "v"), byte(1), true)
	f.Add([]byte("plain"), byte(1), false)
	f.Add([]byte{1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, byte(1), true)
	describe, _ := kms.LookupDescriber("local")
	c := NewClassifier(describe)
	f.Fuzz(func(t *testing.T, value []byte, markerByte byte, withMarker bool) {
		r := &kgo.Record{Value: value}
		if withMarker {
			r.Headers = []kgo.RecordHeader{marker(markerByte)}
		}
		info := c.Classify(r)
		if info.State == Encrypted {
			if _, err := recordcrypt.Parse(value); err != nil || !withMarker {
				t.Fatalf("classified encrypted: parse %v, marker %v", err, withMarker)
			}
		}
	})
}

// The seed corpus files in testdata/fuzz/FuzzClassify run in plain go test.
func TestFuzzSeedsPresent(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzClassify"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
}

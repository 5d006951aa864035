package recordcrypt

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The test vectors live in docs/format.md, in ```kseal-vector blocks, so the
// spec and the code cannot drift apart. Print fresh ones (after a deliberate
// format change, with a new version) with:
//
//	go test ./internal/recordcrypt -run TestPrintVectors -print-vectors
var printVectors = flag.Bool("print-vectors", false, "print the test vectors of docs/format.md")

const formatDoc = "../../docs/format.md"

type vector struct {
	name      string
	dek       []byte
	edek      []byte
	counter   uint64
	topic     string
	recordKey []byte // nil: null key
	bindKey   bool
	plaintext []byte
	nonce     []byte
	aad       []byte
	sealed    []byte
}

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

// vectorInputs are the inputs of the published vectors.
func vectorInputs() []vector {
	dek := seq(0x00, 32)
	return []vector{
		{name: "basic", dek: dek, edek: seq(0x80, 70), counter: 0, topic: "orders",
			recordKey: []byte("order-42"), bindKey: true, plaintext: []byte("hello, kseal")},
		{name: "null key, empty value, two-byte counter", dek: dek, edek: seq(0x80, 70), counter: 300,
			topic: "orders", recordKey: nil, bindKey: true, plaintext: []byte{}},
		{name: "key not bound, empty key", dek: dek, edek: seq(0x80, 70), counter: 4_999_999,
			topic: "payments", recordKey: []byte{}, bindKey: false, plaintext: []byte(`{"amount":100}`)},
		{name: "AWS-sized EDEK, binary key", dek: seq(0x20, 32), edek: seq(0x00, 184), counter: 127,
			topic: "t", recordKey: []byte{0x00, 0xff}, bindKey: true, plaintext: []byte("xyz")},
	}
}

// specSeal is specCompute's sealed value, for fuzz seeds (no *testing.T).
func specSeal(v vector) []byte {
	_, _, sealed := specCompute(nil, v)
	return sealed
}

// specCompute derives nonce, AAD and sealed value from the spec text alone
// (docs/format.md), without the package's own code paths.
func specCompute(t testing.TB, v vector) (nonce, aad, sealed []byte) {
	flags := byte(0)
	if v.bindKey {
		flags = 1
	}
	prefix := []byte{0x01, flags}
	prefix = binary.AppendUvarint(prefix, uint64(len(v.edek)))
	prefix = append(prefix, v.edek...)
	prefix = binary.AppendUvarint(prefix, v.counter)

	nonce = make([]byte, 12)
	binary.BigEndian.PutUint64(nonce[4:], v.counter)

	aad = append([]byte{}, prefix...)
	aad = binary.AppendUvarint(aad, uint64(len(v.topic)))
	aad = append(aad, v.topic...)
	if v.bindKey {
		if v.recordKey == nil {
			aad = append(aad, 0x00)
		} else {
			aad = append(aad, 0x01)
			aad = binary.AppendUvarint(aad, uint64(len(v.recordKey)))
			aad = append(aad, v.recordKey...)
		}
	}
	block, err := aes.NewCipher(v.dek)
	if err != nil {
		panic(err) // fixed 32-byte keys: cannot fail
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	sealed = gcm.Seal(append([]byte{}, prefix...), nonce, v.plaintext, aad)
	return nonce, aad, sealed
}

func hexOrWord(b []byte) string {
	switch {
	case b == nil:
		return "null"
	case len(b) == 0:
		return "(empty)"
	}
	return hex.EncodeToString(b)
}

func parseHexOrWord(s string) ([]byte, error) {
	switch s {
	case "null":
		return nil, nil
	case "(empty)":
		return []byte{}, nil
	}
	return hex.DecodeString(s)
}

func TestPrintVectors(t *testing.T) {
	if !*printVectors {
		t.Skip("run with -print-vectors")
	}
	for _, v := range vectorInputs() {
		nonce, aad, sealed := specCompute(t, v)
		fmt.Printf("```kseal-vector\nname: %s\ndek: %x\nedek: %x\ncounter: %d\ntopic: %s\n"+
			"record-key: %s\nbind-key: %v\nplaintext: %s\nnonce: %x\naad: %x\nsealed: %x\n```\n\n",
			v.name, v.dek, v.edek, v.counter, v.topic, hexOrWord(v.recordKey), v.bindKey,
			hexOrWord(v.plaintext), nonce, aad, sealed)
	}
}

// readVectors parses the ```kseal-vector blocks of docs/format.md.
func readVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open(formatDoc)
	if err != nil {
		t.Fatalf("the spec must be readable from the test: %v", err)
	}
	defer f.Close()
	var out []vector
	var cur *vector
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "```kseal-vector":
			cur = &vector{}
			continue
		case cur == nil:
			continue
		case text == "```":
			out = append(out, *cur)
			cur = nil
			continue
		}
		k, val, ok := strings.Cut(text, ":")
		if !ok {
			t.Fatalf("%s:%d: no colon in %q", formatDoc, line, text)
		}
		val = strings.TrimSpace(val)
		var err error
		switch k {
		case "name":
			cur.name = val
		case "topic":
			cur.topic = val
		case "counter":
			cur.counter, err = strconv.ParseUint(val, 10, 64)
		case "bind-key":
			cur.bindKey, err = strconv.ParseBool(val)
		case "dek":
			cur.dek, err = hex.DecodeString(val)
		case "edek":
			cur.edek, err = hex.DecodeString(val)
		case "record-key":
			cur.recordKey, err = parseHexOrWord(val)
		case "plaintext":
			cur.plaintext, err = parseHexOrWord(val)
		case "nonce":
			cur.nonce, err = hex.DecodeString(val)
		case "aad":
			cur.aad, err = hex.DecodeString(val)
		case "sealed":
			cur.sealed, err = hex.DecodeString(val)
		default:
			t.Fatalf("%s:%d: unknown field %q", formatDoc, line, k)
		}
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", formatDoc, line, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s: unterminated kseal-vector block", formatDoc)
	}
	return out
}

func TestVectorsFromSpec(t *testing.T) {
	vectors := readVectors(t)
	if len(vectors) < len(vectorInputs()) {
		t.Fatalf("%s has %d vectors, want at least %d", formatDoc, len(vectors), len(vectorInputs()))
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			// The spec's construction, computed independently, gives the
			// published bytes...
			nonce, aad, sealed := specCompute(t, v)
			if !bytes.Equal(nonce, v.nonce) || !bytes.Equal(aad, v.aad) || !bytes.Equal(sealed, v.sealed) {
				t.Fatalf("spec construction disagrees with the published vector:\nnonce %x\naad %x\nsealed %x", nonce, aad, sealed)
			}
			// ...and so does the implementation.
			k := newTestKey(t, v.dek, v.edek, v.counter)
			b := Binding{Topic: v.topic, Key: v.recordKey, SkipKey: !v.bindKey}
			got, err := Seal(nil, k, b, v.plaintext)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.sealed) {
				t.Fatalf("Seal = %x\nwant    %x", got, v.sealed)
			}
			env, err := Parse(v.sealed)
			if err != nil {
				t.Fatal(err)
			}
			if env.Counter != v.counter || !bytes.Equal(env.EDEK, v.edek) || env.KeyBound() != v.bindKey {
				t.Fatalf("Parse = counter %d, EDEK %x, bound %v", env.Counter, env.EDEK, env.KeyBound())
			}
			plain, err := Open(nil, k.aead, env, b)
			if err != nil || !bytes.Equal(plain, v.plaintext) {
				t.Fatalf("Open = %x, %v", plain, err)
			}
		})
	}
}

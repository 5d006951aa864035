package detkey

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// The vectors of docs/key-topic.md ("Test vector"), computed independently
// (Python's hmac and hashlib) when they were written.
func TestVectorsFromDoc(t *testing.T) {
	dek := make([]byte, 32)
	for i := range dek {
		dek[i] = byte(i)
	}
	k, err := DeriveKey(dek, "orders")
	if err != nil {
		t.Fatal(err)
	}
	const wantKey = "3d4d585963e874e67b08a7adf2cfe9c85309f9d480e815caa6534dad7abc2e0d" +
		"2e7a9fa123312e203ccd20560f0a59e1a0888803814928baf9d5229775b1aee8"
	if hex.EncodeToString(k) != wantKey {
		t.Fatalf("key %x", k)
	}
	if id := KeyID([]byte("edek")); hex.EncodeToString(id[:]) != "9c1a0b5ff03254ad" {
		t.Fatalf("key id %x", id)
	}
	r := KeyRecord{Topic: "orders", KEK: "KEK-orders", EDEK: []byte("edek")}
	key, value := AppendKey(nil, r.Topic, r.KEK), r.AppendValue(nil)
	if hex.EncodeToString(key) != "6f7264657273004b454b2d6f7264657273" || hex.EncodeToString(value) != "010a4b454b2d6f7264657273046564656b" {
		t.Fatalf("record %x / %x", key, value)
	}
	got, err := ParseKeyRecord(key, value)
	if err != nil || got.Topic != r.Topic || got.KEK != r.KEK || !bytes.Equal(got.EDEK, r.EDEK) {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := DeriveKey(dek[:16], "orders"); err == nil {
		t.Fatal("16-byte DEK accepted")
	}
	// Another topic, another key.
	if k2, _ := DeriveKey(dek, "payments"); bytes.Equal(k, k2) {
		t.Fatal("same key for two topics")
	}
}

func TestParseKeyRecordRefuses(t *testing.T) {
	long := bytes.Repeat([]byte("k"), MaxKEKNameLen+1)
	r := KeyRecord{Topic: "t", KEK: string(long), EDEK: []byte("e")}
	if err := r.Check(); !errors.Is(err, ErrMalformed) {
		t.Fatal("long KEK name passes Check")
	}
	if _, err := ParseKeyRecord(AppendKey(nil, "t", r.KEK), r.AppendValue(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatal("long KEK name parsed")
	}
	r = KeyRecord{Topic: "t", KEK: "k", EDEK: make([]byte, MaxEDEKLen+1)}
	if _, err := ParseKeyRecord(AppendKey(nil, "t", "k"), r.AppendValue(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatal("long EDEK parsed")
	}
	bad := "k\xff"
	r = KeyRecord{Topic: "t", KEK: bad, EDEK: []byte("e")}
	if _, err := ParseKeyRecord(AppendKey(nil, "t", bad), r.AppendValue(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatal("invalid UTF-8 KEK name parsed")
	}
	for _, name := range []string{"", ".", "..", "a b", string(bytes.Repeat([]byte("a"), 250))} {
		if CheckTopicName(name) == nil {
			t.Errorf("topic name %q accepted", name)
		}
	}
	if CheckTopicName("__kseal_keys") != nil {
		t.Fatal("default key topic refused")
	}
}

// FuzzKeyRecord feeds key-topic records (hostile: they come from the
// broker) to ParseKeyRecord: it never panics, and what it accepts is
// canonical (encodes back to the same bytes) and passes Check.
func FuzzKeyRecord(f *testing.F) {
	r := KeyRecord{Topic: "orders", KEK: "KEK-orders", EDEK: []byte("edek")}
	f.Add(AppendKey(nil, r.Topic, r.KEK), r.AppendValue(nil))
	f.Add([]byte("t\x00k"), []byte{1, 1, 'k', 0x80, 0x01})
	f.Add([]byte("t\x00k"), []byte{1, 1, 'k', 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte("\x00"), []byte{1, 0, 0})
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		got, err := ParseKeyRecord(key, value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := got.Check(); err != nil {
			t.Fatalf("parsed record fails Check: %v", err)
		}
		if k := AppendKey(nil, got.Topic, got.KEK); !bytes.Equal(k, key) {
			t.Fatalf("key %q re-encodes as %q", key, k)
		}
		if v := got.AppendValue(nil); !bytes.Equal(v, value) {
			t.Fatalf("value %x re-encodes as %x", value, v)
		}
	})
}

package detkey

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestShredRecordRoundTrip(t *testing.T) {
	r := ShredRecord{KEK: "tenant-acme", KEKID: "1234-abcd", Time: time.UnixMilli(1_700_000_000_123).UTC(), Note: "GDPR ticket 42"}
	key, value := AppendShredKey(nil, r.KEK), r.AppendValue(nil)
	if !IsShredKey(key) {
		t.Fatal("not a shred key")
	}
	got, err := ParseShredRecord(key, value)
	if err != nil || got != r {
		t.Fatalf("got %+v, %v; want %+v", got, err, r)
	}
	// A shred record is never a key record, whatever kseal reads it.
	if _, err := ParseKeyRecord(key, value); err == nil {
		t.Fatal("a shred record parsed as a key record")
	}
	// Every truncation and the key of another KEK are refused.
	for i := range value {
		if _, err := ParseShredRecord(key, value[:i]); err == nil {
			t.Fatalf("truncated at %d: accepted", i)
		}
	}
	if _, err := ParseShredRecord(AppendShredKey(nil, "tenant-other"), value); err == nil {
		t.Fatal("KEK name of the key differs from the value's: accepted")
	}
	if _, err := ParseShredRecord(key, append(bytes.Clone(value), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	bad := r
	bad.Note = strings.Repeat("x", MaxShredNote+1)
	if bad.Check() == nil {
		t.Fatal("long note accepted")
	}
}

func TestShreddedReadsKeyTopic(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	now := time.Unix(1000, 0)
	s := newStore(t, &fakeKMS{}, Options{RereadInterval: time.Millisecond})
	s.opts.now = func() time.Time { return now }
	if _, err := s.ForWrite(ctx, log, "orders", kekA); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Shredded(ctx, log, "tenant-acme"); r != nil || err != nil {
		t.Fatalf("before the shred record: %v, %v", r, err)
	}
	rec := &ShredRecord{KEK: "tenant-acme", KEKID: "id-acme", Time: now, Note: "n"}
	if _, err := s.WriteShred(ctx, log, rec); err != nil {
		t.Fatal(err)
	}
	// The negative answer is remembered for RereadInterval.
	if r, _ := s.Shredded(ctx, log, "tenant-acme"); r != nil {
		t.Fatal("negative answer not remembered")
	}
	now = now.Add(time.Second)
	for _, name := range []string{"tenant-acme", "id-acme"} {
		r, err := s.Shredded(ctx, log, name)
		if err != nil || r == nil || r.KEK != "tenant-acme" {
			t.Fatalf("%s: %v, %v", name, r, err)
		}
	}
	// The key records around it are still read.
	if _, err := s.ForWrite(ctx, log, "users", kekA); err != nil {
		t.Fatal(err)
	}
	// A key topic that cannot be read is never "shredded".
	log.failReads.Store(true)
	now = now.Add(time.Second)
	if r, err := s.Shredded(ctx, log, "tenant-other"); r != nil || err == nil {
		t.Fatalf("unreadable key topic: %v, %v", r, err)
	}
}

func FuzzShredRecord(f *testing.F) {
	r := ShredRecord{KEK: "tenant-acme", KEKID: "id", Time: time.UnixMilli(5), Note: "n"}
	f.Add(AppendShredKey(nil, r.KEK), r.AppendValue(nil))
	f.Add([]byte("\x00shred\x00"), []byte{2, 0, 0, 0, 0})
	f.Add([]byte("orders\x00KEK"), []byte{1})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := ParseShredRecord(key, value)
		if err != nil {
			return
		}
		k2, v2 := AppendShredKey(nil, r.KEK), r.AppendValue(nil)
		if !bytes.Equal(k2, key) || !bytes.Equal(v2, value) {
			t.Fatalf("not canonical: %x %x -> %+v -> %x %x", key, value, r, k2, v2)
		}
		s := newStore(t, &fakeKMS{}, Options{})
		s.index(0, key, value)
		if got, _, _ := s.lookupShred(r.KEK); got == nil {
			t.Fatal("valid shred record not indexed")
		}
	})
}

package detkey

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/dek"
)

func TestFirstOffsetRecordRoundTrip(t *testing.T) {
	r := FirstOffsetRecord{Topic: "orders", Partition: 7, Offset: 1234}
	key, value := r.AppendKey(nil), r.AppendValue(nil)
	if want := "\x00first-encrypted\x00orders\x00\x00\x00\x00\x07"; string(key) != want {
		t.Fatalf("key %q, want %q", key, want)
	}
	if want := []byte{1, 0, 0, 0, 0, 0, 0, 0x04, 0xd2}; !bytes.Equal(value, want) {
		t.Fatalf("value %x, want %x", value, want)
	}
	got, err := ParseFirstOffsetRecord(key, value)
	if err != nil || got != r {
		t.Fatalf("parsed %+v, %v", got, err)
	}
	// Never a key record, and key records are never offset records.
	if _, err := ParseKeyRecord(key, value); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a first-encrypted-offset record parses as a key record: %v", err)
	}
	kr := KeyRecord{Topic: "o", KEK: "first-encrypted", EDEK: []byte("e")}
	if IsFirstOffsetKey(AppendKey(nil, kr.Topic, kr.KEK)) {
		t.Fatal("a key record is taken for a first-encrypted-offset record")
	}
	for _, bad := range []FirstOffsetRecord{{Topic: "", Offset: 1}, {Topic: "a b"}, {Topic: "t", Partition: -1}, {Topic: "t", Offset: -1}} {
		if _, err := ParseFirstOffsetRecord(bad.AppendKey(nil), bad.AppendValue(nil)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v parsed: %v", bad, err)
		}
	}
	if _, err := ParseFirstOffsetRecord(key, append(value, 0)); !errors.Is(err, ErrMalformed) {
		t.Error("trailing byte accepted")
	}
	if _, err := ParseFirstOffsetRecord(key, append([]byte{2}, value[1:]...)); !errors.Is(err, ErrMalformed) {
		t.Error("unknown version accepted")
	}
}

// TestFirstEncryptedLowestWins: the lowest offset of a partition's records
// wins whatever their order in the key topic; key records and offset
// records live side by side; a restarted Store reads the same answer.
func TestFirstEncryptedLowestWins(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	put := func(topic string, p int32, off int64) {
		r := FirstOffsetRecord{Topic: topic, Partition: p, Offset: off}
		log.append(r.AppendKey(nil), r.AppendValue(nil))
	}
	put("orders", 0, 50)
	put("orders", 0, 20) // a writer whose record landed later, lower offset
	put("orders", 0, 90)
	put("orders", 1, 5)
	log.append([]byte("\x00first-encrypted\x00garbage"), []byte{1})
	k := &fakeKMS{}
	s := newStore(t, k, Options{MaxKeys: 1})
	if _, err := s.ForWrite(ctx, log, "orders", kekA); err != nil {
		t.Fatal(err) // offset records do not count against MaxKeys
	}
	for _, c := range []struct {
		p    int32
		want int64
		ok   bool
	}{{0, 20, true}, {1, 5, true}, {2, 0, false}} {
		got, ok, err := s.FirstEncrypted(ctx, log, "orders", c.p)
		if err != nil || ok != c.ok || got != c.want {
			t.Fatalf("partition %d: %d %v %v, want %d %v", c.p, got, ok, err, c.want, c.ok)
		}
	}
	// This process notes partition 2 (lower than nothing): effective at
	// once, written in the background; partition 0's 30 is above 20:
	// nothing to write.
	s.NoteEncrypted(log, "orders", 2, 40)
	s.NoteEncrypted(log, "orders", 0, 30)
	if got, ok, _ := s.FirstEncrypted(ctx, log, "orders", 2); !ok || got != 40 {
		t.Fatalf("noted offset not effective at once: %d %v", got, ok)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.WaitOffsetsWritten(wctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	log.mu.Lock()
	for _, r := range log.recs {
		if IsFirstOffsetKey(r[0]) {
			n++
		}
	}
	log.mu.Unlock()
	if n != 6 {
		t.Fatalf("%d offset records in the key topic, want 6 (5 + the one for partition 2)", n)
	}
	// A restart reads the same.
	s2 := newStore(t, k, Options{})
	for p, want := range map[int32]int64{0: 20, 1: 5, 2: 40} {
		if got, ok, err := s2.FirstEncrypted(ctx, log, "orders", p); err != nil || !ok || got != want {
			t.Fatalf("after restart, partition %d: %d %v %v, want %d", p, got, ok, err, want)
		}
	}
	// A recreated topic: a lower offset is noted and written again.
	s2.NoteEncrypted(log, "orders", 0, 0)
	if err := s2.WaitOffsetsWritten(wctx); err != nil {
		t.Fatal(err)
	}
	s3 := newStore(t, k, Options{})
	if got, _, _ := s3.FirstEncrypted(ctx, log, "orders", 0); got != 0 {
		t.Fatalf("lower offset of a recreated topic not recorded: %d", got)
	}
}

// TestFirstEncryptedFailsClosed: until the key topic has been read once,
// lookups fail retriably (the caller refuses the partition rather than
// deliver unchecked records); afterwards a failing re-read keeps the view.
func TestFirstEncryptedFailsClosed(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	log.failReads.Store(true)
	s := newStore(t, &fakeKMS{}, Options{OffsetRefresh: time.Millisecond})
	_, _, err := s.FirstEncrypted(ctx, log, "orders", 0)
	if err == nil || !dek.Retriable(err) {
		t.Fatalf("lookup before the key topic was read: %v, want a retriable error", err)
	}
	log.failReads.Store(false)
	r := FirstOffsetRecord{Topic: "orders", Partition: 0, Offset: 3}
	log.append(r.AppendKey(nil), r.AppendValue(nil))
	if got, ok, err := s.FirstEncrypted(ctx, log, "orders", 0); err != nil || !ok || got != 3 {
		t.Fatalf("%d %v %v", got, ok, err)
	}
	log.failReads.Store(true)
	time.Sleep(5 * time.Millisecond)
	if got, ok, err := s.FirstEncrypted(ctx, log, "orders", 0); err != nil || !ok || got != 3 {
		t.Fatalf("after a failed re-read: %d %v %v", got, ok, err)
	}
}

func TestFirstEncryptedBounded(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	s := newStore(t, &fakeKMS{}, Options{MaxFirstOffsets: 2})
	if _, _, err := s.FirstEncrypted(ctx, log, "t", 0); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 4; p++ {
		s.NoteEncrypted(log, "t", p, 10)
	}
	if _, ok, _ := s.FirstEncrypted(ctx, log, "t", 2); ok {
		t.Fatal("a partition past maxFirstOffsets was kept")
	}
	if _, ok, _ := s.FirstEncrypted(ctx, log, "t", 1); !ok {
		t.Fatal("a partition within maxFirstOffsets was not kept")
	}
}

func TestNoteEncryptedZeroAllocs(t *testing.T) {
	log := &fakeLog{}
	s := newStore(t, &fakeKMS{}, Options{})
	s.NoteEncrypted(nil, "orders", 0, 5) // nil upstream: noted, not written
	if a := testing.AllocsPerRun(100, func() { s.NoteEncrypted(log, "orders", 0, 9) }); a != 0 {
		t.Fatalf("%v allocations per note of a known partition", a)
	}
}

// FuzzFirstOffsetRecord: hostile key-topic records never panic, and what
// ParseFirstOffsetRecord accepts is canonical and passes Check.
func FuzzFirstOffsetRecord(f *testing.F) {
	r := FirstOffsetRecord{Topic: "orders", Partition: 3, Offset: 99}
	f.Add(r.AppendKey(nil), r.AppendValue(nil))
	f.Add([]byte("\x00first-encrypted\x00\x00\x00\x00\x00\x00"), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("\x00first-encrypted\x00a\x00\xff\xff\xff\xff"), []byte{1, 0xff, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("orders\x00KEK"), []byte{1, 3, 'K', 'E', 'K', 1, 'e'})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		got, err := ParseFirstOffsetRecord(key, value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := got.Check(); err != nil {
			t.Fatalf("parsed record fails Check: %v", err)
		}
		if k := got.AppendKey(nil); !bytes.Equal(k, key) {
			t.Fatalf("key %q re-encodes as %q", key, k)
		}
		if v := got.AppendValue(nil); !bytes.Equal(v, value) {
			t.Fatalf("value %x re-encodes as %x", value, v)
		}
		if _, err := ParseKeyRecord(key, value); err == nil {
			t.Fatal("also a key record")
		}
	})
}

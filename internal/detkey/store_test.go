package detkey

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// proxy's own client is what the filters pass as an Upstream.
var _ Upstream = filter.Upstream(nil)

// fakeLog is an in-memory single-partition topic.
type fakeLog struct {
	mu      sync.Mutex
	recs    [][2][]byte
	created map[string]string
	rf      int16
	reads   atomic.Int64
	// beforeProduce runs before a record is appended (to let a rival in).
	beforeProduce func(l *fakeLog)
	failReads     atomic.Bool
}

func (l *fakeLog) CreateTopic(_ context.Context, topic string, rf int16, configs map[string]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.created == nil {
		l.created, l.rf = configs, rf
	}
	return nil
}

func (l *fakeLog) append(key, value []byte) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, [2][]byte{bytes.Clone(key), bytes.Clone(value)})
	return int64(len(l.recs) - 1)
}

func (l *fakeLog) Produce(_ context.Context, _ string, key, value []byte) (int64, error) {
	if f := l.beforeProduce; f != nil {
		f(l)
	}
	return l.append(key, value), nil
}

func (l *fakeLog) ReadFrom(_ context.Context, _ string, offset int64, visit func(int64, []byte, []byte) bool) (int64, error) {
	l.reads.Add(1)
	if l.failReads.Load() {
		return offset, errors.New("broker down")
	}
	l.mu.Lock()
	recs := l.recs
	l.mu.Unlock()
	for o := offset; o < int64(len(recs)); o++ {
		if !visit(o, recs[o][0], recs[o][1]) {
			return o + 1, nil
		}
	}
	return max(offset, int64(len(recs))), nil
}

// fakeKMS wraps a DEK as "edek|KEK|hex(DEK)".
type fakeKMS struct {
	gen, dec atomic.Int64
	genErr   error
	decErr   error
	panics   bool
	delay    time.Duration
}

func (k *fakeKMS) GenerateDEK(_ context.Context, kek kms.KEKRef) (kms.DEK, error) {
	k.gen.Add(1)
	time.Sleep(k.delay)
	if k.panics {
		panic("provider bug")
	}
	if k.genErr != nil {
		return kms.DEK{}, k.genErr
	}
	key := make([]byte, 32)
	rand.Read(key)
	return kms.DEK{Key: key, EDEK: []byte("edek|" + kek.Name + "|" + hex.EncodeToString(key))}, nil
}

func (k *fakeKMS) DecryptDEK(_ context.Context, edek []byte) ([]byte, error) {
	k.dec.Add(1)
	time.Sleep(k.delay)
	if k.panics {
		panic("provider bug")
	}
	if k.decErr != nil {
		return nil, k.decErr
	}
	parts := strings.Split(string(edek), "|")
	if len(parts) != 3 {
		return nil, errors.New("not an EDEK of this KMS")
	}
	return hex.DecodeString(parts[2])
}

func newStore(t *testing.T, k KMS, opts Options) *Store {
	t.Helper()
	if opts.KMSBackoff == 0 {
		opts.KMSBackoff, opts.KMSBackoffMax = time.Millisecond, time.Millisecond
	}
	s, err := New(k, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var kekA = kms.KEKRef{Name: "KEK-a", ID: "id-a"}

func seal(dk *recordcrypt.DetKey, key string) []byte {
	return dk.AEAD.Seal(nil, []byte(key), []byte("orders"), dk.ID[:])
}

func TestWriteReadRestart(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	k := &fakeKMS{}
	s := newStore(t, k, Options{ReplicationFactor: 2})
	dk, err := s.ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	if log.rf != 2 || log.created["cleanup.policy"] != "delete" || log.created["retention.ms"] != "-1" || log.created["retention.bytes"] != "-1" {
		t.Fatalf("topic created with rf %d configs %v", log.rf, log.created)
	}
	if len(log.recs) != 1 || k.gen.Load() != 1 || k.dec.Load() != 0 {
		t.Fatalf("%d records, %d GenerateDEK, %d DecryptDEK", len(log.recs), k.gen.Load(), k.dec.Load())
	}
	r, err := ParseKeyRecord(log.recs[0][0], log.recs[0][1])
	if err != nil || r.Topic != "orders" || r.KEK != "KEK-a" || dk.ID != KeyID(r.EDEK) {
		t.Fatalf("%+v %v", r, err)
	}
	// Cached: same key, nothing more asked.
	reads := log.reads.Load()
	for range 3 {
		again, err := s.ForWrite(ctx, log, "orders", kekA)
		if err != nil || again != dk {
			t.Fatal(err)
		}
		byID, err := s.ForRead(ctx, log, "orders", dk.ID)
		if err != nil || byID != dk {
			t.Fatal(err)
		}
	}
	if log.reads.Load() != reads || k.gen.Load() != 1 || k.dec.Load() != 0 {
		t.Fatal("a cached key made a request")
	}
	// Another topic or KEK: another key.
	other, err := s.ForWrite(ctx, log, "orders", kms.KEKRef{Name: "KEK-b"})
	if err != nil || other.ID == dk.ID {
		t.Fatal(err)
	}
	if _, err := s.ForRead(ctx, log, "payments", dk.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a key id of another topic: %v", err)
	}

	// A restarted process (a new Store) finds the same key: one
	// DecryptDEK, no new record.
	k2 := &fakeKMS{}
	s2 := newStore(t, k2, Options{})
	dk2, err := s2.ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	if dk2.ID != dk.ID || !bytes.Equal(seal(dk2, "customer-1"), seal(dk, "customer-1")) {
		t.Fatal("restarted store has another key")
	}
	if len(log.recs) != 2 || k2.gen.Load() != 0 || k2.dec.Load() != 1 {
		t.Fatalf("%d records, %d GenerateDEK, %d DecryptDEK", len(log.recs), k2.gen.Load(), k2.dec.Load())
	}
	// And a reader that never wrote finds it by id.
	s3 := newStore(t, &fakeKMS{}, Options{})
	dk3, err := s3.ForRead(ctx, log, "orders", dk.ID)
	if err != nil || !bytes.Equal(seal(dk3, "x"), seal(dk, "x")) {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(s.m.candidates); got != 2 {
		t.Fatalf("candidates %v", got)
	}
}

// Two Stores (two kseal replicas) and many callers each race for the same
// (T, KEK): all agree on one key, each Store makes at most one GenerateDEK.
func TestRacingStoresAgree(t *testing.T) {
	for round := range 20 {
		log := &fakeLog{}
		ka, kb := &fakeKMS{delay: time.Millisecond}, &fakeKMS{delay: time.Millisecond}
		m := NewMetrics(nil)
		a := newStore(t, ka, Options{Metrics: m})
		b := newStore(t, kb, Options{Metrics: m})
		var wg sync.WaitGroup
		keys := make([]*recordcrypt.DetKey, 16)
		for i := range keys {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				dk, err := s.ForWrite(context.Background(), log, "orders", kekA)
				if err != nil {
					t.Error(err)
				}
				keys[i] = dk
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		want := seal(keys[0], "k")
		for i, dk := range keys {
			if dk.ID != keys[0].ID || !bytes.Equal(seal(dk, "k"), want) {
				t.Fatalf("round %d: caller %d has another key", round, i)
			}
		}
		if ka.gen.Load() > 1 || kb.gen.Load() > 1 || len(log.recs) > 2 {
			t.Fatalf("round %d: GenerateDEK %d and %d, %d records", round, ka.gen.Load(), kb.gen.Load(), len(log.recs))
		}
		first, _ := ParseKeyRecord(log.recs[0][0], log.recs[0][1])
		if KeyID(first.EDEK) != keys[0].ID {
			t.Fatalf("round %d: the key is not the first record's", round)
		}
		if lost := testutil.ToFloat64(m.lostRaces); lost != float64(len(log.recs)-1) {
			t.Fatalf("round %d: %d records, %v lost races", round, len(log.recs), lost)
		}
	}
}

// A rival's candidate lands just before ours: ours loses, the rival's key
// is used (one DecryptDEK), and the lost race is counted.
func TestLostRace(t *testing.T) {
	log := &fakeLog{}
	rival := &fakeKMS{}
	rd, _ := rival.GenerateDEK(context.Background(), kekA)
	rrec := KeyRecord{Topic: "orders", KEK: kekA.Name, EDEK: rd.EDEK}
	log.beforeProduce = func(l *fakeLog) {
		l.beforeProduce = nil
		l.append(AppendKey(nil, "orders", kekA.Name), rrec.AppendValue(nil))
	}
	k := &fakeKMS{}
	s := newStore(t, k, Options{})
	dk, err := s.ForWrite(context.Background(), log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	if dk.ID != KeyID(rd.EDEK) || k.dec.Load() != 1 || testutil.ToFloat64(s.m.lostRaces) != 1 {
		t.Fatalf("id %x, %d DecryptDEK, %v lost", dk.ID, k.dec.Load(), testutil.ToFloat64(s.m.lostRaces))
	}
	if got, _ := s.ForRead(context.Background(), log, "orders", dk.ID); got != dk {
		t.Fatal("ForRead of the winner")
	}
}

// Hostile records in the key topic are skipped: the first valid record
// wins, nothing panics, and a copied EDEK (a key id already read) is not a
// key of another topic.
func TestHostileRecordsSkipped(t *testing.T) {
	log := &fakeLog{}
	gen := &fakeKMS{}
	d, _ := gen.GenerateDEK(context.Background(), kekA)
	good := KeyRecord{Topic: "orders", KEK: kekA.Name, EDEK: d.EDEK}
	key := AppendKey(nil, "orders", kekA.Name)
	val := good.AppendValue(nil)
	hostile := [][2][]byte{
		{nil, val},
		{key, nil},
		{[]byte("orders-KEK-a"), val},                   // no separator
		{key, append([]byte{2}, val[1:]...)},            // unknown version
		{key, val[:len(val)-1]},                         // truncated
		{key, append(bytes.Clone(val), 0)},              // trailing byte
		{AppendKey(nil, "orders", "KEK-b"), val},        // KEK name differs
		{AppendKey(nil, "bad topic!", kekA.Name), val},  // invalid topic
		{AppendKey(nil, "", kekA.Name), val},            // empty topic
		{key, []byte{1, 0x85, 0x00, 'K'}},               // non-minimal varint
		{key, []byte{1, 5, 'K', 'E', 'K', '-', 'a', 0}}, // empty EDEK
		{key, []byte{1, 5, 'K', 'E', 'K', '-', 'a', 0xff, 0xff, 0xff, 0xff, 0x0f}}, // huge EDEK length
		{key, []byte{}},
	}
	log.recs = append(log.recs, hostile...)
	log.recs = append(log.recs, [2][]byte{key, val})
	// The same EDEK for another topic later: skipped as a duplicate id.
	copyRec := KeyRecord{Topic: "payments", KEK: kekA.Name, EDEK: d.EDEK}
	log.recs = append(log.recs, [2][]byte{AppendKey(nil, "payments", kekA.Name), copyRec.AppendValue(nil)})

	k := &fakeKMS{}
	s := newStore(t, k, Options{})
	dk, err := s.ForWrite(context.Background(), log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	if dk.ID != KeyID(d.EDEK) || k.gen.Load() != 0 {
		t.Fatalf("id %x, %d GenerateDEK", dk.ID, k.gen.Load())
	}
	if got := testutil.ToFloat64(s.m.skipped.WithLabelValues("malformed")); got != float64(len(hostile)) {
		t.Fatalf("malformed skipped %v, want %d", got, len(hostile))
	}
	if got := testutil.ToFloat64(s.m.skipped.WithLabelValues("duplicate")); got != 1 {
		t.Fatalf("duplicate skipped %v", got)
	}
	// payments gets its own key, not the copied one.
	pk, err := s.ForWrite(context.Background(), log, "payments", kekA)
	if err != nil || pk.ID == dk.ID {
		t.Fatalf("payments: %v", err)
	}
}

func TestMaxKeys(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	w := newStore(t, &fakeKMS{}, Options{})
	var ids [][8]byte
	for i := range 5 {
		dk, err := w.ForWrite(ctx, log, fmt.Sprintf("t%d", i), kekA)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, dk.ID)
	}
	s := newStore(t, &fakeKMS{}, Options{MaxKeys: 3})
	// A pair whose first record is among those read is served; one whose
	// is not is refused (nothing is written for it).
	if dk, err := s.ForWrite(ctx, log, "t1", kekA); err != nil || dk.ID != ids[1] {
		t.Fatalf("within maxKeys: %v", err)
	}
	if _, err := s.ForWrite(ctx, log, "t3", kekA); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("over maxKeys: %v", err)
	}
	if _, err := s.ForWrite(ctx, log, "new", kekA); !errors.Is(err, ErrTooManyKeys) || len(log.recs) != 5 {
		t.Fatalf("new pair over maxKeys: %v", err)
	}
	if Retriable(fmt.Errorf("x: %w", ErrTooManyKeys)) {
		t.Fatal("ErrTooManyKeys is retriable")
	}
	// Keys among the records read are still served by id.
	if _, err := s.ForRead(ctx, log, "t0", ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForRead(ctx, log, "t4", ids[4]); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("key past the bound: %v", err)
	}
	if len(s.byID) != 3 || testutil.ToFloat64(s.m.refusals.WithLabelValues("max_keys")) == 0 {
		t.Fatalf("%d keys indexed", len(s.byID))
	}
	// Once full, a refusal costs no request.
	reads := log.reads.Load()
	if _, err := s.ForWrite(ctx, log, "t4", kekA); !errors.Is(err, ErrTooManyKeys) || log.reads.Load() != reads {
		t.Fatalf("full: %v, %d reads", err, log.reads.Load()-reads)
	}
}

// Unknown key ids: one re-read (rate-limited), then ErrUnknownKey, which
// is remembered for RereadInterval; a key written meanwhile by another
// replica is found by the next re-read.
func TestUnknownKeyReread(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	s := newStore(t, &fakeKMS{}, Options{RereadInterval: 200 * time.Millisecond})
	bogus := [8]byte{1, 2, 3}
	if _, err := s.ForRead(ctx, log, "orders", bogus); !errors.Is(err, ErrUnknownKey) || Retriable(err) {
		t.Fatalf("unknown: %v", err)
	}
	reads := log.reads.Load()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := s.ForRead(ctx, log, "orders", bogus); !errors.Is(err, ErrUnknownKey) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if log.reads.Load() != reads {
		t.Fatalf("a remembered unknown id made %d reads", log.reads.Load()-reads)
	}
	// Another replica writes a key; our Store has not read it yet.
	other := newStore(t, &fakeKMS{}, Options{})
	dk, err := other.ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	// A flood of distinct unknown ids makes few reads.
	start := time.Now()
	reads = log.reads.Load()
	for i := range 20 {
		wg.Go(func() {
			s.ForRead(ctx, log, "orders", [8]byte{9, byte(i)})
		})
	}
	wg.Wait()
	got, err := s.ForRead(ctx, log, "orders", dk.ID)
	if err != nil || got.ID != dk.ID {
		t.Fatal(err)
	}
	if n := log.reads.Load() - reads; n > 3 {
		t.Fatalf("%d re-reads in %v", n, time.Since(start))
	}
	// A caller that gives up while waiting gets a retriable error.
	cctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if _, err := s.ForRead(cctx, log, "orders", [8]byte{7}); err != nil && !Retriable(err) && !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
}

func TestKMSAndUpstreamErrors(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		kms   *fakeKMS
		check func(error) bool
	}{
		{"unavailable", &fakeKMS{genErr: fmt.Errorf("503: %w", kms.ErrUnavailable)}, Retriable},
		{"not found", &fakeKMS{genErr: fmt.Errorf("gone: %w", kms.ErrKeyNotFound)}, func(err error) bool {
			return errors.Is(err, kms.ErrKeyUnusable) && !errors.Is(err, kms.ErrKeyNotFound) && !Retriable(err)
		}},
		{"unusable", &fakeKMS{genErr: fmt.Errorf("disabled: %w", kms.ErrKeyUnusable)}, func(err error) bool {
			return errors.Is(err, kms.ErrKeyUnusable) && !Retriable(err)
		}},
		{"refused", &fakeKMS{genErr: errors.New("access denied")}, Retriable},
		{"panic", &fakeKMS{panics: true}, func(err error) bool { return errors.Is(err, dek.ErrProviderPanic) }},
	}
	for _, c := range cases {
		s := newStore(t, c.kms, Options{KMSAttempts: 2})
		_, err := s.ForWrite(ctx, &fakeLog{}, "orders", kekA)
		if err == nil || !c.check(err) {
			t.Errorf("%s: %v", c.name, err)
		}
		if c.name == "unavailable" && c.kms.gen.Load() != 2 {
			t.Errorf("unavailable: %d attempts, want 2", c.kms.gen.Load())
		}
	}
	// Read side: a KEK gone stays kms.ErrKeyNotFound (RESOURCE_NOT_FOUND).
	log := &fakeLog{}
	dk, err := newStore(t, &fakeKMS{}, Options{}).ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	r := newStore(t, &fakeKMS{decErr: fmt.Errorf("x: %w", kms.ErrKeyNotFound)}, Options{})
	if _, err := r.ForRead(ctx, log, "orders", dk.ID); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("read, KEK gone: %v", err)
	}
	r = newStore(t, &fakeKMS{decErr: kms.ErrUnavailable}, Options{KMSAttempts: 1})
	if _, err := r.ForRead(ctx, log, "orders", dk.ID); !Retriable(err) {
		t.Fatalf("read, KMS down: %v", err)
	}
	// The key topic unreachable: retriable, on both sides.
	down := &fakeLog{}
	down.failReads.Store(true)
	s := newStore(t, &fakeKMS{}, Options{})
	if _, err := s.ForWrite(ctx, down, "orders", kekA); !Retriable(err) {
		t.Fatalf("write, topic down: %v", err)
	}
	if _, err := s.ForRead(ctx, down, "orders", dk.ID); !Retriable(err) {
		t.Fatalf("read, topic down: %v", err)
	}
	if _, err := s.ForWrite(ctx, nil, "orders", kekA); !Retriable(err) {
		t.Fatalf("nil upstream: %v", err)
	}
	// Invalid names are refused before anything is asked.
	if _, err := s.ForWrite(ctx, log, "bad topic", kekA); err == nil {
		t.Fatal("invalid topic accepted")
	}
	if _, err := s.ForWrite(ctx, log, "orders", kms.KEKRef{Name: "a\x00b"}); err == nil {
		t.Fatal("KEK name with a zero byte accepted")
	}
}

// Steady state: a cached key costs no allocation.
func TestCachedNoAlloc(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	s := newStore(t, &fakeKMS{}, Options{})
	dk, err := s.ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	var up Upstream = log
	if n := testing.AllocsPerRun(100, func() {
		s.ForWrite(ctx, up, "orders", kekA)
		s.ForRead(ctx, up, "orders", dk.ID)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func TestNewRefusesBadTopic(t *testing.T) {
	if _, err := New(&fakeKMS{}, Options{Topic: "no/slash"}); err == nil {
		t.Fatal("bad key topic accepted")
	}
}

// revocable is a fakeKMS whose KEKs can be deleted (DecryptDEK then says
// not found) or made unreachable.
type revocable struct {
	fakeKMS
	revoked, down atomic.Bool
}

func (k *revocable) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	if k.down.Load() {
		k.dec.Add(1)
		return nil, kms.ErrUnavailable
	}
	if k.revoked.Load() {
		k.dec.Add(1)
		return nil, fmt.Errorf("deleted: %w", kms.ErrKeyNotFound)
	}
	return k.fakeKMS.DecryptDEK(ctx, edek)
}

// With RecheckAfter, a key in use is unwrapped again once it is that old:
// a KMS that cannot be reached keeps it, one that says the KEK is gone
// drops it, and the next ForRead fails with kms.ErrKeyNotFound.
func TestRecheckDropsRevokedKey(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	dk, err := newStore(t, &fakeKMS{}, Options{}).ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	k := &revocable{}
	s := newStore(t, k, Options{RecheckAfter: time.Minute, KMSAttempts: 1, now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if _, err := s.ForRead(ctx, log, "orders", dk.ID); err != nil {
		t.Fatal(err)
	}
	waitRecheck := func(want int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); k.dec.Load() < want; {
			if time.Now().After(deadline) {
				t.Fatalf("%d DecryptDEK, want %d", k.dec.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
		for e := s.byID[dk.ID]; e.rechecking.Load(); {
			time.Sleep(time.Millisecond)
		}
	}
	// Young: no recheck.
	clock.Add(int64(30 * time.Second))
	s.ForRead(ctx, log, "orders", dk.ID)
	if k.dec.Load() != 1 {
		t.Fatal("recheck before RecheckAfter")
	}
	// Old, KMS down: checked, kept.
	k.down.Store(true)
	clock.Add(int64(31 * time.Second))
	if _, err := s.ForRead(ctx, log, "orders", dk.ID); err != nil {
		t.Fatal(err)
	}
	waitRecheck(2)
	if _, err := s.ForRead(ctx, log, "orders", dk.ID); err != nil {
		t.Fatalf("key dropped while the KMS was down: %v", err)
	}
	// KEK deleted: after an eighth of the interval the key is checked
	// again and dropped.
	k.down.Store(false)
	k.revoked.Store(true)
	clock.Add(int64(8 * time.Second))
	s.ForRead(ctx, log, "orders", dk.ID)
	waitRecheck(3)
	if _, err := s.ForRead(ctx, log, "orders", dk.ID); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("after the KEK was deleted: %v", err)
	}
	if _, err := s.ForWrite(ctx, log, "orders", kekA); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("write after the KEK was deleted: %v", err)
	}
	if testutil.ToFloat64(s.m.dropped) != 1 || testutil.ToFloat64(s.m.cached) != 0 {
		t.Fatalf("dropped %v cached %v", testutil.ToFloat64(s.m.dropped), testutil.ToFloat64(s.m.cached))
	}
}

// A KMS's refusal to unwrap is remembered for NotFoundTTL: a deleted KEK
// is not asked again on every fetch.
func TestRefusalRemembered(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	dk, err := newStore(t, &fakeKMS{}, Options{}).ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	k := &revocable{}
	k.revoked.Store(true)
	s := newStore(t, k, Options{NotFoundTTL: time.Minute, now: func() time.Time { return time.Unix(0, clock.Load()) }})
	for range 5 {
		if _, err := s.ForRead(ctx, log, "orders", dk.ID); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatal(err)
		}
	}
	if k.dec.Load() != 1 {
		t.Fatalf("%d DecryptDEK for a remembered refusal", k.dec.Load())
	}
	k.revoked.Store(false)
	clock.Add(int64(2 * time.Minute))
	if _, err := s.ForRead(ctx, log, "orders", dk.ID); err != nil {
		t.Fatal(err)
	}
}

// lagging reads as empty until 100 ms after the first produce (a broker
// whose metadata or log lags behind the leader's).
type lagging struct {
	*fakeLog
	producedAt atomic.Int64
}

func (l *lagging) Produce(ctx context.Context, topic string, key, value []byte) (int64, error) {
	l.producedAt.CompareAndSwap(0, time.Now().UnixNano())
	return l.fakeLog.Produce(ctx, topic, key, value)
}

func (l *lagging) ReadFrom(ctx context.Context, topic string, offset int64, visit func(int64, []byte, []byte) bool) (int64, error) {
	if at := l.producedAt.Load(); at == 0 || time.Since(time.Unix(0, at)) < 100*time.Millisecond {
		return offset, nil
	}
	return l.fakeLog.ReadFrom(ctx, topic, offset, visit)
}

// A candidate that does not come back at once is read again with backoff.
func TestCandidateReadBackLags(t *testing.T) {
	l := &lagging{fakeLog: &fakeLog{}}
	s := newStore(t, &fakeKMS{}, Options{})
	if _, err := s.ForWrite(context.Background(), l, "orders", kekA); err != nil {
		t.Fatal(err)
	}
}

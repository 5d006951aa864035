package encrypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// fakeShreds stands for the key topic's shred records.
type fakeShreds struct {
	mu       sync.Mutex
	shredded map[string]bool
	err      error
	asked    int
	keyOf    map[[8]byte]string
}

func (s *fakeShreds) Shredded(_ context.Context, _ *filter.Exchange, kek string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	if s.err != nil {
		return "", false, s.err
	}
	return kek, s.shredded[kek], nil
}

func (s *fakeShreds) KEKOf(id [8]byte) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keyOf[id]
	return k, ok
}

// goneDetKeys is a deterministic-key store whose keys of one KEK are gone
// (the KMS says not found), as after that KEK was destroyed.
type goneDetKeys struct {
	*fakeDetKeys
	gone [8]byte
}

func (d goneDetKeys) ForRead(ctx context.Context, x *filter.Exchange, topic string, id [8]byte) (*recordcrypt.DetKey, error) {
	if id == d.gone {
		return nil, fmt.Errorf("unwrap: %w", kms.ErrKeyNotFound)
	}
	return d.fakeDetKeys.ForRead(ctx, x, topic, id)
}

// describingKeys is managerKeys with the KMS's offline EDEK description, as
// internal/app's keys has.
type describingKeys struct {
	managerKeys
	k kms.KMS
}

func (k describingKeys) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	return k.k.DescribeEDEK(edek)
}

// unavailableKeys answers every unwrap with "KMS unavailable".
type unavailableKeys struct{ describingKeys }

func (unavailableKeys) Decryptor(context.Context, []byte) (cipher.AEAD, error) {
	return nil, fmt.Errorf("%w: connection refused", dek.ErrUnavailable)
}

var entityRules = []policy.RuleConfig{
	{Topics: []string{"tenants"}, KEK: "tenant-$(header:tenant)", OnDestroyedKek: "NULL_VALUE"},
	{Topics: []string{"tenants-err"}, KEK: "tenant-$(header:tenant)"},
	{Topics: []string{"users"}, KEK: "tenant-$(key:([a-z]+)/.*)", OnDestroyedKek: "NULL_VALUE",
		Encrypt: &policy.EncryptConfig{Key: true, Headers: []string{"x-*"}}},
	{Topics: []string{"whole"}, KEK: "tenant-$(key)"},
	{Topics: []string{"keyonly"}, KEK: "tenant-$(key:([a-z]+)/.*)", OnDestroyedKek: "NULL_VALUE",
		Encrypt: &policy.EncryptConfig{Value: ptr(false), Key: true}},
}

// entityEnv is a local KMS with tenant-a and tenant-b, shared by filters
// (each with its own DEK manager, so caches start cold).
type entityEnv struct {
	k     *local.KMS
	dk    *fakeDetKeys
	calls atomic.Int64 // KMS calls of every filter's DEK manager
}

// countingKMS counts the KMS calls a DEK manager makes.
type countingKMS struct {
	*local.KMS
	calls *atomic.Int64
}

func (c countingKMS) ResolveKEK(ctx context.Context, name string) (kms.KEKRef, error) {
	c.calls.Add(1)
	return c.KMS.ResolveKEK(ctx, name)
}

func (c countingKMS) GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error) {
	c.calls.Add(1)
	return c.KMS.GenerateDEK(ctx, kek)
}

func (c countingKMS) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	c.calls.Add(1)
	return c.KMS.DecryptDEK(ctx, edek)
}

func newEntityEnv(t testing.TB) *entityEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cfg := local.NewConfig()
	cfg.KeyStore = filepath.Join(dir, "keys.json")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	if _, err := local.Init(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	k, err := local.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	for _, name := range []string{"tenant-a", "tenant-b"} {
		if _, err := k.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	return &entityEnv{k: k, dk: newFakeDetKeys()}
}

func (e *entityEnv) filter(t testing.TB, cfg policy.Config, mod func(*Options)) *Filter {
	t.Helper()
	m, err := dek.New(countingKMS{e.k, &e.calls}, dek.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.WriteVersion = max(cfg.WriteVersion, 1)
	for _, r := range entityRules {
		if r.Encrypt == nil || cfg.WriteVersion == 2 {
			cfg.Rules = append(cfg.Rules, r)
		}
	}
	pol, err := policy.Compile(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Policy: pol, Keys: describingKeys{managerKeys{m}, e.k}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DetKeys: e.dk, Metrics: NewMetrics(nil)}
	if mod != nil {
		mod(&opts)
	}
	return New(opts)
}

func tenantRecords(tenants ...string) []testRecord {
	var recs []testRecord
	for i, tn := range tenants {
		recs = append(recs, testRecord{key: fmt.Appendf(nil, "%s/%d", tn, i), value: fmt.Appendf(nil, "secret of %s %d", tn, i),
			headers: []kmsg.Header{{Key: "tenant", Value: []byte(tn)}, {Key: "x-trace", Value: []byte("t")}}})
	}
	return recs
}

// kekOf names the KEK of a stored record's EDEK.
func kekOf(t testing.TB, r records.Record) string {
	t.Helper()
	rec, _, err := recordcrypt.ParseRecord(&r)
	if err != nil || !rec.HasEnvelope() {
		t.Fatalf("stored record without envelope: %v", err)
	}
	info, err := local.DescribeEDEK(rec.Env.EDEK)
	if err != nil {
		t.Fatal(err)
	}
	return info.KEK
}

// Records of two tenants interleaved in one batch are each sealed under
// their own tenant's KEK and all read back.
func TestEntityRoundTrip(t *testing.T) {
	env := newEntityEnv(t)
	for _, v := range []int{1, 2} {
		f := env.filter(t, policy.Config{WriteVersion: v}, nil)
		for _, topic := range []string{"tenants", "users"} {
			if topic == "users" && v == 1 {
				continue
			}
			for _, c := range []records.Codec{records.CodecNone, records.CodecSnappy} {
				recs := tenantRecords("a", "b", "b", "a", "b")
				set := encryptV2(t, f, topic, recs, c, 10)
				for i, r := range readRecords(t, set) {
					if got, want := kekOf(t, r), "tenant-"+string(recs[i].headers[0].Value); got != want {
						t.Fatalf("v%d %s record %d sealed under %s, want %s", v, topic, i, got, want)
					}
					if bytes.Contains(r.Value, []byte("secret")) {
						t.Fatalf("plaintext stored")
					}
				}
				got, code := fetchRecords(t, f, topic, set)
				if code != 0 {
					t.Fatalf("fetch: code %d", code)
				}
				sameRecords(t, fmt.Sprintf("v%d %s %s", v, topic, c), got, recs)
			}
		}
	}
}

func TestEntityRefusals(t *testing.T) {
	env := newEntityEnv(t)
	f := env.filter(t, policy.Config{}, nil)
	batch := func(recs ...testRecord) []byte { return recordBatch(recs, records.CodecNone) }
	tenant := func(v []byte) testRecord {
		return testRecord{value: []byte("v"), headers: []kmsg.Header{{Key: "tenant", Value: v}}}
	}
	cases := []struct {
		name string
		set  []byte
		want *kerr.Error
	}{
		{"missing header", batch(tenant([]byte("a")), testRecord{value: []byte("v")}), kerr.InvalidRecord},
		{"null header", batch(tenant(nil)), kerr.InvalidRecord},
		{"bad entity", batch(tenant([]byte("a/../b"))), kerr.InvalidRecord},
		{"long entity", batch(tenant(bytes.Repeat([]byte("a"), 129))), kerr.InvalidRecord},
		{"no such KEK", batch(tenant([]byte("a")), tenant([]byte("zzz"))), kerr.PolicyViolation},
	}
	for _, c := range cases {
		res := produceThrough(t, f, -1, []producePart{{"tenants", 0, c.set}})
		res.wantCodes(t, map[string]*kerr.Error{"tenants/0": c.want})
	}
	// $(key): a null key is refused.
	res := produceThrough(t, f, -1, []producePart{{"whole", 0, batch(testRecord{value: []byte("v")})}})
	res.wantCodes(t, map[string]*kerr.Error{"whole/0": kerr.InvalidRecord})
	// A KEK that does not exist never counts against the bounds.
	if n := testutil.ToFloat64(f.m.shred.keks); n != 1 {
		t.Fatalf("kseal_entity_keks %v, want 1 (tenant-a only)", n)
	}
}

func TestEntityBounds(t *testing.T) {
	env := newEntityEnv(t)
	rec := func(tn string) []byte { return recordBatch(tenantRecords(tn), records.CodecNone) }
	// Per topic: one KEK.
	f := env.filter(t, policy.Config{MaxKeksPerTopic: 1}, nil)
	if res := produceThrough(t, f, -1, []producePart{{"tenants", 0, rec("a")}}); res.err != nil || res.local {
		t.Fatalf("first tenant refused: %v %v", res.err, res.codes)
	}
	produceThrough(t, f, -1, []producePart{{"tenants", 0, rec("b")}}).wantCodes(t, map[string]*kerr.Error{"tenants/0": kerr.PolicyViolation})
	// Another topic has its own.
	if res := produceThrough(t, f, -1, []producePart{{"tenants-err", 0, rec("b")}}); res.err != nil || res.local {
		t.Fatalf("other topic refused: %v %v", res.err, res.codes)
	}
	if n := testutil.ToFloat64(f.m.shred.refusals.WithLabelValues("topic")); n != 1 {
		t.Fatalf("topic refusals %v", n)
	}
	// Per process: two KEKs in all.
	f = env.filter(t, policy.Config{MaxKeks: 2, MaxKeksPerTopic: 2}, nil)
	for _, p := range []producePart{{"tenants", 0, rec("a")}, {"tenants", 0, rec("b")}, {"tenants", 0, rec("a")}} {
		if res := produceThrough(t, f, -1, []producePart{p}); res.err != nil || res.local {
			t.Fatalf("refused: %v %v", res.err, res.codes)
		}
	}
	produceThrough(t, f, -1, []producePart{{"tenants-err", 0, rec("a")}}).wantCodes(t, map[string]*kerr.Error{"tenants-err/0": kerr.PolicyViolation})
	if n := testutil.ToFloat64(f.m.shred.refusals.WithLabelValues("process")); n != 1 {
		t.Fatalf("process refusals %v", n)
	}
	if n := testutil.ToFloat64(f.m.shred.keks); n != 2 {
		t.Fatalf("kseal_entity_keks %v", n)
	}
}

// Tenant A's KEK is deleted: with a shred record and NULL_VALUE, A's
// records come with a null value and kseal.shredded, B's in clear; without
// a shred record, under ERROR, with the KMS or the key topic unreachable,
// the partition gets an error and never a null value.
func TestShreddedDelivery(t *testing.T) {
	ctx := context.Background()
	env := newEntityEnv(t)
	recs := tenantRecords("a", "b", "a", "b")
	type written struct {
		topics []string
		sets   map[string][]byte
	}
	byVersion := map[int]written{}
	for _, v := range []int{1, 2} {
		writer := env.filter(t, policy.Config{WriteVersion: v}, nil)
		w := written{topics: []string{"tenants", "tenants-err"}, sets: map[string][]byte{}}
		if v == 2 {
			w.topics = append(w.topics, "users")
		}
		for _, topic := range w.topics {
			w.sets[topic] = encryptV2(t, writer, topic, recs, records.CodecLz4, 0)
		}
		byVersion[v] = w
	}
	if err := env.k.Delete(ctx, "tenant-a"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int{1, 2} {
		topics, sets := byVersion[v].topics, byVersion[v].sets
		read := func(shreds *fakeShreds, keys func(Keys) Keys, topic string) ([]records.Record, int16, *Filter) {
			f := env.filter(t, policy.Config{WriteVersion: v}, func(o *Options) {
				if shreds != nil {
					o.Shreds = shreds
				}
				if keys != nil {
					o.Keys = keys(o.Keys)
				}
			})
			got, code := fetchRecords(t, f, topic, sets[topic])
			return got, code, f
		}
		shredA := &fakeShreds{shredded: map[string]bool{"tenant-a": true}}

		// Not shredded on purpose (no record): the error.
		if got, code, _ := read(&fakeShreds{}, nil, "tenants"); code != kerr.ResourceNotFound.Code || len(got) != 0 {
			t.Fatalf("v%d no shred record: code %d, %d records", v, code, len(got))
		}
		// ERROR rule: the error, even with a shred record.
		if _, code, _ := read(shredA, nil, "tenants-err"); code != kerr.ResourceNotFound.Code {
			t.Fatalf("v%d ERROR rule: code %d", v, code)
		}
		// KMS unreachable: retriable error, no null value, no question asked.
		asked := &fakeShreds{shredded: map[string]bool{"tenant-a": true}}
		if _, code, _ := read(asked, func(k Keys) Keys { return unavailableKeys{k.(describingKeys)} }, "tenants"); code != kerr.KafkaStorageError.Code || asked.asked != 0 {
			t.Fatalf("v%d KMS down: code %d, shreds asked %d times", v, code, asked.asked)
		}
		// Key topic unreadable: retriable error.
		if _, code, _ := read(&fakeShreds{err: errors.New("broker down")}, nil, "tenants"); code != kerr.KafkaStorageError.Code {
			t.Fatalf("v%d key topic down: code %d", v, code)
		}
		// Shredded: every record delivered.
		for _, topic := range topics {
			if topic == "tenants-err" {
				continue
			}
			got, code, f := read(shredA, nil, topic)
			if code != 0 || len(got) != len(recs) {
				t.Fatalf("v%d %s shredded: code %d, %d records", v, topic, code, len(got))
			}
			for i, r := range got {
				w := recs[i]
				if string(w.headers[0].Value) == "b" {
					sameRecords(t, "tenant b", got[i:i+1], recs[i:i+1])
					continue
				}
				last := r.Headers[len(r.Headers)-1]
				if r.Value != nil || string(last.Key) != ShreddedHeader || string(last.Value) != "tenant-a" {
					t.Fatalf("v%d %s record %d: value %q, last header %q=%q", v, topic, i, r.Value, last.Key, last.Value)
				}
				sealedKey := topic == "users"
				if sealedKey != (r.Key == nil) || (!sealedKey && !bytes.Equal(r.Key, w.key)) {
					t.Fatalf("v%d %s record %d: key %q", v, topic, i, r.Key)
				}
				for _, h := range r.Headers {
					if string(h.Key) == recordcrypt.HeaderKey || string(h.Key) == "x-trace" && topic == "users" {
						t.Fatalf("v%d %s record %d: header %q delivered", v, topic, i, h.Key)
					}
				}
				if string(r.Headers[0].Key) != "tenant" {
					t.Fatalf("clear header lost: %v", r.Headers)
				}
			}
			if n := testutil.ToFloat64(f.m.shred.shredded.WithLabelValues(topic)); n != 2 {
				t.Fatalf("v%d %s: kseal_shredded_records_total %v", v, topic, n)
			}
		}
	}
}

// Entity produce and fetch allocate per request and batch, never per
// record, and ask the KMS once per KEK.
func TestEntityAllocsDoNotGrowWithRecords(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector say nothing")
	}
	env := newEntityEnv(t)
	f := env.filter(t, policy.Config{WriteVersion: 2}, nil)
	allocs := func(n int, topic string, c records.Codec) (float64, float64) {
		tenants := make([]string, n)
		for i := range tenants {
			tenants[i] = []string{"a", "b"}[i%2]
		}
		recs := tenantRecords(tenants...)
		for i := range recs {
			recs[i].key = []byte(tenants[i]) // $(key) takes it whole
		}
		frame, hlen := produceFrame(-1, []producePart{{topic, 0, recordBatch(recs, c)}})
		var s filter.Standalone
		run := func() {
			x := s.Exchange(int16(kmsg.Produce), produceVersion, bytes.Clone(frame), hlen, nil, 0)
			if err := f.OnRequest(context.Background(), x); err != nil || x.Local {
				t.Fatalf("refused: %v", err)
			}
			s.Done(x)
		}
		run()
		set := encryptV2(t, f, topic, recs, c, 0)
		rframe, rhlen := fetchResponse([]fetchPart{{topic: topic, set: set}})
		fetch := func() {
			x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, bytes.Clone(rframe), rhlen)
			if err := s.Respond(context.Background(), x, f); err != nil {
				t.Fatal(err)
			}
			s.Done(x)
		}
		fetch()
		before := env.calls.Load()
		p, fa := testing.AllocsPerRun(20, run), testing.AllocsPerRun(20, fetch)
		if calls := env.calls.Load() - before; calls != 0 {
			t.Errorf("%s %s: %d KMS calls in steady state", topic, c, calls)
		}
		return p, fa
	}
	for _, topic := range []string{"tenants", "whole"} {
		for _, c := range []records.Codec{records.CodecNone, records.CodecLz4} {
			sp, sf := allocs(10, topic, c)
			lp, lf := allocs(1000, topic, c)
			if lp > sp+2 || lf > sf+2 {
				t.Errorf("%s %s: produce %v/%v, fetch %v/%v allocations for 10/1000 records", topic, c, sp, lp, sf, lf)
			}
		}
	}
}

// A format v2 record whose key alone is sealed carries no EDEK: its KEK is
// found through its deterministic key's id (Shreds.KEKOf).
func TestShreddedKeyOnly(t *testing.T) {
	ctx := context.Background()
	env := newEntityEnv(t)
	writer := env.filter(t, policy.Config{WriteVersion: 2}, nil)
	recs := tenantRecords("a", "b", "a")
	set := encryptV2(t, writer, "keyonly", recs, records.CodecNone, 0)
	dkA, err := env.dk.ForWrite(ctx, nil, "keyonly", kms.KEKRef{Name: "tenant-a"})
	if err != nil {
		t.Fatal(err)
	}
	shreds := &fakeShreds{shredded: map[string]bool{"tenant-a": true}, keyOf: map[[8]byte]string{dkA.ID: "tenant-a"}}
	reader := env.filter(t, policy.Config{WriteVersion: 2}, func(o *Options) {
		o.DetKeys = goneDetKeys{env.dk, dkA.ID}
		o.Shreds = shreds
	})
	got, code := fetchRecords(t, reader, "keyonly", set)
	if code != 0 || len(got) != 3 {
		t.Fatalf("code %d, %d records", code, len(got))
	}
	sameRecords(t, "tenant b", got[1:2], recs[1:2])
	for _, i := range []int{0, 2} {
		r := got[i]
		last := r.Headers[len(r.Headers)-1]
		if r.Key != nil || r.Value != nil || string(last.Value) != "tenant-a" {
			t.Fatalf("record %d: key %q value %q headers %v", i, r.Key, r.Value, r.Headers)
		}
	}
	// Without the shred record: the error.
	shreds.shredded = nil
	reader = env.filter(t, policy.Config{WriteVersion: 2}, func(o *Options) {
		o.DetKeys = goneDetKeys{env.dk, dkA.ID}
		o.Shreds = shreds
	})
	if _, code := fetchRecords(t, reader, "keyonly", set); code != kerr.ResourceNotFound.Code {
		t.Fatalf("no shred record: code %d", code)
	}
}

// FuzzShreddedFetch runs hostile Fetch responses through a reader for
// which tenant-a's KEK is shredded (onDestroyedKek NULL_VALUE): whatever
// comes back holds no marker, and a record delivered as shredded has a null
// value.
func FuzzShreddedFetch(f *testing.F) {
	ctx := context.Background()
	env := newEntityEnv(f)
	writer := env.filter(f, policy.Config{WriteVersion: 2}, nil)
	recs := tenantRecords("a", "b", "a")
	v2 := encryptV2(f, writer, "users", recs, records.CodecNone, 0)
	v2lz := encryptV2(f, writer, "tenants", recs, records.CodecLz4, 3)
	w1 := env.filter(f, policy.Config{WriteVersion: 1}, nil)
	v1 := encryptV2(f, w1, "tenants", recs, records.CodecNone, 6)
	if err := env.k.Delete(ctx, "tenant-a"); err != nil {
		f.Fatal(err)
	}
	reader := env.filter(f, policy.Config{WriteVersion: 2}, func(o *Options) {
		o.Shreds = &fakeShreds{shredded: map[string]bool{"tenant-a": true}}
	})
	f.Add(fetchBody([]fetchPart{{topic: "users", set: v2}, {topic: "tenants", partition: 1, set: cat(v2lz, v1)}}))
	f.Add(fetchBody([]fetchPart{{topic: "tenants-err", set: v1}}))
	var s filter.Standalone
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, hlen := responseFrame(int16(kmsg.Fetch), fetchVersion, body)
		x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, resp, hlen)
		defer s.Done(x)
		if err := s.Respond(ctx, x, reader); err != nil {
			return
		}
		out := x.Response[x.RespHeaderLen:]
		checkDelivered(t, reader, int16(kmsg.Fetch), fetchVersion, out)
		var sc codec.FetchScan
		if sc.Scan(out, fetchVersion, nil) != nil {
			return
		}
		for i := range sc.Len() {
			if sc.ErrorCode(i) != 0 {
				continue
			}
			it := records.NewBatchIter(sc.Records(i))
			proc := records.NewProcessor(records.WithMaxDecompressed(fuzzMaxDecompressed))
			for it.Next() {
				if it.Batch().Kind != records.KindBatch || proc.Reset(it.Batch()) != nil {
					continue
				}
				for proc.Next() {
					r := proc.Record()
					for _, h := range r.Headers {
						if string(h.Key) == ShreddedHeader && r.Value != nil {
							t.Fatalf("%s: a shredded record with a value", sc.Topic(i))
						}
					}
				}
			}
		}
	})
}

// Entity topics get their first encrypted offset noted like any topic
// whose rule requires encrypted records: the produce path is the same
// (sealPartition). Before it was, entity partitions were never noted, so
// requireEncrypted checked them only from the first envelope a fetch
// showed.
func TestEntityProduceNotesFirstOffset(t *testing.T) {
	env := newEntityEnv(t)
	fo := &fakeOffsets{}
	f := env.filter(t, policy.Config{}, func(o *Options) { o.FirstOffsets = fo })
	frame, hlen := produceFrame(-1, []producePart{{"tenants", 4, recordBatch(tenantRecords("a", "b", "a"), records.CodecNone)}})
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Produce), produceVersion, frame, hlen, nil, 0)
	if err := f.OnRequest(context.Background(), x); err != nil || x.Local {
		t.Fatalf("produce: %v local %v", err, x.Local)
	}
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(produceVersion)
	rt := kmsg.NewProduceResponseTopic()
	rt.Topic = "tenants"
	rp := kmsg.NewProduceResponseTopicPartition()
	rp.Partition, rp.BaseOffset = 4, 17
	rt.Partitions = append(rt.Partitions, rp)
	resp.Topics = append(resp.Topics, rt)
	x.Response = resp.AppendTo([]byte{0, 0, 0, 7, 0})
	x.RespHeaderLen = 5
	if err := f.OnResponse(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(fo.notes) != "[tenants/4@17]" {
		t.Fatalf("notes %v, want [tenants/4@17]", fo.notes)
	}
}

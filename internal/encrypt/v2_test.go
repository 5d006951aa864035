package encrypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
	"github.com/kseal/kseal/internal/siv"
)

// fakeDetKeys stands for internal/detkey's Store: one deterministic key per
// (topic, KEK name), derived from them (the real store keeps a random one in
// the key topic), found again by id.
type fakeDetKeys struct {
	mu       sync.Mutex
	byID     map[[8]byte]*recordcrypt.DetKey
	writeErr error
	readErr  error
	writes   atomic.Int64
	reads    atomic.Int64
}

func newFakeDetKeys() *fakeDetKeys { return &fakeDetKeys{byID: map[[8]byte]*recordcrypt.DetKey{}} }

func (d *fakeDetKeys) ForWrite(_ context.Context, _ *filter.Exchange, topic string, kek kms.KEKRef) (*recordcrypt.DetKey, error) {
	d.writes.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writeErr != nil {
		return nil, d.writeErr
	}
	secret := sha512.Sum512([]byte("test det key\x00" + topic + "\x00" + kek.Name))
	a, err := siv.New(secret[:])
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(secret[:])
	dk := &recordcrypt.DetKey{AEAD: a}
	copy(dk.ID[:], sum[:])
	d.byID[dk.ID] = dk
	return dk, nil
}

func (d *fakeDetKeys) ForRead(_ context.Context, _ *filter.Exchange, _ string, id [8]byte) (*recordcrypt.DetKey, error) {
	d.reads.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.readErr != nil {
		return nil, d.readErr
	}
	dk, ok := d.byID[id]
	if !ok {
		return nil, fmt.Errorf("key %x: %w", id, ErrUnknownDetKey)
	}
	return dk, nil
}

// v2Rules encrypt one topic per combination of parts.
var v2Rules = []policy.RuleConfig{
	{Topics: []string{"v"}, KEK: "KEK"},
	{Topics: []string{"k"}, KEK: "KEK", Encrypt: &policy.EncryptConfig{Value: ptr(false), Key: true}},
	{Topics: []string{"h"}, KEK: "KEK", Encrypt: &policy.EncryptConfig{Value: ptr(false), Headers: []string{"*"}}},
	{Topics: []string{"vk"}, KEK: "KEK", Encrypt: &policy.EncryptConfig{Key: true}},
	{Topics: []string{"vh"}, KEK: "KEK", Encrypt: &policy.EncryptConfig{Headers: []string{"x-*", "trace"}}},
	{Topics: []string{"kh"}, KEK: "KEK", Encrypt: &policy.EncryptConfig{Value: ptr(false), Key: true, Headers: []string{"*"}}},
	{Topics: []string{"vkh"}, KEK: "KEK", Encrypt: &policy.EncryptConfig{Key: true, Headers: []string{"*"}}},
	{TopicPrefix: "enc-", KEK: "KEK-$(topicName)", Encrypt: &policy.EncryptConfig{Key: true, Headers: []string{"*"}}},
	{TopicPrefix: "plain-", Passthrough: true},
}

func ptr[T any](v T) *T { return &v }

// newV2Filter is a filter writing format v2 under v2Rules, over the local
// KMS and dk (a new fake store when nil).
func newV2Filter(t testing.TB, dk DetKeys, mod func(*Options)) *Filter {
	t.Helper()
	if dk == nil {
		dk = newFakeDetKeys()
	}
	f := newFilter(t, nil, []string{"KEK", "KEK-enc-a", "KEK-enc-b"}, func(o *Options) {
		pol, err := policy.Compile(&policy.Config{Rules: v2Rules, UnresolvedKeyPolicy: policy.PassthroughUnencrypted, WriteVersion: policy.WriteV2})
		if err != nil {
			t.Fatal(err)
		}
		o.Policy = pol
		o.DetKeys = dk
		if mod != nil {
			mod(o)
		}
	})
	return f
}

// testRecord is a record as a producer sends it.
type testRecord struct {
	key, value []byte
	headers    []kmsg.Header
}

// v2Records cover null, empty and binary keys and values, duplicate
// header names, null header values and headers the "vh" patterns skip.
func v2Records() []testRecord {
	return []testRecord{
		{key: []byte("customer-42"), value: []byte("hello"), headers: []kmsg.Header{{Key: "x-id", Value: []byte("1")}, {Key: "other", Value: []byte("o")}, {Key: "x-id", Value: []byte("2")}}},
		{key: nil, value: []byte("null key")},
		{key: []byte{}, value: []byte("empty key"), headers: []kmsg.Header{{Key: "trace", Value: nil}}},
		{key: []byte{0, 0xff, 0x80, 'k'}, value: nil, headers: []kmsg.Header{{Key: "x-tomb", Value: []byte("t")}}},
		{key: []byte("customer-42"), value: nil},
		{key: nil, value: nil},
		{key: nil, value: []byte{}, headers: []kmsg.Header{{Key: "", Value: []byte{}}, {Key: "x-", Value: []byte("a")}}},
		{key: []byte("customer-42"), value: []byte("again")},
	}
}

// recordBatch encodes recs as one batch.
func recordBatch(recs []testRecord, c records.Codec) []byte {
	var raw []byte
	for i, tr := range recs {
		r := kmsg.Record{OffsetDelta: int32(i), Key: tr.key, Value: tr.value, Headers: tr.headers}
		body := r.AppendTo(nil)[1:]
		r.Length = int32(len(body))
		raw = r.AppendTo(raw)
	}
	if c != records.CodecNone {
		var err error
		if raw, err = records.NewCodecs(0).Compress(nil, raw, c); err != nil {
			panic(err)
		}
	}
	h := kmsg.RecordBatch{
		Magic: 2, Attributes: int16(c), NumRecords: int32(len(recs)), LastOffsetDelta: int32(len(recs) - 1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, Records: raw, Length: int32(49 + len(raw)),
	}
	b := h.AppendTo(nil)
	setCRC(b)
	return b
}

// readRecords decodes every record of a record set (copies).
func readRecords(t testing.TB, set []byte) []records.Record {
	t.Helper()
	var out []records.Record
	p := records.NewProcessor()
	it := records.NewBatchIter(set)
	for it.Next() {
		if err := p.Reset(it.Batch()); err != nil {
			t.Fatal(err)
		}
		for p.Next() {
			r := p.Record()
			c := records.Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)}
			if r.Key == nil {
				c.Key = nil
			} else if c.Key == nil {
				c.Key = []byte{}
			}
			if r.Value == nil {
				c.Value = nil
			} else if c.Value == nil {
				c.Value = []byte{}
			}
			for _, h := range r.Headers {
				c.Headers = append(c.Headers, records.RecordHeader{Key: bytes.Clone(h.Key), Value: cloneNullable(h.Value)})
			}
			out = append(out, c)
		}
		if p.Err() != nil {
			t.Fatal(p.Err())
		}
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
	return out
}

func cloneNullable(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func nullableEqual(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// sameRecords compares what a consumer got with what the producer sent:
// keys, values and headers byte for byte, null apart from empty.
func sameRecords(t testing.TB, what string, got []records.Record, want []testRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if !nullableEqual(g.Key, w.key) || !nullableEqual(g.Value, w.value) || len(g.Headers) != len(w.headers) {
			t.Fatalf("%s: record %d: key %q value %q %d headers, want %q %q %d", what, i, g.Key, g.Value, len(g.Headers), w.key, w.value, len(w.headers))
		}
		for j, h := range w.headers {
			if string(g.Headers[j].Key) != h.Key || !nullableEqual(g.Headers[j].Value, h.Value) {
				t.Fatalf("%s: record %d header %d: %q=%q, want %q=%q", what, i, j, g.Headers[j].Key, g.Headers[j].Value, h.Key, h.Value)
			}
		}
	}
}

// encryptV2 produces recs to topic through f and returns the forwarded set
// with base offset base.
func encryptV2(t testing.TB, f *Filter, topic string, recs []testRecord, c records.Codec, base int64) []byte {
	t.Helper()
	set := encryptThrough(t, f, topic, recordBatch(recs, c))
	putBaseOffset(set, base)
	return set
}

func putBaseOffset(set []byte, base int64) {
	for i := 0; i < 8; i++ {
		set[i] = byte(uint64(base) >> (56 - 8*i))
	}
}

func fetchRecords(t *testing.T, f *Filter, topic string, set []byte) ([]records.Record, int16) {
	t.Helper()
	resp := fetchThrough(t, f, []fetchPart{{topic: topic, set: set}})
	p := resp.Topics[0].Partitions[0]
	return readRecords(t, p.RecordBatches), p.ErrorCode
}

// Every combination of parts round-trips through produce then fetch, with
// compression and without; what is stored holds no plaintext of the parts
// the rule encrypts and exactly one marker on the records it encrypted.
func TestV2RoundTripEveryParts(t *testing.T) {
	dk := newFakeDetKeys()
	f := newV2Filter(t, dk, nil)
	recs := v2Records()
	for _, topic := range []string{"v", "k", "h", "vk", "vh", "kh", "vkh"} {
		parts := f.state.Load().policy.Select(topic).Parts
		for _, c := range []records.Codec{records.CodecNone, records.CodecZstd} {
			what := fmt.Sprintf("%s/%s", topic, c)
			set := encryptV2(t, f, topic, recs, c, 100)
			stored := readRecords(t, set)
			for i, r := range stored {
				w := recs[i]
				var marker []byte
				clearHeaders := 0
				for _, h := range r.Headers {
					if string(h.Key) == recordcrypt.HeaderKey {
						marker = h.Value
						continue
					}
					clearHeaders++
					if parts&policy.PartHeaders != 0 && f.state.Load().policy.Select(topic).EncryptHeader(h.Key) {
						t.Fatalf("%s: record %d: header %q stored in clear", what, i, h.Key)
					}
				}
				if parts&policy.PartKey != 0 && w.key != nil {
					if len(r.Key) != len(w.key)+recordcrypt.SealedKeyOverhead || len(w.key) > 2 && bytes.Contains(r.Key, w.key) {
						t.Fatalf("%s: record %d: key %q stored as %x", what, i, w.key, r.Key)
					}
				} else if !nullableEqual(r.Key, w.key) {
					t.Fatalf("%s: record %d: key changed to %x", what, i, r.Key)
				}
				if parts&policy.PartValue != 0 && len(w.value) > 2 && bytes.Contains(r.Value, w.value) {
					t.Fatalf("%s: record %d: value stored in clear", what, i)
				}
				if w.value == nil && r.Value != nil {
					t.Fatalf("%s: record %d: null value stored as %x", what, i, r.Value)
				}
				hasSomething := parts&policy.PartValue != 0 && w.value != nil || parts&policy.PartKey != 0 && w.key != nil || clearHeaders < len(w.headers)
				if hasSomething != (marker != nil) {
					t.Fatalf("%s: record %d: marker %x, something to encrypt %v", what, i, marker, hasSomething)
				}
				if marker != nil && marker[0] != recordcrypt.Version2 {
					t.Fatalf("%s: record %d: marker %x is not version 2", what, i, marker)
				}
			}
			got, code := fetchRecords(t, f, topic, set)
			if code != 0 {
				t.Fatalf("%s: fetch answered %d", what, code)
			}
			sameRecords(t, what, got, recs)
		}
	}
	if n := dk.writes.Load(); n != 8 { // once per request of a topic encrypting keys
		t.Errorf("%d ForWrite calls, want 8", n)
	}
}

// Equal plaintext keys of a topic give equal stored keys, across requests
// and across filters (kseal replicas) sharing the key store; another topic
// gives other bytes.
func TestV2KeysDeterministic(t *testing.T) {
	dk := newFakeDetKeys()
	f1, f2 := newV2Filter(t, dk, nil), newV2Filter(t, dk, nil)
	recs := []testRecord{{key: []byte("same"), value: []byte("1")}, {key: []byte("same"), value: []byte("2")}}
	a := readRecords(t, encryptV2(t, f1, "vk", recs, records.CodecNone, 0))
	b := readRecords(t, encryptV2(t, f2, "vk", recs, records.CodecLz4, 0))
	c := readRecords(t, encryptV2(t, f1, "vkh", recs, records.CodecNone, 0))
	if !bytes.Equal(a[0].Key, a[1].Key) || !bytes.Equal(a[0].Key, b[0].Key) {
		t.Fatalf("equal keys sealed differently: %x %x %x", a[0].Key, a[1].Key, b[0].Key)
	}
	if bytes.Equal(a[0].Value, a[1].Value) {
		t.Fatal("values sealed alike")
	}
	if bytes.Equal(a[0].Key, c[0].Key) {
		t.Fatal("a key sealed alike for two topics")
	}
}

// Readers read both versions: a filter writing v2 reads v1 records, a
// filter writing v1 reads v2 ones, even in one record set.
func TestV2ReadsBothVersions(t *testing.T) {
	dk := newFakeDetKeys()
	// The v1 writer's rule encrypts values only, so it leaves keys and
	// headers of tombstones in clear; under a v2 rule that encrypts them,
	// requireEncrypted (on by default) refuses such records after the
	// first envelope (TestIntegrityRuleGainsParts): off here.
	v2 := newV2Filter(t, dk, func(o *Options) {
		rules := append([]policy.RuleConfig(nil), v2Rules...)
		for i := range rules {
			if !rules[i].Passthrough {
				rules[i].RequireEncrypted = ptr(false)
			}
		}
		pol, err := policy.Compile(&policy.Config{Rules: rules, UnresolvedKeyPolicy: policy.PassthroughUnencrypted, WriteVersion: policy.WriteV2})
		if err != nil {
			t.Fatal(err)
		}
		o.Policy = pol
	})
	// The same local KMS is needed to read each other's DEKs: use the v2
	// filter's keys with a v1 policy.
	v1pol, err := policy.Compile(&policy.Config{Rules: []policy.RuleConfig{{Topics: []string{"vkh"}, KEK: "KEK"}}})
	if err != nil {
		t.Fatal(err)
	}
	v1 := New(Options{Policy: v1pol, Keys: v2.state.Load().keys, DetKeys: dk, Log: v2.log})
	recs := v2Records()
	old := encryptV2(t, v1, "vkh", recs, records.CodecNone, 0)
	if m := readRecords(t, old)[0].Headers; string(m[len(m)-1].Value) != "\x01" {
		t.Fatalf("v1 filter wrote marker %x", m[len(m)-1].Value)
	}
	set := append(old, encryptV2(t, v2, "vkh", recs, records.CodecGzip, int64(len(recs)))...)
	want := append(append([]testRecord{}, recs...), recs...)
	for name, f := range map[string]*Filter{"v1": v1, "v2": v2} {
		got, code := fetchRecords(t, f, "vkh", set)
		if code != 0 {
			t.Fatalf("%s: fetch answered %d", name, code)
		}
		sameRecords(t, name, got, want)
	}
}

func TestV2ProduceErrors(t *testing.T) {
	recs := []testRecord{{key: []byte("k"), value: []byte("v")}}
	for _, tc := range []struct {
		name string
		err  error
		nil_ bool
		want *kerr.Error
	}{
		{"key topic unreachable", fmt.Errorf("%w: key topic: connection refused", dek.ErrUnavailable), false, kerr.RequestTimedOut},
		{"too many keys", fmt.Errorf("read: %w", detkey.ErrTooManyKeys), false, kerr.PolicyViolation},
		{"KMS down", fmt.Errorf("generate: %w", context.DeadlineExceeded), false, kerr.RequestTimedOut},
		{"KEK unusable", fmt.Errorf("unwrap: %w", kms.ErrKeyUnusable), false, kerr.ResourceNotFound},
		{"no store", nil, true, kerr.RequestTimedOut},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dk := newFakeDetKeys()
			dk.writeErr = tc.err
			var f *Filter
			if tc.nil_ {
				f = newV2Filter(t, dk, func(o *Options) { o.DetKeys = nil })
			} else {
				f = newV2Filter(t, dk, nil)
			}
			res := produceThrough(t, f, -1, []producePart{{"vk", 0, recordBatch(recs, records.CodecNone)}, {"v", 0, recordBatch(recs, records.CodecNone)}})
			res.wantCodes(t, map[string]*kerr.Error{"vk/0": tc.want, "v/0": kerr.RequestTimedOut})
			// A rule that does not encrypt keys needs no deterministic key.
			res = produceThrough(t, f, -1, []producePart{{"vh", 0, recordBatch(recs, records.CodecNone)}})
			if res.err != nil || res.local {
				t.Fatalf("value-only topic refused: %v %v", res.err, res.codes)
			}
		})
	}
}

// Clients cannot produce to kseal's key topic, whatever the policy says of it.
func TestKeyTopicProduceRefused(t *testing.T) {
	f := newV2Filter(t, nil, func(o *Options) { o.KeyTopic = "plain-keys" })
	b := recordBatch([]testRecord{{key: []byte("k"), value: []byte("v")}}, records.CodecNone)
	res := produceThrough(t, f, -1, []producePart{{"plain-keys", 0, b}, {"plain-x", 0, b}})
	res.wantCodes(t, map[string]*kerr.Error{"plain-keys/0": kerr.TopicAuthorizationFailed, "plain-x/0": kerr.RequestTimedOut})
}

// Records already carrying a marker are refused on every topic, v2 too.
func TestV2ForgedMarkerRefused(t *testing.T) {
	f := newV2Filter(t, nil, nil)
	for _, m := range []string{"\x02\x02", "\x01", "\x02\x01"} {
		b := recordBatch([]testRecord{{key: []byte("k"), value: []byte("v"), headers: []kmsg.Header{{Key: recordcrypt.HeaderKey, Value: []byte(m)}}}}, records.CodecNone)
		for _, topic := range []string{"vkh", "k", "plain-x", "other"} {
			res := produceThrough(t, f, -1, []producePart{{topic, 0, b}})
			res.wantCodes(t, map[string]*kerr.Error{topic + "/0": kerr.InvalidRecord})
		}
	}
}

func TestV2FetchErrors(t *testing.T) {
	recs := []testRecord{{key: []byte("customer-1"), value: []byte("a")}, {key: []byte("customer-2"), value: []byte("b")}}
	t.Run("unknown key id", func(t *testing.T) {
		f := newV2Filter(t, nil, nil)
		set := encryptV2(t, f, "vk", recs, records.CodecNone, 0)
		g := newV2Filter(t, newFakeDetKeys(), func(o *Options) { o.Keys = f.state.Load().keys })
		if _, code := fetchRecords(t, g, "vk", set); code != kerr.CorruptMessage.Code {
			t.Fatalf("code %d, want CORRUPT_MESSAGE", code)
		}
	})
	for _, tc := range []struct {
		name string
		err  error
		want *kerr.Error
	}{
		{"key topic unreachable", fmt.Errorf("%w: key topic: connection refused", dek.ErrUnavailable), kerr.KafkaStorageError},
		{"KEK gone", fmt.Errorf("unwrap: %w", kms.ErrKeyNotFound), kerr.ResourceNotFound},
		{"KMS refuses the key's EDEK", errors.New("unwrap: invalid ciphertext"), kerr.CorruptMessage},
		{"KMS refuses kseal's access", fmt.Errorf("unwrap: %w: HTTP 403", kms.ErrAccessDenied), kerr.KafkaStorageError},
		{"too many keys", fmt.Errorf("read: %w", detkey.ErrTooManyKeys), kerr.PolicyViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dk := newFakeDetKeys()
			f := newV2Filter(t, dk, nil)
			set := encryptV2(t, f, "k", recs, records.CodecNone, 0)
			dk.readErr = tc.err
			if _, code := fetchRecords(t, f, "k", set); code != tc.want.Code {
				t.Fatalf("code %d, want %s", code, tc.want.Message)
			}
		})
	}
	t.Run("records before a bad batch delivered", func(t *testing.T) {
		dk := newFakeDetKeys()
		f := newV2Filter(t, dk, nil)
		good := encryptV2(t, f, "vkh", recs, records.CodecNone, 0)
		bad := encryptV2(t, f, "vkh", recs, records.CodecNone, 2)
		swapKeys(t, bad)
		got, code := fetchRecords(t, f, "vkh", append(bytes.Clone(good), bad...))
		if code != 0 {
			t.Fatalf("code %d", code)
		}
		sameRecords(t, "prefix", got, recs)
		if _, code := fetchRecords(t, f, "vkh", bad); code != kerr.CorruptMessage.Code {
			t.Fatalf("swapped keys: code %d, want CORRUPT_MESSAGE", code)
		}
	})
	t.Run("moved to another topic", func(t *testing.T) {
		f := newV2Filter(t, nil, nil)
		set := encryptV2(t, f, "enc-a", recs, records.CodecNone, 0)
		g := newV2Filter(t, nil, func(o *Options) { o.Keys = f.state.Load().keys; o.DetKeys = f.opts.DetKeys })
		if _, code := fetchRecords(t, g, "enc-b", set); code != kerr.CorruptMessage.Code {
			t.Fatalf("code %d, want CORRUPT_MESSAGE", code)
		}
	})
}

// swapKeys swaps the stored keys of the first two records of an
// uncompressed single-batch set (equal lengths), fixing the CRC.
func swapKeys(t testing.TB, set []byte) {
	t.Helper()
	recs := readRecords(t, set)
	a, b := recs[0].Key, recs[1].Key
	if len(a) != len(b) {
		t.Fatal("keys of different lengths")
	}
	i := bytes.Index(set, a)
	j := bytes.Index(set, b)
	if i < 0 || j < 0 {
		t.Fatal("keys not found")
	}
	tmp := bytes.Clone(a)
	copy(set[i:], b)
	copy(set[j:], tmp)
	setCRC(set)
}

// The produce path seals keys and headers without allocating per record,
// and without a key-store call per record.
func TestV2ProduceAllocsDoNotGrowWithRecords(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector say nothing")
	}
	dk := newFakeDetKeys()
	f := newV2Filter(t, dk, nil)
	allocs := func(n int, topic string, c records.Codec) float64 {
		recs := make([]testRecord, n)
		for i := range recs {
			recs[i] = testRecord{key: fmt.Appendf(nil, "key-%d", i%7), value: []byte("value"),
				headers: []kmsg.Header{{Key: "x-a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}}
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
		return testing.AllocsPerRun(20, run)
	}
	for _, topic := range []string{"vkh", "kh", "vh", "v"} {
		for _, c := range []records.Codec{records.CodecNone, records.CodecLz4} {
			before := dk.writes.Load()
			small, large := allocs(10, topic, c), allocs(1000, topic, c)
			if large > small+2 {
				t.Errorf("%s %s: %v allocations for 10 records, %v for 1000", topic, c, small, large)
			}
			if calls := dk.writes.Load() - before; calls > 2*22 { // run() once, then AllocsPerRun's 1+20
				t.Errorf("%s %s: %d key-store calls for 44 requests", topic, c, calls)
			}
		}
	}
}

// The fetch path opens v2 records without allocating per record, and asks
// the key store only when the key id changes.
func TestV2FetchAllocsDoNotGrowWithRecords(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector say nothing")
	}
	dk := newFakeDetKeys()
	f := newV2Filter(t, dk, nil)
	allocs := func(n int, topic string) float64 {
		recs := make([]testRecord, n)
		for i := range recs {
			recs[i] = testRecord{key: fmt.Appendf(nil, "key-%d", i%7), value: []byte("value"),
				headers: []kmsg.Header{{Key: "x-a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}}
		}
		set := encryptV2(t, f, topic, recs, records.CodecNone, 0)
		frame, hlen := fetchResponse([]fetchPart{{topic: topic, set: set}})
		var s filter.Standalone
		run := func() {
			x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, bytes.Clone(frame), hlen)
			if err := s.Respond(context.Background(), x, f); err != nil {
				t.Fatal(err)
			}
			s.Done(x)
		}
		run()
		return testing.AllocsPerRun(20, run)
	}
	for _, topic := range []string{"vkh", "kh", "k"} {
		before := dk.reads.Load()
		small, large := allocs(10, topic), allocs(1000, topic)
		if large > small+2 {
			t.Errorf("%s: %v allocations for 10 records, %v for 1000", topic, small, large)
		}
		if calls := dk.reads.Load() - before; calls > 2*22 {
			t.Errorf("%s: %d key-store reads for 44 responses", topic, calls)
		}
	}
}

// ShareFetch shares the fetch path: v2 records open there too.
func TestV2ShareFetch(t *testing.T) {
	f := newV2Filter(t, nil, nil)
	recs := v2Records()
	set := encryptV2(t, f, "vkh", recs, records.CodecNone, 0)
	sf := kmsg.NewPtrShareFetchResponse()
	sf.SetVersion(1)
	st := kmsg.NewShareFetchResponseTopic()
	st.TopicID = [16]byte{9}
	sp := kmsg.NewShareFetchResponseTopicPartition()
	sp.Records = set
	st.Partitions = append(st.Partitions, sp)
	sf.Topics = append(sf.Topics, st)
	frame, hlen := responseFrame(int16(kmsg.ShareFetch), 1, sf.AppendTo(nil))
	s := filter.Standalone{Topics: map[[16]byte]string{{9}: "vkh"}}
	x := s.Exchange(int16(kmsg.ShareFetch), 1, nil, 0, frame, hlen)
	if err := s.Respond(context.Background(), x, f); err != nil {
		t.Fatal(err)
	}
	out := kmsg.NewPtrShareFetchResponse()
	out.SetVersion(1)
	if err := out.ReadFrom(x.Response[x.RespHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	p := out.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("code %d", p.ErrorCode)
	}
	sameRecords(t, "share fetch", readRecords(t, p.Records), recs)
}

// policy.Parts and recordcrypt.Parts are the same bits: the filter converts
// one into the other.
func TestPartsBitsAgree(t *testing.T) {
	if recordcrypt.Parts(policy.PartValue) != recordcrypt.PartValue || recordcrypt.Parts(policy.PartKey) != recordcrypt.PartKey ||
		recordcrypt.Parts(policy.PartHeaders) != recordcrypt.PartHeaders {
		t.Fatal("policy.Parts and recordcrypt.Parts differ")
	}
}

// benchRecords are n records of a 16-byte key (8 distinct), a 100-byte
// value and two headers.
func benchRecords(n int) []testRecord {
	recs := make([]testRecord, n)
	for i := range recs {
		recs[i] = testRecord{key: fmt.Appendf(nil, "customer-%07d", i%8), value: bytes.Repeat([]byte{'v'}, 100),
			headers: []kmsg.Header{{Key: "trace-id", Value: []byte("0123456789abcdef")}, {Key: "x-src", Value: []byte("bench")}}}
	}
	return recs
}

// BenchmarkProduceV2 is the produce filter per record (ns/op over 1000
// records per request: divide by 1000) for each parts combination, format
// v1 as the baseline.
func BenchmarkProduceV2(b *testing.B) {
	const n = 1000
	batch := recordBatch(benchRecords(n), records.CodecNone)
	for _, topic := range []string{"v1", "v", "k", "vk", "vh", "vkh"} {
		b.Run(topic, func(b *testing.B) {
			f := newV2Filter(b, nil, nil)
			if topic == "v1" {
				pol, err := policy.Compile(&policy.Config{Rules: []policy.RuleConfig{{Topics: []string{"v1"}, KEK: "KEK"}}})
				if err != nil {
					b.Fatal(err)
				}
				f.Swap(pol, f.state.Load().keys)
			}
			fr, hl := produceFrame(-1, []producePart{{topic, 0, batch}})
			var s filter.Standalone
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				x := s.Exchange(int16(kmsg.Produce), produceVersion, bytes.Clone(fr), hl, nil, 0)
				if err := f.OnRequest(ctx, x); err != nil || x.Local {
					b.Fatalf("refused: %v", err)
				}
				s.Done(x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
		})
	}
}

// largeProduce is a Produce request of the fleet test's shape (BENCHMARKS.md
// "Fleet"): franz-go's defaults, n records over 75 partitions of one snappy
// batch each, 1 KiB values that compress about 20 times (their ciphertext
// does not), so the rebuilt request is 3-4 MB at 3,300-3,600 records.
func largeProduce(n int) []producePart {
	const parts = 75
	val := bytes.Repeat([]byte("fleet-plaintext-"), 1024/16)
	var pp []producePart
	for p := range parts {
		recs := make([]testRecord, n/parts+min(1, max(0, n%parts-p)))
		for i := range recs {
			recs[i] = testRecord{value: val}
		}
		pp = append(pp, producePart{"v", int32(p), recordBatch(recs, records.CodecSnappy)})
	}
	return pp
}

// BenchmarkProduceLarge is the produce filter on requests of the fleet
// test's shape (largeProduce), on both sides of the 4 MiB a connection
// keeps its buffers up to. Requests run in a row on one connection, so B/op
// is the request's copy (bytes.Clone) plus what the filter allocates once
// the buffers have grown; out-bytes is the forwarded request's size.
func BenchmarkProduceLarge(b *testing.B) {
	for _, n := range []int{1000, 3300, 3600, 6000} {
		b.Run(fmt.Sprintf("%drec", n), func(b *testing.B) {
			f := newV2Filter(b, nil, nil)
			fr, hl := produceFrame(-1, largeProduce(n))
			var s filter.Standalone
			ctx := context.Background()
			var out int
			b.ReportAllocs()
			for b.Loop() {
				x := s.Exchange(int16(kmsg.Produce), produceVersion, bytes.Clone(fr), hl, nil, 0)
				if err := f.OnRequest(ctx, x); err != nil || x.Local {
					b.Fatalf("refused: %v", err)
				}
				out = len(x.Request)
				s.Done(x)
			}
			b.ReportMetric(float64(out), "out-bytes")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
		})
	}
}

// A connection sending Produce requests whose rewritten output is near or
// past the 4 MiB a connection keeps (3.9 and 6.4 MB) allocates, once its
// first requests have grown the buffers, far less than the output per
// request: the rewrite buffers are sized from the rewrite bound, with room
// for the next request, and pooled past 4 MiB. It allocated 11
// to 14 times the output per request (43 MB for 3,600 records, 69 MB for
// 6,000) when they were grown by appending and dropped after each request.
// The last request's output still decrypts.
func TestProduceLargeRequestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypts 3,600 and 6,000 records per request")
	}
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	for _, n := range []int{3600, 6000} {
		budget := NewBudget(0, nil)
		f := newV2Filter(t, nil, func(o *Options) { o.Budget = budget })
		fr, hl := produceFrame(-1, largeProduce(n))
		var s filter.Standalone
		ctx := context.Background()
		var last []byte
		run := func(keep bool) {
			x := s.Exchange(int16(kmsg.Produce), produceVersion, fr, hl, nil, 0)
			if err := f.OnRequest(ctx, x); err != nil || x.Local {
				t.Fatalf("refused: %v", err)
			}
			if keep {
				last = bytes.Clone(x.Request)
			}
			s.Done(x)
		}
		for range 3 {
			run(false)
		}
		var before, after runtime.MemStats
		const runs = 5
		runtime.ReadMemStats(&before)
		for range runs {
			run(false)
		}
		runtime.ReadMemStats(&after)
		run(true)
		per := (after.TotalAlloc - before.TotalAlloc) / runs
		if per > uint64(len(last))/16 {
			t.Errorf("%d records: %d bytes allocated per request, output %d", n, per, len(last))
		}
		if budget.InUse() != 0 || budget.Pooled() == 0 {
			t.Errorf("%d records: budget %d in use, %d pooled after the requests", n, budget.InUse(), budget.Pooled())
		}
		var req codec.ProduceRequest
		if err := req.Parse(last[hl:], produceVersion); err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, p := range req.Topics[0].Partitions {
			recs, code := fetchRecords(t, f, "v", p.Records)
			if code != 0 {
				t.Fatalf("partition %d: code %d", p.Partition, code)
			}
			for _, r := range recs {
				if !bytes.HasPrefix(r.Value, []byte("fleet-plaintext-")) || len(r.Value) != 1024 {
					t.Fatalf("partition %d: value %q", p.Partition, r.Value)
				}
			}
			got += len(recs)
		}
		if got != n {
			t.Errorf("%d records produced, %d read back", n, got)
		}
	}
}

// BenchmarkFetchV2 is the fetch filter per record for each parts
// combination, format v1 as the baseline.
func BenchmarkFetchV2(b *testing.B) {
	const n = 1000
	recs := benchRecords(n)
	for _, topic := range []string{"v1", "v", "k", "vk", "vh", "vkh"} {
		b.Run(topic, func(b *testing.B) {
			f := newV2Filter(b, nil, nil)
			if topic == "v1" {
				pol, err := policy.Compile(&policy.Config{Rules: []policy.RuleConfig{{Topics: []string{"v1"}, KEK: "KEK"}}})
				if err != nil {
					b.Fatal(err)
				}
				f.Swap(pol, f.state.Load().keys)
			}
			set := encryptV2(b, f, topic, recs, records.CodecNone, 0)
			frame, hlen := fetchResponse([]fetchPart{{topic: topic, set: set}})
			var s filter.Standalone
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, frame, hlen)
				if err := s.Respond(ctx, x, f); err != nil {
					b.Fatal(err)
				}
				s.Done(x)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
		})
	}
}

// deniedKeys answers every unwrap as a KMS refusing kseal's credentials.
type deniedKeys struct{ Keys }

func (deniedKeys) Decryptor(context.Context, []byte) (cipher.AEAD, error) {
	return nil, fmt.Errorf("vault: decrypt: %w: HTTP 403 permission denied", kms.ErrAccessDenied)
}

// A KMS refusing kseal's access is neither a corrupt record nor a missing
// key: the partition gets KAFKA_STORAGE_ERROR (retriable), counted and
// logged as kms_access_denied. It was CORRUPT_MESSAGE (the default for a
// KMS refusal), which told consumers their data was damaged.
func TestFetchKMSAccessDenied(t *testing.T) {
	recs := []testRecord{{key: []byte("k1"), value: []byte("a")}, {key: []byte("k2"), value: []byte("b")}}
	for _, topic := range []string{"v", "enc-a"} {
		f := newV2Filter(t, nil, nil)
		set := encryptV2(t, f, topic, recs, records.CodecNone, 0)
		g := newV2Filter(t, nil, func(o *Options) { o.Keys = deniedKeys{f.state.Load().keys} })
		got, code := fetchRecords(t, g, topic, set)
		if code != kerr.KafkaStorageError.Code || len(got) != 0 {
			t.Errorf("%s: code %d, %d records; want KAFKA_STORAGE_ERROR (56), none", topic, code, len(got))
		}
		if n := counterValue(t, g.m.errors.WithLabelValues("fetch", reasonKMSDenied)); n != 1 {
			t.Errorf("%s: kseal_encryption_errors_total{reason=%q} = %v, want 1", topic, reasonKMSDenied, n)
		}
	}
}

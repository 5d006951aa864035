package encrypt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/records"
)

// integrityKeys adds the local KMS's offline EDEK description to
// managerKeys, as internal/app's keys have it.
type integrityKeys struct{ managerKeys }

func (integrityKeys) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	return local.DescribeEDEK(edek)
}

// fakeOffsets is a FirstOffsets in memory.
type fakeOffsets struct {
	mu    sync.Mutex
	first map[string]int64
	notes []string
	err   error
}

func (o *fakeOffsets) FirstEncrypted(_ context.Context, _ *filter.Exchange, topic string, p int32) (int64, bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, false, o.err
	}
	v, ok := o.first[fmt.Sprintf("%s/%d", topic, p)]
	return v, ok, nil
}

func (o *fakeOffsets) NoteEncrypted(_ *filter.Exchange, topic string, p int32, offset int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.notes = append(o.notes, fmt.Sprintf("%s/%d@%d", topic, p, offset))
}

// integrityFilter encrypts enc-a under KEK-enc-a with rule as the rule's
// integrity settings, over describing keys and offsets.
func integrityFilter(t *testing.T, mod func(*policy.RuleConfig), offsets FirstOffsets) *Filter {
	t.Helper()
	rule := policy.RuleConfig{TopicPrefix: "enc-", KEK: "KEK-$(topicName)"}
	if mod != nil {
		mod(&rule)
	}
	return newFilter(t, []policy.RuleConfig{rule}, []string{"KEK-enc-a", "KEK-enc-b", "KEK-other"}, func(o *Options) {
		o.Keys = integrityKeys{o.Keys.(managerKeys)}
		if offsets != nil {
			o.FirstOffsets = offsets
		}
	})
}

// batchAt returns batch with its base offset set to base.
func batchAt(batch []byte, base int64) []byte {
	b := bytes.Clone(batch)
	putBaseOffset(b, base)
	return b
}

func vals(vs ...string) [][]byte {
	out := make([][]byte, len(vs))
	for i, v := range vs {
		out[i] = []byte(v)
	}
	return out
}

func fetchOne(t *testing.T, f *Filter, topic string, set []byte) ([]string, int16) {
	t.Helper()
	resp := fetchThrough(t, f, []fetchPart{{topic: topic, set: set}})
	p := resp.Topics[0].Partitions[0]
	var got []string
	for _, v := range values(t, p.RecordBatches) {
		got = append(got, string(v))
	}
	return got, p.ErrorCode
}

// A plaintext record produced straight to the broker after kseal started
// encrypting the partition is not delivered as data: the records before
// it are, then the partition stops there with CORRUPT_MESSAGE. Without
// requireEncrypted it is delivered (what kseal did before).
func TestIntegrityInjectedPlaintextRefused(t *testing.T) {
	f := integrityFilter(t, nil, nil)
	enc1 := encryptThrough(t, f, "enc-a", plainBatch(vals("a", "b")))
	enc2 := batchAt(encryptThrough(t, f, "enc-a", plainBatch(vals("d"))), 3)
	injected := batchAt(plainBatch(vals("evil")), 2)
	set := append(append(bytes.Clone(enc1), injected...), enc2...)

	got, code := fetchOne(t, f, "enc-a", set)
	if code != 0 || fmt.Sprint(got) != "[a b]" {
		t.Fatalf("got %v code %d, want [a b] and no error (the records before the injected one)", got, code)
	}
	// A fetch from the injected record: the key topic (fakeOffsets) says
	// kseal encrypts the partition from offset 0.
	fo := &fakeOffsets{first: map[string]int64{"enc-a/0": 0}}
	f2 := integrityFilter(t, nil, fo)
	f2.Swap(f2.state.Load().policy, f.state.Load().keys) // the same KMS as the writer
	got, code = fetchOne(t, f2, "enc-a", append(bytes.Clone(injected), enc2...))
	if code != kerr.CorruptMessage.Code || len(got) != 0 {
		t.Fatalf("fetch from the injected record: %v code %d, want CORRUPT_MESSAGE", got, code)
	}
	if n := counterValue(t, f2.m.injected.get("enc-a")); n != 1 {
		t.Fatalf("kseal_injected_records_refused_total{topic=enc-a} = %v, want 1", n)
	}

	off := integrityFilter(t, func(r *policy.RuleConfig) { r.RequireEncrypted = ptr(false) }, nil)
	off.Swap(off.state.Load().policy, f.state.Load().keys)
	got, code = fetchOne(t, off, "enc-a", set)
	if code != 0 || fmt.Sprint(got) != "[a b evil d]" {
		t.Fatalf("requireEncrypted: false: %v code %d", got, code)
	}
}

// Records written before kseal first encrypted into the partition stay
// readable; records from that offset on must be envelopes. Records with
// nothing to encrypt (tombstones under a value rule) are never refused.
func TestIntegrityFirstEncryptedOffset(t *testing.T) {
	fo := &fakeOffsets{first: map[string]int64{"enc-a/0": 2}}
	f := integrityFilter(t, nil, fo)
	old := plainBatch(vals("old0", "old1"))
	enc := batchAt(encryptThrough(t, f, "enc-a", plainBatch(vals("new2"))), 2)
	tomb := batchAt(recordBatch([]testRecord{{key: []byte("k"), value: nil}}, records.CodecNone), 3)
	got, code := fetchOne(t, f, "enc-a", append(append(bytes.Clone(old), enc...), tomb...))
	if code != 0 || fmt.Sprint(got) != "[old0 old1 new2 ]" {
		t.Fatalf("got %q code %d", got, code)
	}
	// The same old plaintext at offset 2 and on is refused.
	got, code = fetchOne(t, f, "enc-a", batchAt(old, 2))
	if code != kerr.CorruptMessage.Code {
		t.Fatalf("plaintext at the first encrypted offset: %q code %d", got, code)
	}
	// A compressed plaintext batch too.
	got, code = fetchOne(t, f, "enc-a", batchAt(codecBatch(vals("x"), records.CodecGzip), 5))
	if code != kerr.CorruptMessage.Code {
		t.Fatalf("compressed plaintext: %q code %d", got, code)
	}
	// The index cannot be read: retriable, nothing delivered unchecked.
	fo.err = fmt.Errorf("%w: key topic down", dek.ErrUnavailable)
	if got, code = fetchOne(t, f, "enc-a", old); code != kerr.KafkaStorageError.Code {
		t.Fatalf("index unavailable: %q code %d, want KAFKA_STORAGE_ERROR", got, code)
	}
}

func TestIntegrityEarliest(t *testing.T) {
	f := integrityFilter(t, func(r *policy.RuleConfig) { r.RequireEncryptedFrom = policy.FromEarliest }, nil)
	if got, code := fetchOne(t, f, "enc-a", plainBatch(vals("old"))); code != kerr.CorruptMessage.Code {
		t.Fatalf("earliest: old plaintext %q code %d", got, code)
	}
	enc := encryptThrough(t, f, "enc-a", plainBatch(vals("a")))
	if got, code := fetchOne(t, f, "enc-a", enc); code != 0 || fmt.Sprint(got) != "[a]" {
		t.Fatalf("earliest: envelope %q code %d", got, code)
	}
	// A magic 1 message set is refused too (kseal never writes one there).
	legacy := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 'v'}
	if _, code := fetchOne(t, f, "enc-a", legacy); code != kerr.CorruptMessage.Code {
		t.Fatalf("legacy message set: code %d", code)
	}
}

// An envelope under a KEK the rule does not name (another key of the same
// KMS, made by a writer with another policy) is refused; allowedKeks
// accepts it.
func TestIntegrityKEKNotAllowed(t *testing.T) {
	writer := integrityFilter(t, func(r *policy.RuleConfig) { r.KEK = "KEK-other" }, nil)
	set := encryptThrough(t, writer, "enc-a", plainBatch(vals("x")))
	for _, tc := range []struct {
		name string
		mod  func(*policy.RuleConfig)
		code int16
	}{
		{"strict", nil, kerr.CorruptMessage.Code},
		{"allowedKeks", func(r *policy.RuleConfig) { r.AllowedKEKs = []string{"KEK-oth$$er", "KEK-other"} }, 0},
		{"off", func(r *policy.RuleConfig) { r.RequireEncrypted = ptr(false) }, 0},
	} {
		f := integrityFilter(t, tc.mod, nil)
		f.Swap(f.state.Load().policy, writer.state.Load().keys)
		if got, code := fetchOne(t, f, "enc-a", set); code != tc.code {
			t.Errorf("%s: %q code %d, want %d", tc.name, got, code, tc.code)
		}
	}
}

// Format v2: a genuine record with a clear header the rule encrypts added
// (or a key left in clear) is refused; the genuine record is not.
func TestIntegrityPartsMissingV2(t *testing.T) {
	f := newV2Filter(t, nil, nil)
	recs := []testRecord{{key: []byte("k1"), value: []byte("v1"), headers: []kmsg.Header{{Key: "x-id", Value: []byte("1")}}}}
	set := encryptV2(t, f, "vkh", recs, records.CodecNone, 0)
	if _, code := fetchRecords(t, f, "vkh", set); code != 0 {
		t.Fatalf("genuine record: code %d", code)
	}
	stored := readRecords(t, set)[0]
	var hs []kmsg.Header
	for _, h := range stored.Headers {
		hs = append(hs, kmsg.Header{Key: string(h.Key), Value: h.Value})
	}
	withHeader := []testRecord{{key: stored.Key, value: stored.Value, headers: append(append([]kmsg.Header{}, hs...), kmsg.Header{Key: "x-evil", Value: []byte("1")})}}
	if _, code := fetchRecords(t, f, "vkh", recordBatch(withHeader, records.CodecNone)); code != kerr.CorruptMessage.Code {
		t.Fatalf("clear header added to a genuine record: code %d, want CORRUPT_MESSAGE", code)
	}
	// A v2 value-only record (a marker without KEY) under a rule that
	// seals keys, its key in clear: refused.
	vOnly := encryptV2(t, f, "v", []testRecord{{key: []byte("k"), value: []byte("v")}}, records.CodecNone, 0)
	if _, code := fetchRecords(t, f, "vk", vOnly); code != kerr.CorruptMessage.Code {
		t.Fatalf("clear key under a key rule: code %d", code)
	}
}

// A rule that gains a part refuses records written before that hold it in
// clear, from the first envelope on: the documented price of the check
// (docs/policy.md), lifted with requireEncrypted: false.
func TestIntegrityRuleGainsParts(t *testing.T) {
	f := newV2Filter(t, nil, nil)
	tomb := recordBatch([]testRecord{{key: []byte("k"), value: nil}}, records.CodecNone)
	enc := encryptV2(t, f, "vk", []testRecord{{key: []byte("k"), value: []byte("v")}}, records.CodecNone, 0)
	set := append(bytes.Clone(enc), batchAt(tomb, 1)...)
	got, code := fetchRecords(t, f, "vk", set)
	if code != 0 || len(got) != 1 {
		t.Fatalf("a clear-key tombstone after an envelope: %d records code %d, want the envelope only", len(got), code)
	}
	encV := encryptV2(t, f, "v", []testRecord{{key: []byte("k"), value: []byte("v")}}, records.CodecNone, 0)
	got, code = fetchRecords(t, f, "v", append(bytes.Clone(encV), batchAt(tomb, 1)...)) // nothing to encrypt in a tombstone
	if code != 0 || len(got) != 2 {
		t.Fatalf("value rule: %d records code %d", len(got), code)
	}
}

// The produce response's base offsets are noted for encrypted partitions
// of rules enforcing from the first encrypted offset; not for plaintext
// forwarded under PASSTHROUGH_UNENCRYPTED, not after a reload, not for
// failed partitions.
func TestIntegrityProduceNotesFirstOffset(t *testing.T) {
	fo := &fakeOffsets{}
	f := integrityFilter(t, nil, fo)
	respond := func(x *filter.Exchange, parts map[string]int16) {
		resp := kmsg.NewPtrProduceResponse()
		resp.SetVersion(produceVersion)
		for tp, code := range parts {
			var topic string
			var p int32
			fmt.Sscanf(tp, "%s %d", &topic, &p)
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = topic
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode, rp.BaseOffset = p, code, 42
			rt.Partitions = append(rt.Partitions, rp)
			resp.Topics = append(resp.Topics, rt)
		}
		x.Response = resp.AppendTo([]byte{0, 0, 0, 7, 0})
		x.RespHeaderLen = 5
		if err := f.OnResponse(context.Background(), x); err != nil {
			t.Fatal(err)
		}
	}
	produce := func(acks int16, parts []producePart) *filter.Exchange {
		frame, hlen := produceFrame(acks, parts)
		var s filter.Standalone
		x := s.Exchange(int16(kmsg.Produce), produceVersion, frame, hlen, nil, 0)
		if err := f.OnRequest(context.Background(), x); err != nil || x.Local {
			t.Fatalf("produce: %v local %v", err, x.Local)
		}
		return x
	}
	x := produce(-1, []producePart{{topic: "enc-a", partition: 1, set: plainBatch(vals("a"))}})
	respond(x, map[string]int16{"enc-a 1": 0})
	x = produce(-1, []producePart{{topic: "enc-a", partition: 2, set: plainBatch(vals("a"))}})
	respond(x, map[string]int16{"enc-a 2": kerr.NotLeaderForPartition.Code})
	// A partition of an encrypting rule forwarded in clear (a KEK that
	// does not exist under PASSTHROUGH_UNENCRYPTED): nothing noted.
	var s filter.Standalone
	px := s.Exchange(int16(kmsg.Produce), produceVersion, nil, 0, nil, 0)
	f.noteProduce(px, &produceState{noteOffsets: true, passedPlain: true, req: codecProduceAcks(-1)}, f.state.Load())
	if px.State != nil {
		t.Fatal("a request that forwarded plaintext of an encrypting rule is marked")
	}
	// A reload between request and response.
	x = produce(-1, []producePart{{topic: "enc-a", partition: 3, set: plainBatch(vals("a"))}})
	f.Swap(f.state.Load().policy, f.state.Load().keys)
	respond(x, map[string]int16{"enc-a 3": 0})
	if fmt.Sprint(fo.notes) != "[enc-a/1@42]" {
		t.Fatalf("notes %v, want [enc-a/1@42]", fo.notes)
	}
	// earliest and requireEncrypted: false note nothing.
	for _, mod := range []func(*policy.RuleConfig){
		func(r *policy.RuleConfig) { r.RequireEncryptedFrom = policy.FromEarliest },
		func(r *policy.RuleConfig) { r.RequireEncrypted = ptr(false) },
	} {
		fo2 := &fakeOffsets{}
		f = integrityFilter(t, mod, fo2)
		x = produce(-1, []producePart{{topic: "enc-a", partition: 1, set: plainBatch(vals("a"))}})
		respond(x, map[string]int16{"enc-a 1": 0})
		if len(fo2.notes) != 0 {
			t.Fatalf("noted %v", fo2.notes)
		}
	}
}

func TestIntegrityPolicyValidation(t *testing.T) {
	for _, tc := range []struct {
		rule policy.RuleConfig
		want string
	}{
		{policy.RuleConfig{Topics: []string{"a"}, KEK: "k", RequireEncryptedFrom: "latest"}, `rules[0].requireEncryptedFrom: "latest" is neither`},
		{policy.RuleConfig{Topics: []string{"a"}, Passthrough: true, RequireEncrypted: ptr(true)}, "rules[0].requireEncrypted: a passthrough rule"},
		{policy.RuleConfig{Topics: []string{"a"}, KEK: "k", RequireEncrypted: ptr(false), RequireEncryptedFrom: policy.FromEarliest}, "rules[0].requireEncryptedFrom: set only with requireEncrypted"},
		{policy.RuleConfig{Topics: []string{"a"}, KEK: "k", AllowedKEKs: []string{"$2"}}, "rules[0].allowedKeks[0]:"},
		{policy.RuleConfig{Topics: []string{"a"}, KEK: "k", AllowedKEKs: []string{"x", "x"}}, `rules[0].allowedKeks[1]: "x" is listed twice`},
	} {
		_, err := policy.Compile(&policy.Config{Rules: []policy.RuleConfig{tc.rule}})
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.rule, err, tc.want)
		}
	}
	p, err := policy.Compile(&policy.Config{Rules: []policy.RuleConfig{{TopicRegex: "t-(.*)", KEK: "K-$1", AllowedKEKs: []string{"old-$1"}}, {Topics: []string{"p"}, Passthrough: true}}})
	if err != nil {
		t.Fatal(err)
	}
	sel := p.Select("t-x")
	if !p.Require(sel).On || p.Require(sel).Earliest {
		t.Fatalf("default requirement %+v", p.Require(sel))
	}
	if p.Require(p.Select("p")).On {
		t.Fatal("a passthrough rule requires encryption")
	}
	for name, want := range map[string]bool{"K-x": true, "old-x": true, "old-y": false, "": false} {
		if got := p.KEKAllowed("t-x", sel, name); got != want {
			t.Errorf("KEKAllowed(%q) = %v", name, got)
		}
	}
}

var _ = errors.Is

func codecProduceAcks(acks int16) (r *codec.ProduceRequest) {
	r = new(codec.ProduceRequest)
	r.Acks = acks
	return r
}

// kseal's key topic is never checked: a consumer (MirrorMaker copying it)
// reads its plaintext records through kseal as before.
func TestIntegrityKeyTopicExempt(t *testing.T) {
	f := newFilter(t, []policy.RuleConfig{{TopicRegex: ".*", KEK: "KEK-$(topicName)", RequireEncryptedFrom: policy.FromEarliest}}, nil,
		func(o *Options) { o.KeyTopic = "__kseal_keys" })
	if got, code := fetchOne(t, f, "__kseal_keys", plainBatch(vals("k"))); code != 0 || len(got) != 1 {
		t.Fatalf("key topic: %q code %d", got, code)
	}
	if _, code := fetchOne(t, f, "other", plainBatch(vals("k"))); code != kerr.CorruptMessage.Code {
		t.Fatalf("other topic: code %d", code)
	}
}

// ShareFetch goes through the same checks: an injected record after an
// envelope stops the partition there.
func TestIntegrityShareFetch(t *testing.T) {
	f := integrityFilter(t, nil, nil)
	enc := encryptThrough(t, f, "enc-a", plainBatch(vals("a")))
	set := append(bytes.Clone(enc), batchAt(plainBatch(vals("evil")), 1)...)
	id := [16]byte{7}
	run := func(set []byte) (int16, int) {
		resp := kmsg.NewPtrShareFetchResponse()
		resp.SetVersion(1)
		st := kmsg.NewShareFetchResponseTopic()
		st.TopicID = id
		sp := kmsg.NewShareFetchResponseTopicPartition()
		sp.Records = set
		st.Partitions = append(st.Partitions, sp)
		resp.Topics = append(resp.Topics, st)
		frame := resp.AppendTo([]byte{0, 0, 0, 1, 0})
		s := filter.Standalone{Topics: map[[16]byte]string{id: "enc-a"}}
		x := s.Exchange(int16(kmsg.ShareFetch), 1, nil, 0, frame, 5)
		if err := s.Respond(context.Background(), x, f); err != nil {
			t.Fatal(err)
		}
		out := kmsg.NewPtrShareFetchResponse()
		out.SetVersion(1)
		if err := out.ReadFrom(x.Response[x.RespHeaderLen:]); err != nil {
			t.Fatal(err)
		}
		p := out.Topics[0].Partitions[0]
		return p.ErrorCode, len(values(t, p.Records))
	}
	if code, n := run(set); code != 0 || n != 1 {
		t.Fatalf("share fetch: code %d, %d records; want the envelope only", code, n)
	}
	fo := &fakeOffsets{first: map[string]int64{"enc-a/0": 0}}
	f.opts.FirstOffsets = fo
	if code, _ := run(batchAt(plainBatch(vals("evil")), 1)); code != kerr.CorruptMessage.Code {
		t.Fatalf("share fetch from the injected record: code %d", code)
	}
}

// Under PASSTHROUGH_UNENCRYPTED, a topic whose KEK does not exist and whose
// tail shows no envelope passes in clear, unless its rule requires
// encrypted records from offset 0: then it is refused (POLICY_VIOLATION),
// since consumers through kseal could not read it.
func TestIntegrityEarliestRefusesPlaintextProduce(t *testing.T) {
	plain := plainBatch(vals("v"))
	for _, tc := range []struct {
		from policy.RequireFrom
		code int16
	}{{policy.FromFirstEncrypted, 0}, {policy.FromEarliest, kerr.PolicyViolation.Code}} {
		g := newGuardSetup(t, policy.PassthroughUnencrypted)
		pol, err := policy.Compile(&policy.Config{UnresolvedKeyPolicy: policy.PassthroughUnencrypted,
			Rules: []policy.RuleConfig{{TopicRegex: ".*", KEK: "KEK-$(topicName)", RequireEncryptedFrom: tc.from}}})
		if err != nil {
			t.Fatal(err)
		}
		g.f.Swap(pol, g.f.state.Load().keys)
		g.tailOf(plain, nil)
		if code, _ := g.produce(t, "x", plain); code != tc.code {
			t.Errorf("%s: code %d, want %d", tc.from, code, tc.code)
		}
	}
}

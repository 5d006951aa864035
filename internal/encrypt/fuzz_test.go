package encrypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/frame"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// The fuzz targets drive the filter itself, over the real local KMS and DEK
// manager, with a policy that encrypts "enc-*", passes "plain-*" through and
// leaves other topics unresolved (PASSTHROUGH_UNENCRYPTED). Limits are small
// so that bombs are cheap to refuse.

const (
	fuzzMaxDecompressed = 1 << 20
	fuzzRequestBudget   = 4 << 20
	fuzzProcessBudget   = 32 << 20
)

// fuzzTopicIDs are the topic ids the fuzzed exchanges resolve: Produce v13,
// Fetch v13+ and ShareFetch name topics by id.
var fuzzTopicIDs = map[[16]byte]string{
	{1}: "enc-a",
	{2}: "plain-x",
	{3}: "other",
	{4}: "\xff", // a broker's metadata can say anything
}

func newFuzzFilter(f *testing.F) (*Filter, *Budget) {
	budget := NewBudget(fuzzProcessBudget, nil)
	flt := newMixedFilter(f, func(o *Options) {
		o.MaxDecompressed = fuzzMaxDecompressed
		o.MaxProduceRewriteBytes = fuzzRequestBudget
		o.Budget = budget
	})
	return flt, budget
}

// newFuzzFilterV2 is newFuzzFilter writing format v2: "enc-*" encrypts
// value, key and every header (v2Rules), with a fake deterministic-key store.
func newFuzzFilterV2(f *testing.F, budget *Budget) *Filter {
	return newV2Filter(f, nil, func(o *Options) {
		o.MaxDecompressed = fuzzMaxDecompressed
		o.MaxProduceRewriteBytes = fuzzRequestBudget
		o.Budget = budget
	})
}

// requestFrame prefixes body with a request header for key and version.
func requestFrame(key, version int16, body []byte) ([]byte, int) {
	b := binary.BigEndian.AppendUint16(nil, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, 7)
	b = append(b, 0, 1, 't') // client id
	if hv, _ := frame.RequestHeaderVersion(key, version); hv >= 2 {
		b = append(b, 0) // tags
	}
	return append(b, body...), len(b)
}

// responseFrame prefixes body with a response header for key and version.
func responseFrame(key, version int16, body []byte) ([]byte, int) {
	b := binary.BigEndian.AppendUint32(nil, 7)
	if hv, _ := frame.ResponseHeaderVersion(key, version); hv >= 1 {
		b = append(b, 0)
	}
	return append(b, body...), len(b)
}

// FuzzProduceFilter sends arbitrary Produce request bodies through
// Filter.OnRequest. Invariants: nothing panics; every byte reserved from the
// process budget is given back; a request forwarded has every record of an
// encrypted topic sealed (each value opens, or is null); the connection keeps
// bounded buffers.
func FuzzProduceFilter(f *testing.F) {
	flt, budget := newFuzzFilter(f)
	flt2 := newFuzzFilterV2(f, budget)
	for _, seed := range produceSeeds(f, flt) {
		f.Add(seed.body, seed.version)
	}
	for _, seed := range produceSeedsV2() {
		f.Add(seed.body, seed.version)
	}
	var s filter.Standalone
	s.Topics = fuzzTopicIDs
	f.Fuzz(func(t *testing.T, body []byte, v uint8) {
		version := int16(v) % (codec.ProduceMaxVersion + 1)
		// Every input goes through a filter writing format v1 and one
		// writing v2 (keys and headers too).
		for _, flt := range []*Filter{flt, flt2} {
			req, hlen := requestFrame(int16(kmsg.Produce), version, body)
			x := s.Exchange(int16(kmsg.Produce), version, req, hlen, nil, 0)
			err := flt.OnRequest(context.Background(), x)
			if n := budget.InUse(); n != 0 {
				t.Fatalf("%d bytes of the process budget still reserved", n)
			}
			if st := flt.produceState(x); cap(st.out) > maxKeptOut {
				t.Fatalf("connection keeps a %d-byte rewrite buffer", cap(st.out))
			}
			if err == nil && !x.Local {
				checkSealedRaw(t, flt, x.Request[x.HeaderLen:], version)
			}
			s.Done(x)
		}
	})
}

// checkSealedRaw is checkSealed over a forwarded body, read with kseal's
// own bounded walker.
func checkSealedRaw(t *testing.T, flt *Filter, body []byte, version int16) {
	t.Helper()
	var req codec.ProduceRequest
	if err := req.Parse(body, version); err != nil {
		t.Fatalf("forwarded request does not parse: %v", err)
	}
	cur := flt.state.Load()
	p := records.NewProcessor(records.WithMaxDecompressed(64 << 20))
	for _, rt := range req.Topics {
		name := string(rt.Name)
		if rt.Name == nil {
			name = fuzzTopicIDs[rt.ID]
		}
		if !validTopic(name) && len(rt.Partitions) > 0 { // an entry without partitions carries nothing
			t.Fatalf("invalid topic %q forwarded", name)
		}
		sel := cur.policy.Select(name)
		if sel.Action != policy.Encrypt {
			continue
		}
		if _, err := cur.keys.Resolve(context.Background(), sel.KEK); !sel.Entity() && errors.Is(err, kms.ErrKeyNotFound) {
			continue // unresolved: PASSTHROUGH_UNENCRYPTED applies
		}
		for _, rp := range rt.Partitions {
			it := records.NewBatchIter(rp.Records)
			for it.Next() {
				if err := p.Reset(it.Batch()); err != nil {
					t.Fatalf("%s: forwarded batch unreadable: %v", name, err)
				}
				if p.Batch().Control() {
					t.Fatalf("%s: control batch forwarded", name)
				}
				for p.Next() {
					if cur.policy.WriteVersion() == policy.WriteV2 {
						checkSealedRecordV2(t, flt, cur, name, p.Record())
					} else {
						checkSealedRecord(t, cur, name, p.Record())
					}
				}
				if p.Err() != nil {
					t.Fatalf("%s: %v", name, p.Err())
				}
			}
			if it.Err() != nil {
				t.Fatalf("%s: %v", name, it.Err())
			}
		}
	}
}

func checkSealedRecord(t *testing.T, cur *state, topic string, r *records.Record) {
	if r.Value == nil {
		return
	}
	markers := 0
	for _, h := range r.Headers {
		if string(h.Key) == recordcrypt.HeaderKey {
			markers++
		}
	}
	if markers != 1 {
		t.Fatalf("%s: record with %d markers forwarded", topic, markers)
	}
	env, err := recordcrypt.Parse(r.Value)
	if err != nil {
		t.Fatalf("%s: forwarded value is no envelope: %v", topic, err)
	}
	aead, err := cur.keys.Decryptor(context.Background(), env.EDEK)
	if err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	if _, err := recordcrypt.Open(nil, aead, env, recordcrypt.Binding{Topic: cur.policy.AADTopic(topic), Key: r.Key}); err != nil {
		t.Fatalf("%s: forwarded value does not open: %v", topic, err)
	}
}

// checkSealedRecordV2: a record forwarded by a v2 writer either has
// nothing the rule encrypts in clear and no marker, or a v2 marker and opens
// with the DEK and the deterministic key.
func checkSealedRecordV2(t *testing.T, flt *Filter, cur *state, topic string, r *records.Record) {
	sel := cur.policy.Select(topic)
	rec, version, err := recordcrypt.ParseRecord(r)
	if err != nil {
		t.Fatalf("%s: forwarded record does not parse: %v", topic, err)
	}
	if version == 0 {
		if sel.Parts&policy.PartValue != 0 && r.Value != nil || sel.Parts&policy.PartKey != 0 && r.Key != nil {
			t.Fatalf("%s: value or key forwarded in clear", topic)
		}
		for _, h := range r.Headers {
			if sel.EncryptHeader(h.Key) {
				t.Fatalf("%s: header %q forwarded in clear", topic, h.Key)
			}
		}
		return
	}
	if version != recordcrypt.Version2 {
		t.Fatalf("%s: a v2 writer forwarded a version %d record", topic, version)
	}
	var aead cipher.AEAD
	if rec.HasEnvelope() {
		if aead, err = cur.keys.Decryptor(context.Background(), rec.Env.EDEK); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
	}
	var dk *recordcrypt.DetKey
	if rec.Parts&recordcrypt.PartKey != 0 {
		if dk, err = flt.opts.DetKeys.ForRead(context.Background(), nil, topic, rec.KeyID); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
	}
	rr := *r
	rr.Headers = slices.Clone(r.Headers)
	var o recordcrypt.Opener
	if err := o.OpenV2(aead, dk, cur.policy.AADTopic(topic), rec, &rr); err != nil {
		t.Fatalf("%s: forwarded record does not open: %v", topic, err)
	}
}

// produceSeedsV2 are keyed records with headers for the v2 writer.
func produceSeedsV2() []produceSeed {
	recs := v2Records()
	return []produceSeed{
		{"v2_keys_headers", produceBody([]producePart{{"enc-a", 0, recordBatch(recs, records.CodecNone)}, {"enc-b", 1, recordBatch(recs, records.CodecSnappy)}}), produceVersion},
	}
}

// FuzzFetchFilter sends arbitrary Fetch and ShareFetch response bodies
// through Filter.OnResponse. Invariants: nothing panics; a response the
// filter returns parses; no partition of a topic the policy does not pass
// through is delivered holding a record with a marker (ciphertext handed
// over as a value).
func FuzzFetchFilter(f *testing.F) {
	flt, budget := newFuzzFilter(f)
	// The v2 writer shares the v1 one's KMS and DEKs: each reads what
	// either wrote.
	flt2 := newV2Filter(f, nil, func(o *Options) {
		o.MaxDecompressed = fuzzMaxDecompressed
		o.Budget = budget
		o.Keys = flt.state.Load().keys
	})
	for _, seed := range fetchSeeds(f, flt) {
		f.Add(seed.body, seed.version, seed.share)
	}
	for _, seed := range fetchSeedsV2(f, flt2) {
		f.Add(seed.body, seed.version, seed.share)
	}
	var s filter.Standalone
	s.Topics = fuzzTopicIDs
	f.Fuzz(func(t *testing.T, body []byte, v uint8, share bool) {
		key, version := int16(kmsg.Fetch), int16(v)%(codec.FetchMaxVersion+1)
		if share {
			key, version = int16(kmsg.ShareFetch), int16(v)%codec.ShareFetchMaxVersion+1
		}
		for _, flt := range []*Filter{flt, flt2} {
			resp, hlen := responseFrame(key, version, body)
			x := s.Exchange(key, version, nil, 0, resp, hlen)
			if err := s.Respond(context.Background(), x, flt); err != nil {
				s.Done(x)
				continue
			}
			checkDelivered(t, flt, key, version, x.Response[x.RespHeaderLen:])
			s.Done(x)
		}
	})
}

// fetchSeedsV2 are v2 record sets: good, with swapped sealed keys, and
// with a bit flipped in a sealed key.
func fetchSeedsV2(t testing.TB, flt *Filter) []fetchSeed {
	recs := []testRecord{{key: []byte("customer-1"), value: []byte("a"), headers: []kmsg.Header{{Key: "h", Value: []byte("1")}}},
		{key: []byte("customer-2"), value: nil, headers: []kmsg.Header{{Key: "h", Value: []byte("2")}}}}
	enc := encryptV2(t, flt, "enc-a", recs, records.CodecNone, 0)
	swapped := bytes.Clone(enc)
	swapKeys(t, swapped)
	flipped := bytes.Clone(enc)
	flipped[bytes.Index(flipped, readRecords(t, enc)[0].Key)+12] ^= 1
	setCRC(flipped)
	lz := encryptV2(t, flt, "enc-b", recs, records.CodecLz4, 0)
	return []fetchSeed{
		{"v2_ok", fetchBody([]fetchPart{{topic: "enc-a", set: enc}, {topic: "enc-b", partition: 1, set: lz}}), fetchVersion, false},
		{"v2_swapped_keys", fetchBody([]fetchPart{{topic: "enc-a", set: cat(enc, swapped)}}), fetchVersion, false},
		{"v2_flipped_key", fetchBody([]fetchPart{{topic: "enc-a", set: flipped}}), fetchVersion, false},
	}
}

func checkDelivered(t *testing.T, flt *Filter, key, version int16, body []byte) {
	t.Helper()
	cur := flt.state.Load()
	p := records.NewProcessor(records.WithMaxDecompressed(fuzzMaxDecompressed))
	check := func(topic string, id [16]byte, code int16, set []byte) {
		if topic == "" {
			topic = fuzzTopicIDs[id]
		}
		if code != 0 || !validTopic(topic) || cur.policy.Select(topic).Action == policy.Passthrough {
			return
		}
		// Bytes without the marker's cannot hold one unless compressed:
		// those may be anything, the rest must read and hold none.
		it := records.NewBatchIter(set)
		for it.Next() {
			b := it.Batch()
			if b.Kind != records.KindBatch || b.Control() || b.NumRecords == 0 ||
				(b.Codec() == records.CodecNone && !bytes.Contains(b.Raw, markerKey)) {
				continue
			}
			if err := p.Reset(b); err != nil {
				if errors.Is(err, records.ErrTooLarge) && cur.policy.Select(topic).Action != policy.Encrypt {
					// docs/format.md: an unresolved topic's batch past the
					// decompression bound is delivered as stored (kseal
					// refuses to write one, so it holds no envelope).
					continue
				}
				t.Fatalf("%s: delivered a batch kseal cannot read: %v", topic, err)
			}
			has, err := p.HasHeader(recordcrypt.HeaderKey)
			if err != nil || has {
				t.Fatalf("%s: delivered a batch holding a marker (err %v)", topic, err)
			}
		}
		if it.Err() != nil && bytes.Contains(set[it.Offset():], markerKey) {
			t.Fatalf("%s: delivered a malformed record set holding the marker's bytes: %v", topic, it.Err())
		}
	}
	var err error
	if key == int16(kmsg.ShareFetch) {
		var sc codec.ShareFetchScan
		if err = sc.Scan(body, version, nil); err == nil {
			for i := range sc.Len() {
				check("", sc.TopicID(i), sc.ErrorCode(i), sc.Records(i))
			}
		}
	} else {
		var sc codec.FetchScan
		if err = sc.Scan(body, version, nil); err == nil {
			for i := range sc.Len() {
				check(sc.Topic(i), sc.TopicID(i), sc.ErrorCode(i), sc.Records(i))
			}
		}
	}
	if err != nil {
		t.Fatalf("the filter's response does not parse: %v", err)
	}
}

type produceSeed struct {
	name    string
	body    []byte
	version uint8
}

type fetchSeed struct {
	name    string
	body    []byte
	version uint8
	share   bool
}

// rawCodecBatch is a batch header with codec c around compressed records
// as given, claiming n records.
func rawCodecBatch(c records.Codec, compressed []byte, n int32) []byte {
	h := kmsg.RecordBatch{Magic: 2, Attributes: int16(c), NumRecords: n, ProducerID: -1, ProducerEpoch: -1,
		FirstSequence: -1, Records: compressed, Length: int32(49 + len(compressed))}
	raw := h.AppendTo(nil)
	setCRC(raw)
	return raw
}

func produceBody(parts []producePart) []byte {
	fr, hlen := produceFrame(-1, parts)
	return fr[hlen:]
}

// hostileBatches are the batches of issue 11's findings.
func hostileBatches() map[string][]byte {
	control := plainBatch([][]byte{[]byte("secret")})
	control[22] |= 0x20
	setCRC(control)
	return map[string][]byte{
		"zstd_bomb":     zerosBatch(2<<20, records.CodecZstd),
		"lz4_bomb":      zerosBatch(2<<20, records.CodecLz4),
		"snappy_bomb":   rawCodecBatch(records.CodecSnappy, append(binary.AppendUvarint(nil, 2<<20), 0, 0), 1), // a raw block declaring 2 MiB
		"snappy_zeros":  zerosBatch(256<<10, records.CodecSnappy),
		"gzip_bomb":     zerosBatch(2<<20, records.CodecGzip),
		"control_batch": control,
		"forged_marker": headerBatch(records.CodecNone, recordcrypt.HeaderKey, "\x01"),
		"double_marker": headerBatch(records.CodecNone, recordcrypt.HeaderKey, "\x01", recordcrypt.HeaderKey, "\x01"),
	}
}

func produceSeeds(t testing.TB, flt *Filter) []produceSeed {
	ok := plainBatch([][]byte{[]byte("v"), nil, {}})
	seeds := []produceSeed{
		{"ok_mixed", produceBody([]producePart{{"enc-a", 0, codecBatch([][]byte{[]byte("x"), nil}, records.CodecZstd)}, {"plain-x", 0, ok}, {"other", 0, ok}}), produceVersion},
		{"topic_0xff", produceBody([]producePart{{"\xff", 0, ok}, {"enc-a", 0, ok}}), produceVersion},
		{"duplicate_partitions", produceBody([]producePart{{"enc-a", 0, ok}, {"plain-x", 0, ok}, {"enc-a", 0, ok}}), produceVersion},
		{"entity", produceBody([]producePart{{"ent-x", 0, entityBatch("a", "b", "a")}}), produceVersion},
		{"entity_missing", produceBody([]producePart{{"ent-x", 0, entityBatch("a", "")}}), produceVersion},
		{"entity_unknown_kek", produceBody([]producePart{{"ent-x", 0, entityBatch("zz")}}), produceVersion},
	}
	for name, b := range hostileBatches() {
		seeds = append(seeds, produceSeed{name, produceBody([]producePart{{"enc-a", 0, b}, {"plain-x", 1, b}}), produceVersion})
	}
	return seeds
}

// entityBatch is a batch of records whose header tenant names each one's
// entity ("" leaves the header out).
func entityBatch(tenants ...string) []byte {
	var recs []testRecord
	for _, tn := range tenants {
		r := testRecord{key: []byte("k"), value: []byte("v")}
		if tn != "" {
			r.headers = []kmsg.Header{{Key: "tenant", Value: []byte(tn)}}
		}
		recs = append(recs, r)
	}
	return recordBatch(recs, records.CodecNone)
}

func fetchBody(parts []fetchPart) []byte {
	fr, hlen := fetchResponse(parts)
	return fr[hlen:]
}

func fetchSeeds(t testing.TB, flt *Filter) []fetchSeed {
	enc := encryptThrough(t, flt, "enc-a", codecBatch([][]byte{[]byte("x"), nil, []byte("y")}, records.CodecLz4))
	tampered := bytes.Clone(enc)
	tampered[len(tampered)-3] ^= 1
	h := hostileBatches()
	seeds := []fetchSeed{
		{"ok", fetchBody([]fetchPart{{topic: "enc-a", set: enc}, {topic: "plain-x", set: h["forged_marker"]}}), fetchVersion, false},
		{"tampered_after_good", fetchBody([]fetchPart{{topic: "enc-a", set: cat(enc, tampered)}}), fetchVersion, false},
		{"topic_0xff", fetchBody([]fetchPart{{topic: "\xff", set: enc}}), fetchVersion, false},
		{"entity", fetchBody([]fetchPart{{topic: "ent-x", set: encryptThrough(t, flt, "ent-x", entityBatch("a", "b"))}}), fetchVersion, false},
	}
	for name, b := range h {
		seeds = append(seeds, fetchSeed{name, fetchBody([]fetchPart{{topic: "enc-a", set: cat(enc, b)}, {topic: "plain-x", partition: 1, set: b}}), fetchVersion, false})
	}
	// ShareFetch v1: topics by id.
	sf := kmsg.NewPtrShareFetchResponse()
	sf.SetVersion(1)
	for i, id := range [][16]byte{{1}, {2}, {4}} {
		st := kmsg.NewShareFetchResponseTopic()
		st.TopicID = id
		sp := kmsg.NewShareFetchResponseTopicPartition()
		sp.Partition = int32(i)
		sp.Records = cat(enc, h["double_marker"])
		st.Partitions = append(st.Partitions, sp)
		sf.Topics = append(sf.Topics, st)
	}
	seeds = append(seeds, fetchSeed{"share_fetch", sf.AppendTo(nil), 0, true})
	return seeds
}

// TestWriteFuzzSeeds writes the seeds above into testdata/fuzz (run with
// KSEAL_WRITE_FUZZ_SEEDS=1 after changing them). The files keep the hostile
// inputs in every `go test` run; the encrypted ones there are under keys of
// the run that wrote them, so they exercise the KMS-refusal paths, while the
// fuzz targets add fresh ones each run.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KSEAL_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set KSEAL_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	flt := newMixedFilter(t, nil)
	write := func(target, name string, args ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		content := "go test fuzz v1\n" + strings.Join(args, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range produceSeeds(t, flt) {
		write("FuzzProduceFilter", s.name, goBytes(s.body), goByte(s.version))
	}
	for _, s := range fetchSeeds(t, flt) {
		write("FuzzFetchFilter", s.name, goBytes(s.body), goByte(s.version), goBool(s.share))
	}
	for _, s := range produceSeedsV2() {
		write("FuzzProduceFilter", s.name, goBytes(s.body), goByte(s.version))
	}
	for _, s := range fetchSeedsV2(t, newV2Filter(t, nil, nil)) {
		write("FuzzFetchFilter", s.name, goBytes(s.body), goByte(s.version), goBool(s.share))
	}
}

func goBytes(b []byte) string { return "[]byte(" + strconv.Quote(string(b)) + ")" }
func goByte(v uint8) string   { return fmt.Sprintf("byte(%q)", v) }
func goBool(v bool) string    { return fmt.Sprintf("bool(%v)", v) }

//go:build integration

package integration

// Real-broker proofs of format v2 (issue #14, "Proof (real broker)"):
// record keys sealed deterministically so that compaction keeps working,
// headers sealed inside the envelope, every client round-tripping keys and
// headers byte for byte, partitioning unchanged, key-based consumers giving
// the same answers, tampering refused, and v1 records still readable. Each
// test starts its own kseal(s) and local KMS and runs in parallel with the
// others; record counts are small to keep the set short.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/testenv"
)

// TestKeyEncryptionCompaction: a compacted topic with keys, values and
// headers encrypted, written by two kseal processes through several DEK
// rotations and a KEK rotation. Equal plaintext keys are stored as equal
// bytes (one deterministic key for the topic, whatever the DEK, the KEK
// version and the process), so the log cleaner keeps exactly the newest
// record of each key and removes the tombstoned keys, on every replica; no
// plaintext key, value, header name or header value is on disk; through
// kseal the consumer gets the newest value of each key with its plaintext
// key and headers.
func TestKeyEncryptionCompaction(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	e := newV2Env(t)
	topic := e.topic(t, "compact")
	// Three records per DEK: every round of five records rotates the DEK
	// of the process that writes it at least once.
	const enc, dek = "{value: true, key: true, headers: ['*']}", "{maxEncryptionsPerDek: 3}"
	pa := e.start(t, 2, enc, dek)
	pb := e.start(t, 2, enc, dek)
	e2eCreateTopic(t, topic, 1, map[string]string{
		"cleanup.policy":            "compact",
		"min.cleanable.dirty.ratio": "0.01",
		"delete.retention.ms":       "100",
		"min.compaction.lag.ms":     "0",
	})
	keyCanary, valCanary, hdrCanary := uniq("keycanary"), uniq("valcanary"), uniq("hdrcanary")
	// Header names are encrypted too: one carries a canary.
	nameCanary := uniq("namecanary")
	const nKeys, rounds = 5, 4
	key := func(i int) []byte { return []byte(fmt.Sprintf("customer-%d-%s", i, keyCanary)) }
	val := func(round, i int) []byte { return []byte(fmt.Sprintf("v%d of customer %d %s", round, i, valCanary)) }
	hdrs := func(round, i int) []kgo.RecordHeader {
		return []kgo.RecordHeader{
			{Key: "pii", Value: []byte(fmt.Sprintf("email-%d-%d-%s", round, i, hdrCanary))},
			{Key: "trace", Value: []byte(fmt.Sprintf("t%d.%d", round, i))},
			{Key: "pii", Value: nil},
			{Key: "x-" + nameCanary, Value: []byte{}},
		}
	}
	clients := map[string]*kgo.Client{"a": testenv.Kgo(t, []string{pa.Bootstrap}), "b": testenv.Kgo(t, []string{pb.Bootstrap})}
	type sent struct {
		key   int
		proc  string
		rec   *kgo.Record
		tomb  bool
		round int
	}
	var all []sent
	produce := func(proc string, recs ...*kgo.Record) {
		t.Helper()
		for _, r := range recs {
			r.Topic = topic
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := clients[proc].ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce through kseal %s: %v", proc, err)
		}
	}
	for round := range rounds {
		if round == rounds/2 {
			// Rotate the KEK halfway: new DEKs are wrapped under its
			// version 2 (the key store reloads within 200ms, and a DEK
			// seals at most 3 records), but the deterministic key, whose
			// EDEK stays under version 1, must not change.
			e.k.rotate(t, "KEK-"+topic)
			time.Sleep(time.Second)
		}
		proc := "a"
		if round%2 == 1 {
			proc = "b"
		}
		var recs []*kgo.Record
		for i := range nKeys {
			r := &kgo.Record{Key: key(i), Value: val(round, i), Headers: hdrs(round, i)}
			recs = append(recs, r)
			all = append(all, sent{key: i, proc: proc, rec: r, round: round})
		}
		produce(proc, recs...)
	}
	// Key 3 is deleted with a tombstone carrying a header (sealed into the
	// marker: the value stays null), key 4 with a bare one (key-only).
	tomb3 := &kgo.Record{Key: key(3), Headers: []kgo.RecordHeader{{Key: "pii", Value: []byte("deleted-" + hdrCanary)}}}
	tomb4 := &kgo.Record{Key: key(4)}
	produce("b", tomb3)
	produce("a", tomb4)
	all = append(all, sent{key: 3, proc: "b", rec: tomb3, tomb: true, round: rounds}, sent{key: 4, proc: "a", rec: tomb4, tomb: true, round: rounds})
	lastData := tomb4.Offset

	// Before compaction: every record is v2 with the parts it should
	// have, no clear header, one sealed form per plaintext key, one key
	// id for the topic, and the DEKs rotated in both processes.
	raw := v2Raw(t, len(all), topic)
	byOffset := map[int64]testenv.BinRecord{}
	for _, r := range raw {
		byOffset[r.Offset] = r
	}
	sealed := map[int]string{}
	keyIDs := map[string]bool{}
	edeks := map[string]map[string]bool{"a": {}, "b": {}}
	kekVersions := map[int]map[string]bool{} // round -> KEK versions of its DEKs
	for _, s := range all {
		r, ok := byOffset[s.rec.Offset]
		if !ok {
			t.Fatalf("no stored record at offset %d", s.rec.Offset)
		}
		st, err := v2Inspect(r)
		if err != nil {
			t.Errorf("stored record @%d: %v", r.Offset, err)
			continue
		}
		wantParts := byte(v2PartValue | v2PartKey | v2PartHeaders)
		switch {
		case s.rec == tomb3:
			wantParts = v2PartKey | v2PartHeaders
		case s.rec == tomb4:
			wantParts = v2PartKey
		}
		if st.Parts != wantParts {
			t.Errorf("stored record @%d: parts %03b, want %03b", r.Offset, st.Parts, wantParts)
		}
		if len(st.ClearHeaders) != 0 {
			t.Errorf("stored record @%d: clear headers %v, want none (all are encrypted)", r.Offset, st.ClearHeaders)
		}
		if s.tomb != (r.Value == nil) {
			t.Errorf("stored record @%d: value null %v, want %v", r.Offset, r.Value == nil, s.tomb)
		}
		if err := v2CheckKey(r.Key, key(s.key), st.Parts); err != nil {
			t.Errorf("stored record @%d: %v", r.Offset, err)
		}
		if prev, ok := sealed[s.key]; ok && prev != string(r.Key) {
			t.Errorf("key %d sealed differently at offset %d (%s, round %d): %x, earlier %x",
				s.key, r.Offset, s.proc, s.round, r.Key, prev)
		}
		sealed[s.key] = string(r.Key)
		keyIDs[string(st.KeyID)] = true
		if st.EDEK != nil {
			edeks[s.proc][string(st.EDEK)] = true
			info, err := local.DescribeEDEK(st.EDEK)
			if err != nil {
				t.Errorf("stored record @%d: EDEK: %v", r.Offset, err)
			}
			if kekVersions[s.round] == nil {
				kekVersions[s.round] = map[string]bool{}
			}
			kekVersions[s.round][info.Version] = true
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	distinct := map[string]bool{}
	for _, s := range sealed {
		distinct[s] = true
	}
	if len(distinct) != nKeys {
		t.Errorf("%d distinct sealed keys for %d plaintext keys", len(distinct), nKeys)
	}
	if len(keyIDs) != 1 {
		t.Errorf("%d deterministic key ids on one topic, want 1", len(keyIDs))
	}
	for proc, m := range edeks {
		if len(m) < 2 {
			t.Errorf("kseal %s sealed its records under %d DEK(s): the test wants rotations (maxEncryptionsPerDek 3)", proc, len(m))
		}
	}
	// Equal sealed keys (checked above) on both sides of the KEK rotation.
	if v := kekVersions[0]; len(v) != 1 || !v["1"] {
		t.Errorf("round 0 under KEK versions %v, want 1 only", v)
	}
	// A DEK made before the rotation may still seal a record or two of
	// the last round (each process keeps its current DEK until it is used
	// up); the rest are under the new version.
	if v := kekVersions[rounds-1]; !v["2"] {
		t.Errorf("round %d under KEK versions %v, want 2 among them (the rotation did not take)", rounds-1, v)
	}

	// Compact: every append after 100ms starts a new segment, the cleaner
	// looks for work every 200ms (cluster-wide and dynamic; restored at
	// cleanup), and a record produced now and then closes the active
	// segment (never cleaned) and dirties the log for the second pass that
	// removes the tombstones.
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	ctx := context.Background()
	segmentMs, backoff := "100", "200"
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.ms", Value: &segmentMs}}, topic); err != nil {
		t.Fatalf("set segment.ms: %v", err)
	}
	if _, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "log.cleaner.backoff.ms", Value: &backoff}}); err != nil {
		t.Fatalf("set log.cleaner.backoff.ms: %v", err)
	}
	t.Cleanup(func() {
		if _, err := adm.AlterBrokerConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "log.cleaner.backoff.ms"}}); err != nil {
			t.Errorf("restore log.cleaner.backoff.ms: %v", err)
		}
	})
	// What must survive: the last round's record of keys 0-2.
	want := map[int64]int{}
	for _, s := range all {
		if s.round == rounds-1 && s.key < 3 {
			want[s.rec.Offset] = s.key
		}
	}
	rolls := 0
	start := time.Now()
	var lastState string
	e2eEventually(t, 90*time.Second, 300*time.Millisecond, "the log cleaner did not compact the topic on every replica", func() bool {
		rolls++
		proc := []string{"a", "b"}[rolls%2]
		produce(proc, &kgo.Record{Key: []byte(fmt.Sprintf("roll-%d", rolls)), Value: []byte("roll")})
		// Read directly from the brokers.
		left := map[int64]bool{}
		for _, r := range e2eReadToEnd(t, cluster.BootstrapString(), topic) {
			if r.Offset <= lastData {
				left[r.Offset] = true
			}
		}
		lastState = fmt.Sprintf("direct read: offsets %v left", left)
		if len(left) != len(want) {
			return false
		}
		for o := range want {
			if !left[o] {
				return false
			}
		}
		// And on disk, on every replica: one record per surviving sealed
		// key, none of the deleted ones.
		replicas, err := cluster.ReplicaRecords(topic, 0)
		if err != nil {
			lastState = err.Error()
			return false
		}
		if len(replicas) != replication {
			t.Fatalf("partition on %d log dirs, want %d", len(replicas), replication)
		}
		for dir, recs := range replicas {
			n := map[string]int{}
			for _, r := range recs {
				n[string(r.Key)]++
			}
			for i := range nKeys {
				wantN := 1
				if i >= 3 {
					wantN = 0
				}
				if n[sealed[i]] != wantN {
					lastState = fmt.Sprintf("replica %s: %d records of key %d on disk, want %d", dir, n[sealed[i]], i, wantN)
					return false
				}
			}
		}
		return true
	})
	t.Logf("compacted on every replica after %v (%d roll records); last state: %s",
		time.Since(start).Round(time.Millisecond), rolls, lastState)

	// No plaintext key, value or header value anywhere on disk (all
	// topics, every replica, inside compressed batches too).
	e2eAssertNotOnDisk(t, keyCanary)
	e2eAssertNotOnDisk(t, valCanary)
	e2eAssertNotOnDisk(t, hdrCanary)
	e2eAssertNotOnDisk(t, nameCanary)

	// Through the other kseal: the newest value of each surviving key,
	// with its plaintext key and headers, in the producer's order.
	for _, p := range []*e2eProxy{pb, pa} {
		var got []testenv.BinRecord
		for _, r := range e2eReadToEnd(t, p.Bootstrap, topic) {
			if r.Offset <= lastData {
				got = append(got, testenv.BinFromKgo(r))
			}
		}
		var wantRecs []testenv.BinRecord
		for _, s := range all {
			if _, ok := want[s.rec.Offset]; ok {
				wantRecs = append(wantRecs, testenv.BinRecord{Topic: topic, Offset: s.rec.Offset,
					Key: key(s.key), Value: val(s.round, s.key), Headers: testenv.BinFromKgo(&kgo.Record{Headers: hdrs(s.round, s.key)}).Headers})
			}
		}
		v2AssertSame(t, "franz-go through kseal after compaction", got, wantRecs, true)
	}
}

// v2ClientRecords are the records one client produces in
// TestKeyHeaderRoundTripClients: null, empty and binary keys (one holding
// all 256 byte values), null and empty values, duplicate header names,
// null and empty header values, encrypted and clear headers interleaved.
func v2ClientRecords(topic, src, keyCanary, valCanary, hdrCanary string) []testenv.BinRecord {
	all256 := make([]byte, 256)
	for i := range all256 {
		all256[i] = byte(i)
	}
	rev := make([]byte, 256)
	for i := range rev {
		rev[i] = byte(255 - i)
	}
	h := func(k, v string) testenv.BinHeader { return testenv.BinHeader{Key: k, Value: []byte(v)} }
	null := func(k string) testenv.BinHeader { return testenv.BinHeader{Key: k} }
	recs := []testenv.BinRecord{
		{Value: []byte(src + " null key " + valCanary)},
		{Key: []byte{}, Value: []byte{}, Headers: []testenv.BinHeader{h("a", "1")}},
		{Key: append(append([]byte{}, all256...), src...), Value: append(append([]byte{}, rev...), src...),
			Headers: []testenv.BinHeader{h("dup", "x"), null("a"), h("dup", "y"), null("secret"),
				{Key: "dup", Value: []byte{}}, h("b", "z"), h("secret", hdrCanary+"-"+src)}},
		{Key: []byte("plain-" + keyCanary + "-" + src), Value: []byte("v " + valCanary + " " + src),
			Headers: []testenv.BinHeader{h("secret-2", hdrCanary), h("dup", hdrCanary+"-dup")}},
		{Key: []byte("tomb-" + src + "-" + keyCanary), Headers: []testenv.BinHeader{h("secret", "s"), h("x", "clear")}},
		{Headers: []testenv.BinHeader{h("dup", "d")}},
		{Key: []byte{0}, Value: []byte("zero " + src)},
	}
	for i := range recs {
		recs[i].Topic, recs[i].Partition = topic, -1
	}
	return recs
}

// TestKeyHeaderRoundTripClients: franz-go, librdkafka (confluent-kafka)
// and the Java client each produce through kseal, with keys and the
// headers named dup or sec* encrypted; each of them consumes everything
// through kseal byte for byte at the positions the producers reported.
// Stored, keys are sealed (null keys stay null), the encrypted headers are
// gone and the clear ones are in their order.
func TestKeyHeaderRoundTripClients(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	e := newV2Env(t)
	topic := e.topic(t, "clients")
	p := e.start(t, 2, "{value: true, key: true, headers: ['sec*', dup]}", "")
	e2eCreateTopic(t, topic, 3, nil)
	keyCanary, valCanary, hdrCanary := uniq("keycanary"), uniq("valcanary"), uniq("hdrcanary")
	sealedHeader := func(name string) bool { return name == "dup" || strings.HasPrefix(name, "sec") }

	franz := v2ClientRecords(topic, "franz", keyCanary, valCanary, hdrCanary)
	krs := make([]*kgo.Record, len(franz))
	for i, r := range franz {
		krs[i] = testenv.BinToKgo(r)
	}
	if err := testenv.Kgo(t, []string{p.Bootstrap}).ProduceSync(context.Background(), krs...).FirstErr(); err != nil {
		t.Fatalf("franz-go produce: %v", err)
	}
	for i, r := range krs {
		franz[i].Partition, franz[i].Offset = r.Partition, r.Offset
	}
	rdk := v2ClientRecords(topic, "librdkafka", keyCanary, valCanary, hdrCanary)
	testenv.RdkafkaBinProduce(t, p.Bootstrap, topic, rdk, nil)
	java := v2ClientRecords(topic, "java", keyCanary, valCanary, hdrCanary)
	testenv.JavaBinProduce(t, cluster, p.Bootstrap, topic, java)
	want := append(append(append([]testenv.BinRecord{}, franz...), rdk...), java...)

	// Stored.
	stored := map[string]testenv.BinRecord{}
	for _, r := range v2Raw(t, len(want), topic) {
		stored[fmt.Sprintf("%d@%d", r.Partition, r.Offset)] = r
	}
	sealedOf := map[string]string{}
	for _, w := range want {
		r, ok := stored[fmt.Sprintf("%d@%d", w.Partition, w.Offset)]
		if !ok {
			t.Errorf("nothing stored at %s", v2Pos(w))
			continue
		}
		st, err := v2Inspect(r)
		if err != nil {
			t.Errorf("stored %s: %v", v2Pos(r), err)
			continue
		}
		var clear []testenv.BinHeader
		var wantParts byte
		for _, h := range w.Headers {
			if sealedHeader(h.Key) {
				wantParts |= v2PartHeaders
			} else {
				clear = append(clear, h)
			}
		}
		if w.Value != nil {
			wantParts |= v2PartValue
		}
		if w.Key != nil {
			wantParts |= v2PartKey
		}
		if st.Parts != wantParts {
			t.Errorf("stored %s: parts %03b, want %03b (%s)", v2Pos(r), st.Parts, wantParts, w.Content())
		}
		if err := v2CheckKey(r.Key, w.Key, st.Parts); err != nil {
			t.Errorf("stored %s: %v", v2Pos(r), err)
		}
		if got, wantC := (testenv.BinRecord{Headers: st.ClearHeaders}).Content(), (testenv.BinRecord{Headers: clear}).Content(); got != wantC {
			t.Errorf("stored %s: clear headers %s, want %s", v2Pos(r), got, wantC)
		}
		if w.Value == nil && r.Value != nil {
			t.Errorf("stored %s: null value stored as %x", v2Pos(r), r.Value)
		}
		// The empty key and the key 0x00 come from every client: the
		// same plaintext key is the same stored key, whichever client.
		if w.Key != nil {
			if prev, ok := sealedOf[string(w.Key)]; ok && prev != string(r.Key) {
				t.Errorf("stored %s: key %x sealed as %x, elsewhere as %x", v2Pos(r), w.Key, r.Key, prev)
			}
			sealedOf[string(w.Key)] = string(r.Key)
		}
	}

	// Each client reads all three clients' records back.
	var byFranz []testenv.BinRecord
	for _, r := range e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, len(want), []string{topic}) {
		byFranz = append(byFranz, testenv.BinFromKgo(r))
	}
	v2AssertSame(t, "franz-go consumer", byFranz, want, true)
	v2AssertSame(t, "librdkafka consumer", testenv.RdkafkaBinConsume(t, p.Bootstrap, topic, uniq("it-v2-rdk"), len(want), nil), want, true)
	v2AssertSame(t, "java consumer", testenv.JavaBinConsume(t, cluster, p.Bootstrap, topic, uniq("it-v2-java"), len(want)), want, true)

	e2eAssertNotOnDisk(t, keyCanary)
	e2eAssertNotOnDisk(t, valCanary)
	e2eAssertNotOnDisk(t, hdrCanary)
}

// TestKeyedPartitioning: the producer hashes the plaintext key before kseal
// sees it, so keyed records land where the client's partitioner put them:
// franz-go, the Java client (both murmur2 by default) and librdkafka
// (partitioner murmur2_random) report murmur2(plaintext key) mod 6, the
// stored record is at the reported partition and offset with the key
// sealed (the same bytes for the same key from every client), and kseal
// gives it back there with the plaintext key.
func TestKeyedPartitioning(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	e := newV2Env(t)
	topic := e.topic(t, "partitioning")
	p := e.start(t, 2, "{value: true, key: true}", "")
	e2eCreateTopic(t, topic, partitions, nil)
	nonce := uniq("k")
	mk := func(src string) []testenv.BinRecord {
		out := make([]testenv.BinRecord, 12)
		for i := range out {
			out[i] = testenv.BinRecord{Topic: topic, Partition: -1, Key: []byte(fmt.Sprintf("account-%d-%s", i, nonce)),
				Value: []byte(fmt.Sprintf("%s %d", src, i))}
		}
		return out
	}
	franz, rdk, java := mk("franz"), mk("librdkafka"), mk("java")
	krs := make([]*kgo.Record, len(franz))
	for i, r := range franz {
		krs[i] = testenv.BinToKgo(r)
	}
	if err := testenv.Kgo(t, []string{p.Bootstrap}).ProduceSync(context.Background(), krs...).FirstErr(); err != nil {
		t.Fatalf("franz-go produce: %v", err)
	}
	for i, r := range krs {
		franz[i].Partition, franz[i].Offset = r.Partition, r.Offset
	}
	testenv.RdkafkaBinProduce(t, p.Bootstrap, topic, rdk, map[string]string{"partitioner": "murmur2_random"})
	testenv.JavaBinProduce(t, cluster, p.Bootstrap, topic, java)
	want := append(append(append([]testenv.BinRecord{}, franz...), rdk...), java...)

	usedParts := map[int32]bool{}
	for _, w := range want {
		if exp := v2Partition(topic, w.Key, partitions); w.Partition != exp {
			t.Errorf("%q (%s) went to partition %d, murmur2 of the plaintext key says %d", w.Key, w.Value, w.Partition, exp)
		}
		usedParts[w.Partition] = true
	}
	if len(usedParts) < 3 {
		t.Errorf("the keys used only partitions %v: the test wants a spread", usedParts)
	}
	stored := map[string]testenv.BinRecord{}
	for _, r := range v2Raw(t, len(want), topic) {
		stored[fmt.Sprintf("%d@%d", r.Partition, r.Offset)] = r
	}
	sealedOf := map[string]string{}
	for _, w := range want {
		r, ok := stored[fmt.Sprintf("%d@%d", w.Partition, w.Offset)]
		if !ok {
			t.Errorf("%q: nothing stored at the reported %s", w.Key, v2Pos(w))
			continue
		}
		st, err := v2Inspect(r)
		if err != nil {
			t.Errorf("stored %s: %v", v2Pos(r), err)
			continue
		}
		if err := v2CheckKey(r.Key, w.Key, st.Parts); err != nil {
			t.Errorf("stored %s: %v", v2Pos(r), err)
		}
		if prev, ok := sealedOf[string(w.Key)]; ok && prev != string(r.Key) {
			t.Errorf("%q stored as %x at %s and as %x elsewhere", w.Key, r.Key, v2Pos(r), prev)
		}
		sealedOf[string(w.Key)] = string(r.Key)
	}
	var got []testenv.BinRecord
	for _, r := range e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, len(want), []string{topic}) {
		got = append(got, testenv.BinFromKgo(r))
	}
	v2AssertSame(t, "franz-go consumer", got, want, true)
}

// TestKeyAggregationJava: a Java consumer group that sums values per key
// (KsealKeys.java aggregate: the kind of state a Kafka Streams aggregation
// keeps) gives the same sums through kseal on a topic with encrypted keys as
// directly on an unencrypted topic holding the same records, and both are
// the sums of what was produced.
func TestKeyAggregationJava(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	e := newV2Env(t)
	encTopic := e.topic(t, "aggregate")
	p := e.start(t, 2, "{value: true, key: true, headers: ['*']}", "")
	e2eCreateTopic(t, encTopic, 3, nil)
	plainTopic := e2eTopic(t, "plain-aggregate", 3, nil)

	keys := [][]byte{[]byte("alice"), []byte("bob"), []byte("carol"), {0x00, 0xff, 0x10}, {}, nil, []byte("dave")}
	var enc, plain []*kgo.Record
	expect := map[string][2]int64{}
	for i := range 60 {
		k := keys[(i*5+i/7)%len(keys)]
		v := int64(i*37%101 - 30)
		for _, set := range []*[]*kgo.Record{&enc, &plain} {
			topic := encTopic
			if set == &plain {
				topic = plainTopic
			}
			*set = append(*set, &kgo.Record{Topic: topic, Key: k, Value: []byte(strconv.FormatInt(v, 10)),
				Headers: []kgo.RecordHeader{{Key: "n", Value: []byte(strconv.Itoa(i))}}})
		}
		s := expect[testenv.AggregateKey(k)]
		expect[testenv.AggregateKey(k)] = [2]int64{s[0] + v, s[1] + 1}
	}
	if err := testenv.Kgo(t, []string{p.Bootstrap}).ProduceSync(context.Background(), enc...).FirstErr(); err != nil {
		t.Fatalf("produce through kseal: %v", err)
	}
	if err := testenv.Kgo(t, cluster.Bootstrap).ProduceSync(context.Background(), plain...).FirstErr(); err != nil {
		t.Fatalf("produce directly: %v", err)
	}
	// The encrypted topic really holds sealed keys.
	for _, r := range v2Raw(t, len(enc), encTopic) {
		st, err := v2Inspect(r)
		if err != nil {
			t.Fatalf("stored %s: %v", v2Pos(r), err)
		}
		if r.Key != nil && st.Parts&v2PartKey == 0 {
			t.Fatalf("stored %s: key %x not sealed", v2Pos(r), r.Key)
		}
	}

	viaKseal := testenv.JavaAggregate(t, cluster, p.Bootstrap, encTopic, uniq("it-v2-agg"), len(enc))
	directly := testenv.JavaAggregate(t, cluster, cluster.BootstrapString(), plainTopic, uniq("it-v2-agg-plain"), len(plain))
	wantAgg := map[string]string{}
	for k, s := range expect {
		wantAgg[k] = fmt.Sprintf("%d %d", s[0], s[1])
	}
	if fmt.Sprint(viaKseal) != fmt.Sprint(directly) {
		t.Errorf("sums per key differ:\n through kseal, encrypted keys %v\n directly, plaintext keys   %v", viaKseal, directly)
	}
	if fmt.Sprint(directly) != fmt.Sprint(wantAgg) {
		t.Errorf("sums per key %v, want %v", directly, wantAgg)
	}
	if fmt.Sprint(viaKseal) != fmt.Sprint(wantAgg) {
		t.Errorf("sums per key through kseal %v, want %v", viaKseal, wantAgg)
	}
}

// TestV2Tampering: records altered by someone producing directly to the
// brokers fail to open and are refused with CORRUPT_MESSAGE for their
// partition (docs/format.md, Errors), never delivered in plaintext: a
// sealed key copied onto another record (the value's AAD binds the stored
// key), a record copied to another topic (the topic is bound in the value
// AAD and the key's SIV), and a marker with a parts bit cleared (the parts
// byte is in the AAD).
func TestV2Tampering(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	e := newV2Env(t)
	names := map[string]string{}
	for _, n := range []string{"swap", "move-src", "move-dst", "parts"} {
		names[n] = e.topic(t, "tamper-"+n)
	}
	p := e.start(t, 2, "{value: true, key: true, headers: ['*']}", "")
	direct := testenv.Kgo(t, cluster.Bootstrap)
	for _, tc := range []struct {
		name, topic string
		// setup produces through kseal and returns the forged record to
		// append directly, and plaintexts that no record of the topic
		// may show (those only the forged record holds).
		setup func(t *testing.T, cl *kgo.Client) (*kgo.Record, []string)
	}{
		{"sealed key swapped", names["swap"], func(t *testing.T, cl *kgo.Client) (*kgo.Record, []string) {
			topic := names["swap"]
			alice, bob := uniq("alice"), uniq("bob")
			testenv.KgoProduce(t, cl, []testenv.Record{
				{Topic: topic, Key: "alice", Value: alice, Headers: []testenv.Header{testenv.H("h", alice)}},
				{Topic: topic, Key: "bob", Value: bob, Headers: []testenv.Header{testenv.H("h", bob)}}})
			a, b := e2eRawAt(t, topic, 0, 0), e2eRawAt(t, topic, 0, 1)
			return &kgo.Record{Topic: topic, Key: a.Key, Value: b.Value, Headers: b.Headers}, nil
		}},
		{"moved to another topic", names["move-dst"], func(t *testing.T, cl *kgo.Client) (*kgo.Record, []string) {
			src, dst := names["move-src"], names["move-dst"]
			e2eCreateTopic(t, src, 1, nil)
			secret, own := uniq("moved"), uniq("own")
			testenv.KgoProduce(t, cl, []testenv.Record{{Topic: src, Key: "alice", Value: secret, Headers: []testenv.Header{testenv.H("h", secret)}}})
			testenv.KgoProduce(t, cl, []testenv.Record{{Topic: dst, Key: "alice", Value: own}})
			s := e2eRawAt(t, src, 0, 0)
			return &kgo.Record{Topic: dst, Key: s.Key, Value: s.Value, Headers: s.Headers}, []string{secret}
		}},
		{"KEY bit cleared", names["parts"], func(t *testing.T, cl *kgo.Client) (*kgo.Record, []string) {
			topic := names["parts"]
			secret := uniq("secret")
			testenv.KgoProduce(t, cl, []testenv.Record{{Topic: topic, Key: "alice", Value: secret}})
			s := e2eRawAt(t, topic, 0, 0)
			forged := &kgo.Record{Topic: topic, Key: s.Key, Value: s.Value}
			for _, h := range s.Headers {
				v := bytes.Clone(h.Value)
				if h.Key == "kseal" && len(v) >= 2 {
					v[1] &^= v2PartKey
				}
				forged.Headers = append(forged.Headers, kgo.RecordHeader{Key: h.Key, Value: v})
			}
			return forged, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e2eCreateTopic(t, tc.topic, 1, nil)
			forged, secrets := tc.setup(t, testenv.Kgo(t, []string{p.Bootstrap}))
			if err := direct.ProduceSync(context.Background(), forged).FirstErr(); err != nil {
				t.Fatalf("produce the forged record directly: %v", err)
			}
			got, errs := e2eConsume(t, p.Bootstrap, int(forged.Offset)+1, 5*time.Second, []string{tc.topic}, kgo.KeepRetryableFetchErrors())
			for _, r := range got {
				if r.Offset >= forged.Offset {
					t.Errorf("forged record returned: key %q value %q", r.Key, r.Value)
				}
			}
			codes := map[string]bool{}
			for _, err := range errs {
				var ke *kerr.Error
				if errors.As(err, &ke) {
					codes[ke.Message] = true
				} else {
					codes[err.Error()] = true
				}
			}
			if len(codes) != 1 || !codes[kerr.CorruptMessage.Message] {
				t.Errorf("fetch errors %v, want only CORRUPT_MESSAGE", codes)
			}
			for _, r := range got {
				for _, sec := range secrets {
					if strings.Contains(string(r.Value), sec) {
						t.Errorf("record @%d returned %q, which only the forged record holds", r.Offset, sec)
					}
				}
			}
		})
	}
}

// TestV1ReadableAfterV2: records a kseal wrote in format v1 (configuration
// from before v2: no format section) stay readable after switching to
// writeVersion 2 with keys and headers encrypted, mixed in one partition
// with v2 records of the same keys; and a kseal switched back to
// writeVersion 1 still reads both ("upgrade readers before writers").
func TestV1ReadableAfterV2(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	e := newV2Env(t)
	topic := e.topic(t, "v1v2")
	const enc = "{value: true, key: true, headers: ['*']}"
	p1 := e.start(t, 0, "", "")
	e2eCreateTopic(t, topic, 1, nil)
	canary := uniq("canary")
	mk := func(gen string) []testenv.Record {
		out := make([]testenv.Record, 4)
		for i := range out {
			out[i] = testenv.Record{Topic: topic, Partition: 0, Key: fmt.Sprintf("k-%d-%s", i, canary),
				Value: fmt.Sprintf("%s value %d %s", gen, i, canary), Headers: []testenv.Header{testenv.H("gen", gen+"-"+canary)}}
		}
		return out
	}
	v1Recs, v2Recs := mk("v1"), mk("v2")
	testenv.KgoProduce(t, testenv.Kgo(t, []string{p1.Bootstrap}), v1Recs)
	if err := p1.Stop(); err != nil {
		t.Fatalf("stop the v1 kseal: %v", err)
	}
	p2 := e.start(t, 2, enc, "")
	testenv.KgoProduce(t, testenv.Kgo(t, []string{p2.Bootstrap}), v2Recs)

	raw := v2Raw(t, 8, topic)
	for _, r := range raw {
		m := map[string][]byte{}
		for _, h := range r.Headers {
			m[h.Key] = h.Value
		}
		if r.Offset < 4 {
			if !bytes.Equal(m["kseal"], []byte{0x01}) || string(r.Key) != v1Recs[r.Offset].Key {
				t.Errorf("stored v1 record @%d: marker %x key %q, want 01 and the plaintext key", r.Offset, m["kseal"], r.Key)
			}
			continue
		}
		st, err := v2Inspect(r)
		if err != nil {
			t.Errorf("stored v2 record @%d: %v", r.Offset, err)
			continue
		}
		if st.Parts != v2PartValue|v2PartKey|v2PartHeaders {
			t.Errorf("stored v2 record @%d: parts %03b", r.Offset, st.Parts)
		}
		if err := v2CheckKey(r.Key, []byte(v2Recs[r.Offset-4].Key), st.Parts); err != nil {
			t.Errorf("stored v2 record @%d: %v", r.Offset, err)
		}
	}
	want := append(append([]testenv.Record{}, v1Recs...), v2Recs...)
	for i := range want {
		want[i].Offset = int64(i)
	}
	check := func(who string, got []testenv.Record) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %d records, want %d", who, len(got), len(want))
		}
		for _, r := range got {
			if r.Offset < 0 || r.Offset >= int64(len(want)) || r.Content() != want[r.Offset].Content() {
				t.Errorf("%s: record @%d: %s", who, r.Offset, r.Content())
			}
		}
	}
	var byFranz []testenv.Record
	for _, r := range e2eMustConsume(t, "franz-go through the v2 kseal", p2.Bootstrap, len(want), []string{topic}) {
		byFranz = append(byFranz, testenv.FromKgo(r))
	}
	check("franz-go through the v2 kseal", byFranz)
	check("kcat through the v2 kseal", testenv.KcatConsume(t, p2.Bootstrap, topic))

	// Back to writeVersion 1: v2 records stay readable.
	p3 := e.start(t, 1, "", "")
	byFranz = byFranz[:0]
	for _, r := range e2eMustConsume(t, "franz-go through the kseal back on v1", p3.Bootstrap, len(want), []string{topic}) {
		byFranz = append(byFranz, testenv.FromKgo(r))
	}
	check("franz-go through the kseal back on writeVersion 1", byFranz)
}

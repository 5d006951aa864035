//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
	"github.com/kseal/kseal/internal/testenv"
)

// e2eEncSection is an encryption section with the local KMS that encrypts
// every topic that has a KEK named KEK-<topic>. The DEK lifetimes are short
// so that a rotation shows within seconds, and unwrapped DEKs leave the
// decrypt cache a second after their last use so that a deleted KEK does
// too.
func e2eEncSection(k *e2eLocalKMS, unresolved string) string {
	return "    encryption:\n" + k.section() + fmt.Sprintf(`      policy:
        rules:
          - topicRegex: '.*'
            kek: 'KEK-$(topicName)'
        unresolvedKeyPolicy: %s
      dek: {refreshAfterWrite: 1s, expireAfterWrite: 2s, decryptCacheTtl: 1s, notFoundTtl: 500ms}
`, unresolved)
}

// TestEncryption runs kseal with the local KMS in front of the shared
// cluster and checks, with franz-go, kcat and the Java client, that what
// reaches the brokers is ciphertext and what consumers get back is exactly
// what was produced.
func TestEncryption(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	// Every topic's KEK exists before kseal starts, which loads the key
	// store at once: a KEK created later is seen within reloadInterval,
	// and a topic whose KEK is not seen yet passes through unencrypted
	// under PASSTHROUGH_UNENCRYPTED.
	e := &encEnv{k: newE2ELocalKMS(t), names: map[string]string{}}
	for _, prefix := range []string{"enc-rt", "enc-codec", "enc-compact", "enc-txn", "enc-mixed", "enc-reject-ok",
		"enc-rotate", "enc-deleted", "enc-tamper-tag", "enc-tamper-key", "enc-tamper-edek", "enc-planted", "enc-large"} {
		e.names[prefix] = uniq("it-" + prefix)
		e.k.create(t, "KEK-"+e.names[prefix])
	}
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	e.p = e2eStartKseal(t, testenv.KsealConfig(cluster.Bootstrap, gw, e2eEncSection(e.k, "PASSTHROUGH_UNENCRYPTED")))

	for _, tc := range []struct {
		name string
		run  func(t *testing.T, e *encEnv)
	}{
		{"round trip", testEncRoundTrip},
		{"codecs", testEncCodecs},
		{"large fetches across partitions", testEncLargeFetch},
		{"compaction", testEncCompaction},
		{"transactions", testEncTransactions},
		{"mixed topics in one request", testEncMixed},
		{"reject policy", testEncReject},
		{"rotation", testEncRotation},
		{"deleted KEK", testEncDeletedKEK},
		{"tampered records", testEncTampered},
		{"planted marker", testEncPlantedMarker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, e)
		})
	}
}

// encEnv is what the encryption subtests share: the kseal, its key store,
// and the names of the topics whose KEKs were made before kseal started.
type encEnv struct {
	p     *e2eProxy
	k     *e2eLocalKMS
	names map[string]string // prefix -> topic name
}

// topic creates the topic named for prefix (its KEK exists).
func (e *encEnv) topic(t *testing.T, prefix string, parts int32, configs map[string]string) string {
	t.Helper()
	name, ok := e.names[prefix]
	if !ok {
		t.Fatalf("no KEK made for topic prefix %q", prefix)
	}
	e2eCreateTopic(t, name, parts, configs)
	return name
}

// testEncRoundTrip: records produced by each client through kseal are stored
// encrypted (the canary in every value is nowhere on disk, while the
// plaintext keys are), and each client reads back every record with key,
// value, headers, timestamp, partition and offset identical to what is
// stored.
func testEncRoundTrip(t *testing.T, e *encEnv) {
	p := e.p
	topic := e.topic(t, "enc-rt", 3, nil)
	canary, nonce := uniq("canary"), uniq("k")
	value := func(src string, i int) string { return fmt.Sprintf("%s value %d %s zażółć", src, i, canary) }

	// franz-go: chosen timestamps and partitions, two headers, a null
	// key and an empty (not null) value.
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var franz []*kgo.Record
	for i := range 9 {
		franz = append(franz, &kgo.Record{Topic: topic, Partition: int32(i % 3),
			Key: []byte(fmt.Sprintf("franz-%d-%s", i, nonce)), Value: []byte(value("franz", i)),
			Timestamp: base.Add(time.Duration(i) * time.Second),
			Headers:   []kgo.RecordHeader{{Key: "src", Value: []byte("franz")}, {Key: "i", Value: []byte(strconv.Itoa(i))}}})
	}
	franz = append(franz,
		&kgo.Record{Topic: topic, Partition: 0, Value: []byte(value("franz-nullkey", 0)), Timestamp: base.Add(time.Minute)},
		&kgo.Record{Topic: topic, Partition: 1, Key: []byte("franz-empty-" + nonce), Value: []byte{}, Timestamp: base.Add(2 * time.Minute)})
	cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(context.Background(), franz...).FirstErr(); err != nil {
		t.Fatalf("franz-go produce: %v", err)
	}
	mk := func(src string, n int, part int32) []testenv.Record {
		out := make([]testenv.Record, n)
		for i := range out {
			out[i] = testenv.Record{Topic: topic, Partition: part, Key: fmt.Sprintf("%s-%d-%s", src, i, nonce),
				Value: value(src, i), Headers: []testenv.Header{testenv.H("src", src)}}
		}
		return out
	}
	kcatRecs, javaRecs := mk("kcat", 6, 2), mk("java", 6, -1)
	testenv.KcatProduce(t, p.Bootstrap, topic, kcatRecs)
	testenv.JavaProduce(t, cluster, p.Bootstrap, topic, javaRecs)

	// What each key's value must be after decryption ("" names the null
	// key).
	want := map[string]string{}
	for _, r := range franz {
		want[string(r.Key)] = string(r.Value)
	}
	for _, r := range append(append([]testenv.Record{}, kcatRecs...), javaRecs...) {
		want[r.Key] = r.Value
	}
	total := len(want)

	raw := e2eRaw(t, total, topic)
	e2eAssertSealed(t, raw, canary)
	stored := map[string]e2eRecord{}
	for _, r := range raw {
		stored[e2eFromKgo(r).pos()] = e2eFromKgo(r)
	}
	check := func(who string, got []e2eRecord) {
		t.Helper()
		if len(got) != total {
			t.Errorf("%s: %d records, want %d", who, len(got), total)
		}
		seen := map[string]bool{}
		for _, r := range got {
			s, ok := stored[r.pos()]
			switch {
			case !ok:
				t.Errorf("%s: record at %s is not stored there", who, r.pos())
				continue
			case seen[r.pos()]:
				t.Errorf("%s: record at %s twice", who, r.pos())
			case r.meta() != s.meta():
				t.Errorf("%s: record differs from the stored one besides the value:\n got  %s\n want %s", who, r.meta(), s.meta())
			}
			seen[r.pos()] = true
			key := ""
			if r.Key != nil {
				key = *r.Key
			}
			if r.Value == nil || *r.Value != want[key] {
				t.Errorf("%s: record %s has value %v, want %q", who, r.meta(), r.Value, want[key])
			}
		}
	}

	viaFranz := e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, total, []string{topic})
	var franzGot []e2eRecord
	for _, r := range viaFranz {
		if _, n := e2eMarker(r); n != 0 {
			t.Errorf("franz-go through kseal: record %d@%d still has the marker header", r.Partition, r.Offset)
		}
		franzGot = append(franzGot, e2eFromKgo(r))
	}
	check("franz-go", franzGot)
	check("kcat", e2eKcatConsume(t, p.Bootstrap, topic))
	check("java", e2eJavaConsume(t, nil, p.Bootstrap, topic, total))

	e2eAssertNotOnDisk(t, canary)
	// The keys are not encrypted: finding one on disk shows the search
	// covers this topic's segments (one per replica).
	e2eAssertOnDisk(t, "kcat-3-"+nonce, replication)
}

// testEncCodecs: for each codec, franz-go and kcat produce compressed
// batches to their own partition and the Java client adds a gzip batch;
// batches are stored compressed with the producer's codec, the canary is
// in none of them even after decompression, and every client decrypts
// what the others compressed.
func testEncCodecs(t *testing.T, e *encEnv) {
	p := e.p
	codecs := []struct {
		name  string
		codec testenv.Codec
		franz kgo.CompressionCodec
	}{
		{"gzip", testenv.CodecGzip, kgo.GzipCompression()},
		{"snappy", testenv.CodecSnappy, kgo.SnappyCompression()},
		{"lz4", testenv.CodecLz4, kgo.Lz4Compression()},
		{"zstd", testenv.CodecZstd, kgo.ZstdCompression()},
	}
	const javaCodec = testenv.CodecGzip
	topic := e.topic(t, "enc-codec", int32(len(codecs)), nil)
	canary, nonce := uniq("canary"), uniq("k")
	// Values that compress well: librdkafka sends a batch uncompressed
	// when compression would not shrink it.
	pad := strings.Repeat(" compressible", 30)
	mk := func(src string, part int32) []testenv.Record {
		out := make([]testenv.Record, 5)
		for i := range out {
			out[i] = testenv.Record{Topic: topic, Partition: part, Key: fmt.Sprintf("%s-%d-%s", src, i, nonce),
				Value: fmt.Sprintf("%s %d %s%s", src, i, canary, pad), Headers: []testenv.Header{testenv.H("src", src)}}
		}
		return out
	}
	var want []testenv.Record
	for i, c := range codecs {
		franzRecs, kcatRecs := mk("franz-"+c.name, int32(i)), mk("kcat-"+c.name, int32(i))
		testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerBatchCompression(c.franz)), franzRecs)
		testenv.KcatProduce(t, p.Bootstrap, topic, kcatRecs, "-z", c.name)
		want = append(append(want, franzRecs...), kcatRecs...)
	}
	javaRecs := mk("java-gzip", -1)
	testenv.JavaProduce(t, cluster, p.Bootstrap, topic, javaRecs, "--compression-codec", "gzip")
	want = append(want, javaRecs...)

	batches, err := cluster.TopicBatches(topic)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, c := range codecs {
		seen := false
		for _, b := range batches[int32(i)] {
			n += int(b.NumRecords)
			seen = seen || b.Codec == c.codec
			if b.Codec != c.codec && b.Codec != javaCodec {
				t.Errorf("partition %d (%s) offset %d: batch stored as %v", i, c.name, b.BaseOffset, b.Codec)
			}
			// Written as stored blocks of the codec
			// (encryption.format.recompress: stored, the default),
			// which the broker validated and kept as they came.
			if dec, err := b.Decompressed(); err != nil {
				t.Errorf("partition %d offset %d: %v", i, b.BaseOffset, err)
			} else if len(b.Records) != records.StoredLen(b.Codec, len(dec)) {
				t.Errorf("partition %d offset %d: %d bytes of %v for %d bytes of records: not stored blocks", i, b.BaseOffset, len(b.Records), b.Codec, len(dec))
			}
		}
		if !seen {
			t.Errorf("partition %d: no batch stored with %s", i, c.name)
		}
	}
	if n != len(want) {
		t.Errorf("%d records on disk, want %d", n, len(want))
	}
	e2eAssertSealed(t, e2eRaw(t, len(want), topic), canary)
	// GrepSegments also looks inside the decompressed batches.
	e2eAssertNotOnDisk(t, canary)
	// librdkafka and the Java client read the stored blocks too, straight
	// from the brokers (through kseal they get batches compressed again).
	direct := cluster.BootstrapString()
	if got := bytes.Count(testenv.Kcat(t, "", "-C", "-b", direct, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o\n"), []byte("\n")); got != len(want) {
		t.Errorf("kcat read %d records straight from the brokers, want %d", got, len(want))
	}
	javaOut := testenv.Java(t, cluster, "", testenv.JavaConsoleConsumer, "--bootstrap-server", direct, "--topic", topic,
		"--max-messages", strconv.Itoa(len(want)), "--timeout-ms", "20000", "--from-beginning",
		"--formatter-property", "print.offset=true", "--formatter-property", "print.value=false")
	if got := strings.Count(javaOut, "Offset:"); got != len(want) {
		t.Errorf("the Java consumer read %d records straight from the brokers, want %d:\n%s", got, len(want), javaOut)
	}

	var byFranz []testenv.Record
	for _, r := range e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, len(want), []string{topic}) {
		byFranz = append(byFranz, testenv.FromKgo(r))
	}
	assertSameRecords(t, "franz-go consumer", byFranz, want)
	assertSameRecords(t, "kcat consumer", testenv.KcatConsume(t, p.Bootstrap, topic), want)
	assertSameRecords(t, "java consumer", testenv.JavaConsume(t, cluster, p.Bootstrap, topic, len(want)), want)
}

// testEncLargeFetch: a backlog of ~1.6 MB over four partitions, read back
// through kseal by franz-go and kcat: fetch responses of hundreds of KB
// holding many batches, where kseal's per-connection buffers are reused
// from partition to partition and fetch to fetch. (Whether a response is
// decrypted on one goroutine or several depends on how the brokers split
// it; internal/encrypt's unit tests force the parallel path.)
func testEncLargeFetch(t *testing.T, e *encEnv) {
	p := e.p
	const parts, perPart = 4, 400
	topic := e.topic(t, "enc-large", parts, nil)
	canary := uniq("canary")
	pad := strings.Repeat("x", 1000)
	var want []testenv.Record
	for part := int32(0); part < parts; part++ {
		recs := make([]testenv.Record, perPart)
		for i := range recs {
			recs[i] = testenv.Record{Topic: topic, Partition: part, Key: fmt.Sprintf("k-%d-%d", part, i),
				Value: fmt.Sprintf("%d %d %s %s", part, i, canary, pad)}
		}
		testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner())), recs)
		want = append(want, recs...)
	}
	e2eAssertSealed(t, e2eRaw(t, len(want), topic), canary)
	var byFranz []testenv.Record
	for _, r := range e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, len(want), []string{topic}) {
		byFranz = append(byFranz, testenv.FromKgo(r))
	}
	assertSameRecords(t, "franz-go consumer", byFranz, want)
	assertSameRecords(t, "kcat consumer", testenv.KcatConsume(t, p.Bootstrap, topic), want)
}

// testEncCompaction: on an encrypted compacted topic, tombstones pass
// through as null values (stored without a marker, so the cleaner can act
// on them); after the log cleaner has run, the latest value of each key
// still decrypts and the tombstoned keys are gone.
func testEncCompaction(t *testing.T, e *encEnv) {
	p := e.p
	// Until the records are checked they all stay in the active segment,
	// which the cleaner never touches.
	topic := e.topic(t, "enc-compact", 1, map[string]string{
		"cleanup.policy":            "compact",
		"min.cleanable.dirty.ratio": "0.01",
		"delete.retention.ms":       "100",
		"min.compaction.lag.ms":     "0",
	})
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	ctx := context.Background()
	canary, nonce := uniq("canary"), uniq("k")
	key := func(i int) string { return fmt.Sprintf("key%d-%s", i, nonce) }
	val := func(v, i int) string { return fmt.Sprintf("v%d of key%d %s", v, i, canary) }
	cl := testenv.Kgo(t, []string{p.Bootstrap})
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		for _, r := range recs {
			r.Topic = topic
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	// Offsets 0-4: v1 of keys 0-4; 5-7: v2 of keys 0-2; 8-9: tombstones
	// of keys 3 and 4.
	var v1, v2 []*kgo.Record
	for i := range 5 {
		v1 = append(v1, &kgo.Record{Key: []byte(key(i)), Value: []byte(val(1, i))})
	}
	for i := range 3 {
		v2 = append(v2, &kgo.Record{Key: []byte(key(i)), Value: []byte(val(2, i))})
	}
	produce(v1...)
	produce(v2...)
	produce(&kgo.Record{Key: []byte(key(3))}, &kgo.Record{Key: []byte(key(4))})

	raw := e2eRaw(t, 10, topic)
	e2eAssertSealed(t, raw[:8], canary)
	for _, r := range raw[8:] {
		if _, n := e2eMarker(r); r.Value != nil || n != 0 {
			t.Errorf("stored tombstone at %d: value %x, %d markers; want null and none", r.Offset, r.Value, n)
		}
	}
	got := e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, 10, []string{topic})
	for i, r := range got {
		var want []byte
		switch {
		case i < 5:
			want = []byte(val(1, i))
		case i < 8:
			want = []byte(val(2, i-5))
		}
		if !bytes.Equal(r.Value, want) || (want == nil) != (r.Value == nil) {
			t.Errorf("offset %d through kseal: value %q (null %v), want %q (null %v)", r.Offset, r.Value, r.Value == nil, want, want == nil)
		}
	}

	// Now every append after 100ms starts a new segment. The cleaner looks
	// for work every 15s by default and two passes are needed (the second
	// removes the tombstones), so it looks every 200ms while this test
	// runs; the setting is cluster-wide and dynamic.
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

	// Wait for the cleaner: offsets 0-4 go (superseded), then 8-9 (the
	// tombstones, once past delete.retention.ms). A new record now and
	// then closes the active segment, which the cleaner never touches,
	// and makes the log dirty again for the second pass.
	keep := func(offs map[int64]bool) bool {
		for o := range int64(10) {
			if offs[o] != (o >= 5 && o <= 7) {
				return false
			}
		}
		return true
	}
	rolls := 0
	var offs map[int64]bool
	start := time.Now()
	e2eEventually(t, 90*time.Second, 300*time.Millisecond, "the log cleaner did not compact the topic", func() bool {
		rolls++
		produce(&kgo.Record{Key: []byte(fmt.Sprintf("roll-%d", rolls)), Value: []byte("roll " + canary)})
		offs = map[int64]bool{}
		for _, r := range e2eReadToEnd(t, cluster.BootstrapString(), topic) {
			offs[r.Offset] = true
		}
		return keep(offs)
	})
	t.Logf("compacted after %v (%d roll records)", time.Since(start).Round(time.Millisecond), rolls)

	after := e2eReadToEnd(t, p.Bootstrap, topic)
	if len(after) != 3+rolls {
		t.Errorf("through kseal after compaction: %d records, want %d", len(after), 3+rolls)
	}
	for _, r := range after {
		want := "roll " + canary
		if r.Offset < 10 {
			want = val(2, int(r.Offset-5))
		}
		if string(r.Value) != want {
			t.Errorf("offset %d after compaction: value %q, want %q", r.Offset, r.Value, want)
		}
	}
	e2eAssertNotOnDisk(t, canary)
}

// e2eReadToEnd reads every record of a one-partition topic through
// bootstrap, up to the end offset the brokers report now.
func e2eReadToEnd(t *testing.T, bootstrap, topic string) []*kgo.Record {
	t.Helper()
	end := e2eEndOffsets(t, topic)[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) == 0 || out[len(out)-1].Offset < end-1 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s to offset %d: stopped at %d records", topic, end, len(out))
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// testEncTransactions: a franz-go transactional producer commits one
// transaction and aborts another on an encrypted topic; read_committed
// consumers (franz-go, kcat) get exactly the committed records, decrypted;
// the aborted ones reached the log, encrypted.
func testEncTransactions(t *testing.T, e *encEnv) {
	p := e.p
	topic := e.topic(t, "enc-txn", 3, nil)
	commitCanary, abortCanary := uniq("commit"), uniq("abort")
	mk := func(canary string) []*kgo.Record {
		var out []*kgo.Record
		for i := range 6 {
			out = append(out, &kgo.Record{Topic: topic, Partition: int32(i % 3),
				Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("value %d %s", i, canary))})
		}
		return out
	}
	committed, aborted := mk(commitCanary), mk(abortCanary)
	cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.TransactionalID(uniq("it-enc-txn")),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, txn := range []struct {
		recs []*kgo.Record
		end  kgo.TransactionEndTry
	}{{committed, kgo.TryCommit}, {aborted, kgo.TryAbort}} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatalf("begin: %v", err)
		}
		if err := cl.ProduceSync(ctx, txn.recs...).FirstErr(); err != nil {
			t.Fatalf("transactional produce: %v", err)
		}
		if err := cl.EndTransaction(ctx, txn.end); err != nil {
			t.Fatalf("end transaction (commit %v): %v", txn.end, err)
		}
		cancel()
	}

	wantValues := map[string]bool{}
	for _, r := range committed {
		wantValues[string(r.Value)] = true
	}
	checkCommitted := func(who string, values []string) {
		t.Helper()
		seen := map[string]bool{}
		for _, v := range values {
			if !wantValues[v] || seen[v] {
				t.Errorf("%s: unexpected or repeated value %q", who, v)
			}
			seen[v] = true
		}
		if len(seen) != len(wantValues) {
			t.Errorf("%s: %d committed values, want %d", who, len(seen), len(wantValues))
		}
	}
	// Ask for more than were committed: aborted records would arrive in
	// the same fetches.
	rc, errs := e2eConsume(t, p.Bootstrap, 12, 5*time.Second, []string{topic}, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if len(errs) > 0 {
		t.Errorf("franz-go read_committed: %v", errs)
	}
	var values []string
	for _, r := range rc {
		values = append(values, string(r.Value))
	}
	checkCommitted("franz-go read_committed", values)
	values = values[:0]
	for _, r := range e2eKcatConsume(t, p.Bootstrap, topic, "-X", "isolation.level=read_committed") {
		if r.Value != nil {
			values = append(values, *r.Value)
		}
	}
	checkCommitted("kcat read_committed", values)

	// Both transactions are in the log, encrypted.
	e2eAssertSealed(t, e2eRaw(t, 12, topic), commitCanary, abortCanary)
	e2eAssertNotOnDisk(t, commitCanary)
	e2eAssertNotOnDisk(t, abortCanary)
	batches, err := cluster.TopicBatches(topic)
	if err != nil {
		t.Fatal(err)
	}
	var txnBatches, markers int
	for _, bs := range batches {
		for _, b := range bs {
			if b.Control {
				markers++
			} else if b.Transactional {
				txnBatches++
			}
		}
	}
	if txnBatches == 0 || markers == 0 {
		t.Errorf("on disk: %d transactional batches and %d control markers, want some of each", txnBatches, markers)
	}
}

// testEncMixed: one Produce request carries an encrypted topic and a topic
// without a KEK (passed through under PASSTHROUGH_UNENCRYPTED); the first is
// stored encrypted, the second in plaintext, and both read back.
func testEncMixed(t *testing.T, e *encEnv) {
	p := e.p
	enc := e.topic(t, "enc-mixed", 3, nil)
	plain := e2eTopic(t, "plain-mixed", 3, nil)
	// Partitions of both topics led by the same broker go into one
	// request.
	// Leaders may still be electing right after creation (-1), or lean
	// on fewer brokers while a fault test has one down: ask until a pair
	// is found.
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	pe, pp := int32(-1), int32(-1)
	for deadline := time.Now().Add(20 * time.Second); pe < 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		md, err := adm.Metadata(context.Background(), enc, plain)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range md.Topics[enc].Partitions {
			for _, b := range md.Topics[plain].Partitions {
				if pe < 0 && a.Leader >= 0 && a.Leader == b.Leader {
					pe, pp = a.Partition, b.Partition
				}
			}
		}
	}
	if pe < 0 {
		t.Fatal("no partitions of the two topics share a leader")
	}
	encCanary, plainCanary := uniq("enc"), uniq("plain")
	var recs []*kgo.Record
	for i := range 3 {
		recs = append(recs,
			&kgo.Record{Topic: enc, Partition: pe, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("%d %s", i, encCanary))},
			&kgo.Record{Topic: plain, Partition: pp, Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("%d %s", i, plainCanary))})
	}
	var produceRequests atomic.Int32
	cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(500*time.Millisecond), kgo.WithHooks(e2eProduceCounter{&produceRequests}))
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if n := produceRequests.Load(); n != 1 {
		t.Errorf("the records went out in %d Produce requests, want 1", n)
	}

	e2eAssertSealed(t, e2eRaw(t, 3, enc), encCanary)
	for _, r := range e2eRaw(t, 3, plain) {
		if _, n := e2eMarker(r); n != 0 || !strings.Contains(string(r.Value), plainCanary) {
			t.Errorf("plain topic stores %q with %d markers, want the plaintext and none", r.Value, n)
		}
	}
	e2eAssertNotOnDisk(t, encCanary)
	e2eAssertOnDisk(t, plainCanary, replication)
	got := e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, 6, []string{enc, plain})
	for _, r := range got {
		want := plainCanary
		if r.Topic == enc {
			want = encCanary
		}
		if string(r.Value) != fmt.Sprintf("%s %s", r.Key, want) {
			t.Errorf("%s[%d]@%d through kseal: %q", r.Topic, r.Partition, r.Offset, r.Value)
		}
	}
}

// e2eProduceCounter counts the Produce requests a franz-go client writes.
type e2eProduceCounter struct{ n *atomic.Int32 }

func (c e2eProduceCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 0 && err == nil {
		c.n.Add(1)
	}
}

// testEncReject: with unresolvedKeyPolicy REJECT, producing to a topic
// without a KEK fails in every client with POLICY_VIOLATION and nothing
// reaches the broker; a topic with a KEK is still encrypted.
func testEncReject(t *testing.T, e *encEnv) {
	k := e.k
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	p := e2eStartKseal(t, testenv.KsealConfig(cluster.Bootstrap, gw, e2eEncSection(k, "REJECT")))
	topic := e2eTopic(t, "enc-reject", 1, nil)
	encrypted := e.topic(t, "enc-reject-ok", 1, nil)
	canary := uniq("canary")

	cl := testenv.Kgo(t, []string{p.Bootstrap})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("franz " + canary)}).FirstErr()
	if !errors.Is(err, kerr.PolicyViolation) {
		t.Errorf("franz-go: %v, want POLICY_VIOLATION", err)
	}
	out, errOut, err := e2eKcat(t, 60*time.Second, "k\tkcat "+canary+"\n",
		"-P", "-b", p.Bootstrap, "-t", topic, "-K", "\t", "-X", "acks=all")
	if err == nil || !strings.Contains(errOut, "Policy violation") {
		t.Errorf("kcat: exit %v, want a failure with \"Policy violation\"\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	_, errOut, _ = e2eJava(t, nil, "k\tjava "+canary+"\n", testenv.JavaConsoleProducer,
		"--bootstrap-server", p.Bootstrap, "--topic", topic, "--reader-property", "parse.key=true",
		"--command-property", "acks=all")
	if !strings.Contains(errOut, "PolicyViolationException") {
		t.Errorf("java: stderr lacks PolicyViolationException:\n%s", tailLines(errOut, 30))
	}
	if n := e2eSum(e2eEndOffsets(t, topic)); n != 0 {
		t.Errorf("%d records reached the broker, want none", n)
	}
	e2eAssertNotOnDisk(t, canary)
	if !strings.Contains(p.Logs(), "produce refused") {
		t.Errorf("kseal did not log the refusal")
	}

	// The same kseal still encrypts a topic that has a KEK.
	testenv.KgoProduce(t, cl, []testenv.Record{{Topic: encrypted, Key: "k", Value: "ok " + canary}})
	e2eAssertSealed(t, e2eRaw(t, 1, encrypted), canary)
}

// e2eRawAt reads the one record stored at topic[partition]@offset.
func e2eRawAt(t *testing.T, topic string, partition int32, offset int64) *kgo.Record {
	t.Helper()
	recs, errs := e2eConsume(t, cluster.BootstrapString(), 1, 30*time.Second, nil,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}}))
	if len(errs) > 0 || len(recs) != 1 || recs[0].Offset != offset {
		t.Fatalf("read %s[%d]@%d directly: %d records, errors %v", topic, partition, offset, len(recs), errs)
	}
	return recs[0]
}

// e2eLocalVersion is the local KMS KEK version a stored record's DEK is
// wrapped under.
func e2eLocalVersion(t *testing.T, r *kgo.Record) string {
	t.Helper()
	env, err := recordcrypt.Parse(r.Value)
	if err != nil {
		t.Fatalf("record %d@%d: %v", r.Partition, r.Offset, err)
	}
	info, err := local.DescribeEDEK(env.EDEK)
	if err != nil {
		t.Fatalf("record %d@%d: EDEK: %v", r.Partition, r.Offset, err)
	}
	return info.Version
}

// testEncRotation: after `kseal kms rotate`, kseal picks up the new KEK
// version on its own (store reload + DEK refresh): new records are under
// v2, and the records under v1 still decrypt.
func testEncRotation(t *testing.T, e *encEnv) {
	p, k := e.p, e.k
	topic := e.topic(t, "enc-rotate", 1, nil)
	cl := testenv.Kgo(t, []string{p.Bootstrap})
	var all []string
	produce := func(v string) *kgo.Record {
		t.Helper()
		r := &kgo.Record{Topic: topic, Value: []byte(v)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		all = append(all, v)
		return r
	}
	for i := range 5 {
		produce(fmt.Sprintf("before rotation %d", i))
	}
	k.rotate(t, "KEK-"+topic)
	// Within reloadInterval (200ms) + refreshAfterWrite (1s), bounded by
	// expireAfterWrite (2s); allow for a loaded machine.
	start := time.Now()
	var firstV2 int64 = -1
	e2eEventually(t, 20*time.Second, 100*time.Millisecond, "no record under KEK version 2 after the rotation", func() bool {
		r := produce(fmt.Sprintf("probe %d", len(all)))
		if e2eLocalVersion(t, e2eRawAt(t, topic, 0, r.Offset)) == "2" {
			firstV2 = r.Offset
			return true
		}
		return false
	})
	t.Logf("first record under v2 at offset %d, %v after the rotation", firstV2, time.Since(start).Round(time.Millisecond))
	for i := range 5 {
		produce(fmt.Sprintf("after rotation %d", i))
	}
	raw := e2eRaw(t, len(all), topic)
	for _, r := range raw {
		v := e2eLocalVersion(t, r)
		if (r.Offset < 5 && v != "1") || (r.Offset >= firstV2 && v != "2") {
			t.Errorf("record %d under KEK version %s", r.Offset, v)
		}
	}
	got := e2eMustConsume(t, "franz-go through kseal", p.Bootstrap, len(all), []string{topic})
	for _, r := range got {
		if string(r.Value) != all[r.Offset] {
			t.Errorf("offset %d through kseal: %q, want %q", r.Offset, r.Value, all[r.Offset])
		}
	}
	kc := e2eKcatConsume(t, p.Bootstrap, topic)
	if len(kc) != len(all) {
		t.Errorf("kcat: %d records, want %d", len(kc), len(all))
	}
	for _, r := range kc {
		if r.Value == nil || *r.Value != all[r.Offset] {
			t.Errorf("kcat offset %d: %v, want %q", r.Offset, r.Value, all[r.Offset])
		}
	}
}

// testEncDeletedKEK: once a KEK is deleted (crypto-shredding), fetching its
// records fails with RESOURCE_NOT_FOUND (91) for the partition, in franz-go
// and in kcat, and no plaintext is returned.
func testEncDeletedKEK(t *testing.T, e *encEnv) {
	p, k := e.p, e.k
	topic := e.topic(t, "enc-deleted", 1, nil)
	canary := uniq("canary")
	var recs []testenv.Record
	for i := range 5 {
		recs = append(recs, testenv.Record{Topic: topic, Key: fmt.Sprint(i), Value: fmt.Sprintf("%d %s", i, canary)})
	}
	testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}), recs)
	e2eMustConsume(t, "before the deletion", p.Bootstrap, len(recs), []string{topic})

	k.remove(t, "KEK-"+topic)
	// The running kseal sees the deletion within reloadInterval (200ms);
	// DEKs it already unwrapped are forgotten 1s after their last use, so
	// poll less often than that.
	e2eEventually(t, 30*time.Second, 1500*time.Millisecond, "no RESOURCE_NOT_FOUND after deleting the KEK", func() bool {
		got, errs := e2eConsume(t, p.Bootstrap, len(recs), 3*time.Second, []string{topic}, kgo.KeepRetryableFetchErrors())
		for _, err := range errs {
			if errors.Is(err, kerr.ResourceNotFound) {
				if len(got) > 0 {
					t.Errorf("%d records returned along with RESOURCE_NOT_FOUND", len(got))
				}
				return true
			}
			t.Errorf("fetch error %v, want RESOURCE_NOT_FOUND", err)
		}
		return false
	})
	out, errOut, err := e2eKcat(t, 30*time.Second, "", "-C", "-b", p.Bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q")
	if err == nil || !strings.Contains(errOut, "Request illegally referred to resource that does not exist") {
		t.Errorf("kcat: exit %v, want a failure naming RESOURCE_NOT_FOUND\nstderr: %s", err, errOut)
	}
	if strings.Contains(out, canary) {
		t.Errorf("kcat printed plaintext: %s", out)
	}
	if !strings.Contains(p.Logs(), "cannot decrypt records") {
		t.Error("kseal did not log the failed decryption")
	}
}

// testEncTampered: stored records altered by someone producing directly to
// the brokers are refused with CORRUPT_MESSAGE (2) for their partition and
// never returned, as docs/format.md's Errors table says: a flipped bit in
// the GCM tag, a valid envelope moved to another key (the key is in the
// associated data), and a flipped bit in the EDEK (the KMS refuses to
// unwrap it).
func testEncTampered(t *testing.T, e *encEnv) {
	p := e.p
	for _, tc := range []struct {
		name, prefix string
		alter        func(t *testing.T, r *kgo.Record)
	}{
		{"flipped tag bit", "enc-tamper-tag", func(t *testing.T, r *kgo.Record) { r.Value[len(r.Value)-1] ^= 0x01 }},
		{"moved to another key", "enc-tamper-key", func(t *testing.T, r *kgo.Record) { r.Key = []byte("mallory") }},
		{"flipped EDEK bit", "enc-tamper-edek", func(t *testing.T, r *kgo.Record) {
			env, err := recordcrypt.Parse(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			r.Value[bytes.Index(r.Value, env.EDEK)+len(env.EDEK)-1] ^= 0x01 // inside the wrapped key
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			topic := e.topic(t, tc.prefix, 1, nil)
			canary := uniq("canary")
			testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}),
				[]testenv.Record{{Topic: topic, Key: "alice", Value: "alice " + canary}})
			stored := e2eRawAt(t, topic, 0, 0)
			altered := &kgo.Record{Topic: topic, Key: bytes.Clone(stored.Key), Value: bytes.Clone(stored.Value), Headers: stored.Headers}
			tc.alter(t, altered)
			if err := testenv.Kgo(t, cluster.Bootstrap).ProduceSync(context.Background(), altered).FirstErr(); err != nil {
				t.Fatalf("produce the altered record directly: %v", err)
			}

			got, errs := e2eConsume(t, p.Bootstrap, 2, 5*time.Second, []string{topic}, kgo.KeepRetryableFetchErrors())
			for _, r := range got {
				if r.Offset != 0 {
					t.Errorf("altered record returned: key %q value %q", r.Key, r.Value)
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
			if logs := p.Logs(); !strings.Contains(logs, "cannot decrypt records") || !strings.Contains(logs, topic) {
				t.Error("kseal did not log the refused record")
			}
		})
	}
}

// testEncPlantedMarker: a producer cannot plant an envelope of its choosing:
// a record that already carries the kseal marker header is refused with
// INVALID_RECORD (87) and nothing is written.
func testEncPlantedMarker(t *testing.T, e *encEnv) {
	p := e.p
	topic := e.topic(t, "enc-planted", 1, nil)
	cl := testenv.Kgo(t, []string{p.Bootstrap})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("not an envelope"),
		Headers: []kgo.RecordHeader{{Key: recordcrypt.HeaderKey, Value: []byte{recordcrypt.Version1}}}}).FirstErr()
	if !errors.Is(err, kerr.InvalidRecord) {
		t.Errorf("produce with a kseal header: %v, want INVALID_RECORD", err)
	}
	if n := e2eSum(e2eEndOffsets(t, topic)); n != 0 {
		t.Errorf("%d records reached the broker, want none", n)
	}
}

//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
)

// hostileMaxConns is the virtual cluster's limits.maxConnections in
// TestHostileClients; the flood opens hostileFlood connections on top of
// the stream's.
const (
	hostileMaxConns = 50
	hostileFlood    = hostileMaxConns + 20
)

// TestHostileClients is issue 11's proof on the real cluster: while a
// franz-go producer and consumer run a checksummed stream through an
// encrypting kseal, raw connections (no client library: frames written by
// hand, see hostile_wire_test.go) send each hostile request the review
// found, each on a fresh connection, and the test checks what each got
// back:
//
//   - frames whose tagged-field count is 2^32-1 (the kmsg decoder DoS):
//     answered or closed within 1s;
//   - a Produce naming one topic-partition twice (in one topic entry, and in
//     two): INVALID_REQUEST (42), nothing written;
//   - a control batch to an encrypted topic: INVALID_RECORD (87);
//   - a record carrying kseal's marker header to a PASSTHROUGH topic:
//     INVALID_RECORD (87), and a consumer of that topic through kseal still
//     reads every good record;
//   - a record with two marker headers written straight to the broker (as a
//     broker admin could) after good encrypted ones: a consumer through
//     kseal gets the good records, then CORRUPT_MESSAGE (2) at that offset;
//   - zstd bombs (a few KB that decompress past 64 MiB; and several
//     partitions of 60 MiB bombs in one request) to an encrypted topic:
//     MESSAGE_TOO_LARGE (10), CORRUPT_MESSAGE (2) or INVALID_RECORD (87)
//     (or a closed connection), nothing written, kseal's peak RSS under the
//     bound;
//   - more connections than limits.maxConnections: the extra ones closed,
//     the stream unaffected, and connections accepted again once the flood
//     is gone (skipped, with a message, where the key does not exist);
//   - Produce to topic names Kafka forbids ("", "..", 250 bytes, "\xff"):
//     INVALID_TOPIC_EXCEPTION (17) or a closed connection; they run last
//     because, unfixed, "\xff" makes kseal exit.
//
// kseal must survive every one (checked after each), and afterwards a fresh
// client produces and consumes through it, the stream lost nothing (every
// sequence number consumed once, checksums intact), kseal's peak RSS
// (VmHWM) stayed under KSEAL_HOSTILE_MAX_RSS_MIB (default 400), /metrics
// has no topic label that is not a valid topic name, and no plaintext of
// the stream's values is in any log segment (read from the brokers' disks).
func TestHostileClients(t *testing.T) {
	e2eSkipDirect(t)
	maxRSS := int64(envInt(t, "KSEAL_HOSTILE_MAX_RSS_MIB", 400)) << 20

	kek := uniq("KEK-hostile")
	encPrefix := uniq("it-hostile-enc") + "-"
	ptPrefix := uniq("it-hostile-pt") + "-"
	kmsYAML := newLocalKMS(t, kek)
	// Explicit PASSTHROUGH_UNENCRYPTED for unmatched names, so the invalid
	// topic names take the passthrough path (where the review's panic was)
	// whatever the default is.
	policyYAML := fmt.Sprintf("      policy:\n        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\n        rules:\n"+
		"          - {topicPrefix: %s, kek: %s}\n          - {topicPrefix: %s, passthrough: true}\n", encPrefix, kek, ptPrefix)
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	config := func(limits bool) string {
		extra := ""
		if limits {
			extra = fmt.Sprintf("    limits:\n      maxConnections: %d\n", hostileMaxConns)
		}
		extra += "    encryption:\n" + kmsYAML + policyYAML
		return fmt.Sprintf("admin: {listen: %q}\n", admin) + testenv.KsealConfig(cluster.Bootstrap, gw, extra)
	}
	cfg := config(true)
	floodSkip := ""
	if out, err := hostileValidate(t, cfg); err != nil {
		if !strings.Contains(out, "maxConnections") {
			t.Fatalf("kseal validate refuses the test's config: %v\n%s", err, out)
		}
		floodSkip = "virtualClusters[].limits.maxConnections is not accepted by this kseal (kseal validate: " +
			strings.TrimSpace(out) + "): the connection flood is not tested"
		t.Log(floodSkip)
		cfg = config(false)
	}
	p := &encProxy{Gateway: gw, cfgYAML: cfg}
	p.k = testenv.StartKseal(t, cfg)
	p.Bootstrap = p.k.Bootstrap
	pid, err := p.pid()
	if err != nil {
		t.Fatal(err)
	}
	// serving says why kseal no longer serves ("" while it does): its
	// process is gone, or it does not answer ApiVersions on a new connection.
	serving := func() string {
		h, err := hwDial(p.Bootstrap)
		if err == nil {
			o := h.apiVersions(5 * time.Second)
			h.Close()
			if o.Body != nil && o.Err == nil {
				return ""
			}
			err = fmt.Errorf("ApiVersions: %s", o)
		}
		time.Sleep(200 * time.Millisecond) // a crashing process takes a moment to go
		if kerr := syscall.Kill(pid, 0); kerr != nil {
			return fmt.Sprintf("kseal (pid %d) EXITED; its log ends:\n%s", pid, hostileTail(p.k.Logs(), 40))
		}
		return fmt.Sprintf("kseal (pid %d) runs but does not serve a new connection: %v", pid, err)
	}
	// Topics, all made at once directly on the cluster: the stream's and a
	// target for raw requests (6 partitions each), and one-partition ones
	// for the double marker, the passthrough topic and the final check.
	stream := encPrefix + "stream"
	target := encPrefix + "target"
	dbl := encPrefix + "double"
	fresh := encPrefix + "fresh"
	pt := ptPrefix + "plain"
	hostileTopics(t, map[string]int32{stream: partitions, target: partitions, dbl: 1, fresh: 1, pt: 1})
	canary := newCanary(t, stream)
	targetCanary := newCanary(t, target)
	dblCanary := newCanary(t, dbl)
	freshCanary := newCanary(t, fresh)

	mem := hostileSampleMem(pid)
	defer mem.stop()
	s := startStream(t, streamOpts{Bootstrap: p.Bootstrap, Topic: stream, Canary: canary,
		Producers: 1, Consumers: 1, Rate: 200,
		// Round robin: the warm-up below reaches every partition's leader.
		ProducerOpts: func(int) []kgo.Opt { return []kgo.Opt{kgo.RecordPartitioner(kgo.RoundRobinPartitioner())} }})
	// Warm up until the producer has produced to every partition (round
	// robin), so it holds a connection to every leader: during the
	// connection flood below kseal refuses NEW connections by design
	// (limits.maxConnections), and a producer that first reached a leader
	// then would fail its batch (seen in a clean-clone run with 200).
	s.waitAcks(400, 60*time.Second, "stream warm-up")
	base := mem.now()
	t.Logf("kseal baseline with the stream running: VmRSS %s, VmHWM %s; bound on the peak %s",
		mib(base.rss), mib(base.hwm), mib(maxRSS))
	race := p.raceBuild()
	// peakAfter notes kseal's peak RSS after a case, to name the request
	// that pushed it over the bound.
	var peaks []string
	overBy := ""
	peakAfter := func(what string) {
		m := mem.now()
		peaks = append(peaks, fmt.Sprintf("%s: VmHWM %s", what, mib(m.hwm)))
		if m.hwm > maxRSS && overBy == "" {
			overBy = what
		}
	}
	addr := p.Bootstrap
	const wait = 10 * time.Second

	// run runs one hostile case as a subtest, then checks that kseal
	// survived it. If it did not, the failure names the case and kseal is
	// started again (same ports, same config), so that the remaining cases
	// and the final checks still run and report.
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, f)
		if why := serving(); why != "" {
			t.Errorf("after the hostile requests of %q: %s\n(starting kseal again so the remaining checks run)", name, why)
			_ = p.k.Stop()
			p.k = testenv.StartKseal(t, cfg)
			if pid, err = p.pid(); err != nil {
				t.Fatal(err)
			}
			mem.follow(pid)
		}
		peakAfter(name)
	}
	// leader is kseal's address for the broker leading topic's partition:
	// Produce must reach the leader to be written, or kseal's handling of
	// it would be hidden behind NOT_LEADER_OR_FOLLOWER.
	leader := func(t *testing.T, topic string, partition int32) string {
		t.Helper()
		id := hostileLeader(t, topic, partition)
		return gw.BrokerAddr(id)
	}

	run("raw baseline", func(t *testing.T) {
		// The raw harness itself: a well-formed batch produced by hand is
		// accepted through kseal and stored encrypted.
		value := targetCanary + "|raw-baseline"
		batch := hwBatch(0, 1, hwRecords(hwRecord{Key: []byte("raw"), Value: []byte(value)}))
		o, codes := hwSendProduce(leader(t, target, 2), hwProduce(hwPart{target, 2, batch}), wait)
		if !hwCodesIn(codes, 0) {
			t.Fatalf("a well-formed raw Produce to %s[2] was not accepted: %s", target, hwDescribe(o, codes))
		}
		raw := e2eRaw(t, 1, target)
		e2eAssertSealed(t, raw, value)
	})

	run("huge tag counts", func(t *testing.T) {
		frames := hwHugeTags()
		for _, name := range hwSortedKeys(frames) {
			h, err := hwDial(addr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			o := h.exchange(frames[name], false, wait)
			h.Close()
			t.Logf("tag count 2^32-1 in the %s: %s", name, o)
			if o.Hung || o.Elapsed > time.Second {
				t.Errorf("hostile frame with a tag count of 2^32-1 in the %s: %s; want an answer or a close within 1s (kmsg decoder DoS)", name, o)
			}
		}
	})

	run("duplicate partitions", func(t *testing.T) {
		before := e2eEndOffsets(t, target)
		to := leader(t, target, 0)
		rec := func(tag string) []byte {
			return hwBatch(0, 1, hwRecords(hwRecord{Key: []byte("dup"), Value: []byte(targetCanary + "|dup-" + tag)}))
		}
		// The partition twice in one topic entry.
		o, codes := hwSendProduce(to, hwProduce(hwPart{target, 0, rec("a1")}, hwPart{target, 0, rec("a2")}), wait)
		checkDup(t, "twice in one topic entry", target, o, codes)
		// The topic twice, each entry with the partition.
		req := hwProduce(hwPart{target, 0, rec("b1")})
		req.Topics = append(req.Topics, hwProduce(hwPart{target, 0, rec("b2")}).Topics...)
		o, codes = hwSendProduce(to, req, wait)
		checkDup(t, "in two topic entries", target, o, codes)
		after := e2eEndOffsets(t, target)
		if after[0] != before[0] {
			t.Errorf("duplicate-partition Produce: %s[0] grew from offset %d to %d: records were WRITTEN", target, before[0], after[0])
		}
	})

	run("control batch", func(t *testing.T) {
		before := e2eEndOffsets(t, target)
		// A COMMIT marker (key: version 0, type 1; value: version 0,
		// coordinator epoch 0) in a transactional control batch.
		batch := hwBatch(hwAttrControl|hwAttrTxn, 1, hwRecords(hwRecord{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}}))
		o, codes := hwSendProduce(leader(t, target, 1), hwProduce(hwPart{target, 1, batch}), wait)
		t.Logf("control batch to %s[1]: %s", target, hwDescribe(o, codes))
		if !o.Closed && !hwCodesIn(codes, 87) {
			t.Errorf("hostile Produce of a control batch (attributes bit 5) to encrypted topic %s: %s; want INVALID_RECORD (87)", target, hwDescribe(o, codes))
		}
		if after := e2eEndOffsets(t, target); after[1] != before[1] {
			t.Errorf("control batch: %s[1] grew from offset %d to %d: it was WRITTEN", target, before[1], after[1])
		}
	})

	run("forged marker on a passthrough topic", func(t *testing.T) {
		cl := testenv.Kgo(t, []string{addr}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		good := func(from, n int) []string {
			var vs []string
			for i := from; i < from+n; i++ {
				v := fmt.Sprintf("passthrough good %d", i)
				vs = append(vs, v)
				testenv.KgoProduce(t, cl, []testenv.Record{{Topic: pt, Partition: 0, Key: "g", Value: v}})
			}
			return vs
		}
		want := good(0, 3)
		batch := hwBatch(0, 2, hwRecords(
			hwRecord{Key: []byte("f"), Value: []byte("innocent")},
			hwRecord{Key: []byte("f"), Value: []byte("forged envelope"), Headers: [][2][]byte{hwMarker()}}))
		o, codes := hwSendProduce(leader(t, pt, 0), hwProduce(hwPart{pt, 0, batch}), wait)
		t.Logf("forged marker to passthrough %s: %s", pt, hwDescribe(o, codes))
		if !o.Closed && !hwCodesIn(codes, 87) {
			t.Errorf("hostile Produce of a record with a %q header to PASSTHROUGH topic %s: %s; want INVALID_RECORD (87)",
				recordcrypt.HeaderKey, pt, hwDescribe(o, codes))
		}
		want = append(want, good(3, 3)...)
		end := e2eEndOffsets(t, pt)[0]
		recs, errs := e2eConsume(t, addr, int(end), 10*time.Second, []string{pt}, kgo.KeepRetryableFetchErrors())
		if len(errs) > 0 {
			t.Errorf("consumer of passthrough topic %s through kseal got errors after the forged marker: %v", pt, errs)
		}
		got := map[string]bool{}
		for _, r := range recs {
			got[string(r.Value)] = true
		}
		for _, v := range want {
			if !got[v] {
				t.Errorf("consumer of passthrough topic %s through kseal did not get good record %q (got %d of %d offsets)", pt, v, len(recs), end)
			}
		}
	})

	run("double marker", func(t *testing.T) {
		cl := testenv.Kgo(t, []string{addr})
		var good []testenv.Record
		for i := 0; i < 5; i++ {
			good = append(good, testenv.Record{Topic: dbl, Partition: -1, Key: "k", Value: fmt.Sprintf("%s|good-%d", dblCanary, i)})
		}
		testenv.KgoProduce(t, cl, good)
		raw := e2eRaw(t, 5, dbl)
		e2eAssertSealed(t, raw)
		src := raw[0]
		forged := &kgo.Record{Topic: dbl, Partition: 0, Key: src.Key, Value: src.Value,
			Headers: append(append([]kgo.RecordHeader{}, src.Headers...), kgo.RecordHeader{Key: recordcrypt.HeaderKey, Value: []byte{recordcrypt.Version1}})}
		direct := testenv.Kgo(t, cluster.Bootstrap, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res := direct.ProduceSync(ctx, forged)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("writing the double-marker record straight to the broker: %v", err)
		}
		bad := res[0].Record.Offset
		testenv.KgoProduce(t, cl, []testenv.Record{
			{Topic: dbl, Partition: -1, Key: "k", Value: dblCanary + "|after-1"},
			{Topic: dbl, Partition: -1, Key: "k", Value: dblCanary + "|after-2"}})

		recs, errs := hostileConsumeUntilError(t, addr, dbl, int(bad), int(bad)+3, 15*time.Second)
		seen := map[int64]*kgo.Record{}
		for _, r := range recs {
			seen[r.Offset] = r
		}
		for off := int64(0); off < bad; off++ {
			if seen[off] == nil {
				t.Errorf("double marker at %s@%d: the good record at offset %d before it was WITHHELD (consumer through kseal got %d records, errors %v)",
					dbl, bad, off, len(recs), errs)
			}
		}
		if r := seen[bad]; r != nil {
			_, n := e2eMarker(r)
			t.Errorf("double marker at %s@%d: the record was DELIVERED (value %.40q, %d %q headers left visible); want CORRUPT_MESSAGE (2)",
				dbl, bad, r.Value, n, recordcrypt.HeaderKey)
		}
		for off, r := range seen {
			if off > bad {
				t.Errorf("double marker at %s@%d: record at offset %d after it was delivered (value %.40q): the consumer went past the bad record",
					dbl, bad, off, r.Value)
			}
		}
		corrupt := false
		for _, e := range errs {
			corrupt = corrupt || strings.Contains(e.Error(), "CORRUPT_MESSAGE")
		}
		if !corrupt {
			t.Errorf("double marker at %s@%d: consumer through kseal saw no CORRUPT_MESSAGE (2); errors: %v", dbl, bad, errs)
		}
	})

	run("zstd bombs", func(t *testing.T) {
		before := e2eEndOffsets(t, target)
		over := hwBomb(t, 80<<20)  // past the 64 MiB per-batch cap
		under := hwBomb(t, 60<<20) // just under it: amplifies if accepted
		t.Logf("bombs: 80 MiB in %d bytes, 60 MiB in %d bytes", len(over), len(under))
		refused := []int16{10, 2, 87}
		check := func(what string, o hwOutcome, codes []hwCode, others bool) {
			t.Helper()
			t.Logf("%s: %s; kseal VmHWM now %s", what, hwDescribe(o, codes), mib(mem.now().hwm))
			if o.Closed {
				return
			}
			allowed := []int16{10, 2, 87}
			if others {
				// Partitions not at fault themselves may get kseal's
				// retriable code for "the request was refused".
				allowed = append(allowed, 7)
			}
			if !hwCodesIn(codes, allowed...) || !hwAnyCode(codes, refused...) {
				t.Errorf("hostile Produce of %s to encrypted topic %s: %s; want MESSAGE_TOO_LARGE (10), CORRUPT_MESSAGE (2) or INVALID_RECORD (87)",
					what, target, hwDescribe(o, codes))
			}
		}
		o, codes := hwSendProduce(leader(t, target, 3), hwProduce(hwPart{target, 3, over}), 30*time.Second)
		check("one zstd bomb of 80 MiB", o, codes, false)
		// A 1 MiB request of them, one per partition (most partitions do not
		// exist: kseal handles the records before the broker says so). Each
		// costs up to 64 MiB of decompression until refused; a request
		// budget must stop the work early, not after 25 GiB of it.
		var parts []hwPart
		n := int32((1 << 20) / len(over))
		for i := int32(0); i < n; i++ {
			parts = append(parts, hwPart{target, i, over})
		}
		what := fmt.Sprintf("%d partitions of 80 MiB zstd bombs in one 1 MiB request", n)
		o, codes = hwSendProduce(leader(t, target, 0), hwProduce(parts...), 90*time.Second)
		check(what, o, codes, true)
		if o.Hung || o.Elapsed > 5*time.Second {
			t.Errorf("hostile Produce of %s: %s; want it refused within 5s (each bomb costs kseal up to 64 MiB of decompression)", what, o)
		}
		parts = parts[:0]
		// Unfixed, each of these holds about 600 MiB in kseal (decompressed,
		// sealed, re-encoded); four are plenty to prove a budget.
		for i := int32(0); i < 4; i++ {
			parts = append(parts, hwPart{target, i, under})
		}
		o, codes = hwSendProduce(leader(t, target, 0), hwProduce(parts...), 30*time.Second)
		check("4 partitions of 60 MiB zstd bombs in one request", o, codes, true)
		after := e2eEndOffsets(t, target)
		for part, off := range after {
			if off != before[part] {
				t.Errorf("zstd bombs: %s[%d] grew from offset %d to %d: records were WRITTEN", target, part, before[part], off)
			}
		}
		if m := mem.now(); m.hwm > maxRSS && race == "" {
			t.Errorf("zstd bombs pushed kseal's peak RSS (VmHWM) to %s, over the %s bound (baseline %s)", mib(m.hwm), mib(maxRSS), mib(base.rss))
		}
	})

	run("connection flood", func(t *testing.T) {
		if floodSkip != "" {
			t.Skip(floodSkip)
		}
		acks := s.led.acks()
		conns := make([]*hwConn, 0, hostileFlood)
		defer func() {
			for _, h := range conns {
				h.Close()
			}
		}()
		refusedDial := 0
		for i := 0; i < hostileFlood; i++ {
			h, err := hwDial(addr)
			if err != nil {
				refusedDial++
				continue
			}
			conns = append(conns, h)
		}
		var mu sync.Mutex
		var served, closed, hung int
		var wg sync.WaitGroup
		for _, h := range conns {
			wg.Go(func() {
				o := h.apiVersions(3 * time.Second)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case o.Closed:
					closed++
				case o.Hung:
					hung++
				case o.Err == nil:
					served++
				default:
					closed++ // an error on our side counts as not served
				}
			})
		}
		wg.Wait()
		t.Logf("flood of %d connections (limit %d): %d served, %d closed, %d not answered within 3s, %d dials refused",
			hostileFlood, hostileMaxConns, served, closed, hung, refusedDial)
		if served > hostileMaxConns {
			t.Errorf("connection flood: %d of %d connections were served, more than limits.maxConnections %d", served, hostileFlood, hostileMaxConns)
		}
		if closed+refusedDial < hostileFlood-hostileMaxConns {
			t.Errorf("connection flood: only %d of %d connections were closed or refused, want at least %d (limits.maxConnections %d)",
				closed+refusedDial, hostileFlood, hostileFlood-hostileMaxConns, hostileMaxConns)
		}
		// The stream's connections were open before the flood: it must go on.
		deadline := time.Now().Add(10 * time.Second)
		for s.led.acks() < acks+50 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if s.led.acks() < acks+50 {
			t.Errorf("connection flood: the stream stalled (%d records acknowledged in 10s, want 50)", s.led.acks()-acks)
		}
		for _, h := range conns {
			h.Close()
		}
		conns = nil
		// Once the flood is gone, new connections are served again.
		var last hwOutcome
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			h, err := hwDial(addr)
			if err != nil {
				last = hwOutcome{Err: err}
				continue
			}
			last = h.apiVersions(2 * time.Second)
			h.Close()
			if last.Body != nil && last.Err == nil {
				return
			}
		}
		t.Errorf("connection flood: 10s after the flood was closed a new connection is still not served: %s", last)
	})

	run("invalid topic names", func(t *testing.T) {
		batch := hwBatch(0, 1, hwRecords(hwRecord{Key: []byte("k"), Value: []byte("hostile invalid topic")}))
		reported := map[string]bool{}
		for _, c := range []struct{ label, name string }{
			{"empty", ""},
			{`".."`, ".."},
			{"250 bytes", strings.Repeat("a", 250)},
			{`"\xff" (not UTF-8)`, "\xff"},
		} {
			o, codes := hwSendProduce(addr, hwProduce(hwPart{c.name, 0, batch}), wait)
			t.Logf("Produce to topic %s: %s", c.label, hwDescribe(o, codes))
			if why := serving(); why != "" {
				t.Fatalf("hostile Produce to invalid topic name %s (%s): %s", c.label, hwDescribe(o, codes), why)
			}
			if !o.Closed && !hwCodesIn(codes, 17) {
				t.Errorf("hostile Produce to invalid topic name %s: %s; want INVALID_TOPIC_EXCEPTION (17) or a closed connection",
					c.label, hwDescribe(o, codes))
			}
			// Checked after each name: a name that kills kseal would take
			// the evidence of the earlier ones with it.
			for _, bad := range hostileBadTopicLabels(hostileScrape(t, admin)) {
				if reported[bad] {
					continue
				}
				reported[bad] = true
				t.Errorf("after the Produce to topic %s, /metrics has a series labelled with an invalid topic name: %s", c.label, bad)
			}
		}
	})

	// Afterwards: kseal serves a fresh client, end to end.
	fcl := testenv.Kgo(t, []string{addr})
	var want []testenv.Record
	for i := 0; i < 20; i++ {
		want = append(want, testenv.Record{Topic: fresh, Partition: -1, Key: "fresh", Value: fmt.Sprintf("%s|%d", freshCanary, i)})
	}
	testenv.KgoProduce(t, fcl, want)
	got := e2eMustConsume(t, "fresh consumer through kseal after the hostile requests", addr, len(want), []string{fresh})
	for i, r := range got {
		if string(r.Value) != want[i].Value {
			t.Errorf("fresh consumer: record %d is %q, want %q", i, r.Value, want[i].Value)
		}
	}

	s.finish(60 * time.Second)
	if why := serving(); why != "" {
		t.Errorf("at the end of the test: %s", why)
	}

	m := mem.stop()
	t.Logf("kseal memory: baseline VmRSS %s, peak VmHWM %s, bound %s; after each case:\n  %s",
		mib(base.rss), mib(m.hwm), mib(maxRSS), strings.Join(peaks, "\n  "))
	switch {
	case race != "":
		t.Logf("memory bound not applied: %s", race)
	case m.hwm > maxRSS:
		t.Errorf("kseal's peak RSS (VmHWM) %s is over the %s bound; first passed after %q", mib(m.hwm), mib(maxRSS), overBy)
	}

	// /metrics: no series labelled with a name that is not a topic name.
	body := hostileScrape(t, admin)
	for _, bad := range hostileBadTopicLabels(body) {
		t.Errorf("/metrics has a series labelled with an invalid topic name: %s", bad)
	}

	// At rest: none of this test's plaintext is in any segment.
	mine := []string{canary, targetCanary, dblCanary, freshCanary}
	hits, st, err := scanAtRest(cluster.LogDirs, mine)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, h := range hits {
		for _, c := range mine {
			if strings.HasPrefix(h.Canary, c) {
				t.Errorf("PLAINTEXT at rest: %v", h)
				n++
			}
		}
	}
	t.Logf("at-rest scan: %d segments (%s), %d plaintext hits of this test", st.Segments, mib(st.Bytes), n)
}

// checkDup checks one duplicate-partition Produce's outcome.
func checkDup(t *testing.T, how, topic string, o hwOutcome, codes []hwCode) {
	t.Helper()
	t.Logf("%s[0] %s: %s", topic, how, hwDescribe(o, codes))
	if o.Closed {
		return
	}
	if !hwCodesIn(codes, 42) {
		t.Errorf("hostile Produce naming %s[0] %s: %s; want INVALID_REQUEST (42) for it", topic, how, hwDescribe(o, codes))
	}
}

// hwAnyCode reports whether some partition has one of the codes.
func hwAnyCode(codes []hwCode, want ...int16) bool {
	for _, c := range codes {
		for _, w := range want {
			if c.Code == w {
				return true
			}
		}
	}
	return false
}

// hostileValidate runs `kseal validate` on cfgYAML.
func hostileValidate(t *testing.T, cfgYAML string) (string, error) {
	t.Helper()
	path := filepath.Join(e2eWorkDir(t), "validate.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(e2eKsealBin(t), "validate", "--config", path).CombinedOutput()
	return string(out), err
}

// hostileTopics creates topics (name -> partitions, replication 3) directly
// on the cluster in one request each size, and waits until every partition
// has a leader and a full ISR.
func hostileTopics(t *testing.T, topics map[string]int32) {
	t.Helper()
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bySize := map[int32][]string{}
	for name, n := range topics {
		bySize[n] = append(bySize[n], name)
	}
	for n, names := range bySize {
		resps, err := adm.CreateTopics(ctx, n, replication, nil, names...)
		if err == nil {
			err = resps.Error()
		}
		if err != nil {
			t.Fatalf("create topics %v: %v", names, err)
		}
	}
	names := hwSortedKeys(topics)
	for {
		md, err := adm.Metadata(ctx, names...)
		ready := err == nil
		for _, name := range names {
			if !ready {
				break
			}
			td := md.Topics[name]
			ready = td.Err == nil && len(td.Partitions) == int(topics[name])
			for _, p := range td.Partitions {
				ready = ready && p.Err == nil && p.Leader >= 0 && len(p.ISR) == replication
			}
		}
		if ready {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("topics %v not ready after 60s (last error %v)", names, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hostileConsumeUntilError reads partition 0 of topic through bootstrap from
// the start, keeping retriable fetch errors, until it has want records and
// an error, or stopAt records, or timeout passed.
func hostileConsumeUntilError(t *testing.T, bootstrap, topic string, want, stopAt int, timeout time.Duration) ([]*kgo.Record, []error) {
	t.Helper()
	cl := testenv.Kgo(t, []string{bootstrap}, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepRetryableFetchErrors(),
		kgo.FetchMaxWait(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	var errs []error
	for ctx.Err() == nil && len(recs) < stopAt && (len(recs) < want || len(errs) == 0) {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if ctx.Err() == nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", topic, p, err))
			}
		})
		recs = append(recs, fs.Records()...)
	}
	return recs, errs
}

// hostileMem samples kseal's VmRSS and VmHWM every 100ms.
type hostileMem struct {
	pid  int
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	last hostileMemSample
}

type hostileMemSample struct{ rss, hwm int64 }

func hostileSampleMem(pid int) *hostileMem {
	m := &hostileMem{pid: pid, done: make(chan struct{})}
	m.read()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-tick.C:
				m.read()
			}
		}
	}()
	return m
}

// follow switches to a restarted kseal, keeping the peak seen so far.
func (m *hostileMem) follow(pid int) {
	m.mu.Lock()
	m.pid = pid
	m.mu.Unlock()
	m.read()
}

func (m *hostileMem) read() {
	m.mu.Lock()
	pid := m.pid
	m.mu.Unlock()
	st, err := hwProcStatus(pid, "VmRSS", "VmHWM")
	if err != nil {
		return // the process is gone: the liveness checks say so
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last.rss = st["VmRSS"]
	m.last.hwm = max(m.last.hwm, st["VmHWM"])
}

// now reads the current values.
func (m *hostileMem) now() hostileMemSample {
	m.read()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// stop ends sampling and returns the last values.
func (m *hostileMem) stop() hostileMemSample {
	s := m.now()
	m.once.Do(func() { close(m.done) })
	return s
}

// hostileLeader is the node id leading topic's partition, asked of the
// brokers directly.
func hostileLeader(t *testing.T, topic string, partition int32) int32 {
	t.Helper()
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	p, ok := md.Topics[topic].Partitions[partition]
	if !ok || p.Leader < 0 {
		t.Fatalf("%s[%d] has no leader: %+v", topic, partition, md.Topics[topic])
	}
	return p.Leader
}

// hostileScrape returns kseal's /metrics.
func hostileScrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape /metrics: HTTP %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

var topicLabel = regexp.MustCompile(`[{,]topic="((?:[^"\\]|\\.)*)"`)

// hostileBadTopicLabels returns the metric lines whose topic label is not
// a valid Kafka topic name (the catch-all "other" is valid).
func hostileBadTopicLabels(body string) []string {
	var bad []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range topicLabel.FindAllStringSubmatch(line, -1) {
			v, err := strconv.Unquote(`"` + m[1] + `"`)
			if err != nil {
				v = m[1]
			}
			// <other> is kseal_records_total's overflow bucket past
			// limits.maxTopicLabels, chosen because no topic can have it.
			if v != "<other>" && !hwValidTopic(v) {
				bad = append(bad, fmt.Sprintf("%.200q", line))
			}
		}
	}
	return bad
}

// hostileTail returns the last n lines of s.
func hostileTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

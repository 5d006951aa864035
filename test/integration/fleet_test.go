//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// TestFleet is the fleet run of BENCHMARKS.md ("Fleet: several kseal
// replicas, one cluster"): kseal replicas in front of the shared 3-broker
// cluster, a KEK per topic, clients spread over the replicas. It measures
// throughput and proxy CPU with 1, 2, ... replicas serving clients (one
// producer each), then with one replica serving as many producers as the
// last step had; it counts the requests the fleet served (by API, with
// their sizes) and the KMS calls of the whole fleet, and checks that every
// replica decrypts what any other encrypted. It is a benchmark, not part of `make test`:
// scripts/fleet.sh (make fleet) runs it with KSEAL_FLEET=1 and writes its
// table into BENCHMARKS.md.
//
// Knobs: FLEET_REPLICAS (4), FLEET_TOPICS (100), FLEET_SECONDS per step
// (15), FLEET_RECORD_BYTES (1024), FLEET_REFRESH (DEK refreshAfterWrite,
// 10s), FLEET_OUT (a file for the markdown table), FLEET_PROFILES (a
// directory: a CPU profile of each serving replica per step is written
// there, fleet-<replicas>r-<producers>p-replica<i>.pprof; the replicas
// serve /debug/pprof only then).
func TestFleet(t *testing.T) {
	if os.Getenv("KSEAL_FLEET") != "1" {
		t.Skip("the fleet run is a benchmark: scripts/fleet.sh (make fleet) runs it")
	}
	e2eSkipDirect(t)
	replicas := fleetInt(t, "FLEET_REPLICAS", 4)
	nTopics := fleetInt(t, "FLEET_TOPICS", 100)
	step := time.Duration(fleetInt(t, "FLEET_SECONDS", 15)) * time.Second
	size := fleetInt(t, "FLEET_RECORD_BYTES", 1024)
	profiles := os.Getenv("FLEET_PROFILES")
	refresh, err := time.ParseDuration(fleetEnv("FLEET_REFRESH", "10s"))
	if err != nil {
		t.Fatalf("FLEET_REFRESH: %v", err)
	}

	kms := newE2ELocalKMS(t)
	prefix := uniq("fleet")
	topics := make([]string, nTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("%s-%03d", prefix, i)
		kms.create(t, "KEK-"+topics[i])
	}
	fleetCreateTopics(t, topics)

	enc := "    encryption:\n" + kms.section() + fmt.Sprintf(`      policy:
        rules:
          - topicRegex: 'fleet-.*'
            kek: 'KEK-$(topicName)'
        unresolvedKeyPolicy: REJECT
      dek: {refreshAfterWrite: %s, expireAfterWrite: %s}
`, refresh, 2*refresh)
	type replica struct {
		p     *e2eProxy
		pid   int
		admin string
	}
	fleet := make([]replica, replicas)
	for i := range fleet {
		gw, err := testenv.NewGateway()
		if err != nil {
			t.Fatal(err)
		}
		admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
		p := e2eStartKseal(t, fmt.Sprintf("admin: {listen: %q, profiling: %v}\n", admin, profiles != "")+testenv.KsealConfig(cluster.Bootstrap, gw, enc))
		fleet[i] = replica{p: p, pid: p.pid(t), admin: admin}
	}
	kmsCalls := func(op string) float64 {
		var sum float64
		for _, r := range fleet {
			sum += e2eMetric(t, r.admin, "kseal_kms_operations_total", map[string]string{"operation": op})
		}
		return sum
	}

	value := bytes.Repeat([]byte("fleet-plaintext-"), size/16+1)[:size]
	// The steps: 1, 2, 4, ... replicas serving, one producer per serving
	// replica; then a control step with one replica serving as many
	// producers as the last step had. It separates the two things that
	// change from step to step: the number of kseal processes sharing the
	// cores, and the number of producers the same load is split over (which
	// could make Produce requests smaller; the request table tells).
	type fleetStep struct{ replicas, producers int }
	var steps []fleetStep
	for n := 1; n <= replicas; n *= 2 {
		steps = append(steps, fleetStep{n, n})
	}
	if last := steps[len(steps)-1].producers; last > 1 {
		steps = append(steps, fleetStep{1, last})
	}
	var out, reqs strings.Builder
	fmt.Fprintf(&out, "| replicas serving clients | producers | records/s | MB/s | proxy CPU per record (all replicas) | MB/s per proxy core | generate_dek calls/s (fleet) | bound: serving replicas x %d KEKs / %s |\n|---|---|---|---|---|---|---|---|\n", nTopics, refresh)
	fmt.Fprintf(&reqs, "| replicas serving clients | producers | Produce requests/s | Fetch requests/s | other requests/s | records per Produce request | batches per Produce request (client side) | KiB per Produce request | proxy CPU per request | of it, idle replicas | kseal added latency per Produce (mean) | client connections (open mid-step; accepted during the step) | KiB allocated per Produce request | GC cycles/s | page faults per Produce request | context switches per Produce request | load average (1 min) at step end |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range steps {
		serving := fleet[:st.replicas]
		bootstraps := make([]string, st.producers)
		for i := range bootstraps {
			bootstraps[i] = serving[i%len(serving)].p.Bootstrap
		}
		// Warm up: every serving replica gets a DEK for every KEK before
		// the step is measured.
		fleetProduce(t, fleetBootstraps(serving, func(r replica) string { return r.p.Bootstrap }), topics, value, 2*nTopics)
		// Scrape before reading the CPU at the start and after reading it
		// at the end: the scrapes are not in the measured CPU.
		m0 := fleetSnap(t, fleetBootstraps(fleet, func(r replica) string { return r.admin }))
		proc0, t0 := fleetProcs(t, fleet, func(r replica) int { return r.pid }), time.Now()
		var conns float64
		sampled := make(chan struct{})
		mid := time.AfterFunc(step/2, func() {
			defer close(sampled)
			for _, r := range fleet {
				conns += e2eMetric(t, r.admin, "kseal_client_connections", nil)
			}
		})
		var profiled sync.WaitGroup
		if profiles != "" {
			for i, r := range serving {
				profiled.Add(1)
				go func() {
					defer profiled.Done()
					fleetProfile(t, r.admin, step-time.Second, filepath.Join(profiles, fmt.Sprintf("fleet-%dr-%dp-replica%d.pprof", st.replicas, st.producers, i)))
				}()
			}
		}
		counts, client := fleetProduceFor(t, bootstraps, topics, value, step)
		elapsed := time.Since(t0)
		procs := fleetProcs(t, fleet, func(r replica) int { return r.pid })
		if !mid.Stop() {
			<-sampled
		}
		profiled.Wait()
		m := fleetSnap(t, fleetBootstraps(fleet, func(r replica) string { return r.admin })).minus(m0)
		var cpu, idle time.Duration
		var faults, switchs int64
		for i := range procs {
			d := procs[i].minus(proc0[i])
			cpu, faults, switchs = cpu+d.cpu, faults+d.faults, switchs+d.switchs
			if i >= st.replicas {
				idle += d.cpu
			}
		}
		var total int64
		for _, c := range counts {
			total += c
		}
		if total == 0 || m.produce == 0 {
			t.Fatalf("%+v: nothing produced", st)
		}
		secs := elapsed.Seconds()
		us := func(d time.Duration, n float64) float64 { return float64(d.Nanoseconds()) / 1000 / n }
		mbPerCore := float64(total) * float64(size) / 1e6 / cpu.Seconds()
		bound := float64(st.replicas*nTopics) / refresh.Seconds()
		fmt.Fprintf(&out, "| %d | %d | %.0f | %.1f | %.2f us | %.0f | %.1f | %.1f |\n", st.replicas, st.producers, float64(total)/secs,
			float64(total)*float64(size)/1e6/secs, us(cpu, float64(total)), mbPerCore, m.generate/secs, bound)
		fmt.Fprintf(&reqs, "| %d | %d | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f us | %.0f us | %.0f us | %.0f; %.0f | %.0f | %.1f | %.0f | %.0f | %s |\n", st.replicas, st.producers,
			m.produce/secs, m.fetch/secs, (m.all-m.produce-m.fetch)/secs, float64(total)/m.produce,
			float64(client.batches.Load())/float64(client.requests.Load()), m.produceBytes/m.produce/1024,
			us(cpu, m.all), us(idle, m.all), 1e6*m.addedSum/m.addedCount, conns, m.accepted,
			m.allocated/m.produce/1024, m.gcs/secs, float64(faults)/m.produce, float64(switchs)/m.produce, fleetLoad())
		t.Logf("%+v: %d records in %v, %v proxy CPU (idle replicas %v), %d page faults, %d context switches, requests %+v, client side %d Produce requests, %d batches, %d records",
			st, total, elapsed, cpu, idle, faults, switchs, m, client.requests.Load(), client.batches.Load(), client.records.Load())
		// No KMS call per record or per request: the fleet's DEK requests
		// are bounded by replicas x KEKs per refresh period (plus one
		// round for the DEKs that were current when the step began).
		if max := float64(st.replicas*nTopics) * (secs/refresh.Seconds() + 1); m.generate > max {
			t.Errorf("%+v: %v generate_dek calls in %v, more than %v (replicas x KEKs per refresh period)", st, m.generate, elapsed, max)
		}
	}
	fmt.Fprintf(&out, "\nThe same steps, counted in requests (each replica's kseal_requests_total, kseal_request_bytes_total and kseal_proxy_added_latency_seconds by API, go_memstats_alloc_bytes_total, go_gc_duration_seconds_count, minor page faults and context switches from /proc, summed over the fleet; batches per request from the producers' franz-go hooks; nothing consumes during a step):\n\n%s", reqs.String())
	dec0 := kmsCalls("decrypt_dek")

	// Any replica decrypts what any other produced: read a sample of topics
	// from the start through each replica and check every value.
	sample := topics[:min(5, len(topics))]
	want := int64(0)
	for _, tp := range sample {
		want += e2eSum(e2eEndOffsets(t, tp))
	}
	for i, r := range fleet {
		got, bad := fleetReadAll(t, r.p.Bootstrap, sample, value)
		if got != want || bad != 0 {
			t.Errorf("replica %d read %d records of %v (want %d), %d with a wrong value", i, got, sample, want, bad)
		}
	}
	dec := kmsCalls("decrypt_dek") - dec0
	fmt.Fprintf(&out, "\nEach of the %d replicas then read the %d records of %d topics from the start, written through all of them: all decrypted, with %.0f decrypt_dek calls for the %d reads together (an unwrap per DEK, not per record).\n",
		replicas, want, len(sample), dec, replicas*int(want))
	t.Logf("fleet results:\n%s", out.String())
	if path := os.Getenv("FLEET_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fleetEnv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fleetInt(t *testing.T, k string, def int) int {
	v, err := strconv.Atoi(fleetEnv(k, strconv.Itoa(def)))
	if err != nil || v <= 0 {
		t.Fatalf("%s: want a positive integer", k)
	}
	return v
}

func fleetBootstraps[R any](rs []R, addr func(R) string) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = addr(r)
	}
	return out
}

// fleetCounts is what the fleet's /metrics count, summed over replicas.
type fleetCounts struct {
	produce, fetch, all, produceBytes, addedSum, addedCount, generate float64
	allocated, gcs, accepted                                          float64
}

func (a fleetCounts) minus(b fleetCounts) fleetCounts {
	return fleetCounts{a.produce - b.produce, a.fetch - b.fetch, a.all - b.all, a.produceBytes - b.produceBytes,
		a.addedSum - b.addedSum, a.addedCount - b.addedCount, a.generate - b.generate,
		a.allocated - b.allocated, a.gcs - b.gcs, a.accepted - b.accepted}
}

// fleetSnap scrapes the request counters and generate_dek calls of the
// replicas whose admin addresses are given.
func fleetSnap(t *testing.T, admins []string) fleetCounts {
	t.Helper()
	var c fleetCounts
	produce := map[string]string{"api": "Produce"}
	for _, a := range admins {
		c.produce += e2eMetric(t, a, "kseal_requests_total", produce)
		c.fetch += e2eMetric(t, a, "kseal_requests_total", map[string]string{"api": "Fetch"})
		c.all += e2eMetric(t, a, "kseal_requests_total", nil)
		c.produceBytes += e2eMetric(t, a, "kseal_request_bytes_total", produce)
		c.addedSum += e2eMetric(t, a, "kseal_proxy_added_latency_seconds_sum", produce)
		c.addedCount += e2eMetric(t, a, "kseal_proxy_added_latency_seconds_count", produce)
		c.generate += e2eMetric(t, a, "kseal_kms_operations_total", map[string]string{"operation": "generate_dek"})
		c.allocated += e2eMetric(t, a, "go_memstats_alloc_bytes_total", nil)
		c.gcs += e2eMetric(t, a, "go_gc_duration_seconds_count", nil)
		c.accepted += e2eMetric(t, a, "kseal_client_connections_total", nil)
	}
	return c
}

// fleetProfile writes a CPU profile of d taken from the replica whose
// admin listener is admin (profiling on) to path.
func fleetProfile(t *testing.T, admin string, d time.Duration, path string) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(d.Seconds())))
	if err != nil {
		t.Errorf("profile %s: %v", admin, err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("profile %s: HTTP %d, %v", admin, resp.StatusCode, err)
		return
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Error(err)
	}
}

// fleetLoad is the machine's 1-minute load average ("?" if unknown).
func fleetLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// fleetProcs reads each replica's fleetProc.
func fleetProcs[R any](t *testing.T, rs []R, pid func(R) int) []fleetProcStat {
	t.Helper()
	out := make([]fleetProcStat, len(rs))
	for i, r := range rs {
		out[i] = fleetProc(t, pid(r))
	}
	return out
}

// fleetClientHook counts, on the producers' side, the Produce requests
// written and the batches and records they carried.
type fleetClientHook struct{ requests, batches, records atomic.Int64 }

func (h *fleetClientHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 0 && err == nil {
		h.requests.Add(1)
	}
}

func (h *fleetClientHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.batches.Add(1)
	h.records.Add(int64(m.NumRecords))
}

// fleetCreateTopics creates topics (3 partitions each) directly on the
// cluster in one request, and waits until every broker knows them.
func fleetCreateTopics(t *testing.T, topics []string) {
	t.Helper()
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, partitions, replication, nil, topics...)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Error(); err != nil {
		t.Fatal(err)
	}
	for _, tp := range topics {
		for !everyBrokerKnows(ctx, tp) {
			if ctx.Err() != nil {
				t.Fatalf("topic %s not on every broker", tp)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// fleetProduce produces n records round robin over topics through each
// bootstrap, waiting for every acknowledgement.
func fleetProduce(t *testing.T, bootstraps []string, topics []string, value []byte, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, b := range bootstraps {
		cl := testenv.Kgo(t, []string{b})
		defer cl.Close()
		for i := range n {
			wg.Add(1)
			cl.Produce(context.Background(), &kgo.Record{Topic: topics[i%len(topics)], Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("warm-up produce: %v", err)
				}
				wg.Done()
			})
		}
	}
	wg.Wait()
}

// fleetProduceFor produces through every bootstrap at full speed (one
// client each, default settings, closed when done) for d, and returns how
// many records each got acknowledged and what the clients counted.
func fleetProduceFor(t *testing.T, bootstraps []string, topics []string, value []byte, d time.Duration) ([]int64, *fleetClientHook) {
	t.Helper()
	hook := new(fleetClientHook)
	counts := make([]int64, len(bootstraps))
	var wg sync.WaitGroup
	for i, b := range bootstraps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := testenv.Kgo(t, []string{b}, kgo.WithHooks(hook))
			defer cl.Close()
			var acked atomic.Int64
			var failed atomic.Value
			stop := time.Now().Add(d)
			for j := 0; time.Now().Before(stop); j++ {
				cl.Produce(context.Background(), &kgo.Record{Topic: topics[j%len(topics)], Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						failed.Store(err)
						return
					}
					acked.Add(1)
				})
			}
			if err := cl.Flush(context.Background()); err != nil {
				t.Errorf("flush: %v", err)
			}
			if err, _ := failed.Load().(error); err != nil {
				t.Errorf("produce through %s: %v", b, err)
			}
			counts[i] = acked.Load()
		}()
	}
	wg.Wait()
	return counts, hook
}

// fleetReadAll reads topics from the start through bootstrap up to their
// current end offsets and counts the records, and those whose value is
// not value.
func fleetReadAll(t *testing.T, bootstrap string, topics []string, value []byte) (n, bad int64) {
	t.Helper()
	var want int64
	for _, tp := range topics {
		want += e2eSum(e2eEndOffsets(t, tp))
	}
	cl := testenv.Kgo(t, []string{bootstrap}, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for n < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(tp string, p int32, err error) {
			if ctx.Err() == nil {
				t.Errorf("fetch %s/%d through %s: %v", tp, p, bootstrap, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if !bytes.Equal(r.Value, value) {
				bad++
			}
		})
	}
	return n, bad
}

// fleetProcStat is what the kernel counts for a process: CPU time, minor
// page faults and context switches.
type fleetProcStat struct {
	cpu             time.Duration
	faults, switchs int64
}

func (a fleetProcStat) minus(b fleetProcStat) fleetProcStat {
	return fleetProcStat{a.cpu - b.cpu, a.faults - b.faults, a.switchs - b.switchs}
}

// fleetProc reads process pid's user+system CPU time, minor page faults
// and (voluntary and involuntary) context switches.
func fleetProc(t *testing.T, pid int) fleetProcStat {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	// After the command: state(0) ppid ... minflt(7) ... utime(11)
	// stime(12), times in clock ticks (USER_HZ, 100 on Linux).
	minflt, _ := strconv.ParseInt(f[7], 10, 64)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	st := fleetProcStat{cpu: time.Duration(utime+stime) * 10 * time.Millisecond, faults: minflt}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			st.switchs += n
		}
	}
	return st
}

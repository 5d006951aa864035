//go:build integration

package integration

// What the soak and fault tests share: an encrypting kseal in front of the
// shared cluster, a stream of self-checking records through it, a ledger
// that proves every record arrived exactly once and unchanged, and kseal's
// resident memory read from /proc.

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/testenv"
)

// encProxy is a kseal that encrypts the topics of one prefix under one KEK.
type encProxy struct {
	Bootstrap string
	Gateway   testenv.Gateway
	cfgYAML   string
	k         *testenv.Kseal
}

// newLocalKMS creates a local KMS key store holding kek in a folder of its
// own and returns the `kms:` YAML (indented for the encryption section)
// that points kseal at it.
func newLocalKMS(t *testing.T, kek string) string {
	t.Helper()
	work, err := testenv.WorkDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(work, "kms-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	cfg := local.NewConfig()
	cfg.KeyStore = filepath.Join(dir, "keys.json")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	ctx := context.Background()
	if _, err := local.Init(ctx, cfg); err != nil {
		t.Fatalf("local KMS init: %v", err)
	}
	k, err := local.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("local KMS open: %v", err)
	}
	defer k.Close()
	if _, err := k.Create(ctx, kek); err != nil {
		t.Fatalf("local KMS create %s: %v", kek, err)
	}
	return fmt.Sprintf("      kms:\n        type: local\n        config: {keyStore: %q, masterKeyFile: %q, reloadInterval: 1s}\n",
		cfg.KeyStore, cfg.MasterKeyFile)
}

// startEncProxy starts a kseal that encrypts every topic starting with
// prefix under kek, with the given kms YAML (see newLocalKMS) and optional
// `dek:` settings (indented 6 spaces, "" for the defaults).
func startEncProxy(t *testing.T, kmsYAML, prefix, kek, dekYAML string) *encProxy {
	t.Helper()
	return startEncProxyPolicy(t, kmsYAML, dekYAML,
		fmt.Sprintf("      policy:\n        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED\n        rules:\n          - topicPrefix: %s\n            kek: %s\n", prefix, kek))
}

// startEncProxyPolicy is startEncProxy with the whole `policy:` section
// given (indented 6 spaces).
func startEncProxyPolicy(t *testing.T, kmsYAML, dekYAML, policyYAML string) *encProxy {
	t.Helper()
	if direct() {
		t.Skip("needs kseal in front of the cluster (KSEAL_IT_DIRECT=1)")
	}
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	extra := "    encryption:\n" + kmsYAML + dekYAML + policyYAML
	p := &encProxy{Gateway: gw, cfgYAML: testenv.KsealConfig(cluster.Bootstrap, gw, extra)}
	p.k = testenv.StartKseal(t, p.cfgYAML)
	p.Bootstrap = p.k.Bootstrap
	return p
}

// restart stops kseal gracefully and starts it again on the same ports
// with the same config; clients must reconnect on their own.
func (p *encProxy) restart(t *testing.T) {
	t.Helper()
	if err := p.k.Stop(); err != nil {
		t.Fatalf("kseal restart: stop: %v", err)
	}
	p.k = testenv.StartKseal(t, p.cfgYAML)
}

// pid finds the kseal process by the config file it runs with: testenv
// writes it next to the log file, in a folder unique to this instance.
func (p *encProxy) pid() (int, error) {
	cfg := filepath.Join(filepath.Dir(p.k.LogPath), "kseal.yaml")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) >= 4 && args[1] == "run" && args[len(args)-1] == cfg {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no kseal process runs with %s", cfg)
}

// raceBuild says why memory bounds do not apply to this kseal ("" when
// they do): a binary built with the race detector (KSEAL_IT_RACE=1, or a
// concurrent run that rebuilt the shared binary) needs several times the
// memory.
func (p *encProxy) raceBuild() string {
	pid, err := p.pid()
	if err != nil {
		return ""
	}
	bi, err := buildinfo.ReadFile(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return "kseal was built with the race detector"
		}
	}
	return ""
}

// rssBytes reads a process's resident set size (VmRSS) from /proc.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS line", pid)
}

type rssSample struct {
	At  time.Duration // since sampling started
	RSS int64
}

// rssSampler reads kseal's RSS at a fixed interval until stopped. A proxy
// restarted meanwhile is followed (the pid is looked up again).
type rssSampler struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []rssSample
}

func sampleRSS(p *encProxy, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		start := time.Now()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if pid, err := p.pid(); err == nil {
				if rss, err := rssBytes(pid); err == nil {
					s.mu.Lock()
					s.samples = append(s.samples, rssSample{time.Since(start), rss})
					s.mu.Unlock()
				}
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// last returns the latest sample (zero if none yet).
func (s *rssSampler) last() rssSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return rssSample{}
	}
	return s.samples[len(s.samples)-1]
}

// Stop ends sampling and returns the samples.
func (s *rssSampler) Stop() []rssSample {
	close(s.stop)
	<-s.done
	return s.samples
}

func maxRSS(ss []rssSample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.RSS)
	}
	return m
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// The self-checking record value:
//
//	<canary>|p=<producer>|s=<seq>|<payload>|<crc>
//
// payload is derived from (producer, seq) alone, so the consumer can
// rebuild it; crc is the CRC-32C, in 8 hex digits, of everything before it.
// Producer and sequence number identify the record; the canary (which
// starts with canaryPrefix) is what the at-rest check looks for on disk.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// payloadLen is the payload length of (producer, seq): min..max bytes.
func payloadLen(producer, seq, minLen, maxLen int) int {
	if maxLen <= minLen {
		return minLen
	}
	return minLen + int(mix(uint64(producer)<<40|uint64(seq))%uint64(maxLen-minLen+1))
}

// mix is splitmix64's finaliser: a cheap, well-spread hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func appendPayload(dst []byte, producer, seq, n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	x := uint64(producer)<<40 | uint64(seq)
	for i := 0; i < n; i++ {
		if i%10 == 0 {
			x = mix(x)
		}
		dst = append(dst, alphabet[x&63])
		x >>= 6
	}
	return dst
}

func appendSeqValue(dst []byte, canary string, producer, seq, minLen, maxLen int) []byte {
	start := len(dst)
	dst = append(dst, canary...)
	dst = append(dst, "|p="...)
	dst = strconv.AppendInt(dst, int64(producer), 10)
	dst = append(dst, "|s="...)
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, '|')
	dst = appendPayload(dst, producer, seq, payloadLen(producer, seq, minLen, maxLen))
	dst = append(dst, '|')
	return fmt.Appendf(dst, "%08x", crc32.Checksum(dst[start:], castagnoli))
}

// parseSeqValue checks a value built by appendSeqValue and returns its
// producer and sequence number.
func parseSeqValue(v []byte, canary string, minLen, maxLen int) (producer, seq int, err error) {
	if len(v) < 9 || v[len(v)-9] != '|' {
		return 0, 0, fmt.Errorf("no checksum field")
	}
	body, sum := v[:len(v)-8], v[len(v)-8:]
	if got := fmt.Sprintf("%08x", crc32.Checksum(body, castagnoli)); got != string(sum) {
		return 0, 0, fmt.Errorf("checksum %s, computed %s", sum, got)
	}
	rest, ok := bytes.CutPrefix(body, []byte(canary+"|p="))
	if !ok {
		return 0, 0, fmt.Errorf("value does not start with this stream's canary")
	}
	f := bytes.SplitN(rest, []byte("|"), 3)
	if len(f) != 3 || !bytes.HasPrefix(f[1], []byte("s=")) {
		return 0, 0, fmt.Errorf("malformed fields")
	}
	if producer, err = strconv.Atoi(string(f[0])); err != nil {
		return 0, 0, fmt.Errorf("producer: %w", err)
	}
	if seq, err = strconv.Atoi(string(f[1][2:])); err != nil {
		return 0, 0, fmt.Errorf("sequence: %w", err)
	}
	want := appendPayload(nil, producer, seq, payloadLen(producer, seq, minLen, maxLen))
	if !bytes.Equal(append(want, '|'), f[2]) {
		return 0, 0, fmt.Errorf("payload differs from the one produced")
	}
	return producer, seq, nil
}

// loc is where a record was found: partition and offset.
type loc struct {
	part int32
	off  int64
}

// ledger records what producers sent and had acknowledged and what
// consumers received, and proves exactly-once arrival at the end.
type ledger struct {
	mu       sync.Mutex
	canary   string
	min, max int // payload length range

	acked [][]bool // producer -> seq -> acknowledged
	where [][]loc  // producer -> seq -> where consumed (off -1: not yet)
	nAck  atomic.Int64
	// Distinct (partition, offset) pairs seen: consumer groups redeliver
	// after a rebalance, which is not a duplicate in the log.
	seen     map[int32]map[int64]bool
	nMatched int // records consumed that were sent, counted once
	errs     ledgerErrs
}

// ledgerErrs counts each kind of problem and keeps the first few.
type ledgerErrs struct {
	produce, corrupt, dup, unknown int
	samples                        []string
}

func (e *ledgerErrs) add(n *int, format string, args ...any) {
	*n++
	if len(e.samples) < 20 {
		e.samples = append(e.samples, fmt.Sprintf(format, args...))
	}
}

func newLedger(canary string, producers, minLen, maxLen int) *ledger {
	return &ledger{canary: canary, min: minLen, max: maxLen,
		acked: make([][]bool, producers), where: make([][]loc, producers),
		seen: map[int32]map[int64]bool{}}
}

// sent notes that producer is about to send seq (they come in order).
func (l *ledger) sent(producer, seq int) {
	l.mu.Lock()
	l.acked[producer] = append(l.acked[producer], false)
	l.where[producer] = append(l.where[producer], loc{-1, -1})
	l.mu.Unlock()
}

func (l *ledger) ack(producer, seq int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs.add(&l.errs.produce, "produce p=%d s=%d: %v", producer, seq, err)
		return
	}
	l.acked[producer][seq] = true
	l.nAck.Add(1)
}

// acks is the number of acknowledged records so far.
func (l *ledger) acks() int64 { return l.nAck.Load() }

func (l *ledger) consume(rs []*kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range rs {
		offs := l.seen[r.Partition]
		if offs == nil {
			offs = map[int64]bool{}
			l.seen[r.Partition] = offs
		}
		if offs[r.Offset] {
			continue
		}
		offs[r.Offset] = true
		p, s, err := parseSeqValue(r.Value, l.canary, l.min, l.max)
		if err != nil {
			l.errs.add(&l.errs.corrupt, "corrupt record at %d@%d: %v (value %.80q)", r.Partition, r.Offset, err, r.Value)
			continue
		}
		if p < 0 || p >= len(l.where) || s < 0 || s >= len(l.where[p]) {
			l.errs.add(&l.errs.unknown, "record p=%d s=%d at %d@%d was never sent", p, s, r.Partition, r.Offset)
			continue
		}
		if w := l.where[p][s]; w.off >= 0 {
			l.errs.add(&l.errs.dup, "duplicate p=%d s=%d at %d@%d and %d@%d", p, s, w.part, w.off, r.Partition, r.Offset)
			continue
		}
		l.where[p][s] = loc{r.Partition, r.Offset}
		l.nMatched++
	}
}

// consumed is the number of distinct sent records consumed so far.
func (l *ledger) consumed() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.nMatched)
}

// complete reports whether every acknowledged record has been consumed.
func (l *ledger) complete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.nMatched) >= l.nAck.Load()
}

// check returns a summary and every way the run broke exactly-once: a
// record sent but not acknowledged, acknowledged but not consumed, consumed
// twice, corrupt, never sent, or out of send order within a partition.
func (l *ledger) check() (summary string, problems []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var sent, lost, unacked, order int
	var samples []string
	note := func(format string, args ...any) {
		if len(samples) < 20 {
			samples = append(samples, fmt.Sprintf(format, args...))
		}
	}
	for p := range l.where {
		last := map[int32]int64{}
		for s, w := range l.where[p] {
			sent++
			switch {
			case w.off < 0 && l.acked[p][s]:
				lost++
				note("lost: p=%d s=%d was acknowledged but never consumed", p, s)
			case !l.acked[p][s]:
				unacked++
				note("unacknowledged: p=%d s=%d", p, s)
			}
			if w.off < 0 {
				continue
			}
			if prev, ok := last[w.part]; ok && w.off < prev {
				order++
				note("order: p=%d s=%d at %d@%d is before an earlier record at offset %d", p, s, w.part, w.off, prev)
			}
			last[w.part] = w.off
		}
	}
	summary = fmt.Sprintf("%d sent, %d acknowledged, %d consumed once; lost %d, unacknowledged %d, duplicates %d, corrupt %d, unknown %d, out of order %d",
		sent, l.nAck.Load(), l.nMatched, lost, unacked, l.errs.dup, l.errs.corrupt, l.errs.unknown, order)
	if sent == 0 {
		problems = append(problems, "nothing was sent")
	}
	if lost+unacked+order+l.errs.produce+l.errs.corrupt+l.errs.dup+l.errs.unknown > 0 {
		problems = append(problems, append(append([]string{}, l.errs.samples...), samples...)...)
	}
	return summary, problems
}

// verify fails t if check finds a problem.
func (l *ledger) verify(t *testing.T) {
	t.Helper()
	summary, problems := l.check()
	t.Logf("ledger: %s", summary)
	if len(problems) > 0 {
		t.Errorf("exactly-once violated; first problems:\n  %s", strings.Join(problems, "\n  "))
	}
}

// streamOpts configures a stream of self-checking records through kseal.
type streamOpts struct {
	Bootstrap string
	Topic     string
	Canary    string
	Producers int
	Consumers int // in one consumer group
	Rate      int // records per second per producer
	// MinLen and MaxLen bound the payload size (default 64..512).
	MinLen, MaxLen int
	// ProducerOpts, if set, adds options to producer i's client.
	ProducerOpts func(i int) []kgo.Opt
	// ConsumerOpts adds options to every consumer's client.
	ConsumerOpts []kgo.Opt
}

// stream runs idempotent acks=all producers and a consumer group until
// told to stop, feeding a ledger.
type stream struct {
	t    *testing.T
	o    streamOpts
	led  *ledger
	pctx context.Context // producers run until it is canceled
	pcan context.CancelFunc
	ccan context.CancelFunc
	pwg  sync.WaitGroup
	cwg  sync.WaitGroup

	fetchMu   sync.Mutex
	fetchErrs map[string]int // distinct consumer errors, counted
}

func startStream(t *testing.T, o streamOpts) *stream {
	t.Helper()
	if o.MinLen == 0 && o.MaxLen == 0 {
		o.MinLen, o.MaxLen = 64, 512
	}
	s := &stream{t: t, o: o, led: newLedger(o.Canary, o.Producers, o.MinLen, o.MaxLen), fetchErrs: map[string]int{}}
	s.pctx, s.pcan = context.WithCancel(context.Background())
	cctx, ccan := context.WithCancel(context.Background())
	s.ccan = ccan
	group := uniq("it-robust-group")
	for i := 0; i < o.Consumers; i++ {
		opts := append([]kgo.Opt{kgo.ConsumerGroup(group), kgo.ConsumeTopics(o.Topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500 * time.Millisecond)}, o.ConsumerOpts...)
		cl := testenv.Kgo(t, []string{o.Bootstrap}, opts...)
		s.cwg.Add(1)
		go s.consume(cctx, cl)
	}
	for i := 0; i < o.Producers; i++ {
		opts := []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5 * time.Millisecond)}
		if o.ProducerOpts != nil {
			opts = append(opts, o.ProducerOpts(i)...)
		}
		cl := testenv.Kgo(t, []string{o.Bootstrap}, opts...)
		s.pwg.Add(1)
		go s.produce(i, cl)
	}
	// Whatever happens to the test, the goroutines end before the clients
	// are closed (cleanups run last-in first-out).
	t.Cleanup(func() { s.pcan(); s.ccan(); s.pwg.Wait(); s.cwg.Wait() })
	return s
}

func (s *stream) produce(id int, cl *kgo.Client) {
	defer s.pwg.Done()
	start := time.Now()
	var buf []byte
	for seq := 0; ; seq++ {
		// Pace to Rate: sleep when ahead of schedule by more than 5ms.
		due := start.Add(time.Duration(seq) * time.Second / time.Duration(s.o.Rate))
		if d := time.Until(due); d > 5*time.Millisecond {
			select {
			case <-s.pctx.Done():
			case <-time.After(d):
			}
		}
		if s.pctx.Err() != nil {
			break
		}
		buf = appendSeqValue(buf[:0], s.o.Canary, id, seq, s.o.MinLen, s.o.MaxLen)
		s.led.sent(id, seq)
		// A background context: records are never given up on, only
		// retried; the ledger counts what was acknowledged.
		cl.Produce(context.Background(), &kgo.Record{Topic: s.o.Topic, Value: bytes.Clone(buf)},
			func(_ *kgo.Record, err error) { s.led.ack(id, seq, err) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		s.t.Errorf("producer %d: flush: %v", id, err)
	}
}

func (s *stream) consume(ctx context.Context, cl *kgo.Client) {
	defer s.cwg.Done()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if ctx.Err() != nil {
				return
			}
			s.fetchMu.Lock()
			s.fetchErrs[fmt.Sprintf("%s[%d]: %v", topic, p, err)]++
			s.fetchMu.Unlock()
		})
		s.led.consume(fs.Records())
	}
}

// stopProducing stops sending and waits until every record handed to a
// producer has been acknowledged or failed.
func (s *stream) stopProducing() {
	s.pcan()
	s.pwg.Wait()
}

// finish stops the producers, waits up to timeout for the consumers to
// receive every acknowledged record, stops them and verifies the ledger.
func (s *stream) finish(timeout time.Duration) {
	s.t.Helper()
	s.stopProducing()
	deadline := time.Now().Add(timeout)
	for !s.led.complete() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	s.ccan()
	s.cwg.Wait()
	s.fetchMu.Lock()
	errs := make([]string, 0, len(s.fetchErrs))
	for e, n := range s.fetchErrs {
		errs = append(errs, fmt.Sprintf("%dx %s", n, e))
	}
	s.fetchMu.Unlock()
	if len(errs) > 0 {
		// Retriable errors during a fault are expected; a lasting one
		// shows up as lost records below.
		sort.Strings(errs)
		s.t.Logf("consumer errors seen:\n  %s", strings.Join(errs, "\n  "))
	}
	s.led.verify(s.t)
}

// waitAcks waits until at least n more records than now are acknowledged,
// failing t after timeout.
func (s *stream) waitAcks(n int64, timeout time.Duration, why string) {
	s.t.Helper()
	target := s.led.acks() + n
	deadline := time.Now().Add(timeout)
	for s.led.acks() < target {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: only %d of %d more records acknowledged after %v", why, s.led.acks()-(target-n), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// envDuration reads a duration from the environment, or def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q is not a positive duration", name, v)
	}
	return d
}

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q is not a positive integer", name, v)
	}
	return n
}

// TestLedger: the record format and the ledger catch each way a stream
// can break (so the soak and fault tests can fail), and pass a clean run.
func TestLedger(t *testing.T) {
	const canary = canaryPrefix + "-ledger-test"
	rec := func(p, s int, part int32, off int64) *kgo.Record {
		return &kgo.Record{Partition: part, Offset: off, Value: appendSeqValue(nil, canary, p, s, 8, 64)}
	}
	cases := []struct {
		name string
		run  func(l *ledger)
		want string // in the problems; "" = none
	}{
		{"clean", func(l *ledger) {
			l.consume([]*kgo.Record{rec(0, 0, 0, 0), rec(0, 1, 1, 0), rec(0, 2, 0, 1), rec(0, 2, 0, 1)}) // last: redelivery
		}, ""},
		{"lost", func(l *ledger) { l.consume([]*kgo.Record{rec(0, 0, 0, 0), rec(0, 2, 0, 1)}) }, "lost: p=0 s=1"},
		{"duplicate", func(l *ledger) {
			l.consume([]*kgo.Record{rec(0, 0, 0, 0), rec(0, 1, 0, 1), rec(0, 2, 0, 2), rec(0, 1, 0, 3)})
		}, "duplicate p=0 s=1"},
		{"out of order", func(l *ledger) {
			l.consume([]*kgo.Record{rec(0, 1, 0, 0), rec(0, 0, 0, 1), rec(0, 2, 0, 2)})
		}, "order: p=0 s=1"},
		{"corrupt", func(l *ledger) {
			r := rec(0, 1, 0, 1)
			r.Value[len(canary)+12] ^= 1
			l.consume([]*kgo.Record{rec(0, 0, 0, 0), r, rec(0, 1, 0, 2), rec(0, 2, 0, 3)})
		}, "corrupt record at 0@1"},
		{"never sent", func(l *ledger) {
			l.consume([]*kgo.Record{rec(0, 0, 0, 0), rec(0, 1, 0, 1), rec(0, 2, 0, 2), rec(0, 9, 0, 3)})
		}, "p=0 s=9 at 0@3 was never sent"},
		{"produce error", func(l *ledger) {
			l.ack(0, 1, errors.New("boom"))
			l.consume([]*kgo.Record{rec(0, 0, 0, 0), rec(0, 2, 0, 2)})
		}, "produce p=0 s=1: boom"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLedger(canary, 1, 8, 64)
			for s := 0; s < 3; s++ {
				l.sent(0, s)
			}
			l.ack(0, 0, nil)
			l.ack(0, 2, nil)
			if c.name != "produce error" {
				l.ack(0, 1, nil)
			}
			c.run(l)
			summary, problems := l.check()
			all := strings.Join(problems, "\n")
			switch {
			case c.want == "" && len(problems) > 0:
				t.Errorf("clean run reported problems (%s):\n%s", summary, all)
			case c.want != "" && !strings.Contains(all, c.want):
				t.Errorf("want a problem containing %q, got (%s):\n%s", c.want, summary, all)
			}
		})
	}
}

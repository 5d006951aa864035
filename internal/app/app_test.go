package app

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/admin"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/proxy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
)

// freePorts returns the first of n consecutive free ports, below the
// kernel's ephemeral range (outgoing connections cannot take them between
// the check and kseal's bind).
func freePorts(t *testing.T, n int) int {
	t.Helper()
	base, err := testenv.FreePortRange(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

type env struct {
	fake      *kfake.Cluster
	kms       *local.KMS
	bootstrap string
	logs      *lockedBuffer
	reg       *prometheus.Registry
	srv       *proxy.Server
	app       *App
	doc       string
}

// startEncrypting starts kfake, a local KMS with KEK-orders, and kseal with a
// policy encrypting every topic under KEK-$(topicName).
func startEncrypting(t *testing.T, unresolved string, extra ...string) *env {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(3, "orders", "plain", "other"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	kcfg := local.NewConfig()
	kcfg.KeyStore = filepath.Join(dir, "keys.json")
	kcfg.MasterKeyFile = filepath.Join(dir, "master.key")
	ctx := context.Background()
	if _, err := local.Init(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	k, err := local.New(ctx, kcfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if _, err := k.Create(ctx, "KEK-orders"); err != nil {
		t.Fatal(err)
	}
	base := freePorts(t, 10)
	doc := fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 8}
    encryption:
      kms:
        type: local
        config: {keyStore: %q, masterKeyFile: %q, reloadInterval: 100ms}
      policy:
        rules:
          - topics: [plain]
            passthrough: true
          - topicRegex: '.*'
            kek: 'KEK-$(topicName)'
        unresolvedKeyPolicy: %s
`, fake.ListenAddrs()[0], base, base+1, kcfg.KeyStore, kcfg.MasterKeyFile, unresolved)
	for _, x := range extra {
		doc += "      " + x + "\n"
	}
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(cfg); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), nil))
	reg := prometheus.NewRegistry()
	a := startApp(t, ctx, cfg, log, reg)
	return &env{fake: fake, kms: k, bootstrap: a.Server.BootstrapAddr("test"), logs: logs, reg: reg, srv: a.Server, app: a, doc: doc}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ProducerLinger(0),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RecordRetries(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func consumeN(t *testing.T, cl *kgo.Client, n int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("fetch after %d records: %v", len(out), err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

const canary = "CANARY-plaintext-4c1e"

func TestEncryptsAtRestAndDecryptsThroughProxy(t *testing.T) {
	codecs := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
			ctx := context.Background()
			p := client(t, e.bootstrap, kgo.ProducerBatchCompression(codec))
			var want []*kgo.Record
			for i := 0; i < 50; i++ {
				r := &kgo.Record{Topic: "orders", Key: []byte("k" + strconv.Itoa(i)), Value: []byte(canary + strconv.Itoa(i)),
					Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
				if i == 7 {
					r.Value = nil // tombstone
				}
				want = append(want, r)
			}
			if err := p.ProduceSync(ctx, want...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			// Directly from the broker: ciphertext, marker header, no canary.
			raw := consumeN(t, client(t, e.fake.ListenAddrs()[0], kgo.ConsumeTopics("orders")), len(want))
			for _, r := range raw {
				if bytes.Contains(r.Value, []byte(canary)) {
					t.Fatalf("plaintext at rest: %q", r.Value)
				}
				if string(r.Key) == "k7" {
					if r.Value != nil || len(r.Headers) != 1 {
						t.Errorf("tombstone changed at rest: %q %v", r.Value, r.Headers)
					}
					continue
				}
				if len(r.Headers) != 2 || r.Headers[1].Key != recordcrypt.HeaderKey {
					t.Fatalf("headers at rest = %v", r.Headers)
				}
				if _, err := recordcrypt.Parse(r.Value); err != nil {
					t.Fatalf("value at rest is not an envelope: %v", err)
				}
			}
			// Through the proxy: the plaintext, keys, headers, offsets.
			got := consumeN(t, client(t, e.bootstrap, kgo.ConsumeTopics("orders")), len(want))
			byOffset := map[string]*kgo.Record{}
			for _, r := range raw {
				byOffset[fmt.Sprint(r.Partition, r.Offset)] = r
			}
			for _, r := range got {
				i, _ := strconv.Atoi(strings.TrimPrefix(string(r.Key), "k"))
				w := want[i]
				if !bytes.Equal(r.Value, w.Value) || (r.Value == nil) != (w.Value == nil) {
					t.Errorf("record %s: value %q, want %q", r.Key, r.Value, w.Value)
				}
				if len(r.Headers) != 1 || r.Headers[0].Key != "h" {
					t.Errorf("record %s: headers %v", r.Key, r.Headers)
				}
				rawR := byOffset[fmt.Sprint(r.Partition, r.Offset)]
				if rawR == nil || string(rawR.Key) != string(r.Key) || !rawR.Timestamp.Equal(r.Timestamp) {
					t.Errorf("record %s: offset/timestamp differ from the broker's", r.Key)
				}
			}
		})
	}
}

func TestPolicyPassthroughRejectAndMissingKEK(t *testing.T) {
	e := startEncrypting(t, "REJECT")
	ctx := context.Background()
	p := client(t, e.bootstrap)
	// "plain" is passthrough by rule: stored as is.
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "plain", Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	raw := consumeN(t, client(t, e.fake.ListenAddrs()[0], kgo.ConsumeTopics("plain")), 1)
	if string(raw[0].Value) != canary {
		t.Errorf("passthrough topic stored %q", raw[0].Value)
	}
	// "other" has no KEK-other and the policy is REJECT.
	err := p.ProduceSync(ctx, &kgo.Record{Topic: "other", Value: []byte(canary)}).FirstErr()
	if err != kerr.PolicyViolation {
		t.Errorf("produce to topic without KEK: %v, want POLICY_VIOLATION", err)
	}
	if n := len(e.fake.PartitionInfos("other")); n == 0 {
		t.Fatal("no partitions")
	}
	for _, pi := range e.fake.PartitionInfos("other") {
		if pi.HighWatermark != 0 {
			t.Errorf("rejected records reached the broker: partition %d hwm %d", pi.Partition, pi.HighWatermark)
		}
	}
	// Encrypt, then delete the KEK: fetch gets RESOURCE_NOT_FOUND for that partition.
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := e.kms.Delete(ctx, "KEK-orders"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the proxy's KMS reloads the store
	c := client(t, e.bootstrap, kgo.ConsumeTopics("orders"))
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		fs := c.PollFetches(fctx)
		if fctx.Err() != nil {
			t.Fatal("no RESOURCE_NOT_FOUND seen")
		}
		if len(fs.Records()) > 0 {
			t.Fatalf("records returned although their KEK is gone: %q", fs.Records()[0].Value)
		}
		if fe := fs.Errors(); len(fe) > 0 {
			if fe[0].Err != kerr.ResourceNotFound {
				t.Fatalf("fetch error %v, want RESOURCE_NOT_FOUND", fe[0].Err)
			}
			break
		}
	}
	if !strings.Contains(e.logs.String(), "cannot decrypt records: partition answered with an error\" virtualCluster=test topic=orders partition=") {
		t.Errorf("no log line naming the partition:\n%s", e.logs.String())
	}
}

func TestMetricsAndHealthEndpoints(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	adm, err := admin.Listen("127.0.0.1:0", e.reg, func(context.Context) error { return e.app.Ready() }, slog.Default(), admin.Options{Profiling: true})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close(context.Background())
	ctx := context.Background()
	p := client(t, e.bootstrap)
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("x")}, &kgo.Record{Topic: "plain", Value: []byte("y")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumeN(t, client(t, e.bootstrap, kgo.ConsumeTopics("orders")), 1)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + adm.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, body := get("/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine with admin.profiling = %d %.80q", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`kseal_records_total{direction="produce",outcome="encrypted",topic="orders",virtual_cluster="test"} 1`,
		`kseal_records_total{direction="produce",outcome="plaintext",topic="plain",virtual_cluster="test"} 1`,
		`kseal_kms_operations_total{operation="generate_dek",outcome="success",provider="local",virtual_cluster="test"} 1`,
		`kseal_kms_operations_total{operation="decrypt_dek",outcome="success",provider="local",virtual_cluster="test"}`,
		`kseal_dek_cache_hits_total{cache="encrypt",virtual_cluster="test"}`,
		`kseal_client_connections{virtual_cluster="test"}`,
		`kseal_requests_total{api="Produce",virtual_cluster="test"}`,
		`kseal_request_duration_seconds_bucket{api="Fetch"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestForgedMarkerRejected(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	p := client(t, e.bootstrap)
	err := p.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Value: []byte("x"),
		Headers: []kgo.RecordHeader{{Key: recordcrypt.HeaderKey, Value: []byte{1}}}}).FirstErr()
	if err != kerr.InvalidRecord {
		t.Fatalf("record with a forged marker: %v, want INVALID_RECORD", err)
	}
}

func TestReloadSwapsPolicyKeepsConnections(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	ctx := context.Background()
	p := client(t, e.bootstrap)
	produce := func(topic string) error {
		return p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(canary)}).FirstErr()
	}
	if err := produce("orders"); err != nil {
		t.Fatal(err)
	}
	// New policy: REJECT unresolved, and "plain" is no longer passthrough.
	doc := strings.Replace(e.doc, "unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED", "unresolvedKeyPolicy: REJECT", 1)
	doc = strings.Replace(doc, "topics: [plain]", "topics: [nothing]", 1)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := produce("plain"); err != kerr.PolicyViolation {
		t.Errorf("after reload, produce to plain: %v, want POLICY_VIOLATION", err)
	}
	if err := produce("orders"); err != nil {
		t.Errorf("after reload, produce to orders on the same client: %v", err)
	}
	// Records from before the reload still decrypt (new manager, same KMS).
	got := consumeN(t, client(t, e.bootstrap, kgo.ConsumeTopics("orders")), 2)
	for _, r := range got {
		if string(r.Value) != canary {
			t.Errorf("after reload consumed %q", r.Value)
		}
	}
	// An invalid config and one changing the listeners are refused.
	bad, _ := config.Decode([]byte(strings.Replace(doc, "kek: 'KEK-$(topicName)'", "kek: ''", 1)))
	if err := e.app.Reload(ctx, bad); err == nil {
		t.Error("reload accepted an invalid policy")
	}
	moved, _ := config.Parse([]byte(strings.Replace(doc, "brokerPortCount: 8", "brokerPortCount: 7", 1)))
	if err := e.app.Reload(ctx, moved); err == nil || !strings.Contains(err.Error(), "gateway: changes need a restart") {
		t.Errorf("reload of gateway change: %v", err)
	}
	if err := produce("plain"); err != kerr.PolicyViolation {
		t.Errorf("refused reloads changed the policy: %v", err)
	}
}

// ShareFetch names topics by id only: kseal resolves the id and decrypts.
func TestShareGroupConsumesPlaintext(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	ctx := context.Background()
	e.fake.SetGroupConfigs("sg", map[string]string{"share.auto.offset.reset": "earliest"})
	p := client(t, e.bootstrap)
	var want []*kgo.Record
	for i := 0; i < 10; i++ {
		want = append(want, &kgo.Record{Topic: "orders", Key: []byte(strconv.Itoa(i)), Value: []byte(canary + strconv.Itoa(i))})
	}
	if err := p.ProduceSync(ctx, want...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c := client(t, e.bootstrap, kgo.ConsumeTopics("orders"), kgo.ShareGroup("sg"))
	got := consumeN(t, c, len(want))
	for _, r := range got {
		if string(r.Value) != canary+string(r.Key) {
			t.Errorf("share consumer got %q for key %s", r.Value, r.Key)
		}
		for _, h := range r.Headers {
			if h.Key == recordcrypt.HeaderKey {
				t.Errorf("marker header reached the share consumer")
			}
		}
	}
}

func kekVersionsAtRest(t *testing.T, e *env, topic string, n int) map[string]int {
	t.Helper()
	raw := consumeN(t, client(t, e.fake.ListenAddrs()[0], kgo.ConsumeTopics(topic)), n)
	versions := map[string]int{}
	for _, r := range raw {
		env, err := recordcrypt.Parse(r.Value)
		if err != nil {
			t.Fatalf("value at rest is not an envelope: %v", err)
		}
		info, err := local.DescribeEDEK(env.EDEK)
		if err != nil {
			t.Fatal(err)
		}
		versions[info.KEK+" v"+info.Version]++
	}
	return versions
}

func TestRotationMovesNewRecordsOldStillDecrypt(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED", "dek: {refreshAfterWrite: 200ms, expireAfterWrite: 400ms}")
	ctx := context.Background()
	p := client(t, e.bootstrap)
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kms.Rotate(ctx, "KEK-orders"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // past expireAfterWrite: the next DEK is under v2
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	versions := kekVersionsAtRest(t, e, "orders", 2)
	if versions["KEK-orders v1"] != 1 || versions["KEK-orders v2"] != 1 {
		t.Errorf("KEK versions at rest = %v, want one record under each", versions)
	}
	got := map[string]bool{}
	for _, r := range consumeN(t, client(t, e.bootstrap, kgo.ConsumeTopics("orders")), 2) {
		got[string(r.Value)] = true
	}
	if !got["before"] || !got["after"] {
		t.Errorf("through kseal: %v", got)
	}
}

// A broker admin who copies a ciphertext into another topic is detected:
// the binding to the topic fails and the partition gets CORRUPT_MESSAGE.
func TestMovedCiphertextIsRefused(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	ctx := context.Background()
	if _, err := e.kms.Create(ctx, "KEK-other"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the proxy's KMS sees KEK-other
	p := client(t, e.bootstrap)
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Key: []byte("k"), Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	raw := consumeN(t, client(t, e.fake.ListenAddrs()[0], kgo.ConsumeTopics("orders")), 1)[0]
	// The "admin" writes the stored record, marker and all, into "other".
	direct := client(t, e.fake.ListenAddrs()[0])
	moved := &kgo.Record{Topic: "other", Key: raw.Key, Value: raw.Value, Headers: raw.Headers}
	if err := direct.ProduceSync(ctx, moved).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// franz-go treats CORRUPT_MESSAGE as retriable and keeps fetching (the
	// Java consumer raises it): either way no value may come back.
	c := client(t, e.bootstrap, kgo.ConsumeTopics("other"))
	fctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for fctx.Err() == nil {
		fs := c.PollFetches(fctx)
		if len(fs.Records()) > 0 {
			t.Fatalf("moved ciphertext returned as a value: %q", fs.Records()[0].Value)
		}
		for _, fe := range fs.Errors() {
			if fe.Err != kerr.CorruptMessage && fe.Err != context.DeadlineExceeded {
				t.Fatalf("fetch error %v, want CORRUPT_MESSAGE", fe.Err)
			}
		}
	}
	if !strings.Contains(e.logs.String(), "topic=other") || !strings.Contains(e.logs.String(), "error=CORRUPT_MESSAGE") {
		t.Errorf("no log line for the refused partition:\n%s", e.logs.String())
	}
}

// A Produce request whose batch decompresses to far more than the limit
// (a zstd bomb: ~256 MiB of zeros in a few KiB) is refused for that
// partition, quickly and without the proxy holding the expanded bytes.
func TestCompressionBombRefused(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	raw := bombBatch(t, 256<<20)

	cl := client(t, e.bootstrap)
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "orders", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: raw}}}}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	code := resp.Topics[0].Partitions[0].ErrorCode
	if code != kerr.MessageTooLarge.Code {
		t.Errorf("bomb answered with %v, want MESSAGE_TOO_LARGE", kerr.ErrorForCode(code))
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 128<<20 {
		t.Errorf("heap grew by %d MiB refusing a bomb", grew>>20)
	}
	if took > 5*time.Second {
		t.Errorf("refusing a bomb took %s", took)
	}
	if hwm := e.fake.PartitionInfo("orders", 0).HighWatermark; hwm != 0 {
		t.Errorf("bomb reached the broker (hwm %d)", hwm)
	}
}

// lockedBuffer collects log lines written by the proxy's goroutines while
// the test reads them.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Two virtual clusters in one process: different upstream clusters and
// policies, each on its own ports, neither seeing the other's topics.
func TestSeveralVirtualClusters(t *testing.T) {
	fakeA, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "a-only"))
	if err != nil {
		t.Fatal(err)
	}
	defer fakeA.Close()
	fakeB, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(1, "b-only"))
	if err != nil {
		t.Fatal(err)
	}
	defer fakeB.Close()
	dir := t.TempDir()
	kcfg := local.NewConfig()
	kcfg.KeyStore, kcfg.MasterKeyFile = filepath.Join(dir, "keys.json"), filepath.Join(dir, "master.key")
	ctx := context.Background()
	if _, err := local.Init(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	k, err := local.New(ctx, kcfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	k.Create(ctx, "KEK-a-only")
	k.Close()
	pa, pb := freePorts(t, 5), 0
	for pb == 0 || (pb >= pa-5 && pb <= pa+5) {
		pb = freePorts(t, 5)
	}
	doc := fmt.Sprintf(`
virtualClusters:
  - name: a
    upstream: {bootstrapServers: [%q]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 4}
    encryption:
      kms: {type: local, config: {keyStore: %q, masterKeyFile: %q}}
      policy: {rules: [{topicRegex: '.*', kek: 'KEK-$(topicName)'}]}
  - name: b
    upstream: {bootstrapServers: [%q]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 4}
`, fakeA.ListenAddrs()[0], pa, pa+1, kcfg.KeyStore, kcfg.MasterKeyFile, fakeB.ListenAddrs()[0], pb, pb+1)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Build(ctx, cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		a.Server.Shutdown(sctx)
		a.Close()
	}()
	ca := client(t, a.Server.BootstrapAddr("a"))
	cb := client(t, a.Server.BootstrapAddr("b"))
	if err := ca.ProduceSync(ctx, &kgo.Record{Topic: "a-only", Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cb.ProduceSync(ctx, &kgo.Record{Topic: "b-only", Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Cluster a encrypts, cluster b is a plain proxy.
	rawA := consumeN(t, client(t, fakeA.ListenAddrs()[0], kgo.ConsumeTopics("a-only")), 1)[0]
	rawB := consumeN(t, client(t, fakeB.ListenAddrs()[0], kgo.ConsumeTopics("b-only")), 1)[0]
	if bytes.Contains(rawA.Value, []byte(canary)) || string(rawB.Value) != canary {
		t.Errorf("at rest: a=%q b=%q", rawA.Value, rawB.Value)
	}
	if got := consumeN(t, client(t, a.Server.BootstrapAddr("a"), kgo.ConsumeTopics("a-only")), 1)[0]; string(got.Value) != canary {
		t.Errorf("through a: %q", got.Value)
	}
	// Each virtual cluster shows only its own brokers and topics.
	for name, want := range map[string]int{"a": 1, "b": 2} {
		md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, client(t, a.Server.BootstrapAddr(name)))
		if err != nil {
			t.Fatal(err)
		}
		if len(md.Brokers) != want {
			t.Errorf("cluster %s: %d brokers, want %d", name, len(md.Brokers), want)
		}
		for _, tp := range md.Topics {
			if tp.Topic != nil && !strings.HasPrefix(*tp.Topic, name+"-") && !strings.HasPrefix(*tp.Topic, "__") {
				t.Errorf("cluster %s lists topic %s", name, *tp.Topic)
			}
		}
	}
}

// rawRequest sends one request on a fresh connection and returns the
// response body (after the header).
func rawRequest(t *testing.T, addr string, req kmsg.Request, version int16) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req.SetVersion(version)
	msg := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	msg = binary.BigEndian.AppendUint16(msg, uint16(version))
	msg = binary.BigEndian.AppendUint32(msg, 42)
	msg = append(msg, 0, 0) // empty client id
	flexible := req.IsFlexible()
	if flexible {
		msg = append(msg, 0) // header tags
	}
	msg = req.AppendTo(msg)
	if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	resp = resp[4:] // correlation id
	if flexible {
		resp = resp[1:] // no response header tags in these tests
	}
	return resp
}

// Produce v13 names topics by id. kseal does not advertise it; a client
// sending it anyway must never get plaintext past the policy.
func TestProduceByTopicIDIsEncryptedOrRefused(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	produce := func(id [16]byte) *kmsg.ProduceResponse {
		rec := []byte{0}
		rec = kbin.AppendVarlong(rec, 0)
		rec = kbin.AppendVarint(rec, 0)
		rec = kbin.AppendVarintBytes(rec, nil)
		rec = kbin.AppendVarintBytes(rec, []byte(canary))
		rec = kbin.AppendVarint(rec, 0)
		batch := kmsg.RecordBatch{Magic: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1,
			Records: append(kbin.AppendVarint(nil, int32(len(rec))), rec...)}
		raw := batch.AppendTo(nil)
		binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
		binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
		req := kmsg.NewPtrProduceRequest()
		req.Acks = -1
		req.TimeoutMillis = 5000
		req.Topics = []kmsg.ProduceRequestTopic{{TopicID: id, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: raw}}}}
		resp := kmsg.NewPtrProduceResponse()
		resp.SetVersion(13)
		if err := resp.ReadFrom(rawRequest(t, e.bootstrap, req, 13)); err != nil { // test-side decode of a trusted response
			t.Fatal(err)
		}
		return resp
	}
	// Whatever reaches the broker is inspected there: no canary may arrive.
	var mu sync.Mutex
	var plaintextAtBroker bool
	e.fake.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.fake.KeepControl()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				if bytes.Contains(p.Records, []byte(canary)) {
					mu.Lock()
					plaintextAtBroker = true
					mu.Unlock()
				}
			}
		}
		return nil, nil, false
	})
	if r := produce([16]byte{0xde, 0xad}); r.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Errorf("unknown topic id: error %d, want UNKNOWN_TOPIC_ID", r.Topics[0].Partitions[0].ErrorCode)
	}
	// The id of the encrypted topic: encrypted (or refused), never plaintext.
	produce(e.fake.TopicInfo("orders").TopicID)
	mu.Lock()
	defer mu.Unlock()
	if plaintextAtBroker {
		t.Fatal("a Produce by topic id reached the broker in plaintext")
	}
}

// bombBatch is a zstd RecordBatch of one record whose value is n zero bytes:
// a few KiB that expand past the decompression limit.
func bombBatch(t *testing.T, n int) []byte {
	t.Helper()
	enc, _ := zstd.NewWriter(nil)
	defer enc.Close()
	body := kbin.AppendInt8(nil, 0)
	body = kbin.AppendVarlong(body, 0)
	body = kbin.AppendVarint(body, 0)
	body = kbin.AppendVarintBytes(body, nil)
	body = kbin.AppendVarintBytes(body, make([]byte, n))
	body = kbin.AppendVarint(body, 0)
	rec := append(kbin.AppendVarint(nil, int32(len(body))), body...)
	batch := kmsg.RecordBatch{Magic: 2, Attributes: 4, NumRecords: 1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		Records: enc.EncodeAll(rec, nil)}
	raw := batch.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// A stored batch kseal cannot read (here: it expands past the decompression
// limit) may hold envelopes, so it is refused for its partition rather
// than handed to the consumer as it is.
func TestUnreadableFetchedBatchRefused(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "orders", TopicID: e.fake.TopicInfo("orders").TopicID,
		Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: bombBatch(t, 80<<20)}}}}
	// Written straight to the broker, as a broker admin (or an old writer) could.
	leader := e.fake.LeaderFor("orders", 0)
	direct := client(t, e.fake.ListenAddrs()[0])
	raw, err := direct.Broker(int(leader)).Request(context.Background(), req)
	resp, _ := raw.(*kmsg.ProduceResponse)
	if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("direct produce: %v %+v", err, resp)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis = 100
	fetch.MaxBytes = 1 << 20
	fetch.Topics = []kmsg.FetchRequestTopic{{Topic: "orders", Partitions: []kmsg.FetchRequestTopicPartition{{Partition: 0, PartitionMaxBytes: 1 << 20, CurrentLeaderEpoch: -1, LogStartOffset: -1}}}}
	cl := client(t, e.bootstrap)
	fraw, err := cl.Broker(int(leader)).Request(context.Background(), fetch)
	if err != nil {
		t.Fatal(err)
	}
	fresp := fraw.(*kmsg.FetchResponse)
	for _, tp := range fresp.Topics {
		for _, p := range tp.Partitions {
			if p.Partition == 0 && (p.ErrorCode != kerr.CorruptMessage.Code || len(p.RecordBatches) != 0) {
				t.Fatalf("unreadable batch: error %d with %d record bytes, want CORRUPT_MESSAGE and none", p.ErrorCode, len(p.RecordBatches))
			}
		}
	}
}

// startApp builds and starts an App, shut down and closed when the test ends.
func startApp(t *testing.T, ctx context.Context, cfg *config.Config, log *slog.Logger, reg *prometheus.Registry) *App {
	t.Helper()
	a, err := Build(ctx, cfg, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Server.Shutdown(sctx)
		a.Close()
	})
	return a
}

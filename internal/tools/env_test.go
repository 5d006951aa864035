package tools

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/testenv"
)

// env is kfake (3 brokers), the local KMS with KEK-orders, and kseal in
// process, with a policy that encrypts orders* under KEK-orders, leaves
// "plain" unencrypted and every other topic under KEK-<topic>.
type env struct {
	fake    *kfake.Cluster
	kms     *local.KMS
	app     *app.App
	cfg     *config.Config
	cluster *Cluster
}

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

// testWriter sends kseal's log to the test log until the test ends (KMS
// clients replaced by a reload close later, and may still log).
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func startEnv(t *testing.T) *env {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(3, "orders", "plain", "tampered"))
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
	k, err := local.New(ctx, kcfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
          - topicPrefix: orders
            kek: KEK-orders
          - topicRegex: '.*'
            kek: 'KEK-$(topicName)'
        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED
`, fake.ListenAddrs()[0], base, base+1, kcfg.KeyStore, kcfg.MasterKeyFile)
	cfg, err := config.Parse([]byte(doc))
	if err == nil {
		err = app.Validate(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := app.Build(ctx, cfg, log, nil)
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
	c, err := FromConfig(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	return &env{fake: fake, kms: k, app: a, cfg: cfg, cluster: c}
}

// rotate makes a new version of KEK-orders primary and has the proxy take
// fresh DEKs (as SIGHUP does), so new records use the new version.
func (e *env) rotate(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.kms.Rotate(ctx, "KEK-orders"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the proxy's KMS reloads the key store every 100ms
	if err := e.app.Reload(ctx, e.cfg); err != nil {
		t.Fatal(err)
	}
}

func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (e *env) proxy(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	return client(t, e.cluster.Proxy, opts...)
}

func (e *env) direct(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	return client(t, e.fake.ListenAddrs()[0], opts...)
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func rec(topic string, partition int32, key, value string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key), Value: []byte(value)}
	if value == "" {
		r.Value = nil
	}
	return r
}

// consumeAll reads every committed record of topic at addr (through the
// proxy: decrypted), up to want records.
func consumeAll(t *testing.T, addr, topic string, want int) []*kgo.Record {
	t.Helper()
	cl := client(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s after %d records: %v", topic, len(out), err)
		}
		out = append(out, fs.Records()...)
	}
	// Anything beyond want is a duplicate; give it a moment to show.
	sctx, scancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer scancel()
	out = append(out, cl.PollFetches(sctx).Records()...)
	return out
}

func createTopic(t *testing.T, e *env, name string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(e.direct(t))
	resp, err := adm.CreateTopic(context.Background(), partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

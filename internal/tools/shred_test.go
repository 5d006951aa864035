package tools

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms/local"
)

// startShredEnv is kfake, the local KMS with tenant-a and tenant-b, and
// kseal with a rule that takes each record's KEK from its header tenant.
func startShredEnv(t *testing.T, onDestroyed string) *env {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(1, "tenants"))
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
	for _, n := range []string{"tenant-a", "tenant-b"} {
		if _, err := k.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
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
      dek: {decryptCacheMaxAge: 1s, notFoundTtl: 100ms}
      policy:
        rules:
          - topics: [tenants]
            kek: 'tenant-$(header:tenant)'
            onDestroyedKek: %s
`, fake.ListenAddrs()[0], base, base+1, kcfg.KeyStore, kcfg.MasterKeyFile, onDestroyed)
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

func tenantRec(tenant string, i int) *kgo.Record {
	return &kgo.Record{Topic: "tenants", Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "secret of %s %d", tenant, i),
		Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte(tenant)}}}
}

// End to end over kfake and the local KMS: two tenants interleaved in one
// partition, kseal shred of tenant-a, then a consumer through kseal reads
// B's records and A's as shredded; the audit counts both per KEK and shows
// the shred record.
func TestShredEndToEnd(t *testing.T) {
	e := startShredEnv(t, "NULL_VALUE")
	ctx := context.Background()
	var recs []*kgo.Record
	for i, tn := range []string{"a", "b", "a", "b", "b"} {
		recs = append(recs, tenantRec(tn, i))
	}
	produce(t, e.proxy(t), recs...)
	// A record naming no tenant is refused, never stored.
	cl := e.proxy(t, kgo.RecordRetries(0))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "tenants", Value: []byte("x")}).FirstErr(); err == nil || !strings.Contains(err.Error(), "INVALID_RECORD") {
		t.Fatalf("record without tenant: %v", err)
	}

	opts := ShredOptions{Conn: e.cluster.Direct, Cluster: "test", KeyTopic: e.cluster.KeyTopic, KMS: e.kms, KMSType: "local",
		KEKs: []string{"tenant-a"}, Note: "ticket 42", DryRun: true}
	rep, err := Shred(ctx, opts)
	if err != nil || !rep.OK() || len(rep.KEKs) != 1 || rep.KEKs[0].State != "exists" || rep.KEKs[0].ShredRecordOffset != nil || len(rep.KEKs[0].Steps) != 2 {
		t.Fatalf("dry run: %+v, %v", rep, err)
	}
	if _, err := e.kms.ResolveKEK(ctx, "tenant-a"); err != nil {
		t.Fatalf("dry run destroyed the KEK: %v", err)
	}
	opts.DryRun = false
	if rep, err = Shred(ctx, opts); err != nil || !rep.OK() || !rep.KEKs[0].Destroyed || rep.KEKs[0].ShredRecordOffset == nil {
		t.Fatalf("shred: %+v, %v", rep, err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "done: shred record at offset") {
		t.Fatalf("report:\n%s", text.String())
	}
	time.Sleep(1500 * time.Millisecond) // decryptCacheMaxAge: 1s

	got := consumeAll(t, e.cluster.Proxy, "tenants", len(recs))
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i, r := range got {
		tn := string(recs[i].Headers[0].Value)
		if tn == "b" {
			if !bytes.Equal(r.Value, recs[i].Value) {
				t.Fatalf("record %d of tenant b: %q", i, r.Value)
			}
			continue
		}
		last := r.Headers[len(r.Headers)-1]
		if r.Value != nil || last.Key != "kseal.shredded" || string(last.Value) != "tenant-a" || !bytes.Equal(r.Key, recs[i].Key) {
			t.Fatalf("record %d of tenant a: key %q value %q headers %v", i, r.Key, r.Value, r.Headers)
		}
	}
	// Stored: no plaintext of either tenant.
	raw := consumeAll(t, e.fake.ListenAddrs()[0], "tenants", len(recs))
	for _, r := range raw {
		if bytes.Contains(r.Value, []byte("secret")) {
			t.Fatalf("plaintext stored: %q", r.Value)
		}
	}

	arep, err := Audit(ctx, AuditOptions{Conn: e.cluster.Direct, Cluster: "test", Policy: e.cluster.Policy,
		Describe: e.cluster.Describer(), Idle: 5 * time.Second, ByKEK: true, KeyTopic: e.cluster.KeyTopic.Topic})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		entity   string
		records  int64
		shredded bool
	}{"tenant-a": {"a", 2, true}, "tenant-b": {"b", 3, false}}
	if len(arep.ByKEK) != len(want) {
		t.Fatalf("by KEK: %+v", arep.ByKEK)
	}
	for _, k := range arep.ByKEK {
		w := want[k.KEK]
		if k.Entity != w.entity || k.Records != w.records || (k.Shredded != nil) != w.shredded ||
			len(k.Topics) != 1 || k.Topics[0].Topic != "tenants" {
			t.Fatalf("%s: %+v", k.KEK, k)
		}
		if w.shredded && k.Shredded.Note != "ticket 42" {
			t.Fatalf("shred note %q", k.Shredded.Note)
		}
	}
	text.Reset()
	arep.WriteText(&text)
	if !strings.Contains(text.String(), "SHREDDED") || !strings.Contains(text.String(), "entity a") {
		t.Fatalf("audit text:\n%s", text.String())
	}
}

// Under onDestroyedKek: ERROR the shredded tenant's first record stops the
// partition for the consumer (the records before it are delivered).
func TestShredErrorRule(t *testing.T) {
	e := startShredEnv(t, "ERROR")
	ctx := context.Background()
	pcl := e.proxy(t)
	produce(t, pcl, tenantRec("b", 0)) // its own batch: delivered before the error
	produce(t, pcl, tenantRec("a", 1))
	rep, err := Shred(ctx, ShredOptions{Conn: e.cluster.Direct, Cluster: "test", KeyTopic: e.cluster.KeyTopic, KMS: e.kms,
		KMSType: "local", KEKs: []string{"tenant-a"}})
	if err != nil || !rep.OK() {
		t.Fatalf("shred: %+v, %v", rep, err)
	}
	time.Sleep(1500 * time.Millisecond)
	cl := client(t, e.cluster.Proxy, kgo.ConsumeTopics("tenants"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var good int
	for {
		fs := cl.PollFetches(cctx)
		good += len(fs.Records())
		if err := fs.Err0(); err != nil {
			if !strings.Contains(err.Error(), "RESOURCE_NOT_FOUND") || good != 1 {
				t.Fatalf("after %d records: %v", good, err)
			}
			return
		}
	}
}

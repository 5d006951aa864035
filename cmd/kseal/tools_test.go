package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
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

// toolsEnv starts kfake, a local KMS with KEK-orders and kseal in process,
// writes the config file the commands read, and returns its path with the
// proxy's and the broker's addresses.
func toolsEnv(t *testing.T) (cfgPath, proxyAddr, brokerAddr string) {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders", "plain"))
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
	if _, err := k.Create(ctx, "KEK-orders"); err != nil {
		t.Fatal(err)
	}
	k.Close()
	port := freePorts(t, 2)
	doc := fmt.Sprintf(`
log: {level: warn}
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%q]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 1}
    encryption:
      kms: {type: local, config: {keyStore: %q, masterKeyFile: %q}}
      policy:
        rules:
          - topics: [plain]
            passthrough: true
          - topicPrefix: orders
            kek: KEK-orders
            # reencrypt reads through kseal: the plaintext record leaked
            # below after envelopes would stop it (requireEncrypted).
            requireEncrypted: false
`, fake.ListenAddrs()[0], port, port+1, kcfg.KeyStore, kcfg.MasterKeyFile)
	cfgPath = filepath.Join(dir, "kseal.yaml")
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Build(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
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
	return cfgPath, a.Server.BootstrapAddr("test"), fake.ListenAddrs()[0]
}

func produceTo(t *testing.T, addr string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func runTool(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestToolCommands(t *testing.T) {
	cfg, proxy, broker := toolsEnv(t)
	var recs []*kgo.Record
	for i := 0; i < 6; i++ {
		recs = append(recs, &kgo.Record{Topic: "orders", Partition: int32(i % 2), Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint("secret-", i))})
	}
	produceTo(t, proxy, recs...)
	produceTo(t, broker, &kgo.Record{Topic: "plain", Partition: 0, Value: []byte("fine")})

	// inspect, JSON lines: six encrypted records under KEK-orders v1.
	code, out, errOut := runTool("inspect", "--config", cfg, "--topic", "orders", "--json")
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, errOut)
	}
	n := 0
	for sc := bufio.NewScanner(strings.NewReader(out)); sc.Scan(); n++ {
		var r struct {
			State    string `json:"state"`
			Envelope struct {
				KEK        string `json:"kek"`
				KEKVersion string `json:"kekVersion"`
				Cipher     string `json:"cipher"`
			} `json:"envelope"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.State != "encrypted" || r.Envelope.KEK != "KEK-orders" || r.Envelope.KEKVersion != "1" ||
			r.Envelope.Cipher != "AES-256-GCM" {
			t.Errorf("inspect line %q: %+v %v", sc.Text(), r, err)
		}
	}
	if n != 6 || strings.Contains(out, "secret") {
		t.Errorf("inspect printed %d lines (want 6):\n%s", n, out)
	}
	code, out, _ = runTool("inspect", "--config", cfg, "--topic", "orders", "--partition", "1", "--count", "2")
	if code != 0 || !strings.Contains(out, "KEK-orders v1") || !strings.Contains(out, "2 records: 2 encrypted") {
		t.Errorf("inspect text: exit %d\n%s", code, out)
	}

	// audit: everything agrees, then a plaintext record around kseal.
	if code, out, errOut = runTool("audit", "--config", cfg); code != 0 || !strings.Contains(out, "OK:") {
		t.Fatalf("audit: exit %d\n%s\n%s", code, out, errOut)
	}
	produceTo(t, broker, &kgo.Record{Topic: "orders", Partition: 1, Value: []byte("leaked")})
	if code, out, _ = runTool("audit", "--config", cfg, "--topics", "ord.*", "--json"); code != 1 {
		t.Fatalf("audit after a plaintext record: exit %d, want 1\n%s", code, out)
	}
	var rep struct {
		Disagreements int `json:"disagreements"`
		Totals        struct {
			Records   int `json:"records"`
			Plaintext int `json:"plaintext"`
		} `json:"totals"`
		Topics []struct {
			Topic     string `json:"topic"`
			Plaintext int    `json:"plaintext"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Disagreements != 1 || len(rep.Topics) != 1 || rep.Topics[0].Plaintext != 1 ||
		rep.Totals.Records != 7 || rep.Totals.Plaintext != 1 {
		t.Errorf("audit JSON %+v, %v\n%s", rep, err, out)
	}

	// reencrypt: the leaked record is encrypted on the copy.
	code, out, errOut = runTool("reencrypt", "--config", cfg, "--source", "orders", "--dest", "orders-copy")
	if code != 0 || !strings.Contains(out, "7 records in, 7 records out: OK") {
		t.Fatalf("reencrypt: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ = runTool("audit", "--config", cfg, "--topics", "orders-copy"); code != 0 {
		t.Errorf("audit of the copy: exit %d\n%s", code, out)
	}
	// reencrypt --json: one document with the counts.
	code, out, errOut = runTool("reencrypt", "--config", cfg, "--source", "orders", "--dest", "orders-copy2", "--json")
	var res struct {
		Copied   int    `json:"copied"`
		Complete bool   `json:"complete"`
		Error    string `json:"error"`
		Check    struct {
			In, Out int
			OK      bool
		} `json:"check"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res.Copied != 7 || !res.Complete || !res.Check.OK ||
		res.Check.In != 7 || res.Check.Out != 7 || res.Error != "" {
		t.Fatalf("reencrypt --json: exit %d, %+v, %v\n%s\n%s", code, res, err, out, errOut)
	}

	// shred --entity needs a rule that takes KEKs from records.
	if code, _, errOut := runTool("shred", "--config", cfg, "--topic", "orders", "--entity", "x", "--dry-run"); code != 2 || !strings.Contains(errOut, "does not take its KEK from records") {
		t.Fatalf("shred --entity on a topic without entity KEKs: exit %d, %s", code, errOut)
	}
	// shred: the dry run changes nothing, then KEK-orders is shredded and
	// audit --by-kek shows it with the records under it.
	code, out, errOut = runTool("shred", "--config", cfg, "--kek", "KEK-orders", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run") || !strings.Contains(out, "1. write a shred record") || !strings.Contains(out, "2. delete KEK KEK-orders") {
		t.Fatalf("shred --dry-run: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = runTool("shred", "--config", cfg, "--kek", "KEK-orders", "--note", "test"); code != 0 || !strings.Contains(out, "done: shred record at offset") {
		t.Fatalf("shred: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runTool("audit", "--config", cfg, "--topics", "orders", "--by-kek", "--json")
	var byKEK struct {
		ByKEK []struct {
			KEK      string `json:"kek"`
			Records  int    `json:"records"`
			Shredded *struct {
				Note string `json:"note"`
			} `json:"shredded"`
		} `json:"byKek"`
	}
	if err := json.Unmarshal([]byte(out), &byKEK); err != nil || len(byKEK.ByKEK) != 1 || byKEK.ByKEK[0].KEK != "KEK-orders" ||
		byKEK.ByKEK[0].Records != 6 || byKEK.ByKEK[0].Shredded == nil || byKEK.ByKEK[0].Shredded.Note != "test" {
		t.Fatalf("audit --by-kek: exit %d, %+v, %v\n%s", code, byKEK, err, out)
	}
}

func TestToolUsage(t *testing.T) {
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "--topic", "x", "extra"},
		{"reencrypt", "--source", "a"},
		{"audit", "--bogus"},
		{"shred"},
		{"shred", "--kek", "a", "extra"},
		{"shred", "--kek", "a", "--entity", "b"},
		{"shred", "--entity", "b"},
	} {
		if code, _, _ := runTool(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runTool("audit", "--config", "testdata/missing.yaml"); code != 2 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("audit with a missing config: exit %d, %s", code, errOut)
	}
}

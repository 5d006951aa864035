package app

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// readAudit waits until the audit file holds n lines and returns them parsed.
func readAudit(t *testing.T, path string, n int) ([]map[string]any, string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		raw := string(b)
		lines := strings.Split(strings.TrimSuffix(raw, "\n"), "\n")
		if raw != "" && len(lines) >= n {
			var evs []map[string]any
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("not a JSON line: %q", l)
				}
				evs = append(evs, m)
			}
			return evs, raw
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d audit lines, have:\n%s", n, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole app writes the audit stream: KEK resolved and missing, DEK
// generated, a policy refusal, reloads applied and refused; never a record
// value or the DEK.
func TestAuditStreamThroughApp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	// startEncrypting appends extra lines inside the encryption section; a
	// leading newline puts this one at the top level.
	e := startEncrypting(t, "REJECT", "\naudit: {path: "+path+"}")
	ctx := context.Background()
	p := client(t, e.bootstrap)
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte(canary)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "other", Value: []byte(canary)}).FirstErr(); err != kerr.PolicyViolation {
		t.Fatalf("produce to a topic without KEK: %v", err)
	}
	cfg, err := config.Parse([]byte(e.doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	moved, _ := config.Parse([]byte(strings.Replace(e.doc, "audit: {path: ", "audit: {bufferEvents: 10, path: ", 1)))
	if err := e.app.Reload(ctx, moved); err == nil || !strings.Contains(err.Error(), "audit: changes need a restart") {
		t.Fatalf("reload changing audit: %v", err)
	}
	evs, raw := readAudit(t, path, 6)

	byType := map[string][]map[string]any{}
	for _, ev := range evs {
		// Reloads are the process's, the rest a virtual cluster's.
		if ev["version"] != 1.0 || (ev["virtual_cluster"] != "test") != (ev["type"] == "config_reload") {
			t.Fatalf("event %v", ev)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil || !strings.HasSuffix(ev["time"].(string), "Z") {
			t.Fatalf("time %v", ev["time"])
		}
		byType[ev["type"].(string)] = append(byType[ev["type"].(string)], ev)
	}
	one := func(typ string) map[string]any {
		t.Helper()
		if len(byType[typ]) != 1 {
			t.Fatalf("%d %s events:\n%s", len(byType[typ]), typ, raw)
		}
		return byType[typ][0]
	}
	if ev := one("kek_resolved"); ev["kek"] != "KEK-orders" {
		t.Errorf("kek_resolved %v", ev)
	}
	if ev := one("kek_missing"); ev["kek"] != "KEK-other" || ev["reason"] != "not_found" {
		t.Errorf("kek_missing %v", ev)
	}
	if ev := one("produce_refused"); ev["topic"] != "other" || ev["reason"] != "rejected" || ev["error_code"] != float64(kerr.PolicyViolation.Code) {
		t.Errorf("produce_refused %v", ev)
	}
	reloads := byType["config_reload"]
	if len(reloads) != 2 || reloads[0]["outcome"] != "success" || reloads[1]["outcome"] != "failure" || reloads[1]["reason"] != "restart_needed" {
		t.Errorf("config_reload events %v", reloads)
	}

	// The DEK event names the record's EDEK by fingerprint; neither the DEK
	// nor the value is anywhere in the stream.
	rec := consumeN(t, client(t, e.fake.ListenAddrs()[0], kgo.ConsumeTopics("orders")), 1)[0]
	env, err := recordcrypt.Parse(rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	if ev := one("dek_generated"); ev["kek"] != "KEK-orders" || ev["edek_fingerprint"] != recordcrypt.DEKIDOf(env.EDEK).String() {
		t.Errorf("dek_generated %v", ev)
	}
	dek, err := e.kms.DecryptDEK(ctx, env.EDEK)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{dek, []byte(canary)} {
		for _, form := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)} {
			if strings.Contains(raw, form) {
				t.Fatalf("audit stream holds %q", form)
			}
		}
	}
}

//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
	"github.com/kseal/kseal/internal/tools"
)

// TestShredLocalCLI is crypto-shredding per entity end to end on the real
// cluster with the local KMS, driven by the kseal binary: records of two
// tenants interleaved in one partition, each sealed under its tenant's KEK
// (header tenant); `kseal shred --kek tenant-a` (dry run first); then a
// consumer through kseal reads all of tenant b's records and tenant a's with
// a null value and kseal.shredded, nothing stored holds plaintext, kseal
// counts the shredded deliveries, and `kseal audit --by-kek` counts both
// tenants' records and shows tenant-a's shred record.
func TestShredLocalCLI(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	k := newE2ELocalKMS(t)
	k.create(t, "tenant-a")
	k.create(t, "tenant-b")
	topic := e2eTopic(t, "shred-local", 1, nil)
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	enc := "    encryption:\n" + k.section() + fmt.Sprintf(`      dek: {decryptCacheMaxAge: 1s, notFoundTtl: 200ms}
      policy:
        rules:
          - topics: [%s]
            kek: 'tenant-$(header:tenant)'
            onDestroyedKek: NULL_VALUE
`, topic)
	p := e2eStartKseal(t, fmt.Sprintf("admin: {listen: %q}\n", admin)+testenv.KsealConfig(cluster.Bootstrap, gw, enc))

	canary := newCanary(t, topic)
	tenants := []string{"a", "b", "a", "b", "b", "a"}
	cl := testenv.Kgo(t, []string{p.Bootstrap})
	for i, tn := range tenants {
		// One batch each: records of both tenants interleaved in the partition.
		rec := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s tenant %s %d", canary, tn, i),
			Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte(tn)}}}
		if err := produceRecord(cl, rec); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	// A record naming no tenant is refused.
	if err := produceRecord(testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordRetries(0)), &kgo.Record{Topic: topic, Value: []byte(canary)}); err == nil || !strings.Contains(err.Error(), "INVALID_RECORD") {
		t.Fatalf("record without tenant: %v, want INVALID_RECORD", err)
	}

	shred := func(args ...string) tools.ShredReport {
		t.Helper()
		cmd := exec.Command(e2eKsealBin(t), append([]string{"shred", "--config", p.cfgPath, "--note", "ticket 17", "--json"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kseal shred %v: %v\n%s", args, err, out)
		}
		var rep tools.ShredReport
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("kseal shred --json: %v\n%s", err, out)
		}
		return rep
	}
	// The dry run names the entity; the topic's rule makes the KEK name.
	if rep := shred("--topic", topic, "--entity", "a", "--dry-run"); !rep.DryRun || len(rep.KEKs) != 1 || rep.KEKs[0].KEK != "tenant-a" || rep.KEKs[0].State != "exists" || rep.KEKs[0].ShredRecordOffset != nil {
		t.Fatalf("dry run: %+v", rep)
	}
	if rep := shred("--kek", "tenant-a"); len(rep.KEKs) != 1 || !rep.KEKs[0].Destroyed || rep.KEKs[0].ShredRecordOffset == nil {
		t.Fatalf("shred: %+v", rep)
	}

	// Within decryptCacheMaxAge (1s) kseal stops opening tenant a's records.
	var got []*kgo.Record
	e2eEventually(t, 30*time.Second, 500*time.Millisecond, "tenant a's records not delivered as shredded", func() bool {
		recs, errs := e2eConsume(t, p.Bootstrap, len(tenants), 15*time.Second, []string{topic})
		if len(errs) > 0 || len(recs) != len(tenants) {
			t.Logf("consume: %d records, errors %v", len(recs), errs)
			return false
		}
		got = recs
		return recs[0].Value == nil
	})
	for i, r := range got {
		tn := tenants[i]
		if tn == "b" {
			if want := fmt.Sprintf("%s tenant b %d", canary, i); string(r.Value) != want {
				t.Fatalf("record %d of tenant b: %q, want %q", i, r.Value, want)
			}
			continue
		}
		last := r.Headers[len(r.Headers)-1]
		if r.Value != nil || last.Key != "kseal.shredded" || string(last.Value) != "tenant-a" || string(r.Key) != fmt.Sprintf("k%d", i) {
			t.Fatalf("record %d of tenant a: key %q value %q headers %v", i, r.Key, r.Value, r.Headers)
		}
	}
	// Stored: neither tenant's plaintext.
	e2eAssertSealed(t, e2eRaw(t, len(tenants), topic), canary)
	e2eAssertNotOnDisk(t, canary)
	if n := e2eMetric(t, admin, "kseal_shredded_records_total", map[string]string{"topic": topic}); n < 3 {
		t.Errorf("kseal_shredded_records_total{topic=%q} = %v, want at least 3", topic, n)
	}
	if n := e2eMetric(t, admin, "kseal_entity_keks", nil); n != 2 {
		t.Errorf("kseal_entity_keks = %v, want 2 (tenant-a and tenant-b)", n)
	}

	out, err := exec.Command(e2eKsealBin(t), "audit", "--config", p.cfgPath, "--topics", topic, "--by-kek", "--json").Output()
	if err != nil {
		t.Fatalf("kseal audit --by-kek: %v\n%s", err, out)
	}
	var rep tools.AuditReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, kt := range rep.ByKEK {
		counts[kt.KEK] = kt.Records
		if kt.KEK == "tenant-a" && (kt.Shredded == nil || kt.Shredded.Note != "ticket 17" || kt.Entity != "a") {
			t.Errorf("tenant-a in the audit: %+v", kt)
		}
	}
	if counts["tenant-a"] != 3 || counts["tenant-b"] != 3 {
		t.Errorf("audit --by-kek counts %v, want 3 and 3", counts)
	}
}

func produceRecord(cl *kgo.Client, r *kgo.Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, r).FirstErr()
}

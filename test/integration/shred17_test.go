//go:build integration

package integration

// Issue 17, proof 1: crypto-shredding per entity. Two tenants' records
// interleaved in one partition, each under its tenant's KEK
// (`kek: 'KEK-$(header:tenant)'`); `kseal shred` destroys tenant A's KEK
// in the local KMS and in OpenBao; through kseal a consumer reads every
// record of tenant B and sees A's as shredded (NULL_VALUE: null value, key
// and clear headers kept, a `kseal.shredded` header naming the KEK) or as
// the partition error (ERROR); the brokers hold no plaintext of either; a
// KEK lost without `kseal shred`, and a KMS that is down, never give null
// values.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/kms/vault"
	"github.com/kseal/kseal/internal/testenv"
)

// p17ShreddedHeader is the header kseal adds to a record delivered as
// shredded (V17.md); its value is the KEK name.
const p17ShreddedHeader = "kseal.shredded"

// p17KMS is a KMS as the shredding proof needs it.
type p17KMS struct {
	name string
	// section is the `kms:` block for the running kseal (least privilege).
	section string
	// operator is the `kms:` block `kseal shred` runs with (the operator's
	// credentials: deleting a key needs more than kseal's own).
	operator string
	create   func(t *testing.T, kek string)
	// lose destroys a KEK in the KMS WITHOUT `kseal shred` (no shred
	// record): an accident, or someone else's doing. nil when the test
	// does not do that with this KMS.
	lose func(t *testing.T, kek string)
	// down makes the KMS unreachable (nil: cannot).
	down     func(t *testing.T)
	describe kms.DescribeFunc
}

func p17LocalKMS(t *testing.T) *p17KMS {
	k := newE2ELocalKMS(t)
	return &p17KMS{name: "local", section: k.section(), operator: k.section(),
		create: k.create, lose: k.remove, describe: local.DescribeEDEK}
}

// p17OpenBao starts OpenBao (scripts/openbao.sh) with the least-privilege
// policy of docs/kms-vault.md for kseal's token; `kseal shred` runs with
// the root token, as an operator would with theirs.
func p17OpenBao(t *testing.T) *p17KMS {
	t.Helper()
	dir := filepath.Join(e2eWorkDir(t), "bao")
	owner := strconv.Itoa(os.Getpid())
	e2eScript(t, "openbao.sh", "start", "--dir", dir, "--owner-pid", owner)
	t.Cleanup(func() { e2eScript(t, "openbao.sh", "stop", "--dir", dir) })
	env := e2eEnvFile(t, filepath.Join(dir, "openbao.env"))
	addr, root := env["BAO_ADDR"], env["BAO_TOKEN"]
	hc := &http.Client{Timeout: 10 * time.Second}
	call := func(t *testing.T, method, path, body string) []byte {
		t.Helper()
		req, err := http.NewRequest(method, addr+"/v1/"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Vault-Token", root)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	policy, _ := json.Marshal(map[string]string{"policy": `
path "transit/keys/KEK-*" { capabilities = ["read"] }
path "transit/datakey/plaintext/KEK-*" { capabilities = ["update"] }
path "transit/decrypt/KEK-*" { capabilities = ["update"] }
`})
	call(t, "PUT", "sys/policies/acl/kseal", string(policy))
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	if err := json.Unmarshal(call(t, "POST", "auth/token/create", `{"policies":["kseal"],"no_default_policy":true,"ttl":"1h"}`), &tok); err != nil {
		t.Fatal(err)
	}
	files := filepath.Dir(dir)
	kseal := p17WriteFile(t, files, "kseal-token", tok.Auth.ClientToken+"\n")
	operator := p17WriteFile(t, files, "root-token", root+"\n")
	section := func(tokenFile string) string {
		return fmt.Sprintf("      kms:\n        type: vault\n        config: {address: %q, timeout: 1s, tokenFile: %q}\n", addr, tokenFile)
	}
	return &p17KMS{name: "openbao", section: section(kseal), operator: section(operator),
		create:   func(t *testing.T, kek string) { call(t, "POST", "transit/keys/"+kek, `{}`) },
		down:     func(t *testing.T) { e2eScript(t, "openbao.sh", "stop", "--dir", dir) },
		describe: vault.DescribeEDEK,
	}
}

// TestShreddingTenants: the shredding proof with the local KMS and with
// OpenBao, side by side.
func TestShreddingTenants(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	for _, c := range []struct {
		name, skip string
		start      func(t *testing.T) *p17KMS
	}{
		{"local", "", p17LocalKMS},
		{"openbao", "KSEAL_IT_NO_VAULT", p17OpenBao},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.skip != "" && os.Getenv(c.skip) == "1" {
				t.Skip(c.skip + "=1")
			}
			t.Parallel()
			testShredTenants(t, c.start(t))
		})
	}
}

// p17ShredSection is the encryption section of the shredding proof: topics
// it-p17shn-* deliver shredded records with a null value, it-p17she-* with
// the error; both take the KEK from the record's tenant header.
// requireEncrypted stays at its default (on) on purpose: the integrity
// check must accept every KEK an entity template makes (V17.md: "for
// entity rules the template's shape").
func p17ShredSection(kmsSection, keyTopic string) string {
	return "    encryption:\n" + kmsSection + fmt.Sprintf(`      keyTopic: {name: %s}
      policy:
        rules:
          - topicPrefix: 'it-p17shn-'
            kek: 'KEK-$(header:tenant)'
            onDestroyedKek: NULL_VALUE
          - topicPrefix: 'it-p17she-'
            kek: 'KEK-$(header:tenant)'
            onDestroyedKek: ERROR
        unresolvedKeyPolicy: REJECT
`, keyTopic) + p17Dek
}

// p17ShredRec is one record the proof produced, with its tenant.
type p17ShredRec struct {
	tenant string
	rec    testenv.BinRecord // plaintext, at its stored offset
}

func testShredTenants(t *testing.T, x *p17KMS) {
	tA, tB, tC := uniq("tenantA"), uniq("tenantB"), uniq("tenantC")
	for _, tn := range []string{tA, tB, tC} {
		x.create(t, "KEK-"+tn)
	}
	keyTopic := uniq("it-p17-keys")
	p := p17Start(t, cluster.Bootstrap, p17ShredSection(x.section, keyTopic))
	nullTopic, errTopic := uniq("it-p17shn-"+x.name), uniq("it-p17she-"+x.name)
	e2eCreateTopic(t, nullTopic, 1, nil)
	e2eCreateTopic(t, errTopic, 1, nil)
	canary := map[string]string{tA: uniq("canaryA"), tB: uniq("canaryB"), tC: uniq("canaryC")}

	// B, A, B, A, ... in one partition; then, where the KMS lets the test
	// lose a KEK without `kseal shred`, one record of C and one more of B.
	order := []string{}
	for i := range 12 {
		order = append(order, map[bool]string{true: tB, false: tA}[i%2 == 0])
	}
	if x.lose != nil {
		order = append(order, tC, tB)
	}
	produce := func(topic string) []p17ShredRec {
		t.Helper()
		var recs []*kgo.Record
		for i, tn := range order {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0,
				Key:   []byte(fmt.Sprintf("order-%02d", i)),
				Value: []byte(fmt.Sprintf("record %d of %s: %s", i, tn, canary[tn])),
				Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte(tn)},
					{Key: "trace", Value: []byte(fmt.Sprintf("t-%d", i))}}})
		}
		cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(1))
		// One at a time, so the offsets follow the order.
		out := make([]p17ShredRec, len(recs))
		for i, r := range recs {
			if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
				t.Fatalf("produce record %d (tenant %s) through kseal: %v", i, order[i], err)
			}
			out[i] = p17ShredRec{tenant: order[i], rec: testenv.BinFromKgo(r)}
			if r.Offset != int64(i) {
				t.Fatalf("record %d stored at offset %d", i, r.Offset)
			}
		}
		return out
	}
	sent := map[string][]p17ShredRec{nullTopic: produce(nullTopic), errTopic: produce(errTopic)}

	// Stored: every record sealed under its own tenant's KEK, no plaintext.
	checkStored := func(when string) {
		t.Helper()
		for topic, recs := range sent {
			raw := e2eRaw(t, len(recs), topic)
			for _, r := range raw {
				s := recs[r.Offset]
				for _, c := range canary {
					if bytes.Contains(r.Value, []byte(c)) || bytes.Contains(r.Key, []byte(c)) {
						t.Errorf("%s: stored record %s@%d holds plaintext %q", when, topic, r.Offset, c)
					}
				}
				edek := p17EDEK(r)
				if edek == nil {
					t.Errorf("%s: stored record %s@%d (tenant %s) has no envelope", when, topic, r.Offset, s.tenant)
					continue
				}
				info, err := x.describe(edek)
				if err != nil {
					t.Errorf("%s: stored record %s@%d: EDEK: %v", when, topic, r.Offset, err)
				} else if info.KEK != "KEK-"+s.tenant {
					t.Errorf("%s: stored record %s@%d of tenant %s sealed under %q, want KEK-%s", when, topic, r.Offset, s.tenant, info.KEK, s.tenant)
				}
			}
		}
	}
	checkStored("before the shred")
	for topic, recs := range sent {
		got, errs := p17Partition(t, p.Bootstrap, topic, 0, 0, len(recs), true, 30*time.Second)
		if len(errs) > 0 || len(got) != len(recs) {
			t.Fatalf("%s before the shred: %d of %d records, errors: %s", topic, len(got), len(recs), p17Errs(errs))
		}
		for _, r := range got {
			if b := testenv.BinFromKgo(r); b.Content() != recs[r.Offset].rec.Content() {
				t.Errorf("%s@%d before the shred:\n got  %s\n want %s", topic, r.Offset, b.Content(), recs[r.Offset].rec.Content())
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Tenant A is forgotten: `kseal shred` (the shred record, then the KMS).
	opCfg := p17WriteFile(t, e2eWorkDir(t), "operator.yaml", testenv.KsealConfig(cluster.Bootstrap,
		testenv.Gateway{Host: "127.0.0.1", BootstrapPort: 19999, BrokerPortStart: 20000, BrokerPortCount: 4},
		p17ShredSection(x.operator, keyTopic)))
	if code, out := p17Kseal(t, 60*time.Second, "shred", "--config", opCfg, "--kek", "KEK-"+tA, "--note", "GDPR erasure request "+tA); code != 0 {
		t.Fatalf("kseal shred KEK-%s: exit %d\n%s", tA, code, out)
	}
	// Tenant C's KEK is lost without `kseal shred`: not shredded.
	if x.lose != nil {
		x.lose(t, "KEK-"+tC)
	}

	// NULL_VALUE: all of B in clear, all of A shredded, in one pass over
	// the partition. DEKs unwrapped before the shred are forgotten within
	// seconds: until then A's records may still come in clear.
	nAB := 12
	var last string
	p17Eventually(t, 45*time.Second, func() string { return "tenant A's records never all came as shredded; last read: " + last }, func() bool {
		got, errs := p17Partition(t, p.Bootstrap, nullTopic, 0, 0, nAB, true, 10*time.Second)
		last = fmt.Sprintf("%d records, errors: %s", len(got), p17Errs(errs))
		shredded := 0
		for _, r := range got {
			if r.Offset >= int64(nAB) {
				continue
			}
			s := sent[nullTopic][r.Offset]
			b := testenv.BinFromKgo(r)
			kek, isShredded := p17KgoHeader(r, p17ShreddedHeader)
			switch {
			case s.tenant == tB && b.Content() != s.rec.Content():
				t.Errorf("NULL_VALUE: tenant B's record %s@%d:\n got  %s\n want %s", nullTopic, r.Offset, b.Content(), s.rec.Content())
			case s.tenant == tA && isShredded:
				shredded++
				want := s.rec
				want.Value = nil
				want.Headers = append(append([]testenv.BinHeader{}, s.rec.Headers...), testenv.BinHeader{Key: p17ShreddedHeader, Value: []byte("KEK-" + tA)})
				if b.Content() != want.Content() {
					t.Errorf("NULL_VALUE: tenant A's shredded record %s@%d:\n got  %s\n want %s", nullTopic, r.Offset, b.Content(), want.Content())
				}
				if string(kek) != "KEK-"+tA {
					t.Errorf("NULL_VALUE: %s header %q, want KEK-%s", p17ShreddedHeader, kek, tA)
				}
			case s.tenant == tA && b.Content() != s.rec.Content():
				t.Errorf("NULL_VALUE: tenant A's record %s@%d neither shredded nor intact: %s", nullTopic, r.Offset, b.Content())
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		return len(got) >= nAB && shredded == nAB/2
	})

	// librdkafka and Java get the same: B in clear, A shredded, and move on.
	wantNull := make([]testenv.BinRecord, nAB)
	for i, s := range sent[nullTopic][:nAB] {
		wantNull[i] = s.rec
		if s.tenant == tA {
			wantNull[i].Value = nil
			wantNull[i].Headers = append(append([]testenv.BinHeader{}, s.rec.Headers...), testenv.BinHeader{Key: p17ShreddedHeader, Value: []byte("KEK-" + tA)})
		}
	}
	step := []testenv.ProbeStep{{Consume: true, Bootstrap: p.Bootstrap, Topic: nullTopic, Partition: 0, Offset: 0, N: nAB, Timeout: 20 * time.Second}}
	var wg sync.WaitGroup
	for _, c := range []struct {
		name string
		run  func() []testenv.ProbeResult
	}{
		{"librdkafka", func() []testenv.ProbeResult { return testenv.RdkafkaProbe(t, step) }},
		{"java", func() []testenv.ProbeResult { return testenv.JavaProbe(t, cluster, step) }},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := c.run()[0]
			got := 0
			for _, r := range res.Records {
				if r.Offset >= int64(nAB) {
					continue
				}
				got++
				if r.Content() != wantNull[r.Offset].Content() {
					t.Errorf("NULL_VALUE, %s @%d:\n got  %s\n want %s", c.name, r.Offset, r.Content(), wantNull[r.Offset].Content())
				}
			}
			if got != nAB || res.Err != "" {
				t.Errorf("NULL_VALUE, %s: %d of %d records, error %q", c.name, got, nAB, res.Err)
			}
		}()
	}
	wg.Wait()

	// C's KEK is gone but was not shredded: the error, never a null value.
	if x.lose != nil {
		got, errs := p17Partition(t, p.Bootstrap, nullTopic, 0, int64(nAB), 2, true, 15*time.Second)
		for _, r := range got {
			if r.Offset == int64(nAB) {
				t.Errorf("tenant C's record (KEK lost without kseal shred) delivered: value %q, headers %v", r.Value, testenv.BinFromKgo(r).Headers)
			}
		}
		if !p17AnyErr(errs, kerr.ResourceNotFound) {
			t.Errorf("tenant C's record (KEK lost without kseal shred): errors %s, want RESOURCE_NOT_FOUND", p17Errs(errs))
		}
		// B's record after it is read from its own offset.
		got, errs = p17Partition(t, p.Bootstrap, nullTopic, 0, int64(nAB+1), 1, true, 15*time.Second)
		if len(got) != 1 || testenv.BinFromKgo(got[0]).Content() != sent[nullTopic][nAB+1].rec.Content() {
			t.Errorf("tenant B's record after C's: %d records, errors %s", len(got), p17Errs(errs))
		}
	}

	// ERROR: the partition stops at A's first record with the error, after
	// the B record before it; from the next B record on, the next one.
	for _, from := range []int64{0, 2, 10} {
		got, errs := p17Partition(t, p.Bootstrap, errTopic, 0, from, 2, true, 15*time.Second)
		for _, r := range got {
			if r.Offset != from {
				t.Errorf("ERROR rule, reading from %d: record at offset %d delivered (tenant %s, value %q)", from, r.Offset, sent[errTopic][r.Offset].tenant, r.Value)
			} else if testenv.BinFromKgo(r).Content() != sent[errTopic][from].rec.Content() {
				t.Errorf("ERROR rule: tenant B's record @%d: %s", from, testenv.BinFromKgo(r).Content())
			}
		}
		if len(got) == 0 {
			t.Errorf("ERROR rule, reading from %d: tenant B's record not delivered (errors %s)", from, p17Errs(errs))
		}
		if !p17AnyErr(errs, kerr.ResourceNotFound) {
			t.Errorf("ERROR rule, reading from %d: errors %s, want RESOURCE_NOT_FOUND at tenant A's record", from, p17Errs(errs))
		}
	}

	// Nothing of either tenant in clear on the brokers or on disk.
	checkStored("after the shred")
	for _, c := range canary {
		e2eAssertNotOnDisk(t, c)
	}

	// The operator's evidence: `kseal audit --by-kek` counts the records
	// under each tenant's KEK and shows A's shred record.
	code, out := p17Kseal(t, 60*time.Second, "audit", "--config", opCfg, "--topics", nullTopic+"|"+errTopic, "--by-kek", "--json")
	var rep struct {
		ByKek []struct {
			KEK      string `json:"kek"`
			Entity   string `json:"entity"`
			Records  int64  `json:"records"`
			Shredded *struct {
				Note string `json:"note"`
			} `json:"shredded"`
		} `json:"byKek"`
	}
	if code != 0 {
		t.Errorf("kseal audit --by-kek: exit %d\n%s", code, out)
	} else if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Errorf("kseal audit --by-kek --json: %v\n%s", err, out)
	} else {
		want := map[string]int64{}
		for _, tn := range order {
			want["KEK-"+tn] += 2 // one per topic
		}
		got := map[string]bool{}
		for _, k := range rep.ByKek {
			got[k.KEK] = true
			tn := strings.TrimPrefix(k.KEK, "KEK-")
			switch {
			case want[k.KEK] == 0:
				t.Errorf("kseal audit --by-kek: unexpected KEK %q (%d records)", k.KEK, k.Records)
			case k.Records != want[k.KEK] || k.Entity != tn:
				t.Errorf("kseal audit --by-kek: %s: %d records of entity %q, want %d of %q", k.KEK, k.Records, k.Entity, want[k.KEK], tn)
			case (k.Shredded != nil) != (tn == tA):
				t.Errorf("kseal audit --by-kek: %s shredded %v, want %v", k.KEK, k.Shredded != nil, tn == tA)
			case k.Shredded != nil && !strings.Contains(k.Shredded.Note, "GDPR erasure request"):
				t.Errorf("kseal audit --by-kek: %s shred note %q", k.KEK, k.Shredded.Note)
			}
		}
		for kek := range want {
			if !got[kek] {
				t.Errorf("kseal audit --by-kek: %s missing\n%s", kek, out)
			}
		}
	}

	// Shredded deliveries are counted per topic.
	if !p.metricExists(t, "kseal_shredded_records_total") {
		t.Error("/metrics has no kseal_shredded_records_total")
	}
	if n := p.metric(t, "kseal_shredded_records_total", map[string]string{"topic": nullTopic}); n < float64(nAB/2) {
		t.Errorf("kseal_shredded_records_total{topic=%q} = %v, want at least %d", nullTopic, n, nAB/2)
	}
	if n := p.metric(t, "kseal_shredded_records_total", map[string]string{"topic": errTopic}); n != 0 {
		t.Errorf("kseal_shredded_records_total{topic=%q} = %v, want 0 (ERROR rule)", errTopic, n)
	}

	// A KMS that is down is not a destroyed KEK: no null values, ever.
	if x.down != nil {
		x.down(t)
		time.Sleep(3 * time.Second) // past decryptCacheMaxAge: every DEK must be unwrapped again
		before := p.metric(t, "kseal_shredded_records_total", map[string]string{"topic": nullTopic})
		got, errs := p17Partition(t, p.Bootstrap, nullTopic, 0, 0, nAB, false, 8*time.Second)
		for _, r := range got {
			s := sent[nullTopic][r.Offset]
			if s.tenant == tB && (r.Value == nil || !bytes.Equal(r.Value, s.rec.Value)) {
				t.Errorf("KMS down: tenant B's record @%d delivered with value %q", r.Offset, r.Value)
			}
			if _, sh := p17KgoHeader(r, p17ShreddedHeader); sh && s.tenant != tA {
				t.Errorf("KMS down: tenant %s's record @%d delivered as shredded", s.tenant, r.Offset)
			}
		}
		if len(errs) == 0 {
			t.Errorf("KMS down: no fetch error in 8s (%d records)", len(got))
		}
		for _, e := range errs {
			if errors.Is(e, kerr.ResourceNotFound) {
				t.Errorf("KMS down: %v; an unreachable KMS must not look like a destroyed KEK", e)
				break
			}
		}
		// Tenant B's first record comes before any of A's: nothing can
		// have been delivered as shredded while the KMS was away.
		if after := p.metric(t, "kseal_shredded_records_total", map[string]string{"topic": nullTopic}); after != before {
			t.Errorf("KMS down: kseal_shredded_records_total went from %v to %v", before, after)
		}
	}
}

// p17Eventually polls cond every 500ms until it holds, failing after
// timeout with what().
func p17Eventually(t *testing.T, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// p17AnyErr reports whether one of errs is want.
func p17AnyErr(errs []error, want error) bool {
	for _, e := range errs {
		if errors.Is(e, want) {
			return true
		}
	}
	return false
}

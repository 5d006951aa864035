//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/testenv"
	"github.com/kseal/kseal/internal/tools"
)

// toolsSetup is a local KMS with KEK-tools, the config of a kseal that
// encrypts it-tools* topics under it, and that config written to a file for
// the tool commands.
type toolsSetup struct {
	kms     *local.KMS
	gw      testenv.Gateway
	cfgYAML string
	cfgPath string
	proxy   *testenv.Kseal
}

func newToolsSetup(t *testing.T) *toolsSetup {
	t.Helper()
	if direct() {
		t.Skip("the tools need kseal in front of the cluster")
	}
	work, err := testenv.WorkDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(work, "tools-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
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
	if _, err := k.Create(ctx, "KEK-tools"); err != nil {
		t.Fatal(err)
	}
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	s := &toolsSetup{kms: k, gw: gw, cfgPath: filepath.Join(dir, "kseal.yaml")}
	s.cfgYAML = testenv.KsealConfig(cluster.Bootstrap, gw, fmt.Sprintf(`    encryption:
      kms:
        type: local
        config: {keyStore: %q, masterKeyFile: %q, reloadInterval: 200ms}
      policy:
        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED
        rules:
          - topicPrefix: it-tools
            kek: KEK-tools
`, kcfg.KeyStore, kcfg.MasterKeyFile))
	if err := os.WriteFile(s.cfgPath, []byte(s.cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	s.proxy = testenv.StartKseal(t, s.cfgYAML)
	return s
}

// rotate makes a new KEK-tools version primary and restarts kseal, so that
// it takes DEKs under the new version at once.
func (s *toolsSetup) rotate(t *testing.T) {
	t.Helper()
	if _, err := s.kms.Rotate(context.Background(), "KEK-tools"); err != nil {
		t.Fatal(err)
	}
	if err := s.proxy.Stop(); err != nil {
		t.Fatal(err)
	}
	s.proxy = testenv.StartKseal(t, s.cfgYAML)
}

// kseal runs the kseal binary with args, returning its exit code and output.
func ksealCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := testenv.BuildKseal()
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(bin, args...)
}

func runKseal(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := ksealCmd(t, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errOut.String()
	case err != nil:
		t.Fatalf("kseal %v: %v", args, err)
	}
	return 0, out.String(), errOut.String()
}

// TestTools: inspect and audit report the right counts and KEK versions on
// a topic with a known mix; reencrypt moves it to a new KEK version through
// kseal, surviving a limit and a SIGKILL without duplicates, after which
// audit finds no record of the new topic under an old version.
func TestTools(t *testing.T) {
	s := newToolsSetup(t)
	topic := newTopic(t, "tools", nil)
	ctx := context.Background()
	prod := func() *kgo.Client {
		return testenv.Kgo(t, []string{s.proxy.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}

	// The mix: 5 plaintext written straight to the brokers (first: the
	// topic's past before kseal encrypted it, which requireEncrypted lets
	// consumers read; plaintext written after would be refused), 24
	// records under v1, 1200 under v2, 1 tombstone.
	const nV1, nV2, nPlain = 24, 1200, 5
	directProd := testenv.Kgo(t, cluster.Bootstrap, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	testenv.KgoProduce(t, directProd, makeRecords(topic, "plain", nPlain, roundRobin, nil))
	testenv.KgoProduce(t, prod(), makeRecords(topic, "v1", nV1, roundRobin, func(i int) []testenv.Header {
		return []testenv.Header{testenv.H("i", fmt.Sprint(i))}
	}))
	s.rotate(t)
	testenv.KgoProduce(t, prod(), makeRecords(topic, "v2", nV2, roundRobin, nil))
	tomb := tombstone(topic, 3, "deleted")
	if err := prod().ProduceSync(ctx, tomb).FirstErr(); err != nil {
		t.Fatal(err)
	}
	total := nV1 + nV2 + nPlain + 1

	// inspect: one JSON line per record, KEK versions from the EDEKs.
	code, out, errOut := runKseal(t, "inspect", "--config", s.cfgPath, "--topic", topic, "--json")
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, errOut)
	}
	byState := map[string]int{}
	dekOf := map[string]map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r tools.RecordInfo
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("inspect line %q: %v", line, err)
		}
		key := string(r.State)
		if e := r.Envelope; e != nil {
			if e.KEK != "KEK-tools" {
				t.Errorf("inspect: record %d@%d under KEK %q", r.Partition, r.Offset, e.KEK)
			}
			key += " v" + e.KEKVersion
			if dekOf[e.KEKVersion] == nil {
				dekOf[e.KEKVersion] = map[string]bool{}
			}
			dekOf[e.KEKVersion][e.DEK] = true
		}
		byState[key]++
	}
	wantStates := map[string]int{"encrypted v1": nV1, "encrypted v2": nV2, "plaintext": nPlain, "tombstone": 1}
	if fmt.Sprint(byState) != fmt.Sprint(wantStates) {
		t.Errorf("inspect: %v, want %v", byState, wantStates)
	}
	for v1dek := range dekOf["1"] {
		if dekOf["2"][v1dek] {
			t.Errorf("inspect: DEK %s under both versions", v1dek)
		}
	}
	if strings.Contains(out, "zażółć") {
		t.Errorf("inspect printed record values")
	}

	// audit: plaintext on an encrypted topic is a disagreement (exit 1).
	code, out, errOut = runKseal(t, "audit", "--config", s.cfgPath, "--topics", topic, "--json")
	if code != 1 {
		t.Fatalf("audit: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	var rep tools.AuditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Topics) != 1 {
		t.Fatalf("audit JSON: %v\n%s", err, out)
	}
	tr := rep.Topics[0]
	if tr.Records != int64(total) || tr.Encrypted != nV1+nV2 || tr.Plaintext != nPlain || tr.Tombstones != 1 || tr.Partitions != partitions {
		t.Errorf("audit counts: %+v", tr)
	}
	if len(tr.KEKs) != 2 || tr.KEKs[0].Version != "1" || tr.KEKs[0].Records != nV1 || tr.KEKs[1].Version != "2" || tr.KEKs[1].Records != nV2 {
		t.Errorf("audit KEKs: %+v", tr.KEKs)
	}
	if len(tr.Violations) != 1 || tr.Violations[0].Kind != "plaintext" || tr.Violations[0].Count != nPlain {
		t.Errorf("audit violations: %+v", tr.Violations)
	}

	// reencrypt to v3: a limited run, a killed run, and the rest.
	s.rotate(t)
	dest := topic + "-v3"
	base := []string{"reencrypt", "--config", s.cfgPath, "--source", topic, "--dest", dest, "--proxy", s.proxy.Bootstrap}
	code, out, errOut = runKseal(t, append(base, "--limit", "200", "--records-per-txn", "50")...)
	if code != 0 || !strings.Contains(out, "not finished") {
		t.Fatalf("limited reencrypt: exit %d\n%s\n%s", code, out, errOut)
	}
	group := tools.DefaultGroup(topic, dest)
	adm := kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
	committed := func() int64 {
		offs, err := adm.FetchOffsetsForTopics(ctx, group, topic)
		if err != nil {
			t.Fatalf("fetch offsets of %s: %v", group, err)
		}
		var n int64
		offs.Each(func(o kadm.OffsetResponse) { n += max(o.At, 0) })
		return n
	}
	afterLimit := committed()
	if afterLimit < 200 || afterLimit >= int64(total) {
		t.Fatalf("after the limited run %d offsets committed, want 200..%d", afterLimit, total)
	}

	cmd := ksealCmd(t, append(base, "--records-per-txn", "10")...)
	var killedOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &killedOut, &killedOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for committed() <= afterLimit+20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	err := cmd.Wait()
	if atKill := committed(); err == nil || atKill >= int64(total) {
		t.Logf("the killed run finished first (%d offsets committed; %v):\n%s", atKill, err, killedOut.String())
	} else {
		t.Logf("killed reencrypt at %d of %d offsets", atKill, total)
	}

	code, out, errOut = runKseal(t, append(base, "--json")...)
	var res tools.ReencryptResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
		t.Fatalf("final reencrypt: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	if !res.Complete || res.Check == nil || !res.Check.OK || res.Check.In != int64(total) || res.Check.Out != int64(total) {
		t.Fatalf("final reencrypt: %s", out)
	}

	// The copy: every record under v3, nothing in plaintext, and what
	// consumers read through kseal equals the source, without duplicates.
	code, out, errOut = runKseal(t, "audit", "--config", s.cfgPath, "--topics", dest, "--json", "--committed")
	if code != 0 {
		t.Fatalf("audit of the copy: exit %d\n%s\n%s", code, out, errOut)
	}
	rep = tools.AuditReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Topics) != 1 {
		t.Fatalf("audit JSON: %v\n%s", err, out)
	}
	tr = rep.Topics[0]
	if tr.Records != int64(total) || tr.Plaintext != 0 || len(tr.KEKs) != 1 || tr.KEKs[0].Version != "3" || tr.KEKs[0].Records != int64(total-1) {
		t.Errorf("audit of the copy: %+v", tr)
	}
	consume := func(topic string) map[string]int {
		cl := testenv.Kgo(t, []string{s.proxy.Bootstrap}, kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		got := map[string]int{}
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		for n := 0; n < total; {
			fs := cl.PollFetches(cctx)
			if err := fs.Err0(); err != nil {
				t.Fatalf("consume %s after %d records: %v", topic, n, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				n++
				got[fmt.Sprintf("p%d ts%d %s null=%v", r.Partition, r.Timestamp.UnixMilli(), testenv.FromKgo(r).Content(), r.Value == nil)]++
			})
		}
		return got
	}
	src, dst := consume(topic), consume(dest)
	for k, n := range src {
		if dst[k] != n {
			t.Errorf("copy has %d of %s, source %d", dst[k], k, n)
		}
	}
	if len(dst) != len(src) {
		t.Errorf("copy has %d distinct records, source %d", len(dst), len(src))
	}
}

// tombstone is a record with a key and a null value.
func tombstone(topic string, partition int32, key string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key)}
}

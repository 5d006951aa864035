package encrypt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/records"
)

// guardSetup is a filter over the real local KMS and DEK manager with the
// rule "every topic under KEK-<topic>".
type guardSetup struct {
	f   *Filter
	kms *local.KMS
	m   *dek.Manager
}

func newGuardSetup(t *testing.T, unresolved policy.UnresolvedKeyPolicy, keks ...string) *guardSetup {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cfg := local.NewConfig()
	cfg.KeyStore = filepath.Join(dir, "keys.json")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	if _, err := local.Init(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	k, err := local.New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	for _, name := range keks {
		if _, err := k.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	m, err := dek.New(k, dek.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Compile(&policy.Config{UnresolvedKeyPolicy: unresolved,
		Rules: []policy.RuleConfig{{TopicRegex: ".*", KEK: "KEK-$(topicName)"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &guardSetup{f: New(Options{Policy: pol, Keys: managerKeys{m}, Log: log}), kms: k, m: m}
}

// produce runs a Produce v9 of batch to topic through the filter and
// returns the partition's error code (0: forwarded) and the forwarded
// record set.
func (g *guardSetup) produce(t *testing.T, topic string, batch []byte) (int16, []byte) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = -1
	req.TimeoutMillis = 1000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	frame := []byte{0, 0, 0, 9, 0, 0, 0, 1, 0, 1, 't', 0}
	hlen := len(frame)
	frame = req.AppendTo(frame)
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Produce), 9, frame, hlen, nil, 0)
	if err := g.f.OnRequest(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if x.Local {
		var resp kmsg.ProduceResponse
		resp.SetVersion(9)
		if err := resp.ReadFrom(x.Response[5:]); err != nil { // correlation id, header tags
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode, nil
	}
	var out kmsg.ProduceRequest
	out.SetVersion(9)
	if err := out.ReadFrom(x.Request[x.HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	return 0, bytes.Clone(out.Topics[0].Partitions[0].Records)
}

// tailOf makes the sealed-topic check read recs as every partition's tail.
func (g *guardSetup) tailOf(recs []byte, err error) *int {
	calls := new(int)
	g.f.sealed.tail = func(_ context.Context, _ *filter.Exchange, _ string, visit filter.TailVisitor) error {
		*calls++
		if err != nil {
			return err
		}
		visit(0, recs)
		return nil
	}
	return calls
}

// A KEK deleted after kseal encrypted under it refuses produce with
// RESOURCE_NOT_FOUND from the next check on, under PASSTHROUGH_UNENCRYPTED
// too: never plaintext.
func TestDeletedKEKRefusesProduce(t *testing.T) {
	g := newGuardSetup(t, policy.PassthroughUnencrypted, "KEK-orders")
	g.tailOf(nil, errors.New("must not be asked: the KEK is known to be gone"))
	batch := plainBatch([][]byte{[]byte("secret-1")})
	if code, set := g.produce(t, "orders", batch); code != 0 || bytes.Equal(set, batch) {
		t.Fatalf("before deletion: code %d, forwarded unchanged %v", code, bytes.Equal(set, batch))
	}
	if err := g.kms.Delete(context.Background(), "KEK-orders"); err != nil {
		t.Fatal(err)
	}
	g.m.CheckKEKs(context.Background())
	for range 3 {
		if code, _ := g.produce(t, "orders", batch); code != kerr.ResourceNotFound.Code {
			t.Fatalf("after deletion: code %d, want RESOURCE_NOT_FOUND (91)", code)
		}
	}
}

// Under the (default) REJECT policy a KEK that never existed is
// POLICY_VIOLATION, and the cluster is not asked.
func TestMissingKEKUnderReject(t *testing.T) {
	g := newGuardSetup(t, "")
	calls := g.tailOf(nil, nil)
	if code, _ := g.produce(t, "orders", plainBatch([][]byte{[]byte("v")})); code != kerr.PolicyViolation.Code {
		t.Fatalf("code %d, want POLICY_VIOLATION (44)", code)
	}
	if *calls != 0 {
		t.Fatal("REJECT asked the cluster")
	}
}

// Under PASSTHROUGH_UNENCRYPTED a topic whose KEK does not exist passes in
// clear only when its newest batches carry no kseal marker.
func TestPassthroughChecksTopicFirst(t *testing.T) {
	plain := plainBatch([][]byte{[]byte("plain value")})
	sealedSet := func(t *testing.T) []byte {
		g := newGuardSetup(t, policy.PassthroughUnencrypted, "KEK-x")
		return encryptThrough(t, g.f, "x", plain)
	}(t)

	t.Run("encrypted before", func(t *testing.T) {
		g := newGuardSetup(t, policy.PassthroughUnencrypted)
		calls := g.tailOf(sealedSet, nil)
		for range 3 {
			if code, _ := g.produce(t, "x", plain); code != kerr.ResourceNotFound.Code {
				t.Fatalf("code %d, want RESOURCE_NOT_FOUND (91)", code)
			}
		}
		if *calls != 1 {
			t.Fatalf("%d reads of the topic, want 1 (cached)", *calls)
		}
	})
	t.Run("plaintext before", func(t *testing.T) {
		g := newGuardSetup(t, policy.PassthroughUnencrypted)
		g.tailOf(plain, nil)
		if code, set := g.produce(t, "x", plain); code != 0 || !bytes.Equal(set, plain) {
			t.Fatalf("code %d, unchanged %v; want passed through", code, bytes.Equal(set, plain))
		}
	})
	t.Run("empty topic", func(t *testing.T) {
		g := newGuardSetup(t, policy.PassthroughUnencrypted)
		g.tailOf(nil, nil)
		if code, _ := g.produce(t, "x", plain); code != 0 {
			t.Fatalf("code %d, want passed through", code)
		}
	})
	t.Run("cannot check", func(t *testing.T) {
		g := newGuardSetup(t, policy.PassthroughUnencrypted)
		calls := g.tailOf(nil, errors.New("broker unreachable"))
		for range 2 {
			if code, _ := g.produce(t, "x", plain); code != kerr.RequestTimedOut.Code {
				t.Fatalf("code %d, want REQUEST_TIMED_OUT (retriable)", code)
			}
		}
		if *calls != 2 {
			t.Fatalf("%d reads, want 2 (failures are not cached)", *calls)
		}
	})
	t.Run("outside the proxy", func(t *testing.T) {
		// No upstream to ask (filter.ErrNoUpstream): refused.
		g := newGuardSetup(t, policy.PassthroughUnencrypted)
		if code, _ := g.produce(t, "x", plain); code != kerr.RequestTimedOut.Code {
			t.Fatalf("code %d, want REQUEST_TIMED_OUT", code)
		}
	})
}

func TestBatchesVerdict(t *testing.T) {
	g := newGuardSetup(t, policy.PassthroughUnencrypted, "KEK-x")
	sealed := encryptThrough(t, g.f, "x", plainBatch([][]byte{[]byte("v")}))
	plain := plainBatch([][]byte{[]byte("v")})
	tomb := plainBatch([][]byte{nil})
	gz := codecBatch([][]byte{[]byte("v")}, 1)
	proc := records.NewProcessor()
	for _, tc := range []struct {
		name string
		recs []byte
		want verdict
	}{
		{"empty", nil, verdictUnknown},
		{"plain", plain, verdictPlain},
		{"gzip plain", gz, verdictPlain},
		{"sealed", sealed, verdictSealed},
		{"tombstone only", tomb, verdictUnknown},
		{"plain then sealed", append(append([]byte{}, plain...), sealed...), verdictSealed},
		{"partial", sealed[:len(sealed)-3], verdictUnknown},
	} {
		if got := batchesVerdict(proc, tc.recs); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Concurrent checks of one topic share one read; reads of distinct topics
// run at most maxSealedReads at a time.
func TestSealedTopicsBounded(t *testing.T) {
	var s sealedTopics
	var mu sync.Mutex
	running, peak, calls := 0, 0, map[string]int{}
	release := make(chan struct{})
	s.tail = func(_ context.Context, _ *filter.Exchange, topic string, _ filter.TailVisitor) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		calls[topic]++
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("t%d", i%10)
			if _, err := s.check(context.Background(), nil, topic, time.Minute, 100, 1<<20, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if peak > maxSealedReads {
		t.Errorf("%d reads at once, bound is %d", peak, maxSealedReads)
	}
	for topic, n := range calls {
		if n != 1 {
			t.Errorf("%s read %d times, want 1", topic, n)
		}
	}
	// A caller whose deadline passes while waiting is refused, not let through.
	s2 := sealedTopics{tail: func(ctx context.Context, _ *filter.Exchange, _ string, _ filter.TailVisitor) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s2.check(ctx, nil, "slow", time.Minute, 100, 1<<20, nil); err == nil {
		t.Fatal("a check past its deadline answered")
	}
}

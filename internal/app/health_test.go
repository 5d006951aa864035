package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/admin"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms"
)

// fakeKMS is a KMS the readiness tests can take down: every call, the probe
// included, then fails as unreachable.
type fakeKMS struct {
	down   atomic.Bool
	hang   atomic.Bool // Probe blocks until its context ends
	probes atomic.Int64

	mu   sync.Mutex
	deks map[string][]byte
}

var errFakeDown = fmt.Errorf("fake kms down: %w", kms.ErrUnavailable)

func (f *fakeKMS) ResolveKEK(_ context.Context, name string) (kms.KEKRef, error) {
	if f.down.Load() {
		return kms.KEKRef{}, errFakeDown
	}
	if name != "KEK-orders" {
		return kms.KEKRef{}, kms.ErrKeyNotFound
	}
	return kms.KEKRef{Name: name, ID: name}, nil
}

func (f *fakeKMS) GenerateDEK(_ context.Context, _ kms.KEKRef) (kms.DEK, error) {
	if f.down.Load() {
		return kms.DEK{}, errFakeDown
	}
	key, edek := make([]byte, 32), make([]byte, 16)
	rand.Read(key)
	rand.Read(edek)
	f.mu.Lock()
	f.deks[string(edek)] = append([]byte(nil), key...)
	f.mu.Unlock()
	return kms.DEK{Key: key, EDEK: edek}, nil
}

func (f *fakeKMS) DecryptDEK(_ context.Context, edek []byte) ([]byte, error) {
	if f.down.Load() {
		return nil, errFakeDown
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.deks[string(edek)]
	if !ok {
		return nil, kms.ErrKeyNotFound
	}
	return append([]byte(nil), k...), nil
}

func (f *fakeKMS) DescribeEDEK([]byte) (kms.EDEKInfo, error) {
	return kms.EDEKInfo{KEK: "KEK-orders"}, nil
}

func (f *fakeKMS) Probe(ctx context.Context) error {
	f.probes.Add(1)
	if f.hang.Load() {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", kms.ErrUnavailable, ctx.Err())
	}
	if f.down.Load() {
		return errFakeDown
	}
	return nil
}

// fakeKMSConfig picks a fakeKMS by name from fakeKMSs.
type fakeKMSConfig struct {
	Name string `yaml:"name"`
}

var (
	fakeKMSsMu sync.Mutex
	fakeKMSs   = map[string]*fakeKMS{}
)

func (c *fakeKMSConfig) Validate() error { return nil }

func (c *fakeKMSConfig) Open(context.Context, *slog.Logger) (kms.KMS, error) {
	fakeKMSsMu.Lock()
	defer fakeKMSsMu.Unlock()
	f, ok := fakeKMSs[c.Name]
	if !ok {
		return nil, fmt.Errorf("no fake KMS %q", c.Name)
	}
	return f, nil
}

func init() {
	kms.Register("fake-test", kms.ProviderFunc(func() kms.Config { return &fakeKMSConfig{} }))
}

// withKMSHealth shortens the readiness timing for one test.
func withKMSHealth(t *testing.T, timing kmsHealthTiming) {
	old := defaultKMSHealth
	defaultKMSHealth = timing
	t.Cleanup(func() { defaultKMSHealth = old })
}

// /readyz fails, naming the virtual cluster and the KMS, while the KMS is
// down and recovers with it; /healthz stays 200 throughout. Readiness
// requests are answered from the probe's result, not by asking the KMS.
func TestReadyzFollowsKMS(t *testing.T) {
	withKMSHealth(t, kmsHealthTiming{every: 100 * time.Millisecond, window: 2 * time.Second, timeout: 200 * time.Millisecond})
	f := &fakeKMS{deks: map[string][]byte{}}
	fakeKMSsMu.Lock()
	fakeKMSs[t.Name()] = f
	fakeKMSsMu.Unlock()

	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	base := freePorts(t, 4)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
virtualClusters:
  - name: plain
    upstream: {bootstrapServers: [%[1]s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %[2]d, brokerPortStart: %[3]d, brokerPortCount: 1}
  - name: test
    upstream: {bootstrapServers: [%[1]s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %[4]d, brokerPortStart: %[5]d, brokerPortCount: 1}
    encryption:
      kms: {type: fake-test, config: {name: %[6]s}}
      policy:
        rules: [{topicRegex: '.*', kek: 'KEK-$(topicName)'}]
        unresolvedKeyPolicy: REJECT
      dek: {kmsTimeout: 1s, kmsAttempts: 1}
`, fake.ListenAddrs()[0], base, base+1, base+2, base+3, t.Name())))
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	reg := prometheus.NewRegistry()
	a := startApp(t, context.Background(), cfg, log, reg)
	adm, err := admin.Listen("127.0.0.1:0", reg, func(context.Context) error { return a.Ready() }, log, admin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close(context.Background())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + adm.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 10s: %s", what)
			}
		}
	}

	waitFor("/readyz answers 200 with the KMS up", func() bool { code, _ := get("/readyz"); return code == 200 })
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without admin.profiling = %d, want 404", code)
	}
	// Many readiness requests, few probes: /readyz reads a cached result.
	before, start := f.probes.Load(), time.Now()
	for range 200 {
		if code, body := get("/readyz"); code != 200 {
			t.Fatalf("/readyz = %d %s", code, body)
		}
	}
	if n, most := f.probes.Load()-before, int64(time.Since(start)/(100*time.Millisecond))+2; n > most {
		t.Errorf("200 /readyz requests made %d probes in %s, want at most %d (one per probe period)", n, time.Since(start), most)
	}

	f.down.Store(true)
	var body string
	waitFor("/readyz fails with the KMS down", func() bool {
		var code int
		code, body = get("/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, `virtual cluster "test": kms:`) || !strings.Contains(body, "fake kms down") {
		t.Errorf("/readyz body %q does not say which check failed", body)
	}
	if strings.Contains(body, `"plain"`) {
		t.Errorf("/readyz blames the passthrough cluster: %q", body)
	}
	if code, b := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d %s with the KMS down, want 200", code, b)
	}

	f.down.Store(false)
	waitFor("/readyz recovers with the KMS", func() bool { code, _ := get("/readyz"); return code == 200 })
	// And it works: a produce needs a DEK from it.
	cl := client(t, a.Server.BootstrapAddr("test"))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// A probe that hangs counts as a failure once its timeout passes.
	f.hang.Store(true)
	waitFor("/readyz fails while the KMS hangs", func() bool {
		var code int
		code, body = get("/readyz")
		return code == http.StatusServiceUnavailable
	})
	t.Logf("/readyz while the KMS hangs: %s", body)
	if !strings.Contains(body, "probe timed out") {
		t.Errorf("/readyz body %q does not say the probe timed out", body)
	}
	f.hang.Store(false)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The DEK manager's own KMS calls count as answers or failures; calls
// refused for one key do not; an answer older than the window does not.
func TestKMSHealthSignals(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	h := newKMSHealth(&fakeKMS{}, kmsHealthTiming{every: 10 * time.Second, window: 30 * time.Second, timeout: time.Second})
	h.now = clock.now
	step := func(what string, wantReady bool, wantText string) {
		t.Helper()
		err := h.ready()
		if (err == nil) != wantReady || (err != nil && !strings.Contains(err.Error(), wantText)) {
			t.Errorf("%s: ready() = %v, want ready=%v %q", what, err, wantReady, wantText)
		}
	}
	step("new", false, "no answer yet")
	if !h.needsProbe() {
		t.Error("no probe wanted before any answer")
	}
	h.observe(errFakeDown)
	step("first call unavailable", false, "fake kms down")
	h.observe(nil)
	step("a call answered", true, "")
	if h.needsProbe() {
		t.Error("probe wanted right after an answer")
	}
	clock.add(time.Second)
	h.observe(fmt.Errorf("abandoned: %w", context.DeadlineExceeded))
	step("a call timed out", false, "unavailable (last answer 1s ago)")
	if !h.needsProbe() {
		t.Error("no probe wanted after a failure")
	}
	h.observe(fmt.Errorf("vault kms: key %q: %w", "KEK-x", kms.ErrKeyNotFound))
	step("not found is an answer", true, "")
	h.observe(errors.New("HTTP 403: permission denied on this key"))
	h.observe(context.Canceled)
	step("per-key refusal and a caller giving up change nothing", true, "")
	clock.add(11 * time.Second)
	if !h.needsProbe() {
		t.Error("no probe wanted after a quiet period")
	}
	step("11s without calls, within the window", true, "")
	clock.add(20 * time.Second)
	step("31s without an answer", false, "no answer for 31s")
}

// A provider without Probe is probed by resolving a KEK that need not
// exist: "not found" is an answer.
func TestKMSHealthFallbackProbe(t *testing.T) {
	f := &noProbeKMS{}
	h := newKMSHealth(f, kmsHealthTiming{every: time.Hour, window: time.Hour, timeout: time.Second})
	if err := h.probe(context.Background()); err != nil {
		t.Errorf("not found: %v", err)
	}
	f.err = errFakeDown
	if err := h.probe(context.Background()); !errors.Is(err, kms.ErrUnavailable) {
		t.Errorf("down: %v", err)
	}
	if f.asked != kms.ProbeKEK {
		t.Errorf("resolved %q, want %q", f.asked, kms.ProbeKEK)
	}
}

type noProbeKMS struct {
	err   error
	asked string
}

func (n *noProbeKMS) ResolveKEK(_ context.Context, name string) (kms.KEKRef, error) {
	n.asked = name
	if n.err != nil {
		return kms.KEKRef{}, n.err
	}
	return kms.KEKRef{}, kms.ErrKeyNotFound
}
func (n *noProbeKMS) GenerateDEK(context.Context, kms.KEKRef) (kms.DEK, error) {
	return kms.DEK{}, errors.New("unused")
}
func (n *noProbeKMS) DecryptDEK(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("unused")
}
func (n *noProbeKMS) DescribeEDEK([]byte) (kms.EDEKInfo, error) { return kms.EDEKInfo{}, nil }

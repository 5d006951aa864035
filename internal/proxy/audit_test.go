package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/filter"
)

// auditRecorder keeps the events it is given.
type auditRecorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *auditRecorder) Emit(e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *auditRecorder) of(typ audit.Type) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// startAuditProxy is startLimitsProxy with an audit emitter.
func startAuditProxy(t *testing.T, upstream []string, limitsYAML string, filters ...filter.Filter) (string, *auditRecorder) {
	t.Helper()
	base := freePortRange(t, 9)
	doc := fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 8}
    limits: %s
`, strings.Join(upstream, ","), base, base+1, limitsYAML)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	rec := &auditRecorder{}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil,
		map[string]ClusterOptions{"test": {Filters: filters, Audit: audit.ForCluster(rec, "test")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv.BootstrapAddr("test"), rec
}

func TestAuditPanicRecovered(t *testing.T) {
	fake := newFake(t)
	addr, rec := startAuditProxy(t, fake.ListenAddrs()[:1], "{}", panicFilter{})
	c := rawConn(t, addr)
	if err := apiVersions(c, panicOnResponse); err == nil {
		t.Fatal("answered the request whose filter panicked")
	}
	expectClosed(t, c, 3*time.Second)
	waitFor(t, 3*time.Second, "a panic_recovered event", func() bool { return len(rec.of(audit.PanicRecovered)) == 1 })
	e := rec.of(audit.PanicRecovered)[0]
	if e.Where != sideResponse || e.VirtualCluster != "test" || e.Detail != "" {
		t.Fatalf("event %+v", e)
	}
}

func TestAuditConnectionRefused(t *testing.T) {
	fake := newFake(t)
	addr, rec := startAuditProxy(t, fake.ListenAddrs()[:1], "{maxConnections: 1}")
	a := rawConn(t, addr)
	if err := apiVersions(a, 1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		expectClosed(t, rawConn(t, addr), 3*time.Second)
	}
	evs := rec.of(audit.ConnectionRefused)
	if len(evs) != 1 { // rate-limited like the log line
		t.Fatalf("%d connection_refused events, want 1: %+v", len(evs), evs)
	}
	e := evs[0]
	if e.Reason != refusedMaxConnections || e.VirtualCluster != "test" {
		t.Fatalf("event %+v", e)
	}
	if host, _, err := net.SplitHostPort(e.RemoteAddr); err != nil || host != "127.0.0.1" {
		t.Fatalf("remote address %q", e.RemoteAddr)
	}
}

// Failed TLS handshakes and unknown server names are connection_refused
// events.
func TestAuditSetupRefusals(t *testing.T) {
	pki := newPKI(t)
	cert, key, _ := pki.issue(t, "proxy", "*.kseal.test", "bootstrap.kseal.test")
	port := freePortRange(t, 1)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: ["127.0.0.1:1"]}
    gateway:
      bindAddress: 127.0.0.1
      bootstrapPort: %d
      tls: {certFile: %q, keyFile: %q}
      sni: {bootstrapHost: bootstrap.kseal.test, brokerHostPattern: 'broker-$(nodeId).kseal.test'}
`, port, cert, key)))
	if err != nil {
		t.Fatal(err)
	}
	rec := &auditRecorder{}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil,
		map[string]ClusterOptions{"test": {Audit: audit.ForCluster(rec, "test")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	plain := rawConn(t, addr)
	plain.Write([]byte("not a TLS client hello, not at all"))
	expectClosed(t, plain, 3*time.Second)
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.pool, ServerName: "evil.kseal.test"}); err == nil {
		expectClosed(t, c, 3*time.Second)
		c.Close()
	}
	waitFor(t, 3*time.Second, "two connection_refused events", func() bool { return len(rec.of(audit.ConnectionRefused)) >= 2 })
	time.Sleep(100 * time.Millisecond)
	reasons := map[string]int{}
	for _, e := range rec.of(audit.ConnectionRefused) {
		reasons[e.Reason]++
		if !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") {
			t.Errorf("remote address %q", e.RemoteAddr)
		}
	}
	if reasons[refusedTLS] != 1 || reasons[refusedSNI] != 1 || len(reasons) != 2 {
		t.Fatalf("refusal events by reason %v", reasons)
	}
}

package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kseal/kseal/internal/kms"
)

// Recorder is an Emitter keeping events, for tests.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Emit(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func TestAppendJSONSchema(t *testing.T) {
	at := time.Date(2026, 12, 6, 20, 1, 2, 3000, time.FixedZone("CET", 3600))
	b, err := AppendJSON(nil, Event{Type: DecryptRefused, Time: at, VirtualCluster: "vc", Topic: "orders",
		Partition: Int32(0), Offset: Int64(0), Reason: "tampered", ErrorCode: 2, ErrorName: "CORRUPT_MESSAGE",
		KEK: "k", KEKVersion: "1", EDEKFingerprint: "00ff"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"version": 1.0, "time": "2026-12-06T19:01:02.000003Z", "type": "decrypt_refused",
		"virtual_cluster": "vc", "topic": "orders", "partition": 0.0, "offset": 0.0, "reason": "tampered",
		"error_code": 2.0, "error_name": "CORRUPT_MESSAGE", "kek": "k", "kek_version": "1", "edek_fingerprint": "00ff"}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", m, want)
	}
	// Absent fields are left out; partition 0 is not absent.
	b, _ = AppendJSON(nil, Event{Type: ConfigReload, Time: at, Outcome: "success"})
	if got := string(b); got != `{"version":1,"time":"2026-12-06T19:01:02.000003Z","type":"config_reload","outcome":"success"}`+"\n" {
		t.Fatalf("got %s", got)
	}
}

func TestWriterWritesLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	w, err := Open(path, 0, m)
	if err != nil {
		t.Fatal(err)
	}
	ForCluster(w, "vc1").Emit(Event{Type: KEKResolved, KEK: "k1"})
	w.Emit(Event{Type: ConfigReload, Outcome: "failure", Reason: "kms"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Emit(Event{Type: ConfigReload}) // after Close: dropped, no panic
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", b)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e["type"] != "kek_resolved" || e["virtual_cluster"] != "vc1" || e["kek"] != "k1" {
		t.Fatalf("event %v", e)
	}
	ts, err := time.Parse(time.RFC3339Nano, e["time"].(string))
	if err != nil || ts.Location() != time.UTC || time.Since(ts) > time.Minute {
		t.Fatalf("time %v: %v", e["time"], err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if got := counterValue(t, m.events.WithLabelValues("kek_resolved")); got != 1 {
		t.Fatalf("events_total{kek_resolved} = %v", got)
	}
	if got := counterValue(t, m.dropped); got != 1 {
		t.Fatalf("dropped = %v", got)
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestWriterDropsInsteadOfBlocking(t *testing.T) {
	bw := &blockingWriter{release: make(chan struct{})}
	m := NewMetrics(nil)
	w := NewWriter(bw, 4, m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			w.Emit(Event{Type: InputRefused, Reason: "forged_marker"})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit blocked on a stuck writer")
	}
	// At most the queue (4) plus the one being written got through.
	if got := counterValue(t, m.dropped); got < 95 {
		t.Fatalf("dropped = %v, want >= 95", got)
	}
	close(bw.release)
	w.Close()
	if n := strings.Count(bw.buf.String(), "\n"); n < 4 || n > 5 {
		t.Fatalf("%d lines written", n)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterCountsWriteErrors(t *testing.T) {
	m := NewMetrics(nil)
	w := NewWriter(failWriter{}, 0, m)
	w.Emit(Event{Type: ConfigReload})
	w.Close()
	if got := counterValue(t, m.errors); got != 1 {
		t.Fatalf("write errors = %v", got)
	}
}

func TestOpenRefusesBadPath(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir", "a.jsonl"), 0, nil); err == nil {
		t.Fatal("no error for a file in a missing directory")
	}
	if _, err := Open("", 0, nil); err == nil {
		t.Fatal("no error for an empty path")
	}
}

func TestKEKTrackerEmitsOnChange(t *testing.T) {
	r := &recorder{}
	k := NewKEKTracker(r)
	unusable := fmt.Errorf("resolve: %w", kms.ErrKeyUnusable)
	missing := fmt.Errorf("resolve: %w", kms.ErrKeyNotFound)
	for _, step := range []struct {
		name string
		err  error
	}{
		{"a", nil}, {"a", nil}, {"a", nil}, // resolved once
		{"b", missing}, {"b", missing}, // missing once
		{"a", unusable}, {"a", unusable}, // a disabled
		{"a", nil},                         // and enabled again
		{"c", errors.New("access denied")}, // refused
	} {
		k.Observe(step.name, step.err)
	}
	var got []string
	for _, e := range r.events {
		got = append(got, e.KEK+":"+string(e.Type)+":"+e.Reason)
	}
	want := []string{"a:kek_resolved:", "b:kek_missing:not_found", "a:kek_unusable:unusable", "a:kek_resolved:", "c:kek_unusable:refused"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	var nilTracker *KEKTracker
	nilTracker.Observe("a", nil) // off: no panic
	NewKEKTracker(nil).Observe("a", nil)
}

func TestForClusterNil(t *testing.T) {
	if ForCluster(nil, "x") != nil {
		t.Fatal("ForCluster(nil) is not nil")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// kek_missing, which clients can cause, is rate-limited; the event after a
// pause counts those left out.
func TestKEKTrackerRateLimitsMissing(t *testing.T) {
	r := &recorder{}
	k := NewKEKTracker(r)
	now := time.Unix(1000, 0)
	k.now = func() time.Time { return now }
	missing := fmt.Errorf("x: %w", kms.ErrKeyNotFound)
	for i := range missingBurst + 50 {
		k.Observe(fmt.Sprint("topic-", i), missing)
	}
	if len(r.events) != missingBurst {
		t.Fatalf("%d events, want %d", len(r.events), missingBurst)
	}
	k.Observe("real-kek", nil) // not rate-limited
	now = now.Add(missingEvery)
	k.Observe("one-more", missing)
	last := r.events[len(r.events)-1]
	if len(r.events) != missingBurst+2 || last.KEK != "one-more" || last.Suppressed != 50 {
		t.Fatalf("after a pause: %d events, last %+v", len(r.events), last)
	}
}

// Log rotation: after the file is renamed, Reopen makes later events go to
// a new file at the configured path, and none is lost or written twice.
func TestWriterReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	w, err := Open(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Emit(Event{Type: ConfigReload, Outcome: "success", Reason: "first"})
	// Reopen is handled by the writer goroutine after the queued event.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Emit(Event{Type: ConfigReload, Outcome: "success", Reason: "second"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no new file after Reopen: %v", err)
	}
	if !strings.Contains(string(old), `"first"`) || strings.Contains(string(old), `"second"`) {
		t.Fatalf("rotated file: %s", old)
	}
	if !strings.Contains(string(cur), `"second"`) || strings.Contains(string(cur), `"first"`) {
		t.Fatalf("new file: %s", cur)
	}
	// Reopen after Close and on stdout writers does nothing.
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := NewWriter(&bytes.Buffer{}, 0, nil).Reopen(); err != nil {
		t.Fatal(err)
	}
	// A path that cannot be opened again keeps the old file.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	w2, err := Open(filepath.Join(sub, "a.jsonl"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sub, sub+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := w2.Reopen(); err == nil {
		t.Fatal("Reopen of a path in a missing directory succeeded")
	}
	w2.Emit(Event{Type: ConfigReload, Outcome: "success", Reason: "third"})
	w2.Close()
	if b, err := os.ReadFile(filepath.Join(sub+".gone", "a.jsonl")); err != nil || !strings.Contains(string(b), `"third"`) {
		t.Fatalf("old file after a failed Reopen: %q, %v", b, err)
	}
}

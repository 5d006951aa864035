package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBufferEvents is how many events may wait for the writer.
const DefaultBufferEvents = 4096

// Metrics count what the audit stream wrote and dropped.
type Metrics struct {
	events  *prometheus.CounterVec
	dropped prometheus.Counter
	errors  prometheus.Counter
}

// NewMetrics registers the audit metrics with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kseal_audit_events_total",
			Help: "Audit events queued for the audit stream, by type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kseal_audit_events_dropped_total",
			Help: "Audit events dropped because the queue (audit.bufferEvents) was full.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kseal_audit_write_errors_total",
			Help: "Audit events that could not be written to the audit stream.",
		}),
	}
	for _, t := range Types {
		m.events.WithLabelValues(string(t))
	}
	if reg != nil {
		reg.MustRegister(m.events, m.dropped, m.errors)
	}
	return m
}

// Writer writes events as JSON lines from a background goroutine. Emit
// never blocks: a full queue drops the event and counts it.
type Writer struct {
	w       io.Writer
	closer  io.Closer
	path    string          // the file written, "" for stdout, stderr or any other io.Writer
	reopen  chan chan error // Reopen's requests to the run goroutine, which owns w
	m       *Metrics
	now     func() time.Time
	queue   chan Event
	done    chan struct{}
	closeMu sync.RWMutex // Emit holds it shared so Close cannot close queue under it
	closed  bool
}

// NewWriter starts a writer of events to w, queueing up to buffer events
// (DefaultBufferEvents if 0). If w is an io.Closer other than os.Stdout
// or os.Stderr, Close closes it.
func NewWriter(w io.Writer, buffer int, m *Metrics) *Writer {
	if buffer <= 0 {
		buffer = DefaultBufferEvents
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	aw := &Writer{w: w, m: m, now: time.Now, queue: make(chan Event, buffer), done: make(chan struct{}), reopen: make(chan chan error)}
	if c, ok := w.(io.Closer); ok && w != os.Stdout && w != os.Stderr {
		aw.closer = c
	}
	go aw.run()
	return aw
}

// Open starts a writer to path: "stdout", "stderr", or a file, created
// if needed (mode 0600) and appended to.
func Open(path string, buffer int, m *Metrics) (*Writer, error) {
	switch path {
	case "":
		return nil, errors.New("audit: no path")
	case "stdout":
		return NewWriter(os.Stdout, buffer, m), nil
	case "stderr":
		return NewWriter(os.Stderr, buffer, m), nil
	}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	w := NewWriter(f, buffer, m)
	w.path = path
	return w, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return f, nil
}

// Reopen closes the audit file and opens path again, after the events
// already written, so that log rotation (logrotate's default "create" mode:
// rename, then signal) gets a fresh file. kseal calls it on SIGHUP. It does
// nothing for stdout, stderr or a writer that Open did not create. If the
// file cannot be opened, the old one is kept and the error returned.
func (w *Writer) Reopen() error {
	if w.path == "" {
		return nil
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return nil
	}
	reply := make(chan error, 1)
	select {
	case w.reopen <- reply:
		return <-reply
	case <-w.done:
		return nil
	}
}

// Emit queues e (stamping its time if zero), or drops it if the queue is
// full or the writer closed.
func (w *Writer) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = w.now()
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		w.m.dropped.Inc()
		return
	}
	select {
	case w.queue <- e:
		w.m.events.WithLabelValues(string(e.Type)).Inc()
	default:
		w.m.dropped.Inc()
	}
}

func (w *Writer) run() {
	defer close(w.done)
	var buf []byte
	for {
		select {
		case e, ok := <-w.queue:
			if !ok {
				return
			}
			buf = w.write(buf, e)
		case reply := <-w.reopen:
			// Events queued before Reopen go to the old file. The queue
			// cannot close meanwhile: Reopen holds closeMu shared.
			for n := len(w.queue); n > 0; n-- {
				buf = w.write(buf, <-w.queue)
			}
			reply <- w.reopenFile()
		}
	}
}

func (w *Writer) write(buf []byte, e Event) []byte {
	buf, err := AppendJSON(buf[:0], e)
	if err == nil {
		_, err = w.w.Write(buf)
	}
	if err != nil {
		w.m.errors.Inc()
	}
	return buf
}

// reopenFile swaps in a newly opened w.path; it runs on the run goroutine.
func (w *Writer) reopenFile() error {
	f, err := openFile(w.path)
	if err != nil {
		return err
	}
	if w.closer != nil {
		w.closer.Close()
	}
	w.w, w.closer = f, f
	return nil
}

// Close writes the queued events and stops the writer (and closes its
// file). Events emitted after are dropped.
func (w *Writer) Close() error {
	w.closeMu.Lock()
	if w.closed {
		w.closeMu.Unlock()
		return nil
	}
	w.closed = true
	close(w.queue)
	w.closeMu.Unlock()
	<-w.done
	if w.closer != nil {
		return w.closer.Close()
	}
	return nil
}

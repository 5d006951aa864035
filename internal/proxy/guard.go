package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/kseal/kseal/internal/audit"
)

// This file keeps one client's input from ending the process: every
// goroutine the proxy starts per listener, per connection or for broker
// discovery recovers a panic (a bug, whatever input caused it), logs it
// once with its stack, counts it in kseal_panics_total and ends only what
// that goroutine was doing: one connection, one accept, one discovery
// round. A filter that starts goroutines of its own carries their panics
// back to the connection's goroutine with filter.Panics.

// Where a panic was recovered: the side label of kseal_panics_total.
const (
	sideRequest   = "request"    // reading requests, request filters, forwarding
	sideResponse  = "response"   // reading responses, response filters, writing
	sideSetup     = "setup"      // TLS handshake, SNI routing, broker dial
	sideOwnClient = "own_client" // kseal's own requests for its internal topics (owntopic.go), and what callers do with the records
	sideAccept    = "accept"     // a listener's accept loop
	sideDiscovery = "discovery"  // the broker discovery loop
)

// errPanicked ends a connection's side after a recovered panic, which is
// already logged: the connection is closed without another log line.
var errPanicked = errors.New("panic recovered")

// Panics of one virtual cluster are logged (every one is counted) up to
// panicLogBurst at once, then one per panicLogEvery: a client repeating the
// input that triggers a bug cannot flood the log with stacks.
const (
	panicLogBurst = 10
	panicLogEvery = 10 * time.Second
)

// recovered logs and counts a recovered panic v. Call it from the deferred
// function that recovered, so the stack still shows where v was raised.
func (vc *virtualCluster) recovered(side string, log *slog.Logger, v any) {
	vc.srv.metrics.panics.WithLabelValues(vc.name, side).Inc()
	ok, suppressed := vc.panicLog.allow(time.Now(), panicLogBurst, panicLogEvery)
	if !ok {
		return
	}
	if vc.audit != nil {
		vc.audit.Emit(audit.Event{Type: audit.PanicRecovered, Where: side, Suppressed: suppressed})
	}
	log.Error("panic recovered: a bug in kseal; only what it interrupted is closed (please report this with the stack)",
		"side", side, "panic", fmt.Sprint(v), "stack", string(debug.Stack()), "suppressedSinceLast", suppressed)
}

// guard runs fn, turning a panic into errPanicked (after logging and
// counting it).
func (vc *virtualCluster) guard(side string, log *slog.Logger, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			vc.recovered(side, log, v)
			err = errPanicked
		}
	}()
	return fn()
}

// rateLog lets log lines through as a token bucket: burst at once, then
// one per interval; it counts the ones it held back.
type rateLog struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were held back
// since the last one logged.
func (r *rateLog) allow(now time.Time, burst int, every time.Duration) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() {
		r.tokens = float64(burst)
	} else {
		r.tokens = min(float64(burst), r.tokens+float64(now.Sub(r.last))/float64(every))
	}
	r.last = now
	if r.tokens < 1 {
		r.suppressed++
		return false, 0
	}
	r.tokens--
	n := r.suppressed
	r.suppressed = 0
	return true, n
}

// Refusal reasons: the reason label of kseal_connections_refused_total.
const (
	refusedMaxConnections = "max_connections"
	refusedTLS            = "tls_handshake"
	refusedSNI            = "sni"
	refusedUpstream       = "upstream_unreachable"
)

// refuseLogEvery bounds the log lines of connections refused at the limit.
const refuseLogEvery = 10 * time.Second

// Connections refused while being set up (failed TLS handshakes, unknown
// server names, unreachable brokers) are logged up to setupLogBurst at once,
// then one per setupLogEvery.
const (
	setupLogBurst = 20
	setupLogEvery = time.Second
)

// admit takes a connection slot of the virtual cluster, or closes c
// (accepted, then closed at once: the client sees the connection end and
// retries with its backoff) when limits.maxConnections are open.
func (vc *virtualCluster) admit(c net.Conn) bool {
	if vc.open.Add(1) <= int64(vc.cfg.Limits.MaxConnections) {
		return true
	}
	vc.open.Add(-1)
	vc.srv.metrics.refused.WithLabelValues(vc.name, refusedMaxConnections).Inc()
	if ok, n := vc.refuseLog.allow(time.Now(), 1, refuseLogEvery); ok {
		vc.log.Warn("refusing client connections: limits.maxConnections are open", "maxConnections", vc.cfg.Limits.MaxConnections,
			"client", addrString(c.RemoteAddr()), "refusedUnlogged", n)
		if vc.audit != nil {
			vc.audit.Emit(audit.Event{Type: audit.ConnectionRefused, Reason: refusedMaxConnections,
				RemoteAddr: addrString(c.RemoteAddr()), Suppressed: n})
		}
	}
	c.Close()
	return false
}

// release gives back the slot admit took.
func (vc *virtualCluster) release() { vc.open.Add(-1) }

package audit

import (
	"errors"
	"sync"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// KEKTracker turns the KMS's answers about KEK names into events on change
// only: kek_resolved the first time a name resolves (and when it resolves
// again after being missing or unusable), kek_missing and kek_unusable
// when a name enters that state. Answers repeated by cache refreshes and
// background checks emit nothing. It remembers at most maxKEKNames names
// (then starts over, which may repeat an event, never lose a change's
// first one). Safe for concurrent use; shared by the DEK managers a reload
// replaces, so a reload repeats nothing.
//
// kek_missing is the one a client can cause at will (a policy naming KEKs
// after topics, and a produce to ever new topic names), so it is
// rate-limited: missingBurst at once, then one per missingEvery, the next
// one written counting those left out (Suppressed).
type KEKTracker struct {
	e     Emitter
	mu    sync.Mutex
	state map[string]Type
	now   func() time.Time

	tokens     float64
	last       time.Time
	suppressed int
}

const (
	missingBurst = 100
	missingEvery = time.Second
)

const maxKEKNames = 10_000

// NewKEKTracker returns a tracker emitting to e (nil: a tracker that does
// nothing).
func NewKEKTracker(e Emitter) *KEKTracker { return &KEKTracker{e: e, now: time.Now} }

// Observe records the KMS's answer about name: err nil (resolved), or an
// error wrapping kms.ErrKeyNotFound (missing) or anything else (unusable:
// disabled, pending deletion, gone after use, or access refused).
// Transient failures must not be passed.
func (t *KEKTracker) Observe(name string, err error) {
	if t == nil || t.e == nil {
		return
	}
	typ, reason := KEKResolved, ""
	switch {
	case err == nil:
	case errors.Is(err, kms.ErrKeyNotFound):
		typ, reason = KEKMissing, "not_found"
	case errors.Is(err, kms.ErrKeyUnusable):
		typ, reason = KEKUnusable, "unusable"
	default:
		typ, reason = KEKUnusable, "refused"
	}
	t.mu.Lock()
	if t.state[name] == typ {
		t.mu.Unlock()
		return
	}
	if t.state == nil || len(t.state) >= maxKEKNames {
		t.state = map[string]Type{}
	}
	t.state[name] = typ
	suppressed := 0
	if typ == KEKMissing {
		var ok bool
		if ok, suppressed = t.allowMissing(); !ok {
			t.mu.Unlock()
			return
		}
	}
	t.mu.Unlock()
	ev := Event{Type: typ, KEK: name, Reason: reason, Suppressed: suppressed}
	if err != nil {
		ev.Detail = err.Error()
	}
	t.e.Emit(ev)
}

// allowMissing takes a token for a kek_missing event. Call with mu held.
func (t *KEKTracker) allowMissing() (bool, int) {
	now := t.now()
	if t.last.IsZero() {
		t.tokens = missingBurst
	} else {
		t.tokens = min(missingBurst, t.tokens+float64(now.Sub(t.last))/float64(missingEvery))
	}
	t.last = now
	if t.tokens < 1 {
		t.suppressed++
		return false, 0
	}
	t.tokens--
	n := t.suppressed
	t.suppressed = 0
	return true, n
}

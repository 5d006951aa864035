package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// kmsHealthTiming is how a virtual cluster's KMS readiness is kept.
type kmsHealthTiming struct {
	// every: the KMS is probed this often, and only when no KMS call
	// answered in the last period (or the last signal was a failure).
	every time.Duration
	// window: a cluster is ready while the KMS answered within it and
	// nothing failed since.
	window time.Duration
	// timeout bounds one probe.
	timeout time.Duration
}

// defaultKMSHealth is the timing Build and Reload use; tests shorten it.
var defaultKMSHealth = kmsHealthTiming{every: 10 * time.Second, window: 30 * time.Second, timeout: 5 * time.Second}

// kmsHealth tracks whether one KMS answers, from the DEK manager's own KMS
// calls and, when those are missing or failing, from a cheap probe made in
// the background: /readyz only reads the result, so it never waits for the
// KMS, and a readiness probe every second does not become a KMS call every
// second.
type kmsHealth struct {
	probe  func(context.Context) error
	timing kmsHealthTiming
	now    func() time.Time

	mu       sync.Mutex
	answered time.Time // the KMS last answered (a call succeeded, or said "not found")
	failing  error     // the latest signal was this failure (a call found the KMS unavailable, or a probe failed)
}

func newKMSHealth(k kms.KMS, timing kmsHealthTiming) *kmsHealth {
	h := &kmsHealth{timing: timing, now: time.Now}
	if p, ok := k.(kms.Prober); ok {
		h.probe = p.Probe
	} else {
		// A provider without a health call: resolving a KEK that need not
		// exist is an answer either way.
		h.probe = func(ctx context.Context) error {
			_, err := k.ResolveKEK(ctx, kms.ProbeKEK)
			if errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrKeyUnusable) {
				return nil
			}
			return err
		}
	}
	return h
}

// observe takes the outcome of a KMS call the DEK manager made. A call
// refused for one key (permissions, a bad EDEK) says nothing about the KMS
// being reachable and is ignored, as is a caller giving up.
func (h *kmsHealth) observe(err error) {
	switch {
	case err == nil, errors.Is(err, kms.ErrKeyNotFound), errors.Is(err, kms.ErrKeyUnusable):
		h.record(nil)
	case errors.Is(err, kms.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		h.record(err)
	}
}

func (h *kmsHealth) record(err error) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.answered = now
	}
	h.failing = err
}

// ready reports nil when the KMS answered within the window and has not
// failed since, or why not.
func (h *kmsHealth) ready() error {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.failing != nil && h.answered.IsZero():
		return fmt.Errorf("no answer yet: %v", h.failing)
	case h.failing != nil:
		return fmt.Errorf("unavailable (last answer %s ago): %v", ago(now.Sub(h.answered)), h.failing)
	case h.answered.IsZero():
		return errors.New("no answer yet")
	case now.Sub(h.answered) > h.timing.window:
		return fmt.Errorf("no answer for %s", ago(now.Sub(h.answered)))
	}
	return nil
}

// ago rounds an age for a message.
func ago(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// needsProbe reports whether nothing answered within a probe period, or
// the latest signal is a failure.
func (h *kmsHealth) needsProbe() bool {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failing != nil || h.answered.IsZero() || now.Sub(h.answered) >= h.timing.every
}

// run probes at once, then every period while needed, until ctx ends.
func (h *kmsHealth) run(ctx context.Context) {
	t := time.NewTicker(h.timing.every)
	defer t.Stop()
	for {
		if h.needsProbe() {
			pctx, cancel := context.WithTimeout(ctx, h.timing.timeout)
			err := h.probe(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil && pctx.Err() != nil {
				err = fmt.Errorf("probe timed out after %s: %w", h.timing.timeout, err)
			}
			h.record(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready reports nil when kseal can serve: every virtual cluster has reached
// its upstream cluster, and every encrypting one's KMS answered recently.
// Otherwise the error names each check that failed. A KMS outage makes
// kseal unready, never unhealthy: /healthz does not look at it.
func (a *App) Ready() error {
	var problems []string
	if err := a.Server.Ready(); err != nil {
		problems = append(problems, err.Error())
	}
	names := make([]string, 0, len(a.clusters))
	for name := range a.clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := a.clusters[name].health.Load().ready(); err != nil {
			problems = append(problems, fmt.Sprintf("virtual cluster %q: kms: %v", name, err))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

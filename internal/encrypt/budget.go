package encrypt

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the memory limits (docs/config.md).
const (
	// DefaultMaxRewriteBytes is the default process-wide budget for the
	// buffers Produce rewrites use (limits.maxRewriteBytes).
	DefaultMaxRewriteBytes = 1 << 30
	// DefaultMaxProduceRewriteBytes is the default per-request budget
	// (virtualClusters[].limits.maxProduceRewriteBytes).
	DefaultMaxProduceRewriteBytes = 128 << 20
)

// budgetWait is how long a Produce request waits for the process-wide
// budget to have room before it is refused with a retriable error.
const budgetWait = time.Second

var (
	// errRequestBudget: the request needs more than its own budget.
	errRequestBudget = errors.New("request over limits.maxProduceRewriteBytes")
	// errProcessBudget: the process-wide budget stayed full for budgetWait.
	errProcessBudget = errors.New("limits.maxRewriteBytes in use by other requests")
)

// Budget is the process-wide memory budget for rewrite buffers, shared by
// every connection of every virtual cluster: bytes are reserved from it
// before a Produce request's decompression, rewrite and rebuilt-request
// buffers grow, and given back when the filter has finished with the
// request. It is safe for concurrent use.
//
// It also pools the rewrite buffers of finished requests that were too
// large for their connection to keep (over maxKeptOut), so the next large
// request of any connection does not grow one from nothing: at most
// poolBufs of them, together at most an eighth of the budget, reserved
// from it while pooled (kseal_rewrite_buffer_pool_bytes) and dropped as
// soon as a request needs the room.
type Budget struct {
	max    int64
	used   atomic.Int64 // reserved, by requests and the pool
	pooled atomic.Int64 // reserved by the pool
	pool   chan []byte
	put    func([]byte) // putBuf, as a func made once
}

// poolBufs is how many rewrite buffers a Budget pools at most.
const poolBufs = 8

// NewBudget returns a budget of max bytes (DefaultMaxRewriteBytes if <= 0)
// and registers kseal_rewrite_budget_bytes and
// kseal_rewrite_budget_limit_bytes with reg (nil: not registered).
func NewBudget(max int64, reg prometheus.Registerer) *Budget {
	if max <= 0 {
		max = DefaultMaxRewriteBytes
	}
	b := &Budget{max: max, pool: make(chan []byte, poolBufs)}
	b.put = b.putBuf
	if reg != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kseal_rewrite_budget_bytes",
				Help: "Bytes of the process-wide rewrite budget (limits.maxRewriteBytes) reserved by Produce requests being rewritten and by pooled rewrite buffers (kseal_rewrite_buffer_pool_bytes).",
			}, func() float64 { return float64(b.used.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kseal_rewrite_budget_limit_bytes",
				Help: "The process-wide rewrite budget, limits.maxRewriteBytes.",
			}, func() float64 { return float64(b.max) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "kseal_rewrite_buffer_pool_bytes",
				Help: "Bytes of the process-wide rewrite budget held by pooled rewrite buffers of finished Produce requests (at most an eighth of limits.maxRewriteBytes, given back when requests need the room).",
			}, func() float64 { return float64(b.pooled.Load()) }),
		)
	}
	return b
}

// defaultBudget is the budget of filters given none (tests, tools).
var defaultBudget = NewBudget(DefaultMaxRewriteBytes, nil)

// InUse returns the bytes requests reserve now (not the pool's).
func (b *Budget) InUse() int64 { return b.used.Load() - b.pooled.Load() }

// Pooled returns the bytes of the pooled buffers.
func (b *Budget) Pooled() int64 { return b.pooled.Load() }

// getBuf takes a pooled buffer of at least n bytes' capacity, or returns
// nil. Its bytes are the caller's to account from then on. A pooled buffer
// too small for n is dropped (the caller makes a larger one, which it may
// pool in its place).
func (b *Budget) getBuf(n int) []byte {
	for range poolBufs {
		select {
		case buf := <-b.pool:
			b.pooled.Add(-int64(cap(buf)))
			b.release(int64(cap(buf)))
			if cap(buf) >= n {
				return buf[:0]
			}
		default:
			return nil
		}
	}
	return nil
}

// putBuf pools buf, which its caller is done with, if the pool has room
// for it and the budget for its bytes; otherwise buf is left to the
// garbage collector.
func (b *Budget) putBuf(buf []byte) {
	c := int64(cap(buf))
	for {
		p := b.pooled.Load()
		if c == 0 || p+c > b.max/8 {
			return
		}
		if b.pooled.CompareAndSwap(p, p+c) {
			break
		}
	}
	if !b.tryAcquire(c) {
		b.pooled.Add(-c)
		return
	}
	select {
	case b.pool <- buf[:0]:
	default:
		b.pooled.Add(-c)
		b.release(c)
	}
}

// drain drops every pooled buffer, giving its bytes back to the budget,
// and reports whether there was any.
func (b *Budget) drain() bool {
	freed := false
	for {
		select {
		case buf := <-b.pool:
			b.pooled.Add(-int64(cap(buf)))
			b.release(int64(cap(buf)))
			freed = true
		default:
			return freed
		}
	}
}

func (b *Budget) tryAcquire(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// acquire reserves n bytes, waiting up to budgetWait (or ctx) for room.
func (b *Budget) acquire(ctx context.Context, n int64) bool {
	if b.tryAcquire(n) {
		return true
	}
	// Pooled buffers give way to requests.
	if b.drain() && b.tryAcquire(n) {
		return true
	}
	if n > b.max {
		return false // it never fits
	}
	deadline := time.Now().Add(budgetWait)
	sleep := time.Millisecond
	for time.Now().Before(deadline) {
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		if b.drain(); b.tryAcquire(n) {
			return true
		}
		sleep = min(2*sleep, 20*time.Millisecond)
	}
	return false
}

func (b *Budget) release(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// ticket is one request's account: bytes counted against the per-request
// limit (used: decompressed and rewritten bytes) and bytes reserved from the
// process-wide budget (held: those, plus the reused scratch buffers and the
// rebuilt request). A scratch buffer (decompression, uncompressed rebuild)
// is reused batch after batch, so it holds the largest size one batch
// needed rather than their sum. A ticket belongs to one connection and is
// reused; begin starts a request, end gives every reserved byte back.
type ticket struct {
	b     *Budget
	ctx   context.Context
	limit int64

	used    int64
	held    int64
	scratch [2]int64 // held for scratchDecompress and scratchRebuild
	err     error    // the first refusal, errRequestBudget or errProcessBudget

	reserveFn func(int) error // reserves scratchDecompress, made once
}

// Scratch buffers a ticket accounts.
const (
	scratchDecompress = iota
	scratchRebuild
)

func (t *ticket) begin(ctx context.Context, b *Budget, limit int64) {
	t.b, t.ctx, t.limit = b, ctx, limit
	t.used, t.held, t.scratch, t.err = 0, 0, [2]int64{}, nil
	if t.reserveFn == nil {
		t.reserveFn = func(total int) error { return t.reserveScratch(scratchDecompress, total) }
	}
}

func (t *ticket) end() {
	if t.b != nil {
		t.b.release(t.held)
	}
	t.held, t.scratch, t.ctx = 0, [2]int64{}, nil
}

// reserve reserves n bytes from the process without counting them against
// the request (copies of bytes already counted).
func (t *ticket) reserve(n int) error {
	if t.err != nil {
		return t.err
	}
	if !t.acquire(int64(n)) {
		return t.err
	}
	t.held += int64(n)
	return nil
}

// acquire reserves n bytes from the process, setting t.err when it cannot:
// errProcessBudget when other requests hold the room, errRequestBudget when
// n is more than the whole budget (waiting would never help).
func (t *ticket) acquire(n int64) bool {
	if t.held+n > t.b.max {
		t.err = errRequestBudget
		return false
	}
	if !t.b.acquire(t.ctx, n) {
		t.err = errProcessBudget
		return false
	}
	return true
}

// tryReserve reserves n bytes from the process, as reserve does, if the
// budget has room now; it never waits, and a failure is not a refusal.
func (t *ticket) tryReserve(n int) bool {
	if t.err != nil || t.held+int64(n) > t.b.max || !t.b.tryAcquire(int64(n)) {
		return false
	}
	t.held += int64(n)
	return true
}

// refund gives back n bytes of a charge that turned out not to be needed.
func (t *ticket) refund(n int) {
	if n <= 0 {
		return
	}
	t.used -= int64(n)
	t.held -= int64(n)
	t.b.release(int64(n))
}

// remaining is what the per-request limit still allows.
func (t *ticket) remaining() int64 { return max(0, t.limit-t.used) }

// charge counts n bytes against the request and reserves them from the
// process before the caller allocates them.
func (t *ticket) charge(n int) error {
	if t.err != nil {
		return t.err
	}
	if t.used+int64(n) > t.limit {
		t.err = errRequestBudget
		return t.err
	}
	if !t.acquire(int64(n)) {
		return t.err
	}
	t.used += int64(n)
	t.held += int64(n)
	return nil
}

// count adds n bytes to the request's count alone (bytes already reserved,
// e.g. a batch's decompressed size once known).
func (t *ticket) count(n int) error {
	if t.err != nil {
		return t.err
	}
	t.used += int64(n)
	if t.used > t.limit {
		t.err = errRequestBudget
	}
	return t.err
}

// reserveScratch makes sure total bytes of a reused scratch buffer are
// reserved from the process.
func (t *ticket) reserveScratch(slot int, total int) error {
	if t.err != nil {
		return t.err
	}
	need := int64(total) - t.scratch[slot]
	if need <= 0 {
		return nil
	}
	if !t.acquire(need) {
		return t.err
	}
	t.scratch[slot] += need
	t.held += need
	return nil
}

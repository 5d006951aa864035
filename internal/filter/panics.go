package filter

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"
)

// Panics carries a panic out of the goroutines a filter starts for one
// exchange (parallel work on a response, say) to the connection's
// goroutine, whose guard recovers it: a panic in a goroutine of its own
// would end the process. Each goroutine, the caller's own share of the work
// included, runs `defer p.Recover()`; once all are done the caller calls
// p.Repanic(). The first panic is kept, with its stack.
type Panics struct {
	first atomic.Pointer[string]
}

// Recover must be called directly by defer.
func (p *Panics) Recover() {
	if v := recover(); v != nil {
		msg := fmt.Sprintf("%v\n[recovered in a goroutine of the exchange]\n%s", v, debug.Stack())
		p.first.CompareAndSwap(nil, &msg)
	}
}

// Repanic panics with the first panic Recover caught, if any.
func (p *Panics) Repanic() {
	if msg := p.first.Load(); msg != nil {
		panic(*msg)
	}
}

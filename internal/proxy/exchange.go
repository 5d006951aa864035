package proxy

import (
	"time"

	"github.com/kseal/kseal/internal/filter"
)

// exchange is a filter.Exchange as the plumbing queues it between a
// connection's request and response sides, with what only the plumbing
// needs: the times of kseal's latency metrics.
type exchange struct {
	filter.Exchange
	// started is when the request was read.
	started time.Time
	// added is the time the request side spent in kseal (header parsing
	// and request filters), for kseal_proxy_added_latency_seconds.
	added time.Duration
}

// conn is the filter.Conn of its exchanges: topics.go (TopicName),
// identity.go (ClientIdentity), owntopic.go (Upstream), tail.go
// (NewestBatches).
var _ filter.Conn = (*conn)(nil)

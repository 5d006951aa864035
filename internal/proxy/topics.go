package proxy

import (
	"context"
	"sync"
	"time"
)

// maxTopicNames bounds the topic id cache; past it the cache starts over.
const maxTopicNames = 100_000

// topicNames maps topic ids to names, learned from every Metadata response
// that passes through and, on a miss, from a Metadata request of kseal's
// own. Topic ids never change meaning (a recreated topic gets a new id), so
// entries need no expiry.
type topicNames struct {
	mu          sync.RWMutex
	names       map[[16]byte]string
	lastRefresh time.Time
}

// maxTopicNameLen is Kafka's limit on topic names: a longer name from a
// broker is not a topic kseal needs to know (and would only grow the cache).
const maxTopicNameLen = 249

func (t *topicNames) learn(name []byte, id [16]byte) {
	if len(name) == 0 || len(name) > maxTopicNameLen {
		return
	}
	t.mu.RLock()
	known := t.names[id] == string(name)
	t.mu.RUnlock()
	if known {
		return
	}
	t.mu.Lock()
	if t.names == nil || len(t.names) >= maxTopicNames {
		t.names = map[[16]byte]string{}
	}
	t.names[id] = string(name)
	t.mu.Unlock()
}

func (t *topicNames) lookup(id [16]byte) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n, ok := t.names[id]
	return n, ok
}

// refreshInterval rate-limits lookups of unknown ids against the cluster.
const refreshInterval = time.Second

// TopicName implements filter.Conn: the name of a topic id, asking the
// upstream cluster when it is not known yet (at most once a second per
// virtual cluster).
func (c *conn) TopicName(ctx context.Context, id [16]byte) (string, bool) {
	vc := c.vc
	if n, ok := vc.topics.lookup(id); ok {
		return n, true
	}
	vc.topics.mu.Lock()
	due := time.Since(vc.topics.lastRefresh) >= refreshInterval
	if due {
		vc.topics.lastRefresh = time.Now()
	}
	vc.topics.mu.Unlock()
	if !due {
		return "", false
	}
	if err := vc.metadata(ctx, true); err != nil {
		if !isSASLError(err) { // those are logged once by noteOwn
			vc.log.Warn("cannot resolve topic id", "error", err.Error())
		}
		return "", false
	}
	return vc.topics.lookup(id)
}

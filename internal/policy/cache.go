package policy

import (
	"hash/maphash"
	"strings"
	"sync"
)

// cache maps topic names to results. It is split into shards, each behind
// its own RWMutex, so that lookups (read-locked, allocation-free) from many
// connections rarely touch the same lock word. It is bounded: a full shard
// is emptied before the next insert. Clients choose topic names, so a flood
// of distinct names only costs recomputation, never memory.
type cache[V any] struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]shard[V]
}

const (
	cacheShards = 16
	// maxCachedTopic keeps absurd names (Kafka allows 249 bytes) out of
	// the cache; they are still answered, just not remembered.
	maxCachedTopic = 255
)

type shard[V any] struct {
	mu sync.RWMutex
	m  map[string]V
	_  [32]byte // keep neighbouring shards' locks off one cache line
}

func newCache[V any](size int) *cache[V] {
	c := &cache[V]{seed: maphash.MakeSeed(), perShard: (size + cacheShards - 1) / cacheShards}
	for i := range c.shards {
		c.shards[i].m = make(map[string]V)
	}
	return c
}

func (c *cache[V]) get(topic string) (V, bool) {
	s := &c.shards[maphash.String(c.seed, topic)%cacheShards]
	s.mu.RLock()
	v, ok := s.m[topic]
	s.mu.RUnlock()
	return v, ok
}

func (c *cache[V]) getBytes(topic []byte) (V, bool) {
	s := &c.shards[maphash.Bytes(c.seed, topic)%cacheShards]
	s.mu.RLock()
	v, ok := s.m[string(topic)] // no allocation: the compiler borrows the bytes
	s.mu.RUnlock()
	return v, ok
}

func (c *cache[V]) put(topic string, v V) {
	if len(topic) > maxCachedTopic || c.perShard <= 0 {
		return
	}
	s := &c.shards[maphash.String(c.seed, topic)%cacheShards]
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		clear(s.m)
	}
	// Clone: callers may pass strings that alias reused request buffers.
	s.m[strings.Clone(topic)] = v
	s.mu.Unlock()
}

func (c *cache[V]) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

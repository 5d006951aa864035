package proxy

import (
	"strings"
	"testing"
)

// The topic id cache keeps what Kafka can name (1 to 249 bytes): names from
// a broker past that are not kept, so the cache's memory stays bounded by
// maxTopicNames times Kafka's limit.
func TestTopicNamesBounded(t *testing.T) {
	var tn topicNames
	long := strings.Repeat("x", maxTopicNameLen+1)
	tn.learn([]byte(long), [16]byte{1})
	tn.learn(nil, [16]byte{2})
	tn.learn([]byte(strings.Repeat("y", maxTopicNameLen)), [16]byte{3})
	if _, ok := tn.lookup([16]byte{1}); ok {
		t.Error("a 250-byte name was kept")
	}
	if _, ok := tn.lookup([16]byte{2}); ok {
		t.Error("an empty name was kept")
	}
	if n, ok := tn.lookup([16]byte{3}); !ok || len(n) != maxTopicNameLen {
		t.Errorf("a 249-byte name: %q, %v", n, ok)
	}
	for i := 0; i < maxTopicNames+10; i++ {
		tn.learn([]byte("t"), [16]byte{byte(i), byte(i >> 8), byte(i >> 16), 9})
	}
	if n := len(tn.names); n > maxTopicNames {
		t.Errorf("%d names cached, at most %d", n, maxTopicNames)
	}
}

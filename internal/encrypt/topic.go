package encrypt

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// maxTopicLen is Kafka's longest topic name.
const maxTopicLen = 249

// topicChars marks the bytes Kafka allows in a topic name: [a-zA-Z0-9._-].
var topicChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['.'], t['_'], t['-'] = true, true, true
	return t
}()

// validTopic applies Kafka's rules for topic names: 1 to 249 bytes of
// [a-zA-Z0-9._-], and neither "." nor "..". Every name a client or a broker
// gives the filter passes here before it is looked up in the policy, used as
// a metric label or logged.
func validTopic[T ~string | ~[]byte](name T) bool {
	n := len(name)
	if n == 0 || n > maxTopicLen || string(name) == "." || string(name) == ".." {
		return false
	}
	for i := 0; i < n; i++ {
		if !topicChars[name[i]] {
			return false
		}
	}
	return true
}

// logTopic is how a topic name appears in log lines: as it is when valid,
// quoted in ASCII and cut to the longest valid length otherwise (an invalid
// name is whatever bytes a client sent).
func logTopic[T ~string | ~[]byte](name T) string {
	if validTopic(name) {
		return string(name)
	}
	s := string(name)
	if len(s) > maxTopicLen {
		s = s[:maxTopicLen]
	}
	return "invalid:" + strconv.QuoteToASCII(s)
}

// otherTopics is the topic label value counting topics past the label cap.
// It cannot be a Kafka topic name ('<' and '>' are not allowed in one), so it
// never mixes with a real topic's series.
const otherTopics = "<other>"

// DefaultMaxTopicLabels is the default cap on distinct topic label values.
const DefaultMaxTopicLabels = 1000

// topicCounters are one topic's kseal_records_total children.
type topicCounters struct {
	encrypted, plaintext prometheus.Counter
}

// topicLabels bounds the topic label of kseal_records_total: the first max
// distinct valid topic names seen get their own series, every later one
// counts under otherTopics. Lookups read an immutable map through an atomic
// pointer (no lock, no allocation); a new topic copies the map under a mutex,
// which happens at most max times.
type topicLabels struct {
	vec   *prometheus.CounterVec
	max   atomic.Int64
	other *topicCounters

	mu sync.Mutex
	m  atomic.Pointer[map[string]*topicCounters]
}

func newTopicLabels(vec *prometheus.CounterVec) *topicLabels {
	l := &topicLabels{vec: vec}
	l.max.Store(DefaultMaxTopicLabels)
	l.other = l.children(otherTopics)
	empty := map[string]*topicCounters{}
	l.m.Store(&empty)
	return l
}

func (l *topicLabels) children(label string) *topicCounters {
	return &topicCounters{
		encrypted: l.vec.WithLabelValues(label, "produce", "encrypted"),
		plaintext: l.vec.WithLabelValues(label, "produce", "plaintext"),
	}
}

// get returns the counters for topic, which must have passed validTopic.
func (l *topicLabels) get(topic string) *topicCounters {
	m := *l.m.Load()
	if c, ok := m[topic]; ok {
		return c
	}
	max := int(l.max.Load())
	if len(m) >= max {
		return l.other
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m = *l.m.Load()
	if c, ok := m[topic]; ok {
		return c
	}
	if len(m) >= max {
		return l.other
	}
	next := make(map[string]*topicCounters, len(m)+1)
	for k, v := range m {
		next[k] = v
	}
	name := strings.Clone(topic) // topic may alias a request buffer
	c := l.children(name)
	next[name] = c
	l.m.Store(&next)
	return c
}

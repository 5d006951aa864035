package encrypt

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/policy"
)

// kseal's own authorization (docs/authorization.md): a rule's `access`
// section names the client identities (filter.Identity) that may read its
// topics decrypted and produce to them. The checks run once per partition,
// before any key is asked for: a denied reader causes no KMS call.

// errAccessDenied: a client whose identity a rule's access list does not
// name (produce, and fetch under onDenied: ERROR). Not retriable.
var errAccessDenied = kerr.TopicAuthorizationFailed

// reasonAccessDenied is the metric, log and audit reason of a denial.
const reasonAccessDenied = "access_denied"

// Operations of kseal_access_denied_total.
const (
	opProduce    = "produce"
	opFetch      = "fetch"
	opShareFetch = "share_fetch"
)

// logDenied is the logLimiter partition key of access denials (one line
// per topic and logEvery).
const logDenied = -5

// produceAccess refuses a partition of a Produce whose rule's
// access.produce does not name the client.
func (f *Filter) produceAccess(x *filter.Exchange, topic string, sel policy.Selection) *partitionError {
	a := sel.Access()
	if a == nil || x == nil {
		return nil
	}
	id := x.Identity()
	if a.MayProduce(id.Names()) {
		return nil
	}
	f.m.access.denied(f, topic, opProduce)
	return &partitionError{code: errAccessDenied, reason: reasonAccessDenied, identity: id.String(),
		err: fmt.Errorf("client %s may not produce to this topic (encryption.policy.rules[%d].access.produce)", id, sel.Rule)}
}

// readDenied returns the access section that denies the exchange's client
// the decrypted records of topic, or nil when it may read them: the rule
// of the topic and, for a replica topic (policy replicas), also the rule
// of its origin topic, whose records it holds.
func readDenied(cur *state, x *filter.Exchange, topic string, sel policy.Selection) *policy.Access {
	a := sel.Access()
	var origin *policy.Access
	if aad := cur.policy.AADTopic(topic); aad != topic {
		origin = cur.policy.Select(aad).Access()
	}
	if a == nil && origin == nil {
		return nil
	}
	names := x.Identity().Names()
	if !a.MayDecrypt(names) {
		return a
	}
	if !origin.MayDecrypt(names) {
		return origin
	}
	return nil
}

// fetchAccess decides a fetched partition of a client that may not
// decrypt it: under CIPHERTEXT it is left as stored (deliver true), under
// ERROR it gets a decryptError answering TOPIC_AUTHORIZATION_FAILED. Both
// are counted, logged and audited here.
func (f *Filter) fetchAccess(x *filter.Exchange, a *policy.Access, topic string, share bool) (deliver bool, e *decryptError) {
	op := opFetch
	if share {
		op = opShareFetch
	}
	f.m.access.denied(f, topic, op)
	id := x.Identity()
	mode := a.OnDenied()
	if n, ok := f.logLimit.allow(topic, logDenied, time.Now()); ok {
		f.log.Warn("client may not decrypt this topic: its records are not decrypted",
			"topic", topic, "identity", id.String(), "onDenied", string(mode), "suppressedSinceLast", n)
		if f.opts.Audit != nil {
			ev := audit.Event{Type: audit.AuthorizationRefused, Topic: topic, Reason: reasonAccessDenied,
				Identity: id.String(), Detail: op + ", onDenied " + string(mode), Suppressed: n}
			if mode == policy.DeniedError {
				ev.ErrorCode, ev.ErrorName = errAccessDenied.Code, errAccessDenied.Message
			}
			f.opts.Audit.Emit(ev)
		}
	}
	if mode == policy.DeniedCiphertext {
		return true, nil
	}
	return false, &decryptError{code: errAccessDenied, reason: reasonAccessDenied, offset: -1,
		err: fmt.Errorf("client %s may not decrypt this topic (access.decrypt)", id)}
}

// denyPartition answers a fetched partition with TOPIC_AUTHORIZATION_FAILED
// and no records (already counted and logged by fetchAccess).
func denyPartition(parts *filter.Partitions, i int) {
	parts.SetErrorCode(i, errAccessDenied.Code)
	parts.SetRecords(i, []byte{})
}

// accessMetrics is kseal_access_denied_total, its topic label bounded like
// kseal_records_total's (limits.maxTopicLabels; the rest as "<other>").
type accessMetrics struct {
	vec *prometheus.CounterVec

	mu sync.Mutex
	m  atomic.Pointer[map[accessKey]prometheus.Counter]
}

type accessKey struct{ topic, op string }

func newAccessMetrics() *accessMetrics {
	a := &accessMetrics{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kseal_access_denied_total",
		Help: "Partitions refused by a policy rule's access section, by topic (at most maxTopicLabels topics, the rest as \"<other>\") and operation (produce, fetch, share_fetch).",
	}, []string{"topic", "operation"})}
	empty := map[accessKey]prometheus.Counter{}
	a.m.Store(&empty)
	return a
}

// denied counts one denial. A known topic costs one map read (no lock,
// no allocation); a new one copies the map under a mutex, at most
// maxTopicLabels times per operation.
func (a *accessMetrics) denied(f *Filter, topic, op string) {
	m := *a.m.Load()
	if c, ok := m[accessKey{topic, op}]; ok {
		c.Inc()
		return
	}
	max := int(f.m.topics.max.Load()) * 3 // three operations
	a.mu.Lock()
	defer a.mu.Unlock()
	m = *a.m.Load()
	k := accessKey{topic, op}
	if c, ok := m[k]; ok {
		c.Inc()
		return
	}
	if len(m) >= max {
		k.topic = otherTopics
		if c, ok := m[k]; ok {
			c.Inc()
			return
		}
	}
	next := make(map[accessKey]prometheus.Counter, len(m)+1)
	for kk, v := range m {
		next[kk] = v
	}
	k.topic = strings.Clone(k.topic) // topic may alias a response buffer
	c := a.vec.WithLabelValues(k.topic, op)
	next[k] = c
	a.m.Store(&next)
	c.Inc()
}

package encrypt

import (
	"strings"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// inputReasons are the produce refusal reasons that mean invalid or hostile
// input (audit event input_refused); the others are refusals by policy or
// for want of a key (produce_refused).
var inputReasons = map[string]bool{
	"forged_marker":       true,
	"control_batch":       true,
	"budget_request":      true,
	"budget_process":      true,
	"duplicate_partition": true,
	"invalid_topic":       true,
	"unknown_topic_id":    true,
	"corrupt":             true,
	"key_topic":           true,
}

// auditTopic is topic if it may appear in an audit event: a valid name
// the broker or client gave, not a placeholder.
func auditTopic(topic, reason string) string {
	if reason == "invalid_topic" || reason == "unknown_topic_id" || !validTopic(topic) {
		return ""
	}
	return topic
}

// auditRefusal emits a refused produce (called where it is logged, so
// rate-limited alike). partition < 0: the request as a whole.
func (f *Filter) auditRefusal(topic string, partition int32, pe *partitionError, suppressed int) {
	if f.opts.Audit == nil {
		return
	}
	ev := audit.Event{Type: audit.ProduceRefused, Reason: pe.reason, ErrorCode: pe.code.Code, ErrorName: pe.code.Message,
		Suppressed: suppressed}
	if inputReasons[pe.reason] {
		ev.Type = audit.InputRefused
	}
	if pe.reason == reasonAccessDenied {
		ev.Type, ev.Identity = audit.AuthorizationRefused, pe.identity
	}
	if ev.Topic = auditTopic(topic, pe.reason); ev.Topic != "" && partition >= 0 {
		ev.Partition = audit.Int32(partition)
	}
	f.opts.Audit.Emit(ev)
}

// auditDecrypt emits fetched records refused (called where it is logged,
// so rate-limited alike).
func (f *Filter) auditDecrypt(topic string, partition int32, e *decryptError, suppressed int) {
	if f.opts.Audit == nil {
		return
	}
	ev := audit.Event{Type: audit.DecryptRefused, Reason: e.reason, ErrorCode: e.code.Code, ErrorName: e.code.Message,
		Suppressed: suppressed}
	if e.kek != "" && e.kek != "unknown" {
		// describeKEK's "name version".
		ev.KEK, ev.KEKVersion, _ = strings.Cut(e.kek, " ")
	}
	if e.dekID != (recordcrypt.DEKID{}) {
		ev.EDEKFingerprint = e.dekID.String()
	}
	if ev.Topic = auditTopic(topic, e.reason); ev.Topic != "" {
		ev.Partition = audit.Int32(partition)
	}
	if e.offset >= 0 {
		ev.Offset = audit.Int64(e.offset)
	}
	f.opts.Audit.Emit(ev)
}

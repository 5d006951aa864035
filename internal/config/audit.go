package config

import "fmt"

// Audit is the `audit` section: the stream of security events
// (docs/audit.md). Off unless Path is set.
type Audit struct {
	// Path is where events go: "stdout", "stderr", or a file (created
	// with mode 0600, appended to). Empty: no audit events.
	Path string `yaml:"path"`
	// BufferEvents bounds the events waiting to be written; past it
	// events are dropped (kseal_audit_events_dropped_total), never waited
	// for. 0: DefaultAuditBufferEvents.
	BufferEvents int `yaml:"bufferEvents"`
}

// Bounds of audit.bufferEvents.
const (
	DefaultAuditBufferEvents = 4096
	MaxAuditBufferEvents     = 1 << 20
)

// validate appends the audit section's problems to errs.
func (a Audit) validate(errs Errors) Errors {
	if a.BufferEvents < 0 || a.BufferEvents > MaxAuditBufferEvents {
		errs = append(errs, &Problem{Path: "audit.bufferEvents", Msg: fmt.Sprintf("%d is out of range (0 for the default %d, at most %d)",
			a.BufferEvents, DefaultAuditBufferEvents, MaxAuditBufferEvents)})
	}
	return errs
}

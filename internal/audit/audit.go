// Package audit is kseal's stream of security events for a SIEM: one JSON
// object per line, separate from the log, with a stable schema
// (docs/audit.md). Emitting never blocks: events wait in a bounded queue
// for a background writer, and when the queue is full they are dropped and
// counted (kseal_audit_events_dropped_total).
//
// An event never holds a secret, key material, or record keys or values:
// only names (topics after validation, KEK names), numbers and fixed
// reason strings. Callers must keep it so.
package audit

import (
	"encoding/json"
	"time"
)

// Version is the schema version written in every event's "version" field.
// It changes only when a field changes meaning or is removed; new event
// types and new fields keep it.
const Version = 1

// Type names an event; the values are stable (docs/audit.md).
type Type string

// Event types.
const (
	KEKResolved       Type = "kek_resolved"    // a KEK name resolved for the first time, or again after missing/unusable
	KEKMissing        Type = "kek_missing"     // the KMS reports no such KEK (on change)
	KEKUnusable       Type = "kek_unusable"    // disabled, pending deletion, or deleted after use (on change)
	DEKGenerated      Type = "dek_generated"   // a new data key was made under a KEK
	DecryptRefused    Type = "decrypt_refused" // fetched records were not delivered decrypted
	ProduceRefused    Type = "produce_refused" // a produce refused by policy or for want of a key
	InputRefused      Type = "input_refused"   // a produce refused as invalid or hostile input
	ConfigReload      Type = "config_reload"   // a reload applied or refused
	PanicRecovered    Type = "panic_recovered"
	ConnectionRefused Type = "connection_refused"
	// AuthorizationRefused: a policy rule's access section refused a
	// client (docs/authorization.md).
	AuthorizationRefused Type = "authorization_refused"
)

// Types lists every event type, for metrics and docs.
var Types = []Type{KEKResolved, KEKMissing, KEKUnusable, DEKGenerated, DecryptRefused, ProduceRefused,
	InputRefused, ConfigReload, PanicRecovered, ConnectionRefused, AuthorizationRefused}

// Event is one security event. Zero fields are left out of the JSON line;
// Partition and Offset are pointers because 0 is a real value.
type Event struct {
	Type Type
	// Time is set by the Emitter when zero.
	Time           time.Time
	VirtualCluster string

	Topic     string // only a name that passed validation
	Partition *int32
	Offset    *int64

	// Reason is a stable, machine-readable cause (docs/audit.md).
	Reason string
	// ErrorCode is the Kafka error code answered to the client, if any;
	// ErrorName its name (e.g. POLICY_VIOLATION).
	ErrorCode int16
	ErrorName string

	KEK        string // a KEK name (never key material)
	KEKVersion string
	// EDEKFingerprint identifies a data key by its wrapped form (the hex
	// DEK id kseal's log lines and `kseal inspect` show); never the key.
	EDEKFingerprint string

	Outcome    string // config_reload: "success" or "failure"
	RemoteAddr string // connection_refused: the client's address
	Where      string // panic_recovered: the part of kseal that recovered it
	// Identity is the client's (authorization_refused): a principal such
	// as User:alice or a certificate subject; never a secret.
	Identity string
	// Suppressed counts the events of the same kind and key that were
	// rate-limited away since the last one written.
	Suppressed int
	// Detail is human-readable text; not part of the stable schema.
	Detail string
}

// Emitter takes events. Emit must not block and must be safe for
// concurrent use.
type Emitter interface {
	Emit(Event)
}

// Int32 and Int64 make the pointers Event's optional numbers need.
func Int32(v int32) *int32 { return &v }

// Int64 returns &v.
func Int64(v int64) *int64 { return &v }

// wire is an event's JSON form, its field order the schema's.
type wire struct {
	Version         int    `json:"version"`
	Time            string `json:"time"`
	Type            Type   `json:"type"`
	VirtualCluster  string `json:"virtual_cluster,omitempty"`
	Topic           string `json:"topic,omitempty"`
	Partition       *int32 `json:"partition,omitempty"`
	Offset          *int64 `json:"offset,omitempty"`
	Reason          string `json:"reason,omitempty"`
	ErrorCode       int16  `json:"error_code,omitempty"`
	ErrorName       string `json:"error_name,omitempty"`
	KEK             string `json:"kek,omitempty"`
	KEKVersion      string `json:"kek_version,omitempty"`
	EDEKFingerprint string `json:"edek_fingerprint,omitempty"`
	Outcome         string `json:"outcome,omitempty"`
	RemoteAddr      string `json:"remote_addr,omitempty"`
	Where           string `json:"where,omitempty"`
	Identity        string `json:"identity,omitempty"`
	Suppressed      int    `json:"suppressed,omitempty"`
	Detail          string `json:"detail,omitempty"`
}

// maxDetail bounds the detail text of one event.
const maxDetail = 1024

// AppendJSON appends e as one JSON line (with its newline) to dst.
func AppendJSON(dst []byte, e Event) ([]byte, error) {
	if len(e.Detail) > maxDetail {
		e.Detail = e.Detail[:maxDetail]
	}
	b, err := json.Marshal(wire{
		Version: Version, Time: e.Time.UTC().Format(time.RFC3339Nano), Type: e.Type,
		VirtualCluster: e.VirtualCluster, Topic: e.Topic, Partition: e.Partition, Offset: e.Offset,
		Reason: e.Reason, ErrorCode: e.ErrorCode, ErrorName: e.ErrorName,
		KEK: e.KEK, KEKVersion: e.KEKVersion, EDEKFingerprint: e.EDEKFingerprint,
		Outcome: e.Outcome, RemoteAddr: e.RemoteAddr, Where: e.Where, Identity: e.Identity, Suppressed: e.Suppressed, Detail: e.Detail,
	})
	if err != nil {
		return dst, err
	}
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}

// ForCluster returns an Emitter that stamps events with a virtual
// cluster's name before passing them to e. A nil e gives nil (off).
func ForCluster(e Emitter, name string) Emitter {
	if e == nil {
		return nil
	}
	return clusterEmitter{e: e, name: name}
}

type clusterEmitter struct {
	e    Emitter
	name string
}

func (c clusterEmitter) Emit(ev Event) {
	if ev.VirtualCluster == "" {
		ev.VirtualCluster = c.name
	}
	c.e.Emit(ev)
}

// Package kms defines what kseal needs from a key management service. KEKs
// never leave the KMS: kseal asks it for fresh data keys (DEKs) and to unwrap
// encrypted DEKs (EDEKs). Providers live in sub-packages, one each (local,
// vault, hadoop, aws, azure, kmip), and register themselves by name.
//
// Implementations must never log key material or EDEK plaintext.
package kms

import (
	"context"
	"errors"
)

// ErrKeyNotFound means the KEK does not exist: it never did, or it was
// deleted or destroyed and the KMS keeps no trace of it (a KEK that exists
// in some unusable state is ErrKeyUnusable). It is not retried, and callers
// may remember it briefly. On the produce side a "not found" for a KEK that
// was in use is turned into ErrKeyUnusable by internal/dek.
var ErrKeyNotFound = errors.New("kms: key not found")

// ErrKeyUnusable means the KEK exists (or existed) but cannot be used to
// make data keys: it is disabled, pending deletion, soft-deleted, or was
// deleted after kseal had used it. Unlike ErrKeyNotFound it never lets a
// topic fall back to its unresolvedKeyPolicy: produce to the topic is
// refused. It is not retried, and callers may remember it briefly. An error
// wraps at most one of ErrKeyNotFound and ErrKeyUnusable.
var ErrKeyUnusable = errors.New("kms: key exists but is unusable")

// ErrAccessDenied means the KMS refused kseal's credentials, or their
// permissions for this key or operation (HTTP 401/403, AWS
// AccessDeniedException, KMIP Permission Denied): neither the key nor the
// data is at fault, and an operator must act. It is not retried. A KMS
// that answers a refusal for a disabled key may wrap ErrKeyUnusable as
// well: callers check ErrKeyNotFound and ErrKeyUnusable first.
var ErrAccessDenied = errors.New("kms: access denied")

// ErrUnavailable wraps transient failures (timeouts, 5xx, connection refused)
// that are worth retrying.
var ErrUnavailable = errors.New("kms: unavailable")

// KEKRef identifies a resolved key-encryption key: Name is what policy
// selected (e.g. "KEK-orders"), ID what the KMS calls it (an alias resolves
// to a key id).
type KEKRef struct {
	Name string
	ID   string
}

// DEK is a fresh data key: Key is the 32-byte AES-256 key in plaintext (the
// caller wipes it when done), EDEK the same key wrapped by the KEK, in a
// provider-specific self-contained encoding that DecryptDEK accepts.
type DEK struct {
	Key  []byte
	EDEK []byte
}

// EDEKInfo is what can be read from an EDEK without calling the KMS.
type EDEKInfo struct {
	KEK     string // KEK name or id as the provider records it
	Version string // KEK version, "" when the provider does not record one
}

// KMS is a key management service.
type KMS interface {
	// ResolveKEK checks that the named KEK exists and can make data keys,
	// and returns its reference. It returns an error wrapping ErrKeyNotFound
	// when no such key exists (nor ever did, as far as the KMS can tell), and
	// one wrapping ErrKeyUnusable when the key exists but is disabled,
	// pending deletion, soft-deleted or destroyed (when the KMS keeps a trace
	// of deleted keys).
	ResolveKEK(ctx context.Context, name string) (KEKRef, error)
	// GenerateDEK returns a new 256-bit DEK wrapped by the current version of
	// kek. A key that is gone or unusable gives ErrKeyNotFound or
	// ErrKeyUnusable, as ResolveKEK would.
	GenerateDEK(ctx context.Context, kek KEKRef) (DEK, error)
	// DecryptDEK unwraps an EDEK produced by GenerateDEK under any version of
	// its KEK that still exists, returning the 32-byte key.
	DecryptDEK(ctx context.Context, edek []byte) ([]byte, error)
	// DescribeEDEK parses an EDEK offline (no KMS call), for inspection tools.
	DescribeEDEK(edek []byte) (EDEKInfo, error)
}

// Prober is implemented by providers that can tell, with one cheap call,
// whether the KMS answers: kseal's readiness check calls it every few
// seconds when no other KMS call has answered lately. Probe returns nil
// when the KMS answered (even "no such key": an answer is an answer), and
// an error saying why not otherwise (unreachable, sealed, credentials
// refused). It never creates or changes anything in the KMS.
type Prober interface {
	Probe(ctx context.Context) error
}

// ProbeKEK is the KEK name providers look up to probe a KMS that has no
// dedicated health call. It need not exist.
const ProbeKEK = "kseal-readiness-probe"

// Closer is implemented by providers holding resources.
type Closer interface {
	Close() error
}

// ConnPool is implemented by providers that keep a pool of connections of
// their own (kmip; the HTTP providers leave theirs to net/http). kseal
// exports its ConnStats as the kseal_kms_connection* metrics. ConnStats
// must be cheap (atomic loads) and safe for concurrent use.
type ConnPool interface {
	ConnStats() ConnStats
}

// ConnStats is a snapshot of a connection pool: two gauges and counters
// since the provider was opened.
type ConnStats struct {
	// InUse connections carry a request now; Idle ones wait in the pool.
	InUse, Idle int
	// Dials are connection attempts (TLS handshake included), DialErrors
	// the failed ones.
	Dials, DialErrors uint64
	// Broken are connections closed after a failed exchange (a write or
	// read error, a timeout, a response over the size limit).
	Broken uint64
	// Waits are requests that found every connection busy and waited for
	// one (the pool's maximum reached).
	Waits uint64
}

// Changes is implemented by providers that learn when their keys change
// (the local KMS watches its key store). Changes returns a counter that
// moves whenever the provider starts serving a changed set of keys;
// internal/dek then forgets the "not found" answers it remembers (for
// notFoundTtl), so a KEK created a moment ago is used by the next request
// rather than after notFoundTtl. It must be cheap (an atomic load): it is
// read on the produce and fetch paths.
type Changes interface {
	Changes() uint64
}

package dek

import (
	"context"
	"errors"
	"fmt"

	"github.com/kseal/kseal/internal/kms"
)

var (
	// ErrUnavailable means no key could be had in time: the KMS is down,
	// slow, or refused to make a DEK. It is transient: a Produce fails with a
	// retriable error code, a Fetch partition with a retriable one too
	// (docs/format.md, "Errors"). Never fall back to plaintext.
	ErrUnavailable = errors.New("dek: no data key available")
	// ErrExhausted is returned by Key.Next once the DEK has handed out its
	// maximum number of nonce counters; Current then returns a fresh DEK.
	ErrExhausted = errors.New("dek: data key reached its encryption cap")
	// ErrReusedDEK means the KMS returned the same data key twice in a row for
	// a KEK. Nonces are unique only per fresh DEK, so such a key is refused.
	ErrReusedDEK = errors.New("dek: KMS returned a data key it had just returned")
	// ErrProviderPanic means the KMS provider panicked during a call (a bug,
	// possibly triggered by what the KMS answered). The call is refused like
	// any non-transient KMS refusal; the process keeps serving.
	ErrProviderPanic = errors.New("dek: KMS provider panicked")
)

// Errors from Current, Decryptor and Resolve wrap one of:
//   - kms.ErrKeyNotFound: the KEK does not exist or was destroyed
//     (Fetch: RESOURCE_NOT_FOUND, 91; Produce: the unresolvedKeyPolicy);
//   - kms.ErrKeyUnusable: the KEK exists but is disabled or pending
//     deletion, or it resolved before and is gone now (Produce: refused
//     with RESOURCE_NOT_FOUND, never the unresolvedKeyPolicy);
//   - ErrUnavailable: transient, retry later;
//   - anything else: the KMS refused the request (e.g. it rejects the EDEK as
//     invalid, or permission is denied). Current wraps these in
//     ErrUnavailable too, since for a Produce every failure means "no DEK".

// classify wraps transient failures in ErrUnavailable and leaves a missing
// or unusable KEK and definite refusals as they are.
func classify(err error) error {
	switch {
	case errors.Is(err, kms.ErrKeyNotFound):
		return err
	case errors.Is(err, kms.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	default:
		return err
	}
}

// transient reports whether an error is worth retrying or must not be
// remembered as a negative answer.
func transient(err error) bool {
	return errors.Is(err, kms.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// Retriable reports whether err from this package is transient, so a
// Produce or Fetch should report a retriable error code.
func Retriable(err error) bool { return errors.Is(err, ErrUnavailable) }

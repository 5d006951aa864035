package kms

import "context"

// Destroyer is implemented by providers whose KEKs `kseal shred` can
// destroy (docs/shredding.md): local, vault (OpenBao/Vault Transit) and aws.
// For the others the operator destroys the KEK by hand, by the procedure
// docs/shredding.md gives per KMS.
type Destroyer interface {
	// Destroy destroys kek, or schedules its destruction where the KMS
	// allows nothing sooner. Done is false when the key material still
	// exists (a pending deletion): What then says when it goes.
	Destroy(ctx context.Context, kek KEKRef) (Destruction, error)
}

// Destruction is what Destroy did.
type Destruction struct {
	// Done: the key material is gone now.
	Done bool
	// What the KMS did, for the operator ("deleted", "deletion scheduled
	// for 2026-01-08T10:00:00Z (pending, 7 days)").
	What string
}

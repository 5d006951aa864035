package local

import (
	"context"

	"github.com/kseal/kseal/internal/kms"
)

// Destroy implements kms.Destroyer: Delete, every version at once.
func (k *KMS) Destroy(ctx context.Context, kek kms.KEKRef) (kms.Destruction, error) {
	if err := k.Delete(ctx, kek.Name); err != nil {
		return kms.Destruction{}, err
	}
	return kms.Destruction{Done: true, What: "deleted from the local key store (every version)"}, nil
}

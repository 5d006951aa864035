package vault

import (
	"context"
	"net/http"

	"github.com/kseal/kseal/internal/kms"
)

// Destroy implements kms.Destroyer: Transit refuses to delete a key until
// its config allows it, so it sets deletion_allowed, then deletes the key
// (every version; Transit keeps no copy). The operator's token needs read
// and delete on transit/keys/NAME and update on transit/keys/NAME/config
// (docs/shredding.md), which kseal's running policy does not grant.
func (k *KMS) Destroy(ctx context.Context, kek kms.KEKRef) (kms.Destruction, error) {
	name := kek.ID
	if name == "" {
		name = kek.Name
	}
	if err := k.call(ctx, "allow deletion of key", name, http.MethodPost, k.keyPath("keys", name)+"/config",
		[]byte(`{"deletion_allowed":true}`), nil); err != nil {
		return kms.Destruction{}, err
	}
	if err := k.call(ctx, "delete key", name, http.MethodDelete, k.keyPath("keys", name), nil, nil); err != nil {
		return kms.Destruction{}, err
	}
	return kms.Destruction{Done: true, What: "deletion allowed, then deleted from Transit (every version)"}, nil
}

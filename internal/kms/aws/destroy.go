package aws

import (
	"context"
	"fmt"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kseal/kseal/internal/kms"
)

// MinDeletionWindowDays is the shortest pending window AWS KMS allows
// before it deletes a key.
const MinDeletionWindowDays = 7

// Destroy implements kms.Destroyer: ScheduleKeyDeletion with the shortest
// window AWS allows. The key is disabled at once (nobody can decrypt with
// it) but its material exists until the window ends, and CancelKeyDeletion
// can still bring it back: the destruction is pending, not done.
func (k *KMS) Destroy(ctx context.Context, kek kms.KEKRef) (kms.Destruction, error) {
	id := kek.ID
	if id == "" {
		id = k.aliasPrefix + kek.Name
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.ScheduleKeyDeletion(ctx, &awskms.ScheduleKeyDeletionInput{KeyId: awssdk.String(id),
		PendingWindowInDays: awssdk.Int32(MinDeletionWindowDays)})
	if err != nil {
		return kms.Destruction{}, classify("ScheduleKeyDeletion", id, err)
	}
	when := "in " + fmt.Sprint(MinDeletionWindowDays) + " days"
	if out.DeletionDate != nil {
		when = "on " + out.DeletionDate.UTC().Format(time.RFC3339)
	}
	return kms.Destruction{Done: false, What: fmt.Sprintf("deletion scheduled %s (pending: the key is unusable now, its material is deleted then; CancelKeyDeletion can still undo it until then)", when)}, nil
}

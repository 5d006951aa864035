package kmip

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// A server refusing the client (Permission Denied, Authentication Not
// Successful) is kms.ErrAccessDenied; its other refusals are not.
func TestServerErrorAccessDenied(t *testing.T) {
	for reason, want := range map[int64]bool{
		reasonPermissionDenied: true,
		reasonAuthentication:   true,
		reasonItemNotFound:     false,
		reasonGeneralFailure:   false,
	} {
		err := fmt.Errorf("decrypt: %w", &ServerError{Operation: opDecrypt, Reason: reason})
		if got := errors.Is(err, kms.ErrAccessDenied); got != want {
			t.Errorf("%s: ErrAccessDenied %v, want %v", reasonName(reason), got, want)
		}
	}
}

package aws

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// scheduleKeyDeletion is the fake's ScheduleKeyDeletion: 7 to 30 days,
// the key PendingDeletion.
func scheduleKeyDeletion(w http.ResponseWriter, key *fakeKey, body map[string]any) {
	days, _ := body["PendingWindowInDays"].(float64)
	if days < 7 || days > 30 {
		writeErr(w, 400, "ValidationException", "PendingWindowInDays must be between 7 and 30")
		return
	}
	if key.state == "PendingDeletion" {
		writeErr(w, 400, "KMSInvalidStateException", key.arn+" is pending deletion.")
		return
	}
	key.state = "PendingDeletion"
	when := time.Date(2030, 1, 8, 0, 0, 0, 0, time.UTC)
	writeJSON(w, map[string]any{"KeyId": key.arn, "KeyState": "PendingDeletion", "DeletionDate": when.Unix(), "PendingWindowInDays": int(days)})
}

func TestDestroySchedulesDeletion(t *testing.T) {
	f := newFakeKMS(t)
	f.addKey("1234abcd-0000-0000-0000-000000000001", "alias/tenant-a")
	k, _ := newTestKMS(t, f, nil)
	ctx := context.Background()
	ref, err := k.ResolveKEK(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	var d kms.Destroyer = k
	res, err := d.Destroy(ctx, ref)
	if err != nil || res.Done || !strings.Contains(res.What, "2030-01-08T00:00:00Z") || !strings.Contains(res.What, "pending") {
		t.Fatalf("Destroy = %+v, %v", res, err)
	}
	var sched map[string]any
	for _, r := range f.reqs() {
		if r.Op == "ScheduleKeyDeletion" {
			sched = r.Body
		}
	}
	if sched["KeyId"] != ref.ID || sched["PendingWindowInDays"] != float64(MinDeletionWindowDays) {
		t.Fatalf("ScheduleKeyDeletion request %v", sched)
	}
	if _, err := k.ResolveKEK(ctx, "tenant-a"); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("after Destroy: %v, want unusable", err)
	}
}

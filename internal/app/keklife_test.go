package app

import (
	"strings"
	"testing"
)

// PASSTHROUGH_UNENCRYPTED with a rule matching every topic logs one
// warning at start; REJECT (the default) none.
func TestPassthroughCatchAllWarnsOnce(t *testing.T) {
	const warning = "matches every topic"
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	if n := strings.Count(e.logs.String(), warning); n != 1 {
		t.Errorf("%d warnings %q with PASSTHROUGH_UNENCRYPTED and topicRegex '.*', want 1", n, warning)
	}
	e = startEncrypting(t, "REJECT")
	if n := strings.Count(e.logs.String(), warning); n != 0 {
		t.Errorf("%d warnings with REJECT, want none", n)
	}
}

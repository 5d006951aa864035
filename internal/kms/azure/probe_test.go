package azure

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// The probe reads a key that need not exist: 404 is an answer; 403, 5xx,
// a refused token and a stopped vault are not.
func TestProbe(t *testing.T) {
	f := newFakeVault(t)
	k := openFake(t, f, func(c *Config) { c.Timeout = time.Second })
	ctx := context.Background()
	if err := k.Probe(ctx); err != nil {
		t.Fatalf("vault without the probe key: %v", err)
	}
	reqs := f.Recorded()
	if last := reqs[len(reqs)-1]; last.Method != "GET" || last.Path != "/keys/"+kms.ProbeKEK+"/" {
		t.Errorf("probe sent %s %s, want GET /keys/%s/", last.Method, last.Path, kms.ProbeKEK)
	}
	for _, tc := range []struct {
		status  int
		code    string
		unavail bool
	}{
		{403, "Forbidden", false},
		{503, "ServiceUnavailable", true},
		{429, "Throttled", true},
	} {
		f.Fail(tc.status, tc.code)
		err := k.Probe(ctx)
		if err == nil || errors.Is(err, kms.ErrUnavailable) != tc.unavail || !strings.Contains(err.Error(), tc.code) {
			t.Errorf("HTTP %d: err = %v, want an error naming %s (unavailable: %v)", tc.status, err, tc.code, tc.unavail)
		}
	}
	f.Fail(0, "")
	f.TokenFail.Store(500)
	k2 := openFake(t, f, func(c *Config) { c.Timeout = time.Second })
	if err := k2.Probe(ctx); err == nil || !strings.Contains(err.Error(), "access token") {
		t.Errorf("no access token: err = %v", err)
	}
	f.TokenFail.Store(0)
	f.Stop()
	if err := k.Probe(ctx); !errors.Is(err, kms.ErrUnavailable) {
		t.Errorf("stopped vault: err = %v, want ErrUnavailable", err)
	}
	f.Start()
	if err := k.Probe(ctx); err != nil {
		t.Errorf("restarted vault: %v", err)
	}
}

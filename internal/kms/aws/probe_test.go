package aws

import (
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

// The probe is one DescribeKey of an alias that need not exist: any answer
// from AWS that proves the credentials were taken is "up".
func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		errType string
		ok      bool
		class   error
	}{
		{"alias missing", 0, "", true, nil},
		{"access denied", 400, "AccessDeniedException", true, nil},
		{"throttled", 400, "ThrottlingException", false, kms.ErrUnavailable},
		{"internal error", 500, "KMSInternalException", false, kms.ErrUnavailable},
		{"bare 503", 503, "", false, kms.ErrUnavailable},
		{"unknown access key", 400, "UnrecognizedClientException", false, kms.ErrAccessDenied},
		{"bad signature", 400, "InvalidSignatureException", false, kms.ErrAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeKMS(t)
			if tc.status != 0 {
				f.fail = func(string) (int, string) { return tc.status, tc.errType }
			}
			k, _ := newTestKMS(t, f, nil)
			err := k.Probe(t.Context())
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				checkClass(t, err, tc.class)
			}
			reqs := f.reqs()
			if len(reqs) != 1 || reqs[0].Op != "DescribeKey" || reqs[0].Body["KeyId"] != "alias/"+kms.ProbeKEK {
				t.Errorf("requests %+v, want one DescribeKey of alias/%s", reqs, kms.ProbeKEK)
			}
		})
	}
	// An existing alias of that name is an answer too.
	f := newFakeKMS(t)
	f.addKey(testKeyID, "alias/"+kms.ProbeKEK)
	k, _ := newTestKMS(t, f, nil)
	if err := k.Probe(t.Context()); err != nil {
		t.Errorf("existing probe alias: %v", err)
	}
}

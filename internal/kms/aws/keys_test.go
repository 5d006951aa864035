package aws

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// An EDEK naming a key of another account or region, or anything but a key
// id or key ARN, is refused without a call to AWS: anyone able to write to
// the topic could otherwise make kseal open records under a key of their
// own. Keys of the alias ARN prefix's account and of allowedAccounts open.
func TestDecryptDEKOnlyAllowedKeys(t *testing.T) {
	const other = "999988887777"
	f := newFakeKMS(t)
	f.addKey(testKeyID, "alias/KEK-a")
	k, _ := newTestKMS(t, f, nil)
	ref, err := k.ResolveKEK(t.Context(), "KEK-a")
	if err != nil {
		t.Fatal(err)
	}
	dek, err := k.GenerateDEK(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	_, blob, _ := parseEDEK(dek.EDEK)
	edek := func(id string) []byte {
		e, err := appendKeyID(nil, id)
		if err != nil {
			t.Fatal(err)
		}
		return append(e, blob...)
	}
	arn := func(region, account string) string {
		return "arn:aws:kms:" + region + ":" + account + ":key/" + testKeyID
	}

	// A bare key id: AWS looks it up in kseal's own account and region.
	if _, err := k.DecryptDEK(t.Context(), dek.EDEK); err != nil {
		t.Fatalf("own key id: %v", err)
	}
	before := len(f.reqs())
	for name, id := range map[string]string{
		"key ARN of another account":           arn("us-east-1", other),
		"key ARN of kseal's account, no entry": arn("us-east-1", fakeAccount),
		"key ARN of another region":            arn("eu-west-1", fakeAccount),
		"alias name":                           "alias/KEK-a",
		"alias ARN":                            "arn:aws:kms:us-east-1:" + fakeAccount + ":alias/KEK-a",
		"garbage":                              "not-a-key",
	} {
		_, err := k.DecryptDEK(t.Context(), edek(id))
		if err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrUnavailable) {
			t.Errorf("%s: err = %v, want a plain refusal", name, err)
		}
	}
	if n := len(f.reqs()) - before; n != 0 {
		t.Errorf("%d requests reached AWS for refused EDEKs", n)
	}

	// allowedAccounts, and the account of an alias ARN prefix, open.
	k2, _ := newTestKMS(t, f, func(c *Config) { c.AllowedAccounts = []string{fakeAccount} })
	if _, err := k2.DecryptDEK(t.Context(), edek(arn("us-east-1", fakeAccount))); err != nil {
		t.Errorf("key ARN of an allowed account: %v", err)
	}
	if _, err := k2.DecryptDEK(t.Context(), edek(arn("us-east-1", other))); err == nil {
		t.Error("key ARN of an account not listed opened")
	}
	k3, _ := newTestKMS(t, f, func(c *Config) { c.AliasPrefix = "arn:aws:kms:us-east-1:" + fakeAccount + ":alias/" })
	if _, err := k3.DecryptDEK(t.Context(), edek(arn("us-east-1", fakeAccount))); err != nil {
		t.Errorf("key ARN of the alias prefix's account: %v", err)
	}
}

// A policy naming key ARNs directly (aliasPrefix "") resolves only keys of
// allowed accounts: kseal never writes an EDEK it would refuse to open.
func TestResolveKEKOnlyAllowedKeys(t *testing.T) {
	f := newFakeKMS(t)
	f.addKey(testKeyID, "")
	name := "arn:aws:kms:us-east-1:" + fakeAccount + ":key/" + testKeyID
	k, _ := newTestKMS(t, f, func(c *Config) { c.AliasPrefix = "" })
	if _, err := k.ResolveKEK(t.Context(), name); err == nil || !strings.Contains(err.Error(), "allowedAccounts") {
		t.Errorf("key ARN of an account not allowed: %v", err)
	}
	k2, _ := newTestKMS(t, f, func(c *Config) { c.AliasPrefix = ""; c.AllowedAccounts = []string{fakeAccount} })
	ref, err := k2.ResolveKEK(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	d, err := k2.GenerateDEK(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.DecryptDEK(t.Context(), d.EDEK); err != nil {
		t.Fatal(err)
	}
}

func TestConfigAllowedAccounts(t *testing.T) {
	c := NewConfig()
	c.Region = "us-east-1"
	c.AllowedAccounts = []string{"111122223333", "12345", "abcdabcdabcd"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "allowedAccounts[1]") || !strings.Contains(err.Error(), "allowedAccounts[2]") {
		t.Errorf("err = %v", err)
	}
}

// A redirect to another port never carries a KMS request (its signature,
// session token and body) there; over https the custom CA bundle
// (AWS_CA_BUNDLE) still works with kseal's HTTP client.
func TestRedirectsNeverCarryCredentials(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "http"
		if useTLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			f := newFakeKMS(t)
			f.addKey(testKeyID, "alias/KEK-a")
			var spyHits atomic.Int32
			spyH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				spyHits.Add(1)
				f.serve(w, r)
			})
			redirect := func(target string) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusTemporaryRedirect)
				})
			}
			var spy, front *httptest.Server
			if useTLS {
				spy = httptest.NewUnstartedServer(spyH)
				spy.EnableHTTP2 = true
				spy.StartTLS()
				front = httptest.NewUnstartedServer(redirect(spy.URL))
				front.EnableHTTP2 = true
				front.StartTLS()
			} else {
				spy = httptest.NewServer(spyH)
				front = httptest.NewServer(redirect(spy.URL))
			}
			defer spy.Close()
			defer front.Close()
			var caFile string
			if useTLS {
				caFile = filepath.Join(t.TempDir(), "ca.pem")
				os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600)
			}
			k, logs := newTestKMS(t, f, func(c *Config) {
				c.Endpoint = front.URL
				if caFile != "" {
					t.Setenv("AWS_CA_BUNDLE", caFile)
				}
			})
			// The SDK sends KMS requests with a body it cannot replay, so
			// net/http hands back the 307 itself; either way a plain error.
			_, err := k.ResolveKEK(t.Context(), "KEK-a")
			if err == nil || errors.Is(err, kms.ErrUnavailable) {
				t.Errorf("ResolveKEK through a redirect to another port: %v, want a plain error", err)
			}
			if n := spyHits.Load(); n != 0 {
				t.Errorf("the other server got %d requests", n)
			}
			if strings.Contains(logs.String(), testSecret) {
				t.Error("secret logged")
			}

			// Direct, the same client works (and trusts the CA bundle).
			k2, _ := newTestKMS(t, f, func(c *Config) {
				c.Endpoint = spy.URL
				if caFile != "" {
					t.Setenv("AWS_CA_BUNDLE", caFile)
				}
			})
			if _, err := k2.ResolveKEK(t.Context(), "KEK-a"); err != nil {
				t.Errorf("direct: %v", err)
			}
		})
	}
}

// The container credentials endpoint (ECS, EKS Pod Identity) gets an
// Authorization token; net/http would copy it to another port of the same
// host on a redirect. kseal's client refuses the redirect instead.
func TestCredentialsEndpointRedirectRefused(t *testing.T) {
	f := newFakeKMS(t)
	f.addKey(testKeyID, "alias/KEK-a")
	const token = "container-token-do-not-leak"
	var spyHits, spyToken atomic.Int32
	spy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spyHits.Add(1)
		if strings.Contains(r.Header.Get("Authorization"), token) {
			spyToken.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"AccessKeyId":"AKIAKSEALTEST0000002","SecretAccessKey":"x","Token":"y","Expiration":"2099-01-01T00:00:00Z"}`))
	}))
	defer spy.Close()
	var frontHits atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		frontHits.Add(1)
		http.Redirect(w, r, spy.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect) // the SDK follows 307 and 308
	}))
	defer front.Close()
	isolateAWSEnv(t)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", front.URL+"/v2/credentials")
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
	cfg := NewConfig()
	cfg.Region = "us-east-1"
	cfg.Endpoint = f.srv.URL
	cfg.Timeout = time.Second
	k, err := New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.ResolveKEK(t.Context(), "KEK-a")
	if err == nil {
		t.Fatal("ResolveKEK with credentials behind a redirect to another port succeeded")
	}
	if frontHits.Load() == 0 {
		t.Fatalf("the credentials endpoint was not asked (%v)", err)
	}
	if n := spyHits.Load(); n != 0 {
		t.Errorf("the other port got %d requests (%d with the token)", n, spyToken.Load())
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("error shows the token: %v", err)
	}
}

// A multi-Region key ARN of a region in allowedRegions opens with the
// replica in the client's region (the ARN sent to AWS names the client's
// region); single-Region key ARNs of other regions, and regions not listed,
// stay refused without a request.
func TestMultiRegionKeyARNs(t *testing.T) {
	const mrk = "mrk-1234abcd12ab34cd56ef1234567890ab"
	f := newFakeKMS(t)
	f.addKey(mrk, "alias/KEK-m")
	f.addKey(testKeyID, "alias/KEK-a")
	k, _ := newTestKMS(t, f, func(c *Config) {
		c.AllowedAccounts = []string{fakeAccount}
		c.AllowedRegions = []string{"eu-west-1"}
	})
	edekFor := func(kek, id string) []byte {
		ref, err := k.ResolveKEK(t.Context(), kek)
		if err != nil {
			t.Fatal(err)
		}
		d, err := k.GenerateDEK(t.Context(), ref)
		if err != nil {
			t.Fatal(err)
		}
		_, blob, _ := parseEDEK(d.EDEK)
		e, err := appendKeyID(nil, id)
		if err != nil {
			t.Fatal(err)
		}
		return append(e, blob...)
	}
	arn := func(region, id string) string { return "arn:aws:kms:" + region + ":" + fakeAccount + ":key/" + id }

	if _, err := k.DecryptDEK(t.Context(), edekFor("KEK-m", arn("eu-west-1", mrk))); err != nil {
		t.Fatalf("multi-Region key ARN of an allowed region: %v", err)
	}
	reqs := f.reqs()
	last := reqs[len(reqs)-1]
	if last.Op != "Decrypt" || last.Body["KeyId"] != arn("us-east-1", mrk) {
		t.Fatalf("Decrypt sent %s with KeyId %v, want the us-east-1 replica's ARN", last.Op, last.Body["KeyId"])
	}
	for name, tc := range map[string]struct{ kek, id, want string }{
		"single-Region key of an allowed region":  {"KEK-a", arn("eu-west-1", testKeyID), "single-Region key"},
		"multi-Region key of a region not listed": {"KEK-m", arn("ap-south-1", mrk), "allowedRegions"},
	} {
		e := edekFor(tc.kek, tc.id)
		n := len(f.reqs())
		_, err := k.DecryptDEK(t.Context(), e)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
		if len(f.reqs()) != n {
			t.Errorf("%s: a request reached AWS", name)
		}
	}
}

func TestConfigAllowedRegions(t *testing.T) {
	c := NewConfig()
	c.Region = "us-east-1"
	c.AllowedRegions = []string{"eu-west-1", "not a region"}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "allowedRegions[1]") || strings.Contains(err.Error(), "allowedRegions[0]") {
		t.Errorf("err = %v", err)
	}
}

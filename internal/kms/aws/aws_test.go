package aws

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

const (
	testKeyID  = "1234abcd-12ab-34cd-56ef-1234567890ab"
	testAKID   = "AKIAKSEALTEST0000001"
	testSecret = "kseal/test+secret/0000000000000000000000"
)

// newTestKMS opens the provider against f with static credentials read
// from a file, as a deployment would.
func newTestKMS(t *testing.T, f *fakeKMS, edit func(*Config)) (*KMS, *bytes.Buffer) {
	t.Helper()
	isolateAWSEnv(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig()
	cfg.Region = "us-east-1"
	cfg.Endpoint = f.srv.URL
	cfg.Timeout = time.Second
	cfg.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyID: testAKID, SecretAccessKeyFile: secretFile}
	if edit != nil {
		edit(cfg)
	}
	var logs bytes.Buffer
	k, err := New(t.Context(), cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return k, &logs
}

func TestRoundTripRequests(t *testing.T) {
	f := newFakeKMS(t)
	f.addKey(testKeyID, "alias/KEK-orders")
	k, logs := newTestKMS(t, f, nil)
	ctx := t.Context()

	ref, err := k.ResolveKEK(ctx, "KEK-orders")
	if err != nil {
		t.Fatalf("ResolveKEK: %v", err)
	}
	if ref != (kms.KEKRef{Name: "KEK-orders", ID: testKeyID}) {
		t.Fatalf("ResolveKEK = %+v", ref)
	}
	dek, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatalf("GenerateDEK: %v", err)
	}
	if len(dek.Key) != 32 {
		t.Fatalf("DEK is %d bytes", len(dek.Key))
	}
	// Form 1: the key id as 16 raw bytes, then the blob.
	wantHead := append([]byte{formUUID}, 0x12, 0x34, 0xab, 0xcd, 0x12, 0xab, 0x34, 0xcd, 0x56, 0xef, 0x12, 0x34, 0x56, 0x78, 0x90, 0xab)
	if !bytes.HasPrefix(dek.EDEK, wantHead) || !bytes.HasPrefix(dek.EDEK[17:], []byte(testKeyID+"|")) {
		t.Fatalf("EDEK = %q", dek.EDEK)
	}
	got, err := k.DecryptDEK(ctx, dek.EDEK)
	if err != nil {
		t.Fatalf("DecryptDEK: %v", err)
	}
	if !bytes.Equal(got, dek.Key) {
		t.Fatal("DecryptDEK returned another key")
	}
	info, err := k.DescribeEDEK(dek.EDEK)
	if err != nil || info != (kms.EDEKInfo{KEK: testKeyID}) {
		t.Fatalf("DescribeEDEK = %+v, %v", info, err)
	}

	reqs := f.reqs()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (one attempt each)", len(reqs))
	}
	want := []struct {
		op   string
		body map[string]any
	}{
		{"DescribeKey", map[string]any{"KeyId": "alias/KEK-orders"}},
		{"GenerateDataKey", map[string]any{"KeyId": testKeyID, "KeySpec": "AES_256", "EncryptionContext": map[string]any{"kseal": "dek"}}},
		{"Decrypt", map[string]any{"KeyId": testKeyID, "EncryptionContext": map[string]any{"kseal": "dek"}, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}},
	}
	for i, w := range want {
		r := reqs[i]
		if r.Op != w.op {
			t.Errorf("request %d is %s, want %s", i, r.Op, w.op)
		}
		for key, v := range w.body {
			if !equalJSON(r.Body[key], v) {
				t.Errorf("%s %s = %v, want %v", r.Op, key, r.Body[key], v)
			}
		}
		if !strings.Contains(r.Auth, "Credential="+testAKID+"/") || !strings.Contains(r.Auth, "/us-east-1/kms/aws4_request") {
			t.Errorf("%s Authorization %q not signed with the static key for us-east-1 kms", r.Op, r.Auth)
		}
		if strings.Contains(r.Auth, testSecret) {
			t.Errorf("%s: the secret travels in the Authorization header", r.Op)
		}
	}
	if strings.Contains(logs.String(), testSecret) {
		t.Error("the secret access key was logged")
	}
}

func equalJSON(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		if len(am) != len(bm) {
			return false
		}
		for k := range am {
			if !equalJSON(am[k], bm[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestKeyIDForms(t *testing.T) {
	const mrk = "mrk-1234abcd12ab34cd56ef1234567890ab"
	for _, tc := range []struct {
		name, keyID, prefix, alias, wantID string
		form                               byte
	}{
		{"single-Region key by alias", testKeyID, "alias/", "alias/KEK-a", testKeyID, formUUID},
		{"multi-Region key by alias", mrk, "alias/", "alias/KEK-a", mrk, formMRK},
		{"key in another account by alias ARN", testKeyID, "arn:aws:kms:us-east-1:" + fakeAccount + ":alias/", "alias/KEK-a",
			"arn:aws:kms:us-east-1:" + fakeAccount + ":key/" + testKeyID, formString},
		{"key id as the name", testKeyID, "", "", testKeyID, formUUID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeKMS(t)
			f.addKey(tc.keyID, tc.alias)
			k, _ := newTestKMS(t, f, func(c *Config) { c.AliasPrefix = tc.prefix })
			name := "KEK-a"
			if tc.alias == "" {
				name = tc.keyID
			}
			ref, err := k.ResolveKEK(t.Context(), name)
			if err != nil || ref.ID != tc.wantID {
				t.Fatalf("ResolveKEK = %+v, %v; want ID %s", ref, err, tc.wantID)
			}
			dek, err := k.GenerateDEK(t.Context(), ref)
			if err != nil {
				t.Fatal(err)
			}
			if dek.EDEK[0] != tc.form {
				t.Fatalf("EDEK form %d, want %d", dek.EDEK[0], tc.form)
			}
			if _, err := k.DecryptDEK(t.Context(), dek.EDEK); err != nil {
				t.Fatal(err)
			}
			if last := f.reqs()[2]; last.Body["KeyId"] != tc.wantID {
				t.Fatalf("Decrypt KeyId = %v, want %s", last.Body["KeyId"], tc.wantID)
			}
		})
	}
}

// TestErrorClassification covers the failures moto cannot produce. In
// particular moto keeps serving GenerateDataKey and Decrypt for a disabled
// key, so DisabledException (and KMSInvalidStateException for a key pending
// deletion) are only tested here, against this fake.
func TestErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		errType string
		want    error // kms.ErrKeyNotFound, kms.ErrKeyUnusable, kms.ErrUnavailable, kms.ErrAccessDenied or nil (plain)
	}{
		{"key not found", 400, "NotFoundException", kms.ErrKeyNotFound},
		// A key that exists but is disabled or pending deletion is never
		// "not found" when making data keys (the topic would fall back to
		// the unresolvedKeyPolicy); for Decrypt it is (RESOURCE_NOT_FOUND).
		{"key disabled", 400, "DisabledException", kms.ErrKeyUnusable},
		{"key pending deletion", 400, "KMSInvalidStateException", kms.ErrKeyUnusable},
		{"throttled", 400, "ThrottlingException", kms.ErrUnavailable},
		{"KMS internal error", 500, "KMSInternalException", kms.ErrUnavailable},
		{"dependency timeout", 503, "DependencyTimeoutException", kms.ErrUnavailable},
		{"custom key store unavailable", 400, "KeyUnavailableException", kms.ErrUnavailable},
		{"bare 500", 500, "", kms.ErrUnavailable},
		{"bare 502", 502, "", kms.ErrUnavailable},
		{"bare 503", 503, "", kms.ErrUnavailable},
		{"bare 429", 429, "", kms.ErrUnavailable},
		{"access denied", 400, "AccessDeniedException", kms.ErrAccessDenied},
		{"access denied 403", 403, "AccessDeniedException", kms.ErrAccessDenied},
		{"bad signature", 400, "InvalidSignatureException", kms.ErrAccessDenied},
		{"unknown access key", 400, "UnrecognizedClientException", kms.ErrAccessDenied},
		{"expired session token", 400, "ExpiredTokenException", kms.ErrAccessDenied},
		{"tampered ciphertext", 400, "InvalidCiphertextException", nil},
		{"wrong key for ciphertext", 400, "IncorrectKeyException", nil},
		{"bare 403", 403, "", nil},
	} {
		for _, op := range []string{"DescribeKey", "GenerateDataKey", "Decrypt"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				f := newFakeKMS(t)
				f.addKey(testKeyID, "alias/KEK-orders")
				k, _ := newTestKMS(t, f, nil)
				ref := kms.KEKRef{Name: "KEK-orders", ID: testKeyID}
				dek, err := k.GenerateDEK(t.Context(), ref)
				if err != nil {
					t.Fatal(err)
				}
				f.fail = func(got string) (int, string) {
					if got == op {
						return tc.status, tc.errType
					}
					return 0, ""
				}
				before := len(f.reqs())
				switch op {
				case "DescribeKey":
					_, err = k.ResolveKEK(t.Context(), "KEK-orders")
				case "GenerateDataKey":
					_, err = k.GenerateDEK(t.Context(), ref)
				case "Decrypt":
					_, err = k.DecryptDEK(t.Context(), dek.EDEK)
				}
				if err == nil {
					t.Fatal("no error")
				}
				want := tc.want
				if want == kms.ErrKeyUnusable && op == "Decrypt" {
					want = kms.ErrKeyNotFound
				}
				checkClass(t, err, want)
				if n := len(f.reqs()) - before; n != 1 {
					t.Errorf("%d attempts, want 1 (the caller retries)", n)
				}
				if tc.errType != "" && !strings.Contains(err.Error(), tc.errType) {
					t.Errorf("error %q does not name %s", err, tc.errType)
				}
			})
		}
	}
}

func checkClass(t *testing.T, err, want error) {
	t.Helper()
	nf, un, us := errors.Is(err, kms.ErrKeyNotFound), errors.Is(err, kms.ErrUnavailable), errors.Is(err, kms.ErrKeyUnusable)
	if ad := errors.Is(err, kms.ErrAccessDenied); ad != (want == kms.ErrAccessDenied) {
		t.Errorf("err = %v: ErrAccessDenied %v, want %v", err, ad, !ad)
	}
	switch want {
	case kms.ErrKeyNotFound:
		if !nf || un || us {
			t.Errorf("err = %v, want only ErrKeyNotFound", err)
		}
	case kms.ErrKeyUnusable:
		if !us || un || nf {
			t.Errorf("err = %v, want only ErrKeyUnusable", err)
		}
	case kms.ErrUnavailable:
		if !un || nf || us {
			t.Errorf("err = %v, want only ErrUnavailable", err)
		}
	default:
		if nf || un || us {
			t.Errorf("err = %v, want a plain error", err)
		}
	}
}

func TestResolveKEKKeyStates(t *testing.T) {
	for _, tc := range []struct {
		state, spec, usage string
		want               error
		ok                 bool
	}{
		{"Enabled", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", nil, true},
		{"Enabled", "SYMMETRIC_DEFAULT", "", nil, true}, // moto leaves KeyUsage out
		{"Disabled", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", kms.ErrKeyUnusable, false},
		{"PendingDeletion", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", kms.ErrKeyUnusable, false},
		{"PendingImport", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", kms.ErrKeyUnusable, false},
		{"Unavailable", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", kms.ErrUnavailable, false},
		{"Creating", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", kms.ErrUnavailable, false},
		{"Enabled", "RSA_2048", "ENCRYPT_DECRYPT", nil, false},
		{"Enabled", "HMAC_256", "GENERATE_VERIFY_MAC", nil, false},
	} {
		t.Run(tc.state+"/"+tc.spec, func(t *testing.T) {
			f := newFakeKMS(t)
			key := f.addKey(testKeyID, "alias/KEK-orders")
			key.state, key.spec, key.usage = tc.state, tc.spec, tc.usage
			k, _ := newTestKMS(t, f, nil)
			_, err := k.ResolveKEK(t.Context(), "KEK-orders")
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			checkClass(t, err, tc.want)
		})
	}
}

func TestResolveKEKInvalidAliasNoCall(t *testing.T) {
	f := newFakeKMS(t)
	k, _ := newTestKMS(t, f, nil)
	for _, name := range []string{"KEK-orders.v1", "", "KEK orders", "KEK-\x00", strings.Repeat("a", 251)} {
		if _, err := k.ResolveKEK(t.Context(), name); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Errorf("ResolveKEK(%q) = %v, want ErrKeyNotFound", name, err)
		}
	}
	if n := len(f.reqs()); n != 0 {
		t.Fatalf("%d requests for names that cannot be aliases", n)
	}
	f.addKey(testKeyID, "alias/"+strings.Repeat("a", 250))
	if _, err := k.ResolveKEK(t.Context(), strings.Repeat("a", 250)); err != nil {
		t.Fatalf("longest alias: %v", err)
	}
}

func TestGenerateDEKRefusesOddAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*fakeKMS)
	}{
		{"blob from another key", func(f *fakeKMS) {
			f.keyIDOverride = "arn:aws:kms:us-east-1:" + fakeAccount + ":key/ffffffff-12ab-34cd-56ef-1234567890ab"
		}},
		{"16-byte data key", func(f *fakeKMS) { f.plaintextLen = 16 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeKMS(t)
			f.addKey(testKeyID, "alias/KEK-orders")
			tc.edit(f)
			k, _ := newTestKMS(t, f, nil)
			if dek, err := k.GenerateDEK(t.Context(), kms.KEKRef{Name: "KEK-orders", ID: testKeyID}); err == nil {
				t.Fatalf("GenerateDEK = %d-byte key, no error", len(dek.Key))
			}
		})
	}
}

func TestDecryptDEKMalformedNoCall(t *testing.T) {
	f := newFakeKMS(t)
	k, _ := newTestKMS(t, f, nil)
	for _, edek := range [][]byte{nil, {formUUID, 1, 2}, {9, 1, 2, 3}} {
		if _, err := k.DecryptDEK(t.Context(), edek); !errors.Is(err, errMalformedEDEK) {
			t.Errorf("DecryptDEK(%x) = %v, want errMalformedEDEK", edek, err)
		}
	}
	if n := len(f.reqs()); n != 0 {
		t.Fatalf("%d requests for malformed EDEKs", n)
	}
}

func TestTimeoutIsUnavailable(t *testing.T) {
	f := newFakeKMS(t)
	f.addKey(testKeyID, "alias/KEK-orders")
	f.delay = 5 * time.Second
	k, _ := newTestKMS(t, f, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := k.ResolveKEK(t.Context(), "KEK-orders")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v with a 200ms timeout", d)
	}
	checkClass(t, err, kms.ErrUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
}

func TestConnectionRefusedIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f := newFakeKMS(t)
	k, _ := newTestKMS(t, f, func(c *Config) { c.Endpoint = "http://" + addr })
	_, err = k.ResolveKEK(t.Context(), "KEK-orders")
	checkClass(t, err, kms.ErrUnavailable)
	edek := append([]byte{formUUID}, make([]byte, 16+8)...)
	_, err = k.DecryptDEK(t.Context(), edek)
	checkClass(t, err, kms.ErrUnavailable)
}

func TestCallerCancelIsNotClassified(t *testing.T) {
	f := newFakeKMS(t)
	f.addKey(testKeyID, "alias/KEK-orders")
	f.delay = 5 * time.Second
	k, _ := newTestKMS(t, f, nil)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := k.ResolveKEK(ctx, "KEK-orders")
	if !errors.Is(err, context.Canceled) || errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

package aws

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeKMS speaks enough of the AWS KMS JSON protocol (awsJson1_1, the
// target in X-Amz-Target) for the SDK: DescribeKey, GenerateDataKey and
// Decrypt, with failures injected per operation. It exists for what moto
// cannot show (disabled keys, throttling, 5xx, timeouts) and to check the
// exact requests the provider sends.
type fakeKMS struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	keys     map[string]*fakeKey // by key id
	aliases  map[string]string   // alias name -> key id
	requests []fakeRequest
	// fail, when set, may answer a request instead of the fake: it returns
	// the HTTP status and the error __type (empty for a bare status).
	fail func(op string) (status int, errType string)
	// delay holds every answer back.
	delay time.Duration
	// keyIDOverride, when set, is the KeyId GenerateDataKey answers with.
	keyIDOverride string
	// plaintextLen overrides the size of generated data keys.
	plaintextLen int
}

type fakeKey struct {
	id, arn  string
	state    string
	spec     string
	usage    string
	material [32]byte
}

type fakeRequest struct {
	Op   string
	Auth string
	Body map[string]any
}

const fakeAccount = "111122223333"

func newFakeKMS(t *testing.T) *fakeKMS {
	t.Helper()
	f := &fakeKMS{t: t, keys: map[string]*fakeKey{}, aliases: map[string]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// addKey creates an enabled symmetric key and, when alias is not empty, an
// alias for it.
func (f *fakeKMS) addKey(id, alias string) *fakeKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := &fakeKey{id: id, arn: "arn:aws:kms:us-east-1:" + fakeAccount + ":key/" + id,
		state: "Enabled", spec: "SYMMETRIC_DEFAULT", usage: "ENCRYPT_DECRYPT"}
	rand.Read(k.material[:])
	f.keys[id] = k
	if alias != "" {
		f.aliases[alias] = id
	}
	return k
}

func (f *fakeKMS) reqs() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

// lookup resolves a key id, key ARN, alias name or alias ARN.
func (f *fakeKMS) lookup(ident string) *fakeKey {
	if i := strings.Index(ident, ":alias/"); strings.HasPrefix(ident, "arn:") && i >= 0 {
		ident = ident[i+1:]
	} else if i := strings.Index(ident, ":key/"); strings.HasPrefix(ident, "arn:") && i >= 0 {
		ident = ident[i+len(":key/"):]
	}
	if id, ok := f.aliases[ident]; ok {
		ident = id
	}
	return f.keys[ident]
}

func (f *fakeKMS) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		f.t.Errorf("fake KMS: %s: bad JSON body: %v", op, err)
	}
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{Op: op, Auth: r.Header.Get("Authorization"), Body: body})
	fail, delay := f.fail, f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if fail != nil {
		if status, typ := fail(op); status != 0 {
			if typ == "" {
				w.WriteHeader(status)
				return
			}
			writeErr(w, status, typ, "injected by the test")
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	str := func(k string) string { s, _ := body[k].(string); return s }
	key := f.lookup(str("KeyId"))
	if key == nil {
		writeErr(w, 400, "NotFoundException", fmt.Sprintf("Key '%s' does not exist", str("KeyId")))
		return
	}
	switch op {
	case "DescribeKey":
		writeJSON(w, map[string]any{"KeyMetadata": map[string]any{
			"KeyId": key.id, "Arn": key.arn, "KeyState": key.state, "Enabled": key.state == "Enabled",
			"KeySpec": key.spec, "KeyUsage": key.usage, "AWSAccountId": fakeAccount,
		}})
	case "GenerateDataKey":
		if key.state != "Enabled" {
			writeErr(w, 400, "DisabledException", key.arn+" is disabled.")
			return
		}
		n := 32
		if f.plaintextLen != 0 {
			n = f.plaintextLen
		}
		pt := make([]byte, n)
		rand.Read(pt)
		keyID := key.arn
		if f.keyIDOverride != "" {
			keyID = f.keyIDOverride
		}
		writeJSON(w, map[string]any{"KeyId": keyID, "Plaintext": pt, "CiphertextBlob": f.seal(key, pt, body["EncryptionContext"])})
	case "Decrypt":
		pt, ok := f.open(key, body)
		if !ok {
			writeErr(w, 400, "InvalidCiphertextException", "")
			return
		}
		writeJSON(w, map[string]any{"KeyId": key.arn, "Plaintext": pt})
	case "ScheduleKeyDeletion":
		scheduleKeyDeletion(w, key, body)
	default:
		writeErr(w, 400, "UnknownOperationException", op)
	}
}

// seal makes a fake CiphertextBlob: key id, context, plaintext XOR material.
// It is no cipher, only enough to check that Decrypt gets back what
// GenerateDataKey gave and with the same key and context.
func (f *fakeKMS) seal(k *fakeKey, pt []byte, ctx any) []byte {
	c, _ := json.Marshal(ctx)
	blob := append([]byte(k.id+"|"), c...)
	blob = append(blob, '|')
	for i, b := range pt {
		blob = append(blob, b^k.material[i%32])
	}
	return blob
}

func (f *fakeKMS) open(k *fakeKey, body map[string]any) ([]byte, bool) {
	s, _ := body["CiphertextBlob"].(string)
	var blob []byte
	if err := json.Unmarshal([]byte(`"`+s+`"`), &blob); err != nil {
		return nil, false
	}
	c, _ := json.Marshal(body["EncryptionContext"])
	prefix := append([]byte(k.id+"|"), c...)
	prefix = append(prefix, '|')
	if !bytes.HasPrefix(blob, prefix) {
		return nil, false
	}
	pt := blob[len(prefix):]
	out := make([]byte, len(pt))
	for i, b := range pt {
		out[i] = b ^ k.material[i%32]
	}
	return out, true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

// isolateAWSEnv keeps the machine's AWS settings (profiles, credentials,
// instance metadata) out of a test.
func isolateAWSEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

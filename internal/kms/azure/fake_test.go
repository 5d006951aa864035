package azure

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeVault is a small Key Vault for unit tests: RSA keys (real RSA-OAEP-256)
// and oct-HSM keys (real RFC 3394 A256KW) with versions, create, rotate,
// disable, bearer tokens it issued itself, and knobs to fail, hang, stop and
// restart on the same address. Its state outlives a restart.
type fakeVault struct {
	t *testing.T

	mu       sync.Mutex
	keys     map[string]*fakeKey
	tokens   map[string]bool
	requests []fakeRequest

	failStatus atomic.Int32 // answer every vault request with this status
	failCode   atomic.Value // error code string for failStatus
	hang       atomic.Bool  // hold requests until the client gives up
	rejectAll  atomic.Bool  // refuse every token
	release    chan struct{}
	tokenCalls atomic.Int32
	tokenFail  atomic.Int32 // token endpoint answers this status
	tokenLife  atomic.Int64 // seconds; 0 means 3600

	vault  *httptest.Server // TLS
	token  *httptest.Server // plain HTTP: managed identity (like IMDS)
	entra  *httptest.Server // TLS: Entra ID's client credentials endpoint
	addr   string
	caFile string
}

type fakeKey struct {
	kty      string
	ops      []string
	versions []*fakeVersion
}

type fakeVersion struct {
	id      string
	rsa     *rsa.PrivateKey
	aes     []byte
	enabled bool
}

type fakeRequest struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
}

func newFakeVault(t *testing.T) *fakeVault {
	t.Helper()
	f := &fakeVault{
		t:       t,
		keys:    map[string]*fakeKey{},
		tokens:  map[string]bool{},
		release: make(chan struct{}),
	}
	f.failCode.Store("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.startOn(ln)
	f.token = httptest.NewServer(http.HandlerFunc(f.serveToken))
	f.entra = httptest.NewTLSServer(http.HandlerFunc(f.serveToken))
	// The httptest certificate (for 127.0.0.1) is the CA bundle a config
	// names in tls.caFile.
	f.caFile = filepath.Join(t.TempDir(), "ca.pem")
	cert := f.vault.Certificate()
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.resume()
		f.stop()
		f.token.Close()
		f.entra.Close()
	})
	return f
}

func (f *fakeVault) startOn(ln net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serveVault))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	f.mu.Lock()
	f.vault = srv
	f.mu.Unlock()
}

func (f *fakeVault) url() string { return "https://" + f.addr }

// config returns a managed identity config for the fake.
func (f *fakeVault) config() *Config {
	c := NewConfig()
	c.VaultURL = f.url()
	c.Timeout = 2 * time.Second
	c.Auth.Method = MethodManagedIdentity
	c.Auth.IdentityEndpoint = f.token.URL + "/metadata/identity/oauth2/token"
	c.TLS.CAFile = f.caFile
	return c
}

func (f *fakeVault) stop() {
	f.mu.Lock()
	srv := f.vault
	f.vault = nil
	f.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (f *fakeVault) start() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("restart fake vault on %s: %v", f.addr, err)
	}
	f.startOn(ln)
}

func (f *fakeVault) pause() { f.hang.Store(true) }

func (f *fakeVault) resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hang.Swap(false) {
		close(f.release)
		f.release = make(chan struct{})
	}
}

func (f *fakeVault) fail(status int, code string) {
	f.failStatus.Store(int32(status))
	f.failCode.Store(code)
}

func (f *fakeVault) recorded() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

func (f *fakeVault) resetRecorded() {
	f.mu.Lock()
	f.requests = nil
	f.mu.Unlock()
}

// --- token endpoints ---

func (f *fakeVault) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration") {
		// MSAL (azidentity) reads the tenant's metadata before its first
		// token request.
		base := "https://" + r.Host + strings.TrimSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration")
		writeJSON(w, 200, map[string]string{
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/v2.0",
		})
		return
	}
	f.tokenCalls.Add(1)
	if s := f.tokenFail.Load(); s != 0 {
		writeJSON(w, int(s), map[string]string{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
		return
	}
	life := f.tokenLife.Load()
	if life == 0 {
		life = 3600
	}
	tok := "tok-" + rand.Text()
	f.mu.Lock()
	f.tokens[tok] = true
	f.requests = append(f.requests, fakeRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: readAll(r)})
	f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/metadata/identity/oauth2/token":
		if r.Header.Get("Metadata") != "true" || r.URL.Query().Get("resource") == "" {
			writeJSON(w, 400, map[string]string{"error": "invalid_request", "error_description": "Required metadata header not specified"})
			return
		}
		// IMDS sends its numbers as strings.
		writeJSON(w, 200, map[string]string{
			"access_token": tok, "token_type": "Bearer", "resource": r.URL.Query().Get("resource"),
			"expires_in": fmt.Sprint(life), "expires_on": fmt.Sprint(time.Now().Unix() + life),
		})
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
		writeJSON(w, 200, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": life, "ext_expires_in": life})
	default:
		http.NotFound(w, r)
	}
}

// --- vault ---

func vaultErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readAll(r *http.Request) []byte {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return b
}

func (f *fakeVault) serveVault(w http.ResponseWriter, r *http.Request) {
	body := readAll(r)
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	release := f.release
	f.mu.Unlock()
	if f.hang.Load() {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		if r.Context().Err() != nil {
			return
		}
	}
	if s := f.failStatus.Load(); s != 0 {
		vaultErr(w, int(s), f.failCode.Load().(string), "injected failure")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		vaultErr(w, 400, "BadParameter", "api-version is required")
		return
	}
	auth := r.Header.Get("Authorization")
	f.mu.Lock()
	ok := strings.HasPrefix(auth, "Bearer ") && f.tokens[strings.TrimPrefix(auth, "Bearer ")] && !f.rejectAll.Load()
	f.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net"`)
		vaultErr(w, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "keys" {
		vaultErr(w, 404, "NotFound", "no such path")
		return
	}
	name := parts[1]
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.keys[name]
	switch {
	case len(parts) == 3 && parts[2] == "create" && r.Method == http.MethodPost:
		var req struct {
			KTY     string   `json:"kty"`
			KeySize int      `json:"key_size"`
			KeyOps  []string `json:"key_ops"`
		}
		if json.Unmarshal(body, &req) != nil {
			vaultErr(w, 400, "BadParameter", "bad body")
			return
		}
		if k == nil {
			k = &fakeKey{kty: req.KTY, ops: req.KeyOps}
			f.keys[name] = k
		}
		v, err := newFakeVersion(req.KTY, req.KeySize)
		if err != nil {
			vaultErr(w, 400, "BadParameter", err.Error())
			return
		}
		k.versions = append(k.versions, v)
		writeJSON(w, 200, f.bundle(r, name, k, v))
	case k == nil:
		vaultErr(w, 404, "KeyNotFound", fmt.Sprintf("A key with (name/id) %s was not found in this key vault.", name))
	case len(parts) == 2 && r.Method == http.MethodGet:
		writeJSON(w, 200, f.bundle(r, name, k, k.versions[len(k.versions)-1]))
	case len(parts) == 3 && parts[2] == "rotate" && r.Method == http.MethodPost:
		last := k.versions[len(k.versions)-1]
		v, _ := newFakeVersion(k.kty, keySizeOf(last))
		k.versions = append(k.versions, v)
		writeJSON(w, 200, f.bundle(r, name, k, v))
	case len(parts) >= 3:
		v := k.version(parts[2])
		if v == nil {
			vaultErr(w, 404, "KeyNotFound", "version not found")
			return
		}
		switch {
		case len(parts) == 3 && r.Method == http.MethodGet:
			writeJSON(w, 200, f.bundle(r, name, k, v))
		case len(parts) == 3 && r.Method == http.MethodPatch:
			var req struct {
				Attributes struct {
					Enabled *bool `json:"enabled"`
				} `json:"attributes"`
			}
			json.Unmarshal(body, &req)
			if req.Attributes.Enabled != nil {
				v.enabled = *req.Attributes.Enabled
			}
			writeJSON(w, 200, f.bundle(r, name, k, v))
		case len(parts) == 4 && (parts[3] == "wrapkey" || parts[3] == "unwrapkey") && r.Method == http.MethodPost:
			if !v.enabled {
				vaultErr(w, 403, "Forbidden", "Operation is not allowed on a disabled key.")
				return
			}
			var req struct {
				Alg   string `json:"alg"`
				Value string `json:"value"`
			}
			if json.Unmarshal(body, &req) != nil {
				vaultErr(w, 400, "BadParameter", "bad body")
				return
			}
			in, err := base64.RawURLEncoding.DecodeString(req.Value)
			if err != nil {
				vaultErr(w, 400, "BadParameter", "value is not base64url")
				return
			}
			out, err := v.op(parts[3], req.Alg, in)
			if err != nil {
				vaultErr(w, 400, "BadParameter", err.Error())
				return
			}
			writeJSON(w, 200, map[string]string{"kid": f.kid(r, name, v), "value": base64.RawURLEncoding.EncodeToString(out)})
		default:
			vaultErr(w, 405, "MethodNotAllowed", "no such operation")
		}
	default:
		vaultErr(w, 405, "MethodNotAllowed", "no such operation")
	}
}

func (k *fakeKey) version(id string) *fakeVersion {
	for _, v := range k.versions {
		if v.id == id {
			return v
		}
	}
	return nil
}

func (f *fakeVault) kid(r *http.Request, name string, v *fakeVersion) string {
	return "https://" + r.Host + "/keys/" + name + "/" + v.id
}

func (f *fakeVault) bundle(r *http.Request, name string, k *fakeKey, v *fakeVersion) map[string]any {
	key := map[string]any{"kid": f.kid(r, name, v), "kty": k.kty}
	if k.ops != nil {
		key["key_ops"] = k.ops
	}
	if v.rsa != nil {
		key["n"] = base64.RawURLEncoding.EncodeToString(v.rsa.N.Bytes())
		key["e"] = "AQAB"
	}
	return map[string]any{"key": key, "attributes": map[string]any{"enabled": v.enabled, "recoveryLevel": "Recoverable+Purgeable"}}
}

func keySizeOf(v *fakeVersion) int {
	if v.rsa != nil {
		return v.rsa.N.BitLen()
	}
	return len(v.aes) * 8
}

func newFakeVersion(kty string, size int) (*fakeVersion, error) {
	id := make([]byte, 16)
	rand.Read(id)
	v := &fakeVersion{id: hex.EncodeToString(id), enabled: true}
	switch kty {
	case "RSA", "RSA-HSM":
		if size == 0 {
			size = 2048
		}
		k, err := rsa.GenerateKey(rand.Reader, size)
		if err != nil {
			return nil, err
		}
		v.rsa = k
	case "oct", "oct-HSM":
		if size == 0 {
			size = 256
		}
		v.aes = make([]byte, size/8)
		rand.Read(v.aes)
	case "EC", "EC-HSM":
		// Enough for kseal to see the type: it must refuse such keys.
	default:
		return nil, fmt.Errorf("unsupported kty %q", kty)
	}
	return v, nil
}

func (v *fakeVersion) op(op, alg string, in []byte) ([]byte, error) {
	switch {
	case v.rsa != nil && alg == "RSA-OAEP-256":
		if op == "wrapkey" {
			return rsa.EncryptOAEP(sha256.New(), rand.Reader, &v.rsa.PublicKey, in, nil)
		}
		return rsa.DecryptOAEP(sha256.New(), nil, v.rsa, in, nil)
	case v.aes != nil && alg == "A256KW" && len(v.aes) == 32:
		if op == "wrapkey" {
			return aesWrap(v.aes, in)
		}
		return aesUnwrap(v.aes, in)
	}
	return nil, fmt.Errorf("algorithm %q is not supported by this key", alg)
}

// aesWrap and aesUnwrap are RFC 3394 key wrap with the default IV, for the
// fake's oct-HSM keys.
var kwIV = []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

func aesWrap(kek, plain []byte) ([]byte, error) {
	if len(plain)%8 != 0 || len(plain) < 16 {
		return nil, errors.New("key to wrap must be a multiple of 8 bytes")
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(plain) / 8
	out := make([]byte, 8+len(plain))
	copy(out, kwIV)
	copy(out[8:], plain)
	var buf [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(buf[:8], out[:8])
			copy(buf[8:], out[8*i:8*i+8])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(out[:8], binary.BigEndian.Uint64(buf[:8])^t)
			copy(out[8*i:], buf[8:])
		}
	}
	return out, nil
}

func aesUnwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped)%8 != 0 || len(wrapped) < 24 {
		return nil, errors.New("wrapped key has a bad length")
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	a := make([]byte, 8)
	copy(a, wrapped[:8])
	r := append([]byte(nil), wrapped[8:]...)
	var buf [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a)^t)
			copy(buf[8:], r[8*(i-1):8*i])
			b.Decrypt(buf[:], buf[:])
			copy(a, buf[:8])
			copy(r[8*(i-1):], buf[8:])
		}
	}
	if subtle.ConstantTimeCompare(a, kwIV) != 1 {
		return nil, errors.New("integrity check failed")
	}
	return r, nil
}

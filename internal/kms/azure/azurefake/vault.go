// Package azurefake is a small Azure Key Vault for tests: the unit tests of
// internal/kms/azure and the end-to-end suite (test/integration), where
// kseal, a separate process, reaches it over loopback TLS. RSA keys (real
// RSA-OAEP-256) and oct-HSM keys (real RFC 3394 A256KW) with versions,
// create, rotate, disable, bearer tokens it issued itself from a managed
// identity (IMDS-style) endpoint and an Entra ID token endpoint, and knobs
// to fail, hang, stop and restart on the same address. It is test support:
// kseal itself never imports it.
package azurefake

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

// Vault is a small Key Vault for tests: RSA keys (real RSA-OAEP-256)
// and oct-HSM keys (real RFC 3394 A256KW) with versions, create, rotate,
// disable, bearer tokens it issued itself, and knobs to fail, hang, stop and
// restart on the same address. Its state outlives a restart.
type Vault struct {
	t testing.TB

	// Mu guards Keys and Tokens (and the requests recorded).
	Mu sync.Mutex
	// Keys are the vault's keys by name.
	Keys map[string]*Key
	// Tokens are the bearer tokens the token endpoints issued and the
	// vault accepts.
	Tokens   map[string]bool
	requests []Request

	failStatus atomic.Int32 // answer every vault request with this status
	failCode   atomic.Value // error code string for failStatus
	hang       atomic.Bool  // hold requests until the client gives up
	RejectAll  atomic.Bool  // refuse every token
	release    chan struct{}
	TokenCalls atomic.Int32 // token requests answered
	TokenFail  atomic.Int32 // token endpoint answers this status
	TokenLife  atomic.Int64 // seconds; 0 means 3600

	vault *httptest.Server // TLS
	// Token is the managed identity endpoint (plain HTTP, like IMDS), Entra
	// Entra ID's client credentials endpoint (TLS).
	Token, Entra *httptest.Server
	// Addr is the vault's host:port; CAFile the PEM file of the certificate
	// it serves (for 127.0.0.1), to name in tls.caFile.
	Addr   string
	CAFile string
}

// Key is one key with its versions, oldest first.
type Key struct {
	kty      string
	ops      []string
	Versions []*Version
}

// Version is one version of a key: RSA or AES material.
type Version struct {
	ID      string
	RSA     *rsa.PrivateKey
	aes     []byte
	enabled bool
}

// Request is a request the vault or a token endpoint received.
type Request struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
}

// New starts the vault (TLS, on a free loopback port) and its token
// endpoints, writes the vault certificate to CAFile in t.TempDir(), and
// stops them all at t's cleanup.
func New(t testing.TB) *Vault {
	t.Helper()
	f := &Vault{
		t:       t,
		Keys:    map[string]*Key{},
		Tokens:  map[string]bool{},
		release: make(chan struct{}),
	}
	f.failCode.Store("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.Addr = ln.Addr().String()
	f.startOn(ln)
	f.Token = httptest.NewServer(http.HandlerFunc(f.serveToken))
	f.Entra = httptest.NewTLSServer(http.HandlerFunc(f.serveToken))
	// The httptest certificate (for 127.0.0.1) is the CA bundle a config
	// names in tls.caFile.
	f.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	cert := f.vault.Certificate()
	if err := os.WriteFile(f.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Resume()
		f.Stop()
		f.Token.Close()
		f.Entra.Close()
	})
	return f
}

func (f *Vault) startOn(ln net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serveVault))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	f.Mu.Lock()
	f.vault = srv
	f.Mu.Unlock()
}

// URL is the vault's base URL (vaultUrl).
func (f *Vault) URL() string { return "https://" + f.Addr }

// IdentityEndpoint is the managed identity token endpoint's URL (auth
// method managedIdentity, auth.identityEndpoint).
func (f *Vault) IdentityEndpoint() string { return f.Token.URL + "/metadata/identity/oauth2/token" }

// CreateKey adds a key (kty RSA, RSA-HSM, oct, oct-HSM, EC; size 0 for the
// default) or a new version of it, as the create call does, and returns the
// version's id.
func (f *Vault) CreateKey(name, kty string, size int) (string, error) {
	v, err := newVersion(kty, size)
	if err != nil {
		return "", err
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	k := f.Keys[name]
	if k == nil {
		k = &Key{kty: kty}
		f.Keys[name] = k
	}
	k.Versions = append(k.Versions, v)
	return v.ID, nil
}

// RotateKey adds a version to a key, as the rotate call does, and returns
// its id.
func (f *Vault) RotateKey(name string) (string, error) {
	f.Mu.Lock()
	k := f.Keys[name]
	f.Mu.Unlock()
	if k == nil {
		return "", fmt.Errorf("no key %q", name)
	}
	return f.CreateKey(name, k.kty, keySizeOf(k.Versions[len(k.Versions)-1]))
}

// Stop closes the vault's listener and connections (the token endpoints
// stay up): an outage.
func (f *Vault) Stop() {
	f.Mu.Lock()
	srv := f.vault
	f.vault = nil
	f.Mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// Start serves the vault again on its address, with the keys it had.
func (f *Vault) Start() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", f.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("restart fake vault on %s: %v", f.Addr, err)
	}
	f.startOn(ln)
}

// Pause holds every vault request until the client gives up or Resume.
func (f *Vault) Pause() { f.hang.Store(true) }

// Resume answers held requests and stops holding new ones.
func (f *Vault) Resume() {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.hang.Swap(false) {
		close(f.release)
		f.release = make(chan struct{})
	}
}

// Fail answers every vault request with status and error code (0: stop).
func (f *Vault) Fail(status int, code string) {
	f.failStatus.Store(int32(status))
	f.failCode.Store(code)
}

// Recorded returns the requests received since the last ResetRecorded.
func (f *Vault) Recorded() []Request {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// ResetRecorded forgets the requests recorded.
func (f *Vault) ResetRecorded() {
	f.Mu.Lock()
	f.requests = nil
	f.Mu.Unlock()
}

// --- token endpoints ---

func (f *Vault) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration") {
		// MSAL (azidentity) reads the tenant's metadata before its first
		// token request.
		base := "https://" + r.Host + strings.TrimSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration")
		WriteJSON(w, 200, map[string]string{
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/v2.0",
		})
		return
	}
	f.TokenCalls.Add(1)
	if s := f.TokenFail.Load(); s != 0 {
		WriteJSON(w, int(s), map[string]string{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
		return
	}
	life := f.TokenLife.Load()
	if life == 0 {
		life = 3600
	}
	tok := "tok-" + rand.Text()
	f.Mu.Lock()
	f.Tokens[tok] = true
	f.requests = append(f.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: readAll(r)})
	f.Mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/metadata/identity/oauth2/token":
		if r.Header.Get("Metadata") != "true" || r.URL.Query().Get("resource") == "" {
			WriteJSON(w, 400, map[string]string{"error": "invalid_request", "error_description": "Required metadata header not specified"})
			return
		}
		// IMDS sends its numbers as strings.
		WriteJSON(w, 200, map[string]string{
			"access_token": tok, "token_type": "Bearer", "resource": r.URL.Query().Get("resource"),
			"expires_in": fmt.Sprint(life), "expires_on": fmt.Sprint(time.Now().Unix() + life),
		})
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
		WriteJSON(w, 200, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": life, "ext_expires_in": life})
	default:
		http.NotFound(w, r)
	}
}

// --- vault ---

// WriteError answers a Key Vault error body.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readAll(r *http.Request) []byte {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return b
}

func (f *Vault) serveVault(w http.ResponseWriter, r *http.Request) {
	body := readAll(r)
	f.Mu.Lock()
	f.requests = append(f.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body})
	release := f.release
	f.Mu.Unlock()
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
		WriteError(w, int(s), f.failCode.Load().(string), "injected failure")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		WriteError(w, 400, "BadParameter", "api-version is required")
		return
	}
	auth := r.Header.Get("Authorization")
	f.Mu.Lock()
	ok := strings.HasPrefix(auth, "Bearer ") && f.Tokens[strings.TrimPrefix(auth, "Bearer ")] && !f.RejectAll.Load()
	f.Mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net"`)
		WriteError(w, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "keys" {
		WriteError(w, 404, "NotFound", "no such path")
		return
	}
	name := parts[1]
	f.Mu.Lock()
	defer f.Mu.Unlock()
	k := f.Keys[name]
	switch {
	case len(parts) == 3 && parts[2] == "create" && r.Method == http.MethodPost:
		var req struct {
			KTY     string   `json:"kty"`
			KeySize int      `json:"key_size"`
			KeyOps  []string `json:"key_ops"`
		}
		if json.Unmarshal(body, &req) != nil {
			WriteError(w, 400, "BadParameter", "bad body")
			return
		}
		if k == nil {
			k = &Key{kty: req.KTY, ops: req.KeyOps}
			f.Keys[name] = k
		}
		v, err := newVersion(req.KTY, req.KeySize)
		if err != nil {
			WriteError(w, 400, "BadParameter", err.Error())
			return
		}
		k.Versions = append(k.Versions, v)
		WriteJSON(w, 200, f.bundle(r, name, k, v))
	case k == nil:
		WriteError(w, 404, "KeyNotFound", fmt.Sprintf("A key with (name/id) %s was not found in this key vault.", name))
	case len(parts) == 2 && r.Method == http.MethodGet:
		WriteJSON(w, 200, f.bundle(r, name, k, k.Versions[len(k.Versions)-1]))
	case len(parts) == 3 && parts[2] == "rotate" && r.Method == http.MethodPost:
		last := k.Versions[len(k.Versions)-1]
		v, _ := newVersion(k.kty, keySizeOf(last))
		k.Versions = append(k.Versions, v)
		WriteJSON(w, 200, f.bundle(r, name, k, v))
	case len(parts) >= 3:
		v := k.version(parts[2])
		if v == nil {
			WriteError(w, 404, "KeyNotFound", "version not found")
			return
		}
		switch {
		case len(parts) == 3 && r.Method == http.MethodGet:
			WriteJSON(w, 200, f.bundle(r, name, k, v))
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
			WriteJSON(w, 200, f.bundle(r, name, k, v))
		case len(parts) == 4 && (parts[3] == "wrapkey" || parts[3] == "unwrapkey") && r.Method == http.MethodPost:
			if !v.enabled {
				WriteError(w, 403, "Forbidden", "Operation is not allowed on a disabled key.")
				return
			}
			var req struct {
				Alg   string `json:"alg"`
				Value string `json:"value"`
			}
			if json.Unmarshal(body, &req) != nil {
				WriteError(w, 400, "BadParameter", "bad body")
				return
			}
			in, err := base64.RawURLEncoding.DecodeString(req.Value)
			if err != nil {
				WriteError(w, 400, "BadParameter", "value is not base64url")
				return
			}
			out, err := v.op(parts[3], req.Alg, in)
			if err != nil {
				WriteError(w, 400, "BadParameter", err.Error())
				return
			}
			WriteJSON(w, 200, map[string]string{"kid": f.kid(r, name, v), "value": base64.RawURLEncoding.EncodeToString(out)})
		default:
			WriteError(w, 405, "MethodNotAllowed", "no such operation")
		}
	default:
		WriteError(w, 405, "MethodNotAllowed", "no such operation")
	}
}

func (k *Key) version(id string) *Version {
	for _, v := range k.Versions {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (f *Vault) kid(r *http.Request, name string, v *Version) string {
	return "https://" + r.Host + "/keys/" + name + "/" + v.ID
}

func (f *Vault) bundle(r *http.Request, name string, k *Key, v *Version) map[string]any {
	key := map[string]any{"kid": f.kid(r, name, v), "kty": k.kty}
	if k.ops != nil {
		key["key_ops"] = k.ops
	}
	if v.RSA != nil {
		key["n"] = base64.RawURLEncoding.EncodeToString(v.RSA.N.Bytes())
		key["e"] = "AQAB"
	}
	return map[string]any{"key": key, "attributes": map[string]any{"enabled": v.enabled, "recoveryLevel": "Recoverable+Purgeable"}}
}

func keySizeOf(v *Version) int {
	if v.RSA != nil {
		return v.RSA.N.BitLen()
	}
	return len(v.aes) * 8
}

func newVersion(kty string, size int) (*Version, error) {
	id := make([]byte, 16)
	rand.Read(id)
	v := &Version{ID: hex.EncodeToString(id), enabled: true}
	switch kty {
	case "RSA", "RSA-HSM":
		if size == 0 {
			size = 2048
		}
		k, err := rsa.GenerateKey(rand.Reader, size)
		if err != nil {
			return nil, err
		}
		v.RSA = k
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

func (v *Version) op(op, alg string, in []byte) ([]byte, error) {
	switch {
	case v.RSA != nil && alg == "RSA-OAEP-256":
		if op == "wrapkey" {
			return rsa.EncryptOAEP(sha256.New(), rand.Reader, &v.RSA.PublicKey, in, nil)
		}
		return rsa.DecryptOAEP(sha256.New(), nil, v.RSA, in, nil)
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

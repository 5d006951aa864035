package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeTransit is a small in-memory Transit engine behind an http.Handler:
// enough of the API (key read, datakey/plaintext, decrypt, renew-self) to
// test request shapes and round trips. Real-server behaviour is covered by
// the integration test.
type fakeTransit struct {
	t         *testing.T
	mount     string
	token     string
	namespace string

	mu        sync.Mutex
	keys      map[string][]cipher.AEAD // name -> versions (index v-1)
	deletable map[string]bool          // keys/NAME/config deletion_allowed (destroy_test.go)
	requests  []fakeRequest
	renew     func() (int, string) // status and body for renew-self; nil: 200, 60 s renewable
}

type fakeRequest struct {
	Method, Path, Token, Namespace, ContentType string
	Body                                        string
}

func newFakeTransit(t *testing.T, mount, token string) *fakeTransit {
	return &fakeTransit{t: t, mount: mount, token: token, keys: map[string][]cipher.AEAD{}}
}

func (f *fakeTransit) addKey(name string) { f.rotate(name) }

func (f *fakeTransit) rotate(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := make([]byte, 32)
	rand.Read(key)
	b, _ := aes.NewCipher(key)
	g, _ := cipher.NewGCM(b)
	f.keys[name] = append(f.keys[name], g)
}

func (f *fakeTransit) log() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func replyErr(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	reply(w, status, map[string]any{"errors": msgs})
}

func (f *fakeTransit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, fakeRequest{r.Method, r.URL.EscapedPath(), r.Header.Get("X-Vault-Token"),
		r.Header.Get("X-Vault-Namespace"), r.Header.Get("Content-Type"), string(body)})
	f.mu.Unlock()
	if r.Header.Get("X-Vault-Token") != f.token || r.Header.Get("X-Vault-Namespace") != f.namespace {
		replyErr(w, http.StatusForbidden, "permission denied")
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		replyErr(w, http.StatusNotFound)
		return
	}
	if path == "auth/token/renew-self" && r.Method == http.MethodPost {
		status, b := http.StatusOK, `{"auth":{"lease_duration":60,"renewable":true}}`
		if f.renew != nil {
			status, b = f.renew()
		}
		w.WriteHeader(status)
		io.WriteString(w, b)
		return
	}
	rest, ok := strings.CutPrefix(path, f.mount+"/")
	if !ok {
		replyErr(w, http.StatusNotFound, fmt.Sprintf("no handler for route %q. route entry not found.", path))
		return
	}
	op, name, _ := strings.Cut(rest, "/")
	if op == "datakey" {
		var kind string
		kind, name, _ = strings.Cut(name, "/")
		op += "/" + kind
	}
	f.mu.Lock()
	versions := f.keys[name]
	f.mu.Unlock()
	switch {
	case op == "keys" && (r.Method == http.MethodDelete || strings.HasSuffix(name, "/config")):
		f.serveDestroy(w, r.Method, name, body)
	case op == "keys" && r.Method == http.MethodGet:
		if versions == nil {
			replyErr(w, http.StatusNotFound)
			return
		}
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{
			"name": name, "type": "aes256-gcm96", "latest_version": len(versions), "derived": false,
			"supports_encryption": true, "min_decryption_version": 1,
		}})
	case op == "datakey/plaintext" && r.Method == http.MethodPost:
		var req struct {
			Bits int `json:"bits"`
		}
		if err := json.Unmarshal(body, &req); err != nil || req.Bits != 256 {
			replyErr(w, http.StatusBadRequest, "bad bits")
			return
		}
		if versions == nil {
			replyErr(w, http.StatusBadRequest, "encryption key not found")
			return
		}
		dek := make([]byte, 32)
		rand.Read(dek)
		nonce := make([]byte, 12)
		rand.Read(nonce)
		ct := versions[len(versions)-1].Seal(nonce, nonce, dek, nil)
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{
			"plaintext":   base64.StdEncoding.EncodeToString(dek),
			"ciphertext":  "vault:v" + strconv.Itoa(len(versions)) + ":" + base64.StdEncoding.EncodeToString(ct),
			"key_version": len(versions),
		}})
	case op == "decrypt" && r.Method == http.MethodPost:
		var req struct {
			Ciphertext string `json:"ciphertext"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			replyErr(w, http.StatusBadRequest, "bad body")
			return
		}
		if versions == nil {
			replyErr(w, http.StatusBadRequest, "encryption key not found")
			return
		}
		v, ct, err := parseCiphertext(req.Ciphertext)
		if err != nil {
			replyErr(w, http.StatusBadRequest, "invalid ciphertext: "+err.Error())
			return
		}
		if v > uint64(len(versions)) {
			replyErr(w, http.StatusBadRequest, "invalid ciphertext: version is too new")
			return
		}
		if len(ct) < 12 {
			replyErr(w, http.StatusBadRequest, "invalid ciphertext: too short")
			return
		}
		pt, err := versions[v-1].Open(nil, ct[:12], ct[12:], nil)
		if err != nil {
			replyErr(w, http.StatusBadRequest, "cipher: message authentication failed")
			return
		}
		reply(w, http.StatusOK, map[string]any{"data": map[string]any{"plaintext": base64.StdEncoding.EncodeToString(pt)}})
	default:
		replyErr(w, http.StatusNotFound)
	}
}

package hadoop

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeKMS is an in-process Hadoop KMS: the REST calls kseal makes, with
// the answers the real server (3.4.3) gives, including its quirks (an empty
// object for a missing key's metadata, HTTP 500 IOException for generate on
// a missing key, HTTP 400 IllegalArgumentException for a missing version).
type fakeKMS struct {
	t    *testing.T
	srv  *httptest.Server
	user string

	mu     sync.Mutex
	keys   map[string][][]byte // name -> version materials
	length map[string]int
	calls  map[string]int // "generate", "decrypt", "metadata"
	fail   int            // answer the next fail requests with this status
	status int
}

func newFakeKMS(t *testing.T) *fakeKMS {
	f := &fakeKMS{t: t, user: "kseal", keys: map[string][][]byte{}, length: map[string]int{}, calls: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKMS) create(name string, bits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.length[name] = bits
	f.keys[name] = [][]byte{randBytes(bits / 8)}
}

func (f *fakeKMS) roll(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[name] = append(f.keys[name], randBytes(f.length[name]/8))
}

func (f *fakeKMS) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, name)
}

func (f *fakeKMS) failNext(n, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.status = n, status
}

func (f *fakeKMS) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

var b64u = base64.RawURLEncoding

func ctr(key, iv, in []byte) []byte {
	blk, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	out := make([]byte, len(in))
	cipher.NewCTR(blk, iv).XORKeyStream(out, in)
	return out
}

func remoteErr(w http.ResponseWriter, status int, class, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"RemoteException": map[string]string{
		"message": msg, "exception": class[strings.LastIndex(class, ".")+1:], "javaClassName": class}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeKMS) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		remoteErr(w, f.status, "java.io.IOException", "injected")
		return
	}
	if r.URL.Query().Get("user.name") == "" {
		http.Error(w, "Authentication required", http.StatusUnauthorized)
		return
	}
	if u := r.URL.Query().Get("user.name"); u != f.user {
		remoteErr(w, http.StatusForbidden, "org.apache.hadoop.security.authorize.AuthorizationException", "User ["+u+"] is not authorized")
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/kms/v1/")
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(p, "key/") && strings.HasSuffix(p, "/_metadata"):
		f.calls["metadata"]++
		name := strings.TrimSuffix(strings.TrimPrefix(p, "key/"), "/_metadata")
		vs, ok := f.keys[name]
		if !ok {
			writeJSON(w, map[string]any{})
			return
		}
		writeJSON(w, map[string]any{"name": name, "cipher": "AES/CTR/NoPadding", "length": f.length[name], "versions": len(vs)})
	case r.Method == http.MethodGet && strings.HasPrefix(p, "key/") && strings.HasSuffix(p, "/_eek"):
		f.calls["generate"]++
		name := strings.TrimSuffix(strings.TrimPrefix(p, "key/"), "/_eek")
		if r.URL.Query().Get("eek_op") != "generate" || r.URL.Query().Get("num_keys") != "1" {
			remoteErr(w, http.StatusBadRequest, "java.lang.IllegalArgumentException", "bad eek_op")
			return
		}
		vs, ok := f.keys[name]
		if !ok {
			remoteErr(w, http.StatusInternalServerError, "java.io.IOException", "java.lang.NullPointerException: No KeyVersion exists for key '"+name+"' ")
			return
		}
		n := len(vs) - 1
		iv := randBytes(16)
		dek := randBytes(len(vs[n]))
		writeJSON(w, []any{map[string]any{
			"versionName":         name + "@" + strconv.Itoa(n),
			"iv":                  b64u.EncodeToString(iv),
			"encryptedKeyVersion": map[string]string{"name": name, "versionName": "EEK", "material": b64u.EncodeToString(ctr(vs[n], iv, dek))},
		}})
	case r.Method == http.MethodPost && strings.HasPrefix(p, "keyversion/") && strings.HasSuffix(p, "/_eek"):
		f.calls["decrypt"]++
		version := strings.TrimSuffix(strings.TrimPrefix(p, "keyversion/"), "/_eek")
		var body struct{ Name, IV, Material string }
		if r.URL.Query().Get("eek_op") != "decrypt" || json.NewDecoder(r.Body).Decode(&body) != nil {
			remoteErr(w, http.StatusBadRequest, "java.lang.IllegalArgumentException", "bad request")
			return
		}
		name, num, _ := strings.Cut(version, "@")
		n, err := strconv.Atoi(num)
		vs, ok := f.keys[name]
		if !ok || err != nil || n < 0 || n >= len(vs) {
			remoteErr(w, http.StatusBadRequest, "java.lang.IllegalArgumentException", fmt.Sprintf("'%s' not found", version))
			return
		}
		if body.Name != name {
			remoteErr(w, http.StatusBadRequest, "java.lang.IllegalArgumentException", fmt.Sprintf("KeyVersion '%s' does not belong to the key '%s'", version, body.Name))
			return
		}
		iv, err1 := b64u.DecodeString(body.IV)
		mat, err2 := b64u.DecodeString(body.Material)
		if err1 != nil || err2 != nil || len(iv) != 16 {
			remoteErr(w, http.StatusBadRequest, "java.lang.IllegalArgumentException", "bad base64")
			return
		}
		writeJSON(w, map[string]string{"name": name, "versionName": "EK", "material": b64u.EncodeToString(ctr(vs[n], iv, mat))})
	default:
		http.NotFound(w, r)
	}
}

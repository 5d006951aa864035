// Package vault is kseal's KMS provider for the Transit secrets engine of
// HashiCorp Vault and OpenBao, registered as KMS type "vault". KEKs are
// Transit keys; a DEK comes from datakey/plaintext (Transit makes the key and
// returns it with its wrapped form), and an EDEK is unwrapped with decrypt.
// It speaks the plain HTTP API (no Vault SDK): three calls, one token.
//
// Each method makes exactly one request with its own timeout and classifies
// the outcome (kms.ErrKeyNotFound, kms.ErrUnavailable, or a plain error for
// what retrying cannot fix); caching, retries and backoff belong to the
// caller (internal/dek).
//
// This package must never log, print or put into an error the token, a TLS
// key or password, a DEK, or a response body that may hold one.
package vault

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmsutil"
)

// maxResponse bounds a response body read into memory. A key read lists
// every version (about 20 bytes each), so this allows tens of thousands.
const maxResponse = 1 << 20

// KMS talks to one Transit mount. It is safe for concurrent use.
type KMS struct {
	logger    *slog.Logger
	base      string // "https://host:port/v1/"
	mount     string // "transit"
	namespace string
	timeout   time.Duration
	hc        *http.Client

	token     atomic.Pointer[string]
	tokenFile string
	tokenStat fileStamp // tokenFile's identity when last read; maintain goroutine only
	renew     bool

	// Log-in methods (auth.method approle, kubernetes, jwt); auth is nil
	// for a static token.
	auth      *AuthConfig
	loginMu   sync.Mutex
	lastLogin time.Time      // under loginMu
	logins    atomic.Int64   // successful log-ins, for tests
	loggedIn  chan tokenAuth // a request logged in: maintainLogin reschedules

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ kms.KMS = (*KMS)(nil)
var _ kms.Closer = (*KMS)(nil)
var _ kms.Prober = (*KMS)(nil)

// New reads the token and TLS files cfg names and builds the client. It
// makes no request: the proxy may start before the server is reachable, and
// the first DEK call reports what is wrong. With cfg.RenewToken, or with a
// TokenFile to watch, a goroutine runs until Close.
func New(ctx context.Context, cfg *Config, logger *slog.Logger) (*KMS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vault kms config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("vault kms: address: %w", err)
	}
	var tc *tls.Config
	if u.Scheme == "https" {
		if tc, err = cfg.TLS.clientConfig(u.Hostname()); err != nil {
			return nil, fmt.Errorf("vault kms: %w", err)
		}
	} else if !kmsutil.IsLoopback(u.Hostname()) {
		logger.Warn("vault kms: address is plain http: the token and DEKs cross the network unencrypted", "address", u.String())
	}
	k := &KMS{
		logger:    logger,
		base:      u.String() + "/v1/",
		mount:     cfg.Mount,
		namespace: cfg.Namespace,
		timeout:   cfg.Timeout,
		hc:        kmsutil.NewHTTPClient(cfg.Timeout, tc),
		tokenFile: cfg.TokenFile,
		renew:     cfg.RenewToken,
	}
	if cfg.Auth.login() {
		// The first log-in happens in the background (and on the first
		// request if that comes first): like a token, it needs no server
		// at start.
		a := cfg.Auth
		k.auth, k.tokenFile, k.renew = &a, "", true
		k.loggedIn = make(chan tokenAuth, 1)
		k.stop, k.done = make(chan struct{}), make(chan struct{})
		go k.maintainLogin()
		return k, nil
	}
	if err := k.loadToken(cfg); err != nil {
		return nil, err
	}
	if k.renew || k.tokenFile != "" {
		k.stop, k.done = make(chan struct{}), make(chan struct{})
		go k.maintain()
	}
	return k, nil
}

// Close stops the token maintenance goroutine and drops idle connections.
func (k *KMS) Close() error {
	k.closeOnce.Do(func() {
		if k.stop != nil {
			close(k.stop)
			<-k.done
		}
		k.hc.CloseIdleConnections()
	})
	return nil
}

// keyInfo is the part of a key read kseal looks at.
type keyInfo struct {
	Name               string `json:"name"`
	Type               string `json:"type"`
	LatestVersion      int64  `json:"latest_version"`
	Derived            bool   `json:"derived"`
	SupportsEncryption *bool  `json:"supports_encryption"` // absent on old servers
	SoftDeleted        bool   `json:"soft_deleted"`        // OpenBao
}

// ResolveKEK reads the Transit key: it must exist, not be soft-deleted, and
// be usable for datakey without a derivation context. A missing key (404)
// is kms.ErrKeyNotFound; a soft-deleted one (OpenBao) kms.ErrKeyUnusable.
// Transit keeps no trace of a deleted key: internal/dek remembers the names
// that resolved and treats their later "not found" as unusable.
func (k *KMS) ResolveKEK(ctx context.Context, name string) (kms.KEKRef, error) {
	if !validKeyName(name) {
		return kms.KEKRef{}, fmt.Errorf("vault kms: %q is not a valid Transit key name: %w", name, kms.ErrKeyNotFound)
	}
	var info keyInfo
	if err := k.call(ctx, "read key", name, http.MethodGet, k.keyPath("keys", name), nil, &info); err != nil {
		return kms.KEKRef{}, err
	}
	switch {
	case info.SoftDeleted:
		// It exists and its topics were encrypted: refuse them, never let
		// them fall back to the unresolvedKeyPolicy.
		return kms.KEKRef{}, fmt.Errorf("vault kms: key %q is soft-deleted: %w", name, kms.ErrKeyUnusable)
	case info.LatestVersion < 1:
		return kms.KEKRef{}, fmt.Errorf("vault kms: key %q has no versions: %w", name, kms.ErrKeyUnusable)
	case info.SupportsEncryption != nil && !*info.SupportsEncryption:
		return kms.KEKRef{}, fmt.Errorf("vault kms: key %q (type %s) cannot encrypt, so it cannot wrap DEKs", name, info.Type)
	case info.Derived:
		// Derived and convergent keys need a context kseal does not have.
		return kms.KEKRef{}, fmt.Errorf("vault kms: key %q is a derived key; kseal needs a key created without derived=true", name)
	}
	return kms.KEKRef{Name: name, ID: name}, nil
}

// dataKey is datakey/plaintext's answer. json decodes base64 into []byte,
// so the DEK never exists as a Go string.
type dataKey struct {
	Plaintext  []byte `json:"plaintext"`
	Ciphertext string `json:"ciphertext"`
}

// GenerateDEK asks Transit for a 256-bit data key wrapped by the key's
// latest version.
func (k *KMS) GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error) {
	name := kek.ID
	if name == "" {
		name = kek.Name
	}
	if !validKeyName(name) {
		return kms.DEK{}, fmt.Errorf("vault kms: %q is not a valid Transit key name: %w", name, kms.ErrKeyNotFound)
	}
	var dk dataKey
	err := k.call(ctx, "generate data key", name, http.MethodPost, k.keyPath("datakey/plaintext", name), []byte(`{"bits":256}`), &dk)
	if err != nil {
		clear(dk.Plaintext)
		return kms.DEK{}, err
	}
	if len(dk.Plaintext) != dekSize {
		clear(dk.Plaintext)
		return kms.DEK{}, fmt.Errorf("vault kms: generate data key with %q: got a %d-byte key, want %d", name, len(dk.Plaintext), dekSize)
	}
	version, ct, err := parseCiphertext(dk.Ciphertext)
	if err != nil {
		clear(dk.Plaintext)
		return kms.DEK{}, fmt.Errorf("vault kms: generate data key with %q: %w", name, err)
	}
	edek := appendEDEK(make([]byte, 0, EDEKSize(name, version, len(ct))), name, version, ct)
	return kms.DEK{Key: dk.Plaintext, EDEK: edek}, nil
}

// DecryptDEK rebuilds the "vault:vN:..." ciphertext from the EDEK and has
// Transit decrypt it with the named key.
func (k *KMS) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	name, version, ct, err := parseEDEK(edek)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, 32+base64.StdEncoding.EncodedLen(len(ct)))
	body = append(body, `{"ciphertext":"`...)
	body = appendCiphertext(body, version, ct)
	body = append(body, `"}`...)
	var out struct {
		Plaintext []byte `json:"plaintext"`
	}
	if err := k.call(ctx, "decrypt", string(name), http.MethodPost, k.keyPath("decrypt", string(name)), body, &out); err != nil {
		clear(out.Plaintext)
		return nil, err
	}
	if len(out.Plaintext) != dekSize {
		clear(out.Plaintext)
		return nil, fmt.Errorf("vault kms: decrypt with %q v%d: got %d bytes, want a %d-byte DEK", name, version, len(out.Plaintext), dekSize)
	}
	return out.Plaintext, nil
}

// Probe asks sys/health, which needs no token and no policy. Standby nodes
// count as up (they forward to the active node); a sealed (503) or
// uninitialised (501) server, or one that cannot be reached, does not.
func (k *KMS) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"sys/health?standbyok=true&perfstandbyok=true", nil)
	if err != nil {
		return fmt.Errorf("vault kms: health: %w", err)
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return fmt.Errorf("vault kms: health: %w", classifyTransport(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusServiceUnavailable:
		return fmt.Errorf("vault kms: health: %w: HTTP 503 (sealed)", kms.ErrUnavailable)
	case http.StatusNotImplemented:
		return fmt.Errorf("vault kms: health: %w: HTTP 501 (not initialized)", kms.ErrUnavailable)
	}
	return fmt.Errorf("vault kms: health: %w: HTTP %d", kms.ErrUnavailable, resp.StatusCode)
}

// DescribeEDEK reads the key name and version from an EDEK.
func (k *KMS) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) { return DescribeEDEK(edek) }

// DescribeEDEK reads the key name and version from an EDEK without a
// server, for inspection tools.
func DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	name, version, _, err := parseEDEK(edek)
	if err != nil {
		return kms.EDEKInfo{}, err
	}
	return kms.EDEKInfo{KEK: string(name), Version: strconv.FormatUint(version, 10)}, nil
}

func (k *KMS) keyPath(op, name string) string {
	return k.mount + "/" + op + "/" + url.PathEscape(name)
}

// response is the envelope of every answer.
type response struct {
	Data   json.RawMessage `json:"data"`
	Auth   *tokenAuth      `json:"auth"`
	Errors []string        `json:"errors"`
}

// call makes one request to path (relative to /v1/) with the current token
// and decodes the answer's data into out (or, for auth endpoints, its auth
// block). op and key name the call in errors. With a log-in method it logs
// in first if no token is there yet, and once more when the token is
// refused (403: expired or revoked), then repeats the request.
func (k *KMS) call(ctx context.Context, op, key, method, path string, body []byte, out any) error {
	if k.auth == nil {
		return k.send(ctx, op, key, method, path, body, out, *k.token.Load())
	}
	tok := ""
	if p := k.token.Load(); p != nil {
		tok = *p
	} else {
		var err error
		if tok, err = k.relogin(ctx, "", false); err != nil {
			return err
		}
	}
	err := k.send(ctx, op, key, method, path, body, out, tok)
	var se *statusError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden {
		return err
	}
	tok, lerr := k.relogin(ctx, tok, true)
	if lerr != nil {
		return fmt.Errorf("%w; logging in again: %w", err, lerr)
	}
	return k.send(ctx, op, key, method, path, body, out, tok)
}

// send makes one request with token ("" for none: log-in).
func (k *KMS) send(ctx context.Context, op, key, method, path string, body []byte, out any, token string) error {
	where := op
	if key != "" {
		where = fmt.Sprintf("%s with %q", op, key)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.base+path, rd)
	if err != nil {
		return fmt.Errorf("vault kms: %s: %w", where, err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	req.Header.Set("X-Vault-Request", "true")
	if k.namespace != "" {
		req.Header.Set("X-Vault-Namespace", k.namespace)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return fmt.Errorf("vault kms: %s: %w", where, classifyTransport(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	// The body of datakey and decrypt holds the DEK in base64: wipe it
	// once decoded.
	defer clear(raw)
	if err != nil {
		return fmt.Errorf("vault kms: %s: reading response: %w", where, classifyTransport(err))
	}
	if len(raw) > maxResponse {
		return fmt.Errorf("vault kms: %s: response larger than %d bytes", where, maxResponse)
	}
	var env response
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &env); err != nil && resp.StatusCode/100 == 2 {
			// json's error names a type and an offset, never the content.
			return fmt.Errorf("vault kms: %s: malformed response (HTTP %d): %w", where, resp.StatusCode, err)
		}
	}
	defer clear(env.Data)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("vault kms: %s: %w", where, classifyStatus(resp.StatusCode, env.Errors))
	}
	switch o := out.(type) {
	case nil:
		return nil
	case **tokenAuth:
		*o = env.Auth
		return nil
	}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return fmt.Errorf("vault kms: %s: response (HTTP %d) has no data", where, resp.StatusCode)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("vault kms: %s: malformed response data: %w", where, err)
	}
	return nil
}

// statusError is a non-2xx answer.
type statusError struct {
	Status int
	Errors []string // the server's messages, shortened
}

func (e *statusError) Error() string {
	if len(e.Errors) == 0 {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, strings.Join(e.Errors, "; "))
}

// classifyStatus maps an error answer to kms.ErrKeyNotFound,
// kms.ErrUnavailable or a plain error. Transit reports a missing key as 404
// on reads but as 400 "encryption key not found" on datakey and decrypt, and
// a version below min_decryption_version (or trimmed) or above the latest as
// 400 too; all of these mean the KEK (version) the caller wants is gone.
func classifyStatus(status int, msgs []string) error {
	e := &statusError{Status: status}
	for i, m := range msgs {
		if i == 4 {
			break
		}
		if len(m) > 200 {
			m = m[:200] + "..."
		}
		e.Errors = append(e.Errors, strconv.Quote(m))
	}
	joined := strings.ToLower(strings.Join(msgs, "\n"))
	switch {
	case status == http.StatusNotFound && strings.Contains(joined, "no handler for route"):
		return fmt.Errorf("%w (no Transit engine at this mount and namespace?)", e)
	case status == http.StatusNotFound:
		return fmt.Errorf("%w: %w", kms.ErrKeyNotFound, e)
	case status == http.StatusBadRequest && (strings.Contains(joined, "key not found") ||
		strings.Contains(joined, "version is too new") ||
		strings.Contains(joined, "disallowed by policy")):
		return fmt.Errorf("%w: %w", kms.ErrKeyNotFound, e)
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return fmt.Errorf("%w: %w (token expired, revoked, or its policy lacks this path)", kms.ErrAccessDenied, e)
	case status == http.StatusTooManyRequests, // rate limit quota
		status == http.StatusPreconditionFailed, // Enterprise consistency: not yet replicated
		status == 472, status == 473,            // DR / performance standby cannot serve
		status >= 500: // 503 sealed or standby, 502/504 from a load balancer
		return fmt.Errorf("%w: %w", kms.ErrUnavailable, e)
	}
	return e
}

// classifyTransport is kmsutil.ClassifyTransport with vault's advice for a
// refused redirect: retrying cannot help, the address leads somewhere else.
func classifyTransport(err error) error {
	return kmsutil.ClassifyTransport(err, "set address to the active node or a load balancer in front of the cluster: standbys forward requests to the active node unless request forwarding is off")
}

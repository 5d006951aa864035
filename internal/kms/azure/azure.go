// Package azure is kseal's Azure Key Vault KMS: KEKs are Key Vault (or
// Managed HSM) keys that never leave the vault. kseal makes each 32-byte DEK
// itself with crypto/rand and has the vault wrap it (WrapKey) under the
// key's current version, RSA-OAEP-256 for RSA keys and A256KW for AES keys
// on Managed HSM, and unwrap it (UnwrapKey) under the version recorded in
// the EDEK, so rotating a key in Azure moves new DEKs to the new version
// while old records keep decrypting.
//
// It speaks the Key Vault REST API with net/http and gets its access token
// with the OAuth 2.0 client credentials flow or from a managed identity
// endpoint, cached until shortly before it expires. It registers itself as
// KMS type "azure".
//
// Every method makes one attempt under the configured timeout; retries,
// caching and not-found memory are the caller's (internal/dek). This
// package must never log, print or put into an error an access token, a
// client secret, a DEK or an EDEK's wrapped bytes.
package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// KMS is the Azure Key Vault KMS. It is safe for concurrent use.
type KMS struct {
	base       string // vault base URL, no trailing slash
	apiVersion string
	timeout    time.Duration
	hc         *http.Client
	transport  *http.Transport
	tokens     *tokenCache
	logger     *slog.Logger
	allowRSA   bool // Config.AllowRSAKeys
}

var _ kms.KMS = (*KMS)(nil)
var _ kms.Closer = (*KMS)(nil)
var _ kms.Prober = (*KMS)(nil)

// New checks cfg, reads the TLS trust it names and returns a KMS. It does
// not call the vault: a vault that is down at startup shows up as
// ErrUnavailable on the first use, like any later outage.
func New(ctx context.Context, cfg *Config, logger *slog.Logger) (*KMS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("azure kms config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tlsConf, err := tlsConfig(&cfg.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.TLS.InsecureSkipVerify {
		logger.Warn("azure kms: TLS certificate verification is OFF (tls.insecureSkipVerify): anyone on the path can read DEKs; use tls.caFile instead")
	}
	tr := &http.Transport{
		Proxy:                 proxyFor,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
	}
	hc := &http.Client{
		Transport: tr,
		// Neither Key Vault nor the token endpoints redirect; following
		// one could send the bearer token (or, with a 307, the client
		// secret in the form body) somewhere else.
		CheckRedirect: kms.NoRedirects,
	}
	var fetch fetchFunc
	switch cfg.Auth.Method {
	case MethodClientSecret:
		// Fail now, not at the first record, when the secret is missing.
		if _, err := readSecret(cfg.Auth.ClientSecretFile, cfg.Auth.ClientSecretEnv); err != nil {
			return nil, err
		}
		fetch = clientSecretFetcher(hc, cfg)
	case MethodManagedIdentity:
		if fetch, err = managedIdentityFetcher(hc, cfg); err != nil {
			return nil, err
		}
	}
	k := &KMS{
		base:       cfg.baseURL(),
		apiVersion: cfg.APIVersion,
		timeout:    cfg.Timeout,
		hc:         hc,
		transport:  tr,
		tokens:     newTokenCache(fetch, cfg.Timeout),
		logger:     logger,
		allowRSA:   cfg.AllowRSAKeys,
	}
	logger.Info("azure kms: configured", "vault", k.base, "auth", cfg.Auth.Method, "resource", cfg.resource(), "apiVersion", cfg.APIVersion,
		"allowRsaKeys", cfg.AllowRSAKeys)
	return k, nil
}

// proxyFor honours HTTP(S)_PROXY and NO_PROXY, except for the Instance
// Metadata Service: its link-local address is only reachable directly, and
// a token must not travel through a proxy (Azure's SDKs do the same).
func proxyFor(r *http.Request) (*url.URL, error) {
	if r.URL.Hostname() == "169.254.169.254" {
		return nil, nil
	}
	return envProxy(r)
}

// envProxy is the environment's proxy choice (a variable for tests: the
// standard library reads the environment once per process).
var envProxy = http.ProxyFromEnvironment

// tlsConfig builds the client TLS configuration: system roots plus CAFile.
func tlsConfig(c *TLSConfig) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tls.caFile: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls.caFile: %s holds no PEM certificate", c.CAFile)
	}
	conf.RootCAs = pool
	return conf, nil
}

// Close drops idle connections.
func (k *KMS) Close() error {
	k.transport.CloseIdleConnections()
	return nil
}

// keyBundle is the part of Key Vault's KeyBundle kseal reads.
type keyBundle struct {
	Key struct {
		KID    string   `json:"kid"`
		KTY    string   `json:"kty"`
		KeyOps []string `json:"key_ops"`
		N      string   `json:"n"`
	} `json:"key"`
	Attributes struct {
		Enabled *bool `json:"enabled"`
	} `json:"attributes"`
}

// keyInfo is a key's current version and the wrap algorithm it takes.
type keyInfo struct {
	version string
	alg     byte
}

// ResolveKEK reads the key's current version. name must be a Key Vault key
// name (letters, digits, dashes): any other name cannot exist there, so it
// is ErrKeyNotFound, as is a key the vault does not know. A key that is
// disabled, or deleted but still recoverable (soft-delete), is
// ErrKeyUnusable: its topics are refused rather than sent down the
// unresolvedKeyPolicy. A key that cannot wrap is a plain error.
func (k *KMS) ResolveKEK(ctx context.Context, name string) (kms.KEKRef, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	if _, err := k.currentKey(ctx, name); err != nil {
		return kms.KEKRef{}, err
	}
	return kms.KEKRef{Name: name, ID: name}, nil
}

// currentKey gets the key's latest version and checks it can wrap.
func (k *KMS) currentKey(ctx context.Context, name string) (keyInfo, error) {
	if !validName(name) {
		return keyInfo{}, fmt.Errorf("azure kms: %w: %q is not a Key Vault key name (1-127 letters, digits, dashes)", kms.ErrKeyNotFound, printable(name, 140))
	}
	var kb keyBundle
	if err := k.call(ctx, http.MethodGet, "/keys/"+name, nil, &kb, "get key "+name); err != nil {
		if errors.Is(err, kms.ErrKeyNotFound) && k.softDeleted(ctx, name) {
			return keyInfo{}, fmt.Errorf("azure kms: key %s is deleted but recoverable (soft-delete): %w", name, kms.ErrKeyUnusable)
		}
		return keyInfo{}, err
	}
	version, err := versionFromKID(kb.Key.KID, name)
	if err != nil {
		return keyInfo{}, fmt.Errorf("azure kms: get key %s: %w", name, err)
	}
	if kb.Attributes.Enabled != nil && !*kb.Attributes.Enabled {
		return keyInfo{}, fmt.Errorf("azure kms: key %s version %s is disabled: %w", name, version, kms.ErrKeyUnusable)
	}
	var info keyInfo
	info.version = version
	switch kb.Key.KTY {
	case "RSA", "RSA-HSM":
		if !k.allowRSA {
			return keyInfo{}, fmt.Errorf("azure kms: key %s is an RSA key and allowRsaKeys is false (anyone with its public key could make EDEKs kseal accepts); use an oct-HSM key", name)
		}
		info.alg = algRSAOAEP256
		if bits := rsaBits(kb.Key.N); bits != 0 && bits != 2048 && bits != 3072 && bits != 4096 {
			return keyInfo{}, fmt.Errorf("azure kms: key %s is RSA-%d: kseal takes RSA 2048, 3072 or 4096", name, bits)
		}
	case "oct", "oct-HSM":
		info.alg = algA256KW
	default:
		return keyInfo{}, fmt.Errorf("azure kms: key %s has type %q, which cannot wrap keys (want RSA, RSA-HSM or oct-HSM)", name, printable(kb.Key.KTY, 20))
	}
	if kb.Key.KeyOps != nil && (!slices.Contains(kb.Key.KeyOps, "wrapKey") || !slices.Contains(kb.Key.KeyOps, "unwrapKey")) {
		return keyInfo{}, fmt.Errorf("azure kms: key %s does not allow wrapKey and unwrapKey (key_ops %s)", name, printable(strings.Join(kb.Key.KeyOps, ","), 100))
	}
	return info, nil
}

// softDeleted reports whether the vault holds name as a deleted key that
// can still be recovered (GET /deletedkeys/{name}). Any failure (no
// soft-delete, no permission to read deleted keys) answers false: the key
// then stays "not found".
func (k *KMS) softDeleted(ctx context.Context, name string) bool {
	var kb keyBundle
	return k.call(ctx, http.MethodGet, "/deletedkeys/"+name, nil, &kb, "get deleted key "+name) == nil
}

// Probe reads the key kms.ProbeKEK, which need not exist: a 404 is the
// vault answering with kseal's token. A token that cannot be had, 403
// (no permission, or a firewall), throttling, 5xx and network failures are
// errors.
func (k *KMS) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	var kb keyBundle
	err := k.call(ctx, http.MethodGet, "/keys/"+kms.ProbeKEK, nil, &kb, "readiness probe (get key "+kms.ProbeKEK+")")
	if err == nil || errors.Is(err, kms.ErrKeyNotFound) {
		return nil
	}
	return err
}

// GenerateDEK makes a DEK with crypto/rand and wraps it under the key's
// current version: a GET of the key, then a WrapKey. Reading the version
// each time (once per DEK, not per record) makes a rotation take effect at
// the next DEK.
func (k *KMS) GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	name := kek.ID
	if name == "" {
		name = kek.Name
	}
	info, err := k.currentKey(ctx, name)
	if err != nil {
		return kms.DEK{}, err
	}
	dek := make([]byte, dekSize)
	if _, err := rand.Read(dek); err != nil {
		return kms.DEK{}, fmt.Errorf("azure kms: random DEK: %w", err)
	}
	var res keyOpResult
	err = k.call(ctx, http.MethodPost, "/keys/"+name+"/"+info.version+"/wrapkey",
		keyOpParams{Alg: algName(info.alg), Value: base64.RawURLEncoding.EncodeToString(dek)}, &res,
		"wrap with key "+name+" version "+info.version)
	if err != nil {
		clear(dek)
		return kms.DEK{}, err
	}
	wrapped, err := decodeB64URL(res.Value)
	if err != nil || !validWrappedLen(info.alg, len(wrapped)) {
		clear(dek)
		return kms.DEK{}, fmt.Errorf("azure kms: wrap with key %s: unexpected wrapped key (%d bytes)", name, len(wrapped))
	}
	// The answer names the version that wrapped; it must be the one asked.
	if res.KID != "" {
		if v, err := versionFromKID(res.KID, name); err != nil || v != info.version {
			clear(dek)
			return kms.DEK{}, fmt.Errorf("azure kms: wrap with key %s version %s: answer is for another key or version", name, info.version)
		}
	}
	return kms.DEK{Key: dek, EDEK: appendEDEK(make([]byte, 0, EDEKSize(name, info.version, len(wrapped)*8)), name, info.version, info.alg, wrapped)}, nil
}

// DecryptDEK unwraps an EDEK under the key version it records; with
// allowRsaKeys false, RSA-wrapped EDEKs are refused without a request.
func (k *KMS) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	p, err := parseEDEK(edek)
	if err != nil {
		return nil, err
	}
	if p.alg == algRSAOAEP256 && !k.allowRSA {
		// Anyone with the public key could have made it: not asked.
		return nil, fmt.Errorf("azure kms: EDEK of key %s is RSA-wrapped and allowRsaKeys is false", p.name)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	var res keyOpResult
	err = k.call(ctx, http.MethodPost, "/keys/"+p.name+"/"+p.version+"/unwrapkey",
		keyOpParams{Alg: algName(p.alg), Value: base64.RawURLEncoding.EncodeToString(p.wrapped)}, &res,
		"unwrap with key "+p.name+" version "+p.version)
	if err != nil {
		return nil, err
	}
	dek, err := decodeB64URL(res.Value)
	if err != nil || len(dek) != dekSize {
		clear(dek)
		return nil, fmt.Errorf("azure kms: unwrap with key %s version %s: result is not a %d-byte key", p.name, p.version, dekSize)
	}
	return dek, nil
}

// DescribeEDEK parses an EDEK offline.
func (k *KMS) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) { return DescribeEDEK(edek) }

type keyOpParams struct {
	Alg   string `json:"alg"`
	Value string `json:"value"`
}

type keyOpResult struct {
	KID   string `json:"kid"`
	Value string `json:"value"`
}

// maxResponse bounds what is read from the vault: key bundles and
// operation results are a few KiB.
const maxResponse = 1 << 20

// vaultError is Key Vault's error body.
type vaultError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// call sends one request to the vault and decodes a 2xx answer into out.
// what says what failed in errors ("get key KEK-orders").
//
// Classification: 404 is ErrKeyNotFound; 408, 429 and 5xx, timeouts and
// connection failures are ErrUnavailable; 403 for a disabled key (or
// ForbiddenByPolicy) is ErrKeyUnusable; other 403s (no permission,
// firewall) and other 4xx are plain errors. A 401 means the vault no longer
// takes the cached token (revoked, or issued before the identity provider
// restarted): the token is dropped and the request sent once more with a
// fresh one, as Azure's own clients do; a second 401 is a plain error.
func (k *KMS) call(ctx context.Context, method, path string, in, out any, what string) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("azure kms: %s: %w", what, err)
		}
	}
	u := k.base + path + "?api-version=" + url.QueryEscape(k.apiVersion)
	for attempt := 0; ; attempt++ {
		tok, err := k.tokens.get(ctx)
		if err != nil {
			return fmt.Errorf("azure kms: %s: access token: %w", what, err)
		}
		status, b, err := k.send(ctx, method, u, body, tok)
		if err != nil {
			return fmt.Errorf("azure kms: %w", transportError(what, err))
		}
		if len(b) > maxResponse {
			return fmt.Errorf("azure kms: %s: answer larger than %d bytes", what, maxResponse)
		}
		if status/100 == 2 {
			if err := json.Unmarshal(b, out); err != nil {
				return fmt.Errorf("azure kms: %s: decoding the answer: %w", what, err)
			}
			return nil
		}
		detail := ""
		var ve vaultError
		if json.Unmarshal(b, &ve) == nil && ve.Error.Code != "" {
			detail = ": " + printable(ve.Error.Code+": "+ve.Error.Message, 300)
		}
		switch {
		case status == http.StatusNotFound:
			return fmt.Errorf("azure kms: %s: %w (HTTP 404%s)", what, kms.ErrKeyNotFound, detail)
		case transientStatus(status):
			return fmt.Errorf("azure kms: %s: %w: HTTP %d%s", what, kms.ErrUnavailable, status, detail)
		case status == http.StatusForbidden && (strings.Contains(strings.ToLower(detail), "disabled") ||
			strings.Contains(strings.ToLower(detail), "forbiddenbypolicy")):
			// The key exists, but is disabled (or its policy forbids the
			// operation): a refusal, never "no such key".
			return fmt.Errorf("azure kms: %s: %w (HTTP 403%s)", what, kms.ErrKeyUnusable, detail)
		case status == http.StatusUnauthorized:
			k.tokens.invalidate(tok)
			if attempt == 0 {
				continue
			}
			return fmt.Errorf("azure kms: %s: access token refused: HTTP 401%s", what, detail)
		default:
			return fmt.Errorf("azure kms: %s: HTTP %d%s", what, status, detail)
		}
	}
}

// send makes one round trip and reads at most maxResponse+1 bytes of the
// answer.
func (k *KMS) send(ctx context.Context, method, u string, body []byte, tok string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, b, nil
}

// transientStatus reports whether an HTTP status is worth retrying.
func transientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// transportError classifies a failed round trip: certificate problems and
// refused redirects are configuration errors that a retry will not fix;
// everything else (refused, reset, timeouts, DNS) is ErrUnavailable.
func transportError(what string, err error) error {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) {
		return fmt.Errorf("%s: TLS: %w (set tls.caFile to the CA that signed the server's certificate)", what, err)
	}
	if errors.Is(err, kms.ErrRedirectRefused) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, kms.ErrUnavailable, err)
}

// versionFromKID returns the version in a key id
// "https://<vault>/keys/<name>/<version>", checking that it is name's.
func versionFromKID(kid, name string) (string, error) {
	u, err := url.Parse(kid)
	if err != nil {
		return "", fmt.Errorf("key id is not a URL")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 3 || parts[0] != "keys" || parts[1] != name || !validVersion(parts[2]) {
		return "", fmt.Errorf("key id %q is not a version of key %s", printable(kid, 200), name)
	}
	return parts[2], nil
}

// rsaBits is the size of the base64url modulus n, 0 when absent or bad.
func rsaBits(n string) int {
	b, err := decodeB64URL(n)
	if err != nil || len(b) == 0 {
		return 0
	}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return len(b) * 8
}

// decodeB64URL decodes base64url with or without padding, as Key Vault's
// JSON Web Key fields and results come.
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// Package azure is kseal's Azure Key Vault KMS: KEKs are Key Vault (or
// Managed HSM) keys that never leave the vault. kseal makes each 32-byte DEK
// itself with crypto/rand and has the vault wrap it (WrapKey) under the
// key's current version, RSA-OAEP-256 for RSA keys and A256KW for AES keys
// on Managed HSM, and unwrap it (UnwrapKey) under the version recorded in
// the EDEK, so rotating a key in Azure moves new DEKs to the new version
// while old records keep decrypting.
//
// It speaks to the vault through Microsoft's azkeys client over kseal's own
// http.Client (no redirects, bounded answers, kseal's TLS trust), and gets
// its access token through azidentity (client secret, client certificate,
// workload identity) or from a managed identity endpoint, cached by
// tokenCache until shortly before it expires. It registers itself as KMS
// type "azure".
//
// Every method makes one attempt under the configured timeout; retries,
// caching and not-found memory are the caller's (internal/dek). This
// package must never log, print or put into an error an access token, a
// client secret, a DEK or an EDEK's wrapped bytes.
package azure

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kseal/kseal/internal/kms"
)

// KMS is the Azure Key Vault KMS. It is safe for concurrent use.
type KMS struct {
	base       string // vault base URL, no trailing slash
	apiVersion string
	timeout    time.Duration
	client     *azkeys.Client
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
	// The SDK's pipeline makes one attempt (internal/dek retries), over
	// hc: no redirects, kseal's TLS trust and proxy rules.
	sdkOpts := azcore.ClientOptions{
		Transport: &vaultTransport{hc: hc},
		Retry:     policy.RetryOptions{MaxRetries: -1},
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.authorityHost()},
	}
	var fetch fetchFunc
	switch cfg.Auth.Method {
	case MethodClientSecret:
		// Fail now, not at the first record, when the secret is missing.
		if _, err := readSecret(cfg.Auth.ClientSecretFile, cfg.Auth.ClientSecretEnv); err != nil {
			return nil, err
		}
		fetch = clientSecretFetcher(sdkOpts, cfg)
	case MethodClientCertificate:
		if _, _, err := readCertificate(cfg.Auth.ClientCertificateFile); err != nil {
			return nil, err
		}
		fetch = clientCertificateFetcher(sdkOpts, cfg)
	case MethodWorkloadIdentity:
		tenant, clientID, file := cfg.Auth.TenantID, cfg.Auth.ClientID, cfg.Auth.TokenFile
		for _, v := range []struct {
			dst      *string
			key, env string
		}{{&tenant, "tenantId", "AZURE_TENANT_ID"}, {&clientID, "clientId", "AZURE_CLIENT_ID"}, {&file, "tokenFile", "AZURE_FEDERATED_TOKEN_FILE"}} {
			if *v.dst == "" {
				*v.dst = os.Getenv(v.env)
			}
			if *v.dst == "" {
				return nil, fmt.Errorf("azure kms config: auth.%s: required for workloadIdentity (or set %s, as AKS workload identity does)", v.key, v.env)
			}
		}
		if !validGUIDOrDomain(tenant) {
			return nil, fmt.Errorf("azure kms config: auth.tenantId: %q (from AZURE_TENANT_ID) is not a tenant id or domain", printable(tenant, 100))
		}
		if _, err := readBounded(file, maxSecretSize); err != nil {
			return nil, fmt.Errorf("azure kms config: auth.tokenFile: %w", err)
		}
		fetch = workloadIdentityFetcher(sdkOpts, cfg, tenant, clientID, file)
	case MethodManagedIdentity:
		if fetch, err = managedIdentityFetcher(hc, cfg); err != nil {
			return nil, err
		}
	}
	tokens := newTokenCache(fetch, cfg.Timeout)
	sdkOpts.APIVersion = cfg.APIVersion
	// The vault's own requests go through vaultTransport: bounded answers,
	// and a refused token is dropped so the SDK's one retry gets a new one.
	sdkOpts.Transport = &vaultTransport{hc: hc, refused: tokens.invalidate}
	client, err := azkeys.NewClient(cfg.baseURL(), credential{tokens}, &azkeys.ClientOptions{
		ClientOptions: sdkOpts,
		// The challenge's resource is not used (credential pins the
		// audience), so checking it against the vault host adds nothing,
		// and would refuse private endpoints and test vaults.
		DisableChallengeResourceVerification: true,
	})
	if err != nil {
		return nil, fmt.Errorf("azure kms: %w", err)
	}
	k := &KMS{
		base:       cfg.baseURL(),
		apiVersion: cfg.APIVersion,
		timeout:    cfg.Timeout,
		client:     client,
		transport:  tr,
		tokens:     tokens,
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
	res, err := k.client.GetKey(ctx, name, "", nil)
	if err != nil {
		err = k.classify(err, "get key "+name)
		if errors.Is(err, kms.ErrKeyNotFound) && k.softDeleted(ctx, name) {
			return keyInfo{}, fmt.Errorf("azure kms: key %s is deleted but recoverable (soft-delete): %w", name, kms.ErrKeyUnusable)
		}
		return keyInfo{}, err
	}
	if res.Key == nil || res.Key.KID == nil {
		return keyInfo{}, fmt.Errorf("azure kms: get key %s: the answer has no key id", name)
	}
	version, err := versionFromKID(string(*res.Key.KID), name)
	if err != nil {
		return keyInfo{}, fmt.Errorf("azure kms: get key %s: %w", name, err)
	}
	if res.Attributes != nil && res.Attributes.Enabled != nil && !*res.Attributes.Enabled {
		return keyInfo{}, fmt.Errorf("azure kms: key %s version %s is disabled: %w", name, version, kms.ErrKeyUnusable)
	}
	var info keyInfo
	info.version = version
	kty := ""
	if res.Key.Kty != nil {
		kty = string(*res.Key.Kty)
	}
	switch kty {
	case "RSA", "RSA-HSM":
		if !k.allowRSA {
			return keyInfo{}, fmt.Errorf("azure kms: key %s is an RSA key and allowRsaKeys is false (anyone with its public key could make EDEKs kseal accepts); use an oct-HSM key", name)
		}
		info.alg = algRSAOAEP256
		if bits := rsaBits(res.Key.N); bits != 0 && bits != 2048 && bits != 3072 && bits != 4096 {
			return keyInfo{}, fmt.Errorf("azure kms: key %s is RSA-%d: kseal takes RSA 2048, 3072 or 4096", name, bits)
		}
	case "oct", "oct-HSM":
		info.alg = algA256KW
	default:
		return keyInfo{}, fmt.Errorf("azure kms: key %s has type %q, which cannot wrap keys (want RSA, RSA-HSM or oct-HSM)", name, printable(kty, 20))
	}
	if res.Key.KeyOps != nil {
		ops := make([]string, 0, len(res.Key.KeyOps))
		for _, op := range res.Key.KeyOps {
			if op != nil {
				ops = append(ops, string(*op))
			}
		}
		if !slices.Contains(ops, "wrapKey") || !slices.Contains(ops, "unwrapKey") {
			return keyInfo{}, fmt.Errorf("azure kms: key %s does not allow wrapKey and unwrapKey (key_ops %s)", name, printable(strings.Join(ops, ","), 100))
		}
	}
	return info, nil
}

// softDeleted reports whether the vault holds name as a deleted key that
// can still be recovered (GET /deletedkeys/{name}). Any failure (no
// soft-delete, no permission to read deleted keys) answers false: the key
// then stays "not found".
func (k *KMS) softDeleted(ctx context.Context, name string) bool {
	_, err := k.client.GetDeletedKey(ctx, name, nil)
	return err == nil
}

// Probe reads the key kms.ProbeKEK, which need not exist: a 404 is the
// vault answering with kseal's token. A token that cannot be had, 403
// (no permission, or a firewall), throttling, 5xx and network failures are
// errors.
func (k *KMS) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	_, err := k.client.GetKey(ctx, kms.ProbeKEK, "", nil)
	if err == nil {
		return nil
	}
	err = k.classify(err, "readiness probe (get key "+kms.ProbeKEK+")")
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
	kid, wrapped, err := k.keyOp(ctx, true, name, info.version, info.alg, dek)
	if err != nil {
		clear(dek)
		return kms.DEK{}, err
	}
	if !validWrappedLen(info.alg, len(wrapped)) {
		clear(dek)
		return kms.DEK{}, fmt.Errorf("azure kms: wrap with key %s: unexpected wrapped key (%d bytes)", name, len(wrapped))
	}
	// The answer names the version that wrapped; it must be the one asked.
	if kid != "" {
		if v, err := versionFromKID(kid, name); err != nil || v != info.version {
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
	_, dek, err := k.keyOp(ctx, false, p.name, p.version, p.alg, p.wrapped)
	if err != nil {
		return nil, err
	}
	if len(dek) != dekSize {
		clear(dek)
		return nil, fmt.Errorf("azure kms: unwrap with key %s version %s: result is not a %d-byte key", p.name, p.version, dekSize)
	}
	return dek, nil
}

// DescribeEDEK parses an EDEK offline.
func (k *KMS) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) { return DescribeEDEK(edek) }

// keyOp wraps (wrap true) or unwraps in with key name at version, and
// returns the key id the vault names in its answer ("" when it names
// none) and the result.
func (k *KMS) keyOp(ctx context.Context, wrap bool, name, version string, alg byte, in []byte) (string, []byte, error) {
	a := azkeys.EncryptionAlgorithm(algName(alg))
	params := azkeys.KeyOperationParameters{Algorithm: &a, Value: in}
	var res azkeys.KeyOperationResult
	var err error
	what := "unwrap with key " + name + " version " + version
	if wrap {
		what = "wrap with key " + name + " version " + version
		var r azkeys.WrapKeyResponse
		r, err = k.client.WrapKey(ctx, name, version, params, nil)
		res = r.KeyOperationResult
	} else {
		var r azkeys.UnwrapKeyResponse
		r, err = k.client.UnwrapKey(ctx, name, version, params, nil)
		res = r.KeyOperationResult
	}
	if err != nil {
		return "", nil, k.classify(err, what)
	}
	kid := ""
	if res.KID != nil {
		kid = string(*res.KID)
	}
	return kid, res.Result, nil
}

// maxResponse bounds what is read from the vault: key bundles and
// operation results are a few KiB. limitBody enforces it under the SDK.
const maxResponse = 1 << 20

// errTooLarge is a vault answer beyond maxResponse.
var errTooLarge = fmt.Errorf("answer larger than %d bytes", maxResponse)

// vaultError is Key Vault's error body.
type vaultError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// classify turns an error of the SDK's key client into kseal's classes.
// what says what failed ("get key KEK-orders"). The SDK's own error text
// is never used: it carries the whole answer, control characters included.
//
// Classification: 404 is ErrKeyNotFound; 408, 429 and 5xx, timeouts and
// connection failures are ErrUnavailable; 403 for a disabled key (or
// ForbiddenByPolicy) is ErrKeyUnusable; other 403s (no permission,
// firewall) and 401s are ErrAccessDenied; other 4xx are plain errors. A 401 that the vault sends
// with its challenge makes the SDK ask for a token again and resend once;
// kseal's credential then fetches a fresh one (see vaultTransport), as
// Azure's clients do for a revoked token; a second 401 is a plain error.
func (k *KMS) classify(err error, what string) error {
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &re):
		status := re.StatusCode
		detail := ""
		var ve vaultError
		if re.RawResponse != nil {
			if b, perr := runtime.Payload(re.RawResponse); perr == nil && json.Unmarshal(b, &ve) == nil && ve.Error.Code != "" {
				detail = ": " + printable(ve.Error.Code+": "+ve.Error.Message, 300)
			}
		}
		if detail == "" && re.ErrorCode != "" {
			detail = ": " + printable(re.ErrorCode, 300)
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
			return fmt.Errorf("azure kms: %s: %w: access token refused: HTTP 401%s", what, kms.ErrAccessDenied, detail)
		case status == http.StatusForbidden:
			return fmt.Errorf("azure kms: %s: %w: HTTP 403%s", what, kms.ErrAccessDenied, detail)
		default:
			return fmt.Errorf("azure kms: %s: HTTP %d%s", what, status, detail)
		}
	case errors.Is(err, errAccessToken):
		return fmt.Errorf("azure kms: %s: %w", what, err)
	case errors.Is(err, errTooLarge):
		return fmt.Errorf("azure kms: %s: %w", what, errTooLarge)
	case isTransport(err):
		return fmt.Errorf("azure kms: %w", transportError(what, err))
	default:
		// The SDK could not read the answer (not JSON, wrong shapes) or
		// refused the request for a reason of its own.
		return fmt.Errorf("azure kms: %s: decoding the answer: %s", what, printable(err.Error(), 300))
	}
}

// isTransport reports whether err is a failed round trip (no answer) rather
// than an answer the SDK could not use.
func isTransport(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF)
}

// vaultTransport is the SDK's transport: one http.Client that refuses
// redirects, bounds answers to maxResponse, and tells the credential when
// the vault refused a token it sent.
type vaultTransport struct {
	hc      *http.Client
	refused func(token string)
}

func (t *vaultTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.hc.Do(req)
	if err != nil {
		noteRefusedRedirect(req, err)
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized && t.refused != nil {
		if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok && tok != "" {
			t.refused(tok)
		}
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponse}
	return resp, nil
}

// limitedBody fails with errTooLarge once more than left bytes are read.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

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

// rsaBits is the size of the modulus n, 0 when absent.
func rsaBits(b []byte) int {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return len(b) * 8
}

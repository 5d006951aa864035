package azure

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/kseal/kseal/internal/kms"
)

// token is an access token and when it stops being valid.
type token struct {
	value     string
	expiresAt time.Time
}

// fetchFunc gets a new token with one request.
type fetchFunc func(ctx context.Context) (token, error)

// Token timing: a token is renewed in the background once less than
// refreshMargin of its life is left (at most a fifth of its lifetime), so
// requests rarely wait for Entra ID; a token within expiryMargin of its
// expiry is not used at all (clocks differ and requests take time).
const (
	refreshMargin = 5 * time.Minute
	expiryMargin  = 30 * time.Second
)

// tokenCache hands out a cached token and collapses concurrent renewals
// into one request. A renewal runs under its own timeout, not the context
// of the caller that happened to start it.
type tokenCache struct {
	fetch   fetchFunc
	timeout time.Duration
	now     func() time.Time

	mu        sync.Mutex
	tok       token
	refreshAt time.Time
	flight    *tokenFlight
}

type tokenFlight struct {
	done chan struct{}
	tok  token
	err  error
}

func newTokenCache(fetch fetchFunc, timeout time.Duration) *tokenCache {
	return &tokenCache{fetch: fetch, timeout: timeout, now: time.Now}
}

// get returns a usable token, fetching one when there is none.
func (c *tokenCache) get(ctx context.Context) (string, error) {
	v, _, err := c.getToken(ctx)
	return v, err
}

// getToken is get with the token's expiry.
func (c *tokenCache) getToken(ctx context.Context) (string, time.Time, error) {
	now := c.now()
	c.mu.Lock()
	if c.tok.value != "" && now.Before(c.tok.expiresAt.Add(-expiryMargin)) {
		v, exp := c.tok.value, c.tok.expiresAt
		if !now.Before(c.refreshAt) && c.flight == nil {
			c.start() // renew early; this caller keeps the current token
		}
		c.mu.Unlock()
		return v, exp, nil
	}
	f := c.flight
	if f == nil {
		f = c.start()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return "", time.Time{}, f.err
		}
		return f.tok.value, f.tok.expiresAt, nil
	case <-ctx.Done():
		return "", time.Time{}, fmt.Errorf("%w: waiting for an access token: %w", kms.ErrUnavailable, ctx.Err())
	}
}

// start begins a renewal. Call with mu held.
func (c *tokenCache) start() *tokenFlight {
	f := &tokenFlight{done: make(chan struct{})}
	c.flight = f
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		tok, err := c.fetch(ctx)
		if err == nil && !c.now().Before(tok.expiresAt.Add(-expiryMargin)) {
			err = fmt.Errorf("access token expires at %v, already (nearly) expired: check the clock", tok.expiresAt.UTC().Format(time.RFC3339))
		}
		c.mu.Lock()
		if err == nil {
			life := tok.expiresAt.Sub(c.now())
			c.tok = tok
			c.refreshAt = tok.expiresAt.Add(-min(refreshMargin, life/5))
		}
		c.flight = nil
		c.mu.Unlock()
		f.tok, f.err = tok, err
		close(f.done)
	}()
	return f
}

// invalidate drops the cached token if it is still v: the vault refused it
// (revoked, or a clock far off), so the next call fetches a new one.
func (c *tokenCache) invalidate(v string) {
	c.mu.Lock()
	if c.tok.value == v {
		c.tok = token{}
	}
	c.mu.Unlock()
}

// errAccessToken marks a failure to get an access token, so classify
// reports it as such and keeps its class.
var errAccessToken = errors.New("access token")

// credential is the azcore.TokenCredential the SDK's key client uses. It
// hands out tokenCache's token for the configured audience, whatever scope
// and tenant the vault's challenge names: a vault (or anything answering
// at its address) cannot choose what kseal's token is good for.
type credential struct{ tokens *tokenCache }

func (c credential) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, exp, err := c.tokens.getToken(ctx)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("%w: %w", errAccessToken, err)
	}
	return azcore.AccessToken{Token: tok, ExpiresOn: exp}, nil
}

// sdkFetcher gets tokens from an azidentity credential that mk builds
// anew for every token: the credential's own cache would hand back a
// token the vault has just refused, and a new build re-reads the
// certificate or federated token file.
func sdkFetcher(mk func() (azcore.TokenCredential, error), scope, where string) fetchFunc {
	return func(ctx context.Context) (token, error) {
		cred, err := mk()
		if err != nil {
			return token{}, err
		}
		// MSAL keeps only the text of a transport error; the note keeps
		// a refused redirect recognisable.
		note := &redirectNote{}
		at, err := cred.GetToken(context.WithValue(ctx, redirectNoteKey{}, note), policy.TokenRequestOptions{Scopes: []string{scope}})
		if err != nil {
			if note.err.Load() != nil {
				return token{}, fmt.Errorf("token request to %s: %w", where, *note.err.Load())
			}
			return token{}, sdkTokenError(err, where)
		}
		if at.Token == "" {
			return token{}, fmt.Errorf("token response from %s: no access_token", where)
		}
		return token{value: at.Token, expiresAt: at.ExpiresOn}, nil
	}
}

// redirectNote records, for one token acquisition, a redirect that
// kseal's http.Client refused.
type redirectNote struct{ err atomic.Pointer[error] }

type redirectNoteKey struct{}

// noteRefusedRedirect records err in the request's redirectNote when it is
// a refused redirect.
func noteRefusedRedirect(req *http.Request, err error) {
	if !errors.Is(err, kms.ErrRedirectRefused) {
		return
	}
	if n, ok := req.Context().Value(redirectNoteKey{}).(*redirectNote); ok {
		n.err.CompareAndSwap(nil, &err)
	}
}

// sdkTokenError classifies an azidentity failure like doTokenRequest does,
// without the credential's multi-line text (it quotes the whole answer).
func sdkTokenError(err error, where string) error {
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil {
		status := afe.RawResponse.StatusCode
		detail := ""
		var tr tokenResponse
		if b, perr := runtime.Payload(afe.RawResponse); perr == nil && json.Unmarshal(b, &tr) == nil && tr.Error != "" {
			detail = ": " + printable(tr.Error+": "+tr.ErrorDescription, 300)
		}
		e := fmt.Errorf("token request to %s: HTTP %d%s", where, status, detail)
		if transientStatus(status) {
			return fmt.Errorf("%w: %w", kms.ErrUnavailable, e)
		}
		return e
	}
	if isTransport(err) {
		return transportError("token request to "+where, err)
	}
	return fmt.Errorf("token request to %s: %s", where, printable(err.Error(), 300))
}

// clientCertificateFetcher is the client credentials flow with a
// certificate (a signed client assertion), through azidentity.
func clientCertificateFetcher(opts azcore.ClientOptions, cfg *Config) fetchFunc {
	a := cfg.Auth
	authority := cfg.authorityHost()
	return sdkFetcher(func() (azcore.TokenCredential, error) {
		certs, key, err := readCertificate(a.ClientCertificateFile)
		if err != nil {
			return nil, err
		}
		return azidentity.NewClientCertificateCredential(a.TenantID, a.ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
			ClientOptions:            opts,
			SendCertificateChain:     a.SendCertificateChain,
			DisableInstanceDiscovery: customAuthority(authority),
		})
	}, cfg.resource()+"/.default", authority)
}

// workloadIdentityFetcher is the federated credential flow: the
// service account token file is the client assertion.
func workloadIdentityFetcher(opts azcore.ClientOptions, cfg *Config, tenant, clientID, file string) fetchFunc {
	authority := cfg.authorityHost()
	return sdkFetcher(func() (azcore.TokenCredential, error) {
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions:            opts,
			TenantID:                 tenant,
			ClientID:                 clientID,
			TokenFilePath:            file,
			DisableInstanceDiscovery: customAuthority(authority),
		})
	}, cfg.resource()+"/.default", authority)
}

// customAuthority reports whether authority is none of the national
// clouds' Entra ID: MSAL's instance discovery (a request to the public
// cloud) is then off, as for Azure Stack and private clouds.
func customAuthority(authority string) bool {
	for _, c := range clouds {
		if c.authority == authority {
			return false
		}
	}
	return true
}

// maxCertificateSize bounds a client certificate file.
const maxCertificateSize = 1 << 20

// readCertificate reads a PEM or password-less PKCS#12 certificate with
// its private key.
func readCertificate(file string) ([]*x509.Certificate, crypto.PrivateKey, error) {
	b, err := readBounded(file, maxCertificateSize)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.clientCertificateFile: %w", err)
	}
	certs, key, err := azidentity.ParseCertificates(b, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.clientCertificateFile: %s: %s", file, printable(err.Error(), 200))
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return nil, nil, fmt.Errorf("auth.clientCertificateFile: %s: the private key must be RSA (Entra ID takes RSA certificates)", file)
	}
	return certs, key, nil
}

// readBounded reads at most limit bytes of file.
func readBounded(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, limit)
	}
	return b, nil
}

// maxTokenResponse bounds what is read from a token endpoint.
const maxTokenResponse = 256 << 10

// tokenResponse covers both Entra ID's and the managed identity endpoints'
// answers (the latter send numbers as strings).
type tokenResponse struct {
	AccessToken string  `json:"access_token"`
	TokenType   string  `json:"token_type"`
	ExpiresIn   flexInt `json:"expires_in"`
	ExpiresOn   flexInt `json:"expires_on"`
	// Entra ID's error answer.
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// flexInt is a JSON integer that may come as a number or a string.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer: %.20q", s)
	}
	*f = flexInt(n)
	return nil
}

// clientSecretFetcher is the OAuth 2.0 client credentials flow with a
// client secret, through azidentity. The secret is read again for each
// token, so a rotated file is used without a restart.
func clientSecretFetcher(opts azcore.ClientOptions, cfg *Config) fetchFunc {
	a := cfg.Auth
	authority := cfg.authorityHost()
	return sdkFetcher(func() (azcore.TokenCredential, error) {
		secret, err := readSecret(a.ClientSecretFile, a.ClientSecretEnv)
		if err != nil {
			return nil, err
		}
		return azidentity.NewClientSecretCredential(a.TenantID, a.ClientID, secret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions:            opts,
			DisableInstanceDiscovery: customAuthority(authority),
		})
	}, cfg.resource()+"/.default", authority)
}

// managedIdentityFetcher returns the managed identity flow: a GET on the
// Instance Metadata Service (or a compatible endpoint) with Metadata: true.
func managedIdentityFetcher(hc *http.Client, cfg *Config) (fetchFunc, error) {
	u, err := url.Parse(cfg.Auth.IdentityEndpoint)
	if err != nil {
		return nil, fmt.Errorf("auth.identityEndpoint: %w", err)
	}
	q := u.Query()
	if q.Get("api-version") == "" {
		q.Set("api-version", "2018-02-01")
	}
	q.Set("resource", cfg.resource())
	if cfg.Auth.ClientID != "" {
		q.Set("client_id", cfg.Auth.ClientID)
	}
	u.RawQuery = q.Encode()
	endpoint := u.String()
	where := u.Scheme + "://" + u.Host + u.Path
	return func(ctx context.Context) (token, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		if err != nil {
			return token{}, fmt.Errorf("token request to %s: %w", where, err)
		}
		req.Header.Set("Metadata", "true")
		req.Header.Set("Accept", "application/json")
		return doTokenRequest(hc, req, where, true)
	}, nil
}

// doTokenRequest sends one token request and classifies its failure: no
// answer, throttling and server errors are transient (and so, for the
// managed identity endpoint, 404 and 410, which IMDS answers while it is
// updating); any other refusal is a configuration problem.
func doTokenRequest(hc *http.Client, req *http.Request, where string, imds bool) (token, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return token{}, transportError("token request to "+where, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return token{}, transportError("token response from "+where, err)
	}
	if len(body) > maxTokenResponse {
		return token{}, fmt.Errorf("token response from %s: larger than %d bytes", where, maxTokenResponse)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		detail := ""
		if jsonErr == nil && tr.Error != "" {
			detail = ": " + printable(tr.Error+": "+tr.ErrorDescription, 300)
		}
		err := fmt.Errorf("token request to %s: HTTP %d%s", where, resp.StatusCode, detail)
		if transientStatus(resp.StatusCode) || imds && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone) {
			return token{}, fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
		}
		return token{}, err
	}
	if jsonErr != nil {
		return token{}, fmt.Errorf("token response from %s: %w", where, jsonErr)
	}
	if tr.AccessToken == "" {
		return token{}, fmt.Errorf("token response from %s: no access_token", where)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return token{}, fmt.Errorf("token response from %s: token type %q, want Bearer", where, printable(tr.TokenType, 20))
	}
	now := time.Now()
	var exp time.Time
	switch {
	case tr.ExpiresIn > 0:
		exp = now.Add(time.Duration(min(int64(tr.ExpiresIn), 1<<31)) * time.Second)
	case tr.ExpiresOn > 0:
		exp = time.Unix(int64(tr.ExpiresOn), 0)
	default:
		return token{}, fmt.Errorf("token response from %s: no expires_in or expires_on", where)
	}
	return token{value: tr.AccessToken, expiresAt: exp}, nil
}

// maxSecretSize bounds a client secret file.
const maxSecretSize = 64 << 10

// readSecret reads the client secret from file or the environment variable
// env, trimming surrounding white space (editors add a final newline).
func readSecret(file, env string) (string, error) {
	if env != "" {
		v, ok := os.LookupEnv(env)
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			return "", fmt.Errorf("auth.clientSecretEnv: environment variable %s is not set", env)
		}
		return v, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("auth.clientSecretFile: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("auth.clientSecretFile: %w", err)
	}
	if len(b) > maxSecretSize {
		return "", fmt.Errorf("auth.clientSecretFile: %s is larger than %d bytes", file, maxSecretSize)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("auth.clientSecretFile: %s is empty", file)
	}
	return v, nil
}

// printable shortens s to at most n bytes of printable ASCII, for putting
// a server's words into an error without letting it forge log lines.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b.WriteByte(c)
	}
	if len(s) > n {
		b.WriteString("...")
	}
	return b.String()
}

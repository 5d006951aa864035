// Package hadoop is kseal's KMS provider for the Apache Hadoop KMS (and
// servers speaking its REST API, such as Ranger KMS), registered as KMS type
// "hadoop". KEKs are KMS keys (AES, 256 bits); a DEK is an encrypted key
// version (EEK): kseal asks the KMS to generate one under the key's current
// version, then to decrypt it, and keeps the EEK (version name, IV,
// encrypted material) as the EDEK.
//
// Each method makes its requests with their own timeout and classifies the
// outcome (kms.ErrKeyNotFound, kms.ErrUnavailable, or a plain error for what
// retrying cannot fix); caching, retries and backoff belong to the caller
// (internal/dek), which retries only kms.ErrUnavailable.
//
// Authentication is Hadoop's "simple" scheme: the user.name query
// parameter. Kerberos (SPNEGO) is refused by Config.Validate.
//
// This package must never log, print or put into an error a DEK, a TLS key,
// or a response body that may hold one.
package hadoop

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
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmsutil"
)

// maxResponse bounds a response body read into memory.
const maxResponse = 1 << 20

// KMS talks to one Hadoop KMS. It is safe for concurrent use.
type KMS struct {
	logger  *slog.Logger
	base    string // "https://host:port/kms/v1/"
	query   string // "user.name=..."
	timeout time.Duration
	hc      *http.Client

	closeOnce sync.Once
}

var _ kms.KMS = (*KMS)(nil)
var _ kms.Closer = (*KMS)(nil)
var _ kms.Prober = (*KMS)(nil)

// New reads the TLS files cfg names and builds the client. It makes no
// request: the proxy may start before the KMS is reachable, and the first
// DEK call reports what is wrong.
func New(_ context.Context, cfg *Config, logger *slog.Logger) (*KMS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hadoop kms config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := parseAddress(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("hadoop kms: address: %w", err)
	}
	var tc *tls.Config
	if u.Scheme == "https" {
		t := &cfg.TLS
		files := kmsutil.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, KeyPrefix: "tls."}
		if tc, err = files.ClientConfig(u.Hostname()); err != nil {
			return nil, fmt.Errorf("hadoop kms: %w", err)
		}
	} else if !kmsutil.IsLoopback(u.Hostname()) {
		logger.Warn("hadoop kms: address is plain http: DEKs cross the network unencrypted", "address", u.String())
	}
	return &KMS{
		logger:  logger,
		base:    u.String() + "/kms/v1/",
		query:   url.Values{"user.name": {cfg.User}}.Encode(),
		timeout: cfg.Timeout,
		hc:      kmsutil.NewHTTPClient(cfg.Timeout, tc),
	}, nil
}

// Close drops idle connections.
func (k *KMS) Close() error {
	k.closeOnce.Do(k.hc.CloseIdleConnections)
	return nil
}

// metadata is the part of a key's _metadata kseal looks at. The KMS answers
// an empty object for a key that does not exist.
type metadata struct {
	Name     string `json:"name"`
	Cipher   string `json:"cipher"`
	Length   int    `json:"length"`
	Versions int    `json:"versions"`
}

// ResolveKEK reads the key's metadata: it must exist, be 256 bits long and
// have a version. Hadoop KMS has no disabled state; a deleted key leaves no
// trace, so internal/dek remembers the names that resolved and treats their
// later "not found" as unusable.
func (k *KMS) ResolveKEK(ctx context.Context, name string) (kms.KEKRef, error) {
	if !validKeyName(name) {
		return kms.KEKRef{}, fmt.Errorf("hadoop kms: %q is not a valid key name here (letters, digits, '.', '_', '-'): %w", name, kms.ErrKeyNotFound)
	}
	var md metadata
	if err := k.call(ctx, "read key metadata", name, http.MethodGet, "key/"+url.PathEscape(name)+"/_metadata", "", nil, &md); err != nil {
		return kms.KEKRef{}, err
	}
	switch {
	case md.Name == "":
		return kms.KEKRef{}, fmt.Errorf("hadoop kms: key %q: %w", name, kms.ErrKeyNotFound)
	case md.Name != name:
		return kms.KEKRef{}, fmt.Errorf("hadoop kms: asked for key %q, the KMS answered for %q", name, md.Name)
	case md.Length != dekSize*8:
		return kms.KEKRef{}, fmt.Errorf("hadoop kms: key %q is %d bits; kseal needs 256-bit keys (its DEKs are the key's length)", name, md.Length)
	case md.Versions < 1:
		return kms.KEKRef{}, fmt.Errorf("hadoop kms: key %q has no versions: %w", name, kms.ErrKeyUnusable)
	}
	return kms.KEKRef{Name: name, ID: name}, nil
}

// b64 decodes Hadoop's base64 (URL-safe, unpadded; the standard alphabet
// and padding are accepted too) straight from the JSON bytes, so key
// material never exists as a Go string.
type b64 []byte

func (b *b64) UnmarshalJSON(raw []byte) error {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return errors.New("base64 field is not a string")
	}
	s := bytes.TrimRight(raw[1:len(raw)-1], "=")
	enc := base64.RawURLEncoding
	if bytes.ContainsAny(s, "+/") {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(s)))
	n, err := enc.Decode(out, s)
	if err != nil {
		clear(out)
		return errors.New("base64 field is malformed")
	}
	*b = out[:n]
	return nil
}

// eek is one entry of _eek?eek_op=generate's answer.
type eek struct {
	VersionName string `json:"versionName"`
	IV          b64    `json:"iv"`
	Encrypted   struct {
		VersionName string `json:"versionName"`
		Material    b64    `json:"material"`
	} `json:"encryptedKeyVersion"`
}

// GenerateDEK has the KMS generate an encrypted key under the key's current
// version, then decrypt it: Hadoop's API returns only the encrypted form
// from generate. The second call also proves the version still exists (the
// KMS may serve generate from a queue filled before the key was deleted).
func (k *KMS) GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error) {
	name := kek.ID
	if name == "" {
		name = kek.Name
	}
	if !validKeyName(name) {
		return kms.DEK{}, fmt.Errorf("hadoop kms: %q is not a valid key name here: %w", name, kms.ErrKeyNotFound)
	}
	var out []eek
	if err := k.call(ctx, "generate encrypted key", name, http.MethodGet, "key/"+url.PathEscape(name)+"/_eek", "eek_op=generate&num_keys=1", nil, &out); err != nil {
		return kms.DEK{}, err
	}
	if len(out) != 1 {
		return kms.DEK{}, fmt.Errorf("hadoop kms: generate encrypted key with %q: got %d keys, want 1", name, len(out))
	}
	e := &out[0]
	switch {
	case !validVersionName(e.VersionName):
		return kms.DEK{}, fmt.Errorf("hadoop kms: generate encrypted key with %q: bad key version name", name)
	case len(e.IV) != ivSize:
		return kms.DEK{}, fmt.Errorf("hadoop kms: generate encrypted key with %q: IV is %d bytes, want %d", name, len(e.IV), ivSize)
	case len(e.Encrypted.Material) != dekSize:
		// A key other than 256 bits (ResolveKEK refuses those, but a key
		// can be recreated under the same name).
		return kms.DEK{}, fmt.Errorf("hadoop kms: generate encrypted key with %q: %d-byte key, want %d (is the key 256 bits?)", name, len(e.Encrypted.Material), dekSize)
	}
	edek := appendEDEK(make([]byte, 0, EDEKSize(name, e.VersionName)), name, e.VersionName, e.IV, e.Encrypted.Material)
	key, err := k.decrypt(ctx, name, e.VersionName, e.IV, e.Encrypted.Material)
	if err != nil {
		return kms.DEK{}, err
	}
	return kms.DEK{Key: key, EDEK: edek}, nil
}

// DecryptDEK has the KMS decrypt the EDEK's encrypted key with the key
// version it names.
func (k *KMS) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	name, version, iv, material, err := parseEDEK(edek)
	if err != nil {
		return nil, err
	}
	return k.decrypt(ctx, string(name), string(version), iv, material)
}

func (k *KMS) decrypt(ctx context.Context, name, version string, iv, material []byte) ([]byte, error) {
	enc := base64.RawURLEncoding
	body := make([]byte, 0, 64+len(name)+enc.EncodedLen(len(iv))+enc.EncodedLen(len(material)))
	body = append(body, `{"name":"`...)
	body = append(body, name...) // validKeyName: nothing to escape
	body = append(body, `","iv":"`...)
	body = enc.AppendEncode(body, iv)
	body = append(body, `","material":"`...)
	body = enc.AppendEncode(body, material)
	body = append(body, `"}`...)
	var out struct {
		Material b64 `json:"material"`
	}
	where := name + " " + version
	if err := k.call(ctx, "decrypt encrypted key", where, http.MethodPost, "keyversion/"+url.PathEscape(version)+"/_eek", "eek_op=decrypt", body, &out); err != nil {
		clear(out.Material)
		return nil, err
	}
	if len(out.Material) != dekSize {
		clear(out.Material)
		return nil, fmt.Errorf("hadoop kms: decrypt with %q: got %d bytes, want a %d-byte DEK", where, len(out.Material), dekSize)
	}
	return out.Material, nil
}

// Probe reads the metadata of kms.ProbeKEK, which need not exist: any
// answer from the KMS with the configured user's credentials counts. The
// user needs READ on that name (the default key ACL usually covers it).
func (k *KMS) Probe(ctx context.Context) error {
	var md metadata
	err := k.call(ctx, "probe", kms.ProbeKEK, http.MethodGet, "key/"+kms.ProbeKEK+"/_metadata", "", nil, &md)
	if err != nil && !errors.Is(err, kms.ErrKeyNotFound) {
		return err
	}
	return nil
}

// DescribeEDEK reads the key name and version from an EDEK.
func (k *KMS) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) { return DescribeEDEK(edek) }

// DescribeEDEK reads the key name and version from an EDEK without a
// server, for inspection tools. Version is the n of "<key>@<n>".
func DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	name, version, _, _, err := parseEDEK(edek)
	if err != nil {
		return kms.EDEKInfo{}, err
	}
	return kms.EDEKInfo{KEK: string(name), Version: versionSuffix(string(name), string(version))}, nil
}

// remoteException is the KMS's error body.
type remoteException struct {
	RemoteException *struct {
		Message       string `json:"message"`
		Exception     string `json:"exception"`
		JavaClassName string `json:"javaClassName"`
	} `json:"RemoteException"`
}

// call makes one request to path (relative to /kms/v1/, with query added
// to the user.name parameter) and decodes a 2xx answer into out. op and
// key name the call in errors.
func (k *KMS) call(ctx context.Context, op, key, method, path, query string, body []byte, out any) error {
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
	u := k.base + path + "?" + k.query
	if query != "" {
		u += "&" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("hadoop kms: %s: %w", where, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return fmt.Errorf("hadoop kms: %s: %w", where, classifyTransport(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	// The body of decrypt holds the DEK in base64: wipe it once decoded.
	defer clear(raw)
	if err != nil {
		return fmt.Errorf("hadoop kms: %s: reading response: %w", where, classifyTransport(err))
	}
	if len(raw) > maxResponse {
		return fmt.Errorf("hadoop kms: %s: response larger than %d bytes", where, maxResponse)
	}
	if resp.StatusCode/100 != 2 {
		var re remoteException
		_ = json.Unmarshal(raw, &re) // an HTML error page from Jetty or a proxy is not JSON
		return fmt.Errorf("hadoop kms: %s: %w", where, classifyStatus(resp.StatusCode, &re))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		// json's error names a type and an offset, never the content.
		return fmt.Errorf("hadoop kms: %s: malformed response (HTTP %d): %w", where, resp.StatusCode, err)
	}
	return nil
}

// statusError is a non-2xx answer.
type statusError struct {
	Status    int
	Exception string // the Java exception's simple name, "" without one
	Message   string // the server's message, quoted and shortened
}

func (e *statusError) Error() string {
	s := "HTTP " + strconv.Itoa(e.Status)
	if e.Exception != "" {
		s += " " + e.Exception
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// classifyStatus maps an error answer to kms.ErrKeyNotFound,
// kms.ErrUnavailable or a plain error. Hadoop KMS maps Java exceptions to
// statuses: IllegalArgumentException is 400 (a key version that does not
// exist: "'k@7' not found"; a version that belongs to another key), and any
// IOException 500, which includes generate for a key that does not exist
// ("No KeyVersion exists for key") as well as a key store it cannot read.
func classifyStatus(status int, re *remoteException) error {
	e := &statusError{Status: status}
	var msg string
	if r := re.RemoteException; r != nil {
		msg = r.Message
		e.Exception = r.Exception
		if len(e.Exception) > 80 {
			e.Exception = e.Exception[:80]
		}
		m := msg
		if len(m) > 200 {
			m = m[:200] + "..."
		}
		e.Message = strconv.Quote(m)
	}
	lower := strings.ToLower(msg)
	missing := strings.Contains(lower, "not found") || strings.Contains(lower, "does not exist") ||
		strings.Contains(lower, "no keyversion exists")
	switch {
	case re.RemoteException == nil && status == http.StatusNotFound:
		return fmt.Errorf("%w (no Hadoop KMS at this address? kseal calls <address>/kms/v1/)", e)
	case status == http.StatusNotFound, (status == http.StatusBadRequest || status == http.StatusInternalServerError) && missing:
		return fmt.Errorf("%w: %w", kms.ErrKeyNotFound, e)
	case status == http.StatusUnauthorized:
		return fmt.Errorf("%w: %w (authentication refused: check auth and user)", kms.ErrAccessDenied, e)
	case status == http.StatusForbidden:
		return fmt.Errorf("%w: %w (the KMS's ACLs do not grant this user this operation on this key)", kms.ErrAccessDenied, e)
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		return fmt.Errorf("%w: %w", kms.ErrUnavailable, e)
	}
	return e
}

// classifyTransport is kmsutil.ClassifyTransport: certificate problems and
// refused redirects are not kms.ErrUnavailable.
func classifyTransport(err error) error { return kmsutil.ClassifyTransport(err, "") }

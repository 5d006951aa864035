// Package kmsutil holds what kseal's network KMS providers (vault, hadoop,
// kmip) share: reading small credential files, the TLS client
// configuration from PEM files, the HTTP client of the REST providers,
// their address check, and the classification of a failed exchange.
// Each provider keeps its own configuration keys and error wording; the
// helpers take the key prefix and the provider's hints as arguments.
package kmsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// MaxFile bounds the certificate, key, token and password files a provider
// reads into memory: a wrong path pointing at a huge file must not fill it.
const MaxFile = 4 << 20

// ReadSmall reads a file that must be small (at most MaxFile bytes).
func ReadSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFile)
	}
	return b, nil
}

// TLSFiles are the PEM files and server name of a provider's TLS client
// settings.
type TLSFiles struct {
	// CAFile is a bundle of CA certificates to trust instead of the
	// system's roots ("" for the system's).
	CAFile string
	// CertFile and KeyFile are a client certificate (with its chain) and
	// its key; "" for none.
	CertFile, KeyFile string
	// ServerName overrides the host name the server certificate is checked
	// against.
	ServerName string
	// KeyPrefix is what the provider's configuration keys start with in
	// errors: "tls." gives "tls.caFile: ...".
	KeyPrefix string
}

// ClientConfig builds a TLS 1.2+ client configuration: the server
// certificate is checked against host unless ServerName is set.
func (f *TLSFiles) ClientConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if f.CAFile != "" {
		b, err := ReadSmall(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%scaFile: %w", f.KeyPrefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%scaFile %s: no PEM certificate found", f.KeyPrefix, f.CAFile)
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%scertFile/keyFile: %w", f.KeyPrefix, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// AddressHints are a provider's advice added to ParseAddress's errors,
// each appended as is (with its own leading punctuation), "" for none.
type AddressHints struct {
	// Scheme follows "scheme must be http or https".
	Scheme string
	// Credentials follows "credentials in the URL are not allowed".
	Credentials string
	// Path follows "give only scheme://host:port".
	Path string
}

// ParseAddress accepts http(s)://host[:port] with an optional trailing
// slash, nothing else: a path would silently change every API URL, and
// credentials in a URL end up in logs. The URL returned has no path.
func ParseAddress(s string, h AddressHints) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", s)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: scheme must be http or https%s", s, h.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("%q: credentials in the URL are not allowed%s", u.Redacted(), h.Credentials)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Errorf("%q: give only scheme://host:port%s", s, h.Path)
	}
	u.Path = ""
	return u, nil
}

// IsLoopback reports whether host (a URL's Hostname) is this machine, where
// plain http does not cross a network.
func IsLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// NewHTTPClient returns the HTTP client of a REST provider: a copy of Go's
// default transport keeping up to 8 idle connections to the server, waiting
// at most timeout for response headers, with tc for https (nil for http),
// and never following a redirect to another origin (kms.CheckRedirect).
func NewHTTPClient(timeout time.Duration, tc *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8
	tr.ResponseHeaderTimeout = timeout
	if tc != nil {
		tr.TLSClientConfig = tc
	}
	return &http.Client{Transport: tr, CheckRedirect: kms.CheckRedirect}
}

// ClassifyTransport wraps a failed HTTP exchange in kms.ErrUnavailable,
// except certificate problems, TLS refusals and refused redirects: retrying
// cannot fix a wrong CA, client certificate or address, and hiding them
// behind "unavailable" would cost hours. redirectHint, when not "", is
// added to a refused redirect's error in parentheses.
func ClassifyTransport(err error, redirectHint string) error {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var op *net.OpError
	var rh tls.RecordHeaderError
	switch {
	case errors.Is(err, kms.ErrRedirectRefused):
		if redirectHint == "" {
			return err
		}
		return fmt.Errorf("%w (%s)", err, redirectHint)
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return fmt.Errorf("server certificate not accepted (check tls.caFile and tls.serverName): %w", err)
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert from the server, during or right after the handshake.
		return fmt.Errorf("TLS handshake refused by the server (client certificate missing or not trusted?): %w", err)
	case errors.As(err, &rh), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http turns the RecordHeaderError into a bare string when the
		// bytes look like HTTP.
		return fmt.Errorf("server did not answer TLS (http:// server behind an https:// address?): %w", err)
	}
	return fmt.Errorf("%w: %w", kms.ErrUnavailable, err)
}

package kms

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrRedirectRefused is returned (wrapped) when a KMS or token endpoint
// redirects where kseal will not follow: to another origin, where it never
// sends a credential, or at all for APIs that never redirect. Retrying
// cannot help: it is not kms.ErrUnavailable.
var ErrRedirectRefused = errors.New("redirect refused")

// maxRedirects bounds same-origin redirects.
const maxRedirects = 3

// CheckRedirect is the http.Client.CheckRedirect of every KMS provider's
// HTTP client, token endpoints included. Providers put credentials in
// headers that net/http copies to the next hop (X-Vault-Token, a Bearer
// Authorization for a host it deems a subdomain, AWS's signature headers),
// so a redirect is followed only to the same origin (scheme, host and
// port, as the first request had them), at most three times; any other
// fails the request with ErrRedirectRefused before a byte is sent there.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if len(via) > 0 && !SameOrigin(via[0].URL, req.URL) {
		return crossOrigin(via[0], req)
	}
	return nil
}

func crossOrigin(first, req *http.Request) error {
	return fmt.Errorf("%w: kseal does not send KMS credentials to another scheme, host or port (from %s to %s)",
		ErrRedirectRefused, origin(first.URL), origin(req.URL))
}

// NoRedirects is a CheckRedirect for APIs that never redirect: every
// redirect fails the request with ErrRedirectRefused, same origin or not.
func NoRedirects(req *http.Request, via []*http.Request) error {
	if len(via) > 0 && !SameOrigin(via[0].URL, req.URL) {
		return crossOrigin(via[0], req)
	}
	return fmt.Errorf("%w: this endpoint never redirects (wrong address?), to %s", ErrRedirectRefused, origin(req.URL))
}

// SameOrigin reports whether a and b have the same scheme, host and port,
// default ports made explicit and host names compared case-insensitively.
func SameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// origin is scheme://host:port only: a redirect's path or query may carry
// something that does not belong in a log line.
func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(u.Hostname(), port(u))
}

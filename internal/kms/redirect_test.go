package kms

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"https://vault:8200/v1/x", "https://vault:8200/v1/y", true},
		{"https://vault/v1/x", "https://VAULT:443/v1/y", true},
		{"http://vault/v1/x", "http://vault:80/", true},
		{"https://vault:8200/", "http://vault:8200/", false},
		{"https://vault:8200/", "https://vault:8201/", false},
		{"https://vault/", "https://evil.vault/", false},
		{"https://kms.eu-west-1.amazonaws.com/", "https://x.kms.eu-west-1.amazonaws.com/", false},
		{"http://[::1]:8200/", "http://[::1]:8200/a", true},
		{"http://[::1]:8200/", "http://127.0.0.1:8200/", false},
	} {
		a, _ := url.Parse(tc.a)
		b, _ := url.Parse(tc.b)
		if got := SameOrigin(a, b); got != tc.want {
			t.Errorf("SameOrigin(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestCheckRedirect(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := req("https://vault:8200/v1/transit/keys/k")
	if err := CheckRedirect(req("https://vault:8200/v1/other?x=secret"), []*http.Request{first}); err != nil {
		t.Errorf("same origin: %v", err)
	}
	err := CheckRedirect(req("https://other:8200/v1/x?token=secret"), []*http.Request{first})
	if !errors.Is(err, ErrRedirectRefused) {
		t.Errorf("other host: %v", err)
	}
	if err != nil && (contains(err.Error(), "secret") || !contains(err.Error(), "https://other:8200")) {
		t.Errorf("error should name the origin only: %v", err)
	}
	// Back to the first origin after a detour is judged against the first.
	second := req("https://vault:8200/a")
	if err := CheckRedirect(req("https://vault:9999/b"), []*http.Request{first, second}); !errors.Is(err, ErrRedirectRefused) {
		t.Errorf("another port after a same-origin hop: %v", err)
	}
	if err := CheckRedirect(req("https://vault:8200/d"), []*http.Request{first, first, first}); err == nil {
		t.Error("fourth redirect followed")
	}
	if err := NoRedirects(req("https://vault:8200/d"), []*http.Request{first}); !errors.Is(err, ErrRedirectRefused) || contains(err.Error(), "another") {
		t.Errorf("NoRedirects, same origin: %v", err)
	}
	if err := NoRedirects(req("https://x:1/d"), []*http.Request{first}); !errors.Is(err, ErrRedirectRefused) {
		t.Errorf("NoRedirects, other origin: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

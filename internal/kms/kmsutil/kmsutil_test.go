package kmsutil

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

func TestParseAddress(t *testing.T) {
	h := AddressHints{Scheme: " (scheme hint)", Credentials: "; credentials hint", Path: " (path hint)"}
	for _, ok := range []string{"http://127.0.0.1:8200", "https://kms.example.com", "https://kms.example.com:9600/", "http://[::1]:1"} {
		u, err := ParseAddress(ok, h)
		if err != nil || u.Path != "" {
			t.Errorf("ParseAddress(%q) = %v, %v; want no error and no path", ok, u, err)
		}
	}
	for in, want := range map[string]string{
		"kms://http@host:9600":        "scheme must be http or https (scheme hint)",
		"host:9600":                   "scheme must be http or https (scheme hint)",
		"https://":                    "has no host",
		"https://u:secret@host":       "credentials in the URL are not allowed; credentials hint",
		"https://host/kms/v1":         "give only scheme://host:port (path hint)",
		"https://host?x=1":            "give only scheme://host:port (path hint)",
		"https://host/#f":             "give only scheme://host:port (path hint)",
		"http://host:9600/\x7f":       "is not a URL",
		"https://host:9600/kms/v1/x/": "(path hint)",
	} {
		_, err := ParseAddress(in, h)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAddress(%q) = %v, want an error containing %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseAddress(%q): the error shows the password: %v", in, err)
		}
	}
	// No hints: nothing appended.
	if _, err := ParseAddress("ftp://h", AddressHints{}); err == nil || !strings.HasSuffix(err.Error(), "scheme must be http or https") {
		t.Errorf("without hints: %v", err)
	}
}

func TestReadSmall(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("x"), 0o600)
	if b, err := ReadSmall(small); err != nil || string(b) != "x" {
		t.Fatalf("ReadSmall = %q, %v", b, err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxFile+1), 0o600)
	if _, err := ReadSmall(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a file over MaxFile: %v", err)
	}
	if _, err := ReadSmall(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)

	cfg, err := (&TLSFiles{}).ClientConfig("kms.example.com")
	if err != nil || cfg.ServerName != "kms.example.com" || cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.MinVersion == 0 {
		t.Fatalf("no files: %+v, %v", cfg, err)
	}
	cfg, err = (&TLSFiles{ServerName: "other"}).ClientConfig("kms.example.com")
	if err != nil || cfg.ServerName != "other" {
		t.Fatalf("ServerName: %q, %v", cfg.ServerName, err)
	}
	for _, c := range []struct {
		files TLSFiles
		want  string
	}{
		{TLSFiles{CAFile: filepath.Join(dir, "missing"), KeyPrefix: "tls."}, "tls.caFile: "},
		{TLSFiles{CAFile: notPEM, KeyPrefix: "tls."}, "tls.caFile " + notPEM + ": no PEM certificate found"},
		{TLSFiles{CAFile: notPEM}, "caFile " + notPEM + ": no PEM certificate found"},
		{TLSFiles{CertFile: notPEM, KeyFile: notPEM, KeyPrefix: "tls."}, "tls.certFile/keyFile: "},
	} {
		_, err := c.files.ClientConfig("h")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error starting %q", c.files, err, c.want)
		}
	}
}

func TestNewHTTPClient(t *testing.T) {
	hc := NewHTTPClient(3*time.Second, nil)
	tr := hc.Transport.(*http.Transport)
	if tr.ResponseHeaderTimeout != 3*time.Second || tr.MaxIdleConnsPerHost != 8 || hc.CheckRedirect == nil {
		t.Fatalf("client: header timeout %v, idle per host %d, redirect check %v", tr.ResponseHeaderTimeout, tr.MaxIdleConnsPerHost, hc.CheckRedirect != nil)
	}
	if tr == http.DefaultTransport {
		t.Fatal("NewHTTPClient changed Go's default transport")
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "127.1.2.3": true, "::1": true,
		"kms.example.com": false, "10.0.0.1": false, "128.0.0.1": false} {
		if IsLoopback(host) != want {
			t.Errorf("IsLoopback(%q) = %v", host, !want)
		}
	}
}

func TestClassifyTransport(t *testing.T) {
	redirect := fmt.Errorf("Get: %w", kms.ErrRedirectRefused)
	if err := ClassifyTransport(redirect, ""); err != redirect {
		t.Errorf("redirect without hint: %v", err)
	}
	if err := ClassifyTransport(redirect, "use the active node"); !errors.Is(err, kms.ErrRedirectRefused) ||
		errors.Is(err, kms.ErrUnavailable) || !strings.HasSuffix(err.Error(), "(use the active node)") {
		t.Errorf("redirect with a hint: %v", err)
	}
	for _, c := range []struct {
		err         error
		unavailable bool
		want        string
	}{
		{x509.UnknownAuthorityError{}, false, "server certificate not accepted"},
		{errors.New("http: server gave HTTP response to HTTPS client"), false, "server did not answer TLS"},
		{errors.New("connection refused"), true, "connection refused"},
	} {
		err := ClassifyTransport(c.err, "hint")
		if errors.Is(err, kms.ErrUnavailable) != c.unavailable || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ClassifyTransport(%v) = %v; want unavailable %v, containing %q", c.err, err, c.unavailable, c.want)
		}
	}
}

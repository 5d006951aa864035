package hadoop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmsutil"
)

func init() {
	kms.Register("hadoop", kms.ProviderFunc(func() kms.Config { return NewConfig() }))
	// Inspection tools read EDEKs at the broker with no server at hand.
	kms.RegisterDescriber("hadoop", DescribeEDEK)
}

// Defaults.
const (
	// DefaultTimeout bounds one HTTP request. The DEK manager retries
	// transient failures within its own, longer budget, so one hung request
	// must leave room for the next attempts.
	DefaultTimeout = 5 * time.Second
	// AuthSimple is Hadoop's pseudo authentication: the user name travels
	// as the user.name query parameter and the server believes it.
	AuthSimple = "simple"
	// AuthKerberos is SPNEGO; not implemented (see docs/kms-hadoop.md).
	AuthKerberos = "kerberos"
)

// Config is the `kms.config` section for `type: hadoop`.
type Config struct {
	// Address is the KMS's base URL, scheme://host[:port] with no path:
	// kseal adds /kms/v1/.
	Address string `yaml:"address"`
	// Auth is "simple" (the default). "kerberos" is recognised and refused:
	// SPNEGO is not implemented yet.
	Auth string `yaml:"auth"`
	// User is the Hadoop user kseal acts as with simple authentication; the
	// KMS's key ACLs must grant it READ, GENERATE_EEK and DECRYPT_EEK.
	User string `yaml:"user"`
	// Timeout bounds one request to the server.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures https:// addresses.
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig is the `tls` sub-section (all files PEM).
type TLSConfig struct {
	// CAFile is a bundle of CA certificates to trust instead of the
	// system's roots.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are a client certificate (with its chain) and
	// its key, for a KMS behind a proxy that requires one.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName overrides the host name the server certificate is checked
	// against (default: the host of Address).
	ServerName string `yaml:"serverName"`
}

func (t *TLSConfig) isSet() bool { return *t != TLSConfig{} }

// NewConfig returns a Config with defaults set.
func NewConfig() *Config {
	return &Config{Auth: AuthSimple, Timeout: DefaultTimeout}
}

// Validate checks the config without touching files or the network. Errors
// name keys relative to the provider's section.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Address == "" {
		add("address: required (e.g. https://kms.example.com:9600)")
	} else if u, err := parseAddress(c.Address); err != nil {
		add("address: %v", err)
	} else if u.Scheme == "http" && c.TLS.isSet() {
		add("tls: set, but address %q is http://; use https://", c.Address)
	}
	switch c.Auth {
	case AuthSimple:
		if c.User == "" {
			add("user: required with auth: simple (the Hadoop user the KMS's key ACLs grant)")
		} else if !validUser(c.User) {
			add("user: %q: use letters, digits, '.', '_', '-' and '@' (at most 255)", c.User)
		}
	case AuthKerberos:
		add("auth: kerberos (SPNEGO) is not implemented yet; use simple behind a network boundary you trust (see docs/kms-hadoop.md)")
	default:
		add("auth: %q unknown (simple; kerberos is planned)", c.Auth)
	}
	if c.Timeout < 100*time.Millisecond || c.Timeout > 5*time.Minute {
		add("timeout: %v is out of range (100ms to 5m)", c.Timeout)
	}
	t := &c.TLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		add("tls.keyFile: required with tls.certFile")
	case t.KeyFile != "" && t.CertFile == "":
		add("tls.certFile: required with tls.keyFile")
	}
	return errors.Join(errs...)
}

// Open builds the client; see New.
func (c *Config) Open(ctx context.Context, logger *slog.Logger) (kms.KMS, error) {
	return New(ctx, c, logger)
}

// parseAddress accepts http(s)://host[:port] with an optional trailing
// slash, nothing else (kmsutil.ParseAddress).
func parseAddress(s string) (*url.URL, error) {
	return kmsutil.ParseAddress(s, kmsutil.AddressHints{
		Scheme: " (not Hadoop's kms://http@host form)",
		Path:   " (kseal adds /kms/v1/)",
	})
}

func validUser(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i := range len(s) {
		if !isNameChar(s[i]) && s[i] != '@' {
			return false
		}
	}
	return true
}

func isNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

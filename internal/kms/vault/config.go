package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmsutil"
)

func init() {
	kms.Register("vault", kms.ProviderFunc(func() kms.Config { return NewConfig() }))
	// Inspection tools read EDEKs at the broker with no server at hand.
	kms.RegisterDescriber("vault", DescribeEDEK)
}

// Defaults.
const (
	DefaultMount = "transit"
	// DefaultTimeout bounds one HTTP request. The DEK manager retries
	// transient failures within its own, longer budget (20 s by default),
	// so one hung request must leave room for the next attempts.
	DefaultTimeout = 5 * time.Second
)

// Config is the `kms.config` section for `type: vault`.
type Config struct {
	// Address is the server's base URL, scheme://host[:port] with no path:
	// the API prefix /v1/ is added by kseal.
	Address string `yaml:"address"`
	// Namespace is sent as X-Vault-Namespace (Vault Enterprise, OpenBao);
	// "" for none. Nested namespaces are written "team/kafka".
	Namespace string `yaml:"namespace"`
	// Mount is the path the Transit engine is mounted at.
	Mount string `yaml:"mount"`
	// TokenFile is a file holding the token (whitespace around it is
	// ignored). kseal re-reads it when it changes, so a token written by
	// Vault Agent or a Kubernetes secret can be replaced while running.
	TokenFile string `yaml:"tokenFile"`
	// TokenEnv names an environment variable holding the token. Exactly one
	// of TokenFile and TokenEnv is set.
	TokenEnv string `yaml:"tokenEnv"`
	// RenewToken makes kseal call auth/token/renew-self when it starts and
	// again after two thirds of each granted TTL, so a renewable token with
	// a TTL (a periodic token, typically) never expires while kseal runs.
	RenewToken bool `yaml:"renewToken"`
	// Timeout bounds one request to the server.
	Timeout time.Duration `yaml:"timeout"`
	// TLS configures https:// addresses.
	TLS TLSConfig `yaml:"tls"`
	// Auth chooses how kseal gets its token. Unset (or method "token")
	// keeps the static token of TokenFile or TokenEnv.
	Auth AuthConfig `yaml:"auth"`
}

// Auth methods.
const (
	AuthToken      = "token"
	AuthAppRole    = "approle"
	AuthKubernetes = "kubernetes"
	AuthJWT        = "jwt"
)

// DefaultKubernetesJWTFile is where Kubernetes mounts a pod's service
// account token.
const DefaultKubernetesJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// AuthConfig is the `auth` sub-section. With approle, kubernetes or jwt,
// kseal logs in at auth/<mount>/login, renews the token it gets, and logs in
// again (re-reading the credential files) when the token cannot be renewed
// any more, expires, or is refused.
type AuthConfig struct {
	// Method is token (default), approle, kubernetes or jwt.
	Method string `yaml:"method"`
	// Mount is the auth method's path (default: the method's name).
	Mount string `yaml:"mount"`
	// RoleIDFile and SecretIDFile hold the AppRole role id and secret id.
	// SecretIDFile may be left out for a role created with
	// bind_secret_id=false.
	RoleIDFile   string `yaml:"roleIdFile"`
	SecretIDFile string `yaml:"secretIdFile"`
	// Role is the kubernetes or jwt role to log in as.
	Role string `yaml:"role"`
	// JWTFile holds the JWT: the service-account token for kubernetes
	// (default DefaultKubernetesJWTFile), the OIDC/JWT token for jwt.
	JWTFile string `yaml:"jwtFile"`
}

// login reports whether the method logs in (everything but token).
func (a *AuthConfig) login() bool { return a.Method != "" && a.Method != AuthToken }

// mount returns the auth mount path.
func (a *AuthConfig) mount() string {
	if a.Mount != "" {
		return a.Mount
	}
	return a.Method
}

// jwtFile returns the JWT file, with the kubernetes default.
func (a *AuthConfig) jwtFile() string {
	if a.JWTFile == "" && a.Method == AuthKubernetes {
		return DefaultKubernetesJWTFile
	}
	return a.JWTFile
}

// TLSConfig is the `tls` sub-section: which CAs to trust and which client
// certificate to present. All files are PEM except PKCS12File.
type TLSConfig struct {
	// CAFile is a PEM bundle of CA certificates to trust instead of the
	// system's roots.
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are a PEM client certificate (with its chain, if
	// any) and its private key, for servers that require client
	// certificates (the cert auth method or tls_require_and_verify_client_cert).
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// PKCS12File is a .p12/.pfx bundle with the client key, certificate and
	// optionally its chain; use it instead of CertFile and KeyFile. Its
	// password comes from PKCS12PasswordFile or PKCS12PasswordEnv (empty
	// when neither is set).
	PKCS12File         string `yaml:"pkcs12File"`
	PKCS12PasswordFile string `yaml:"pkcs12PasswordFile"`
	PKCS12PasswordEnv  string `yaml:"pkcs12PasswordEnv"`
	// ServerName overrides the host name the server certificate is checked
	// against (default: the host of Address).
	ServerName string `yaml:"serverName"`
}

func (t *TLSConfig) isSet() bool { return *t != TLSConfig{} }

// NewConfig returns a Config with defaults set.
func NewConfig() *Config {
	return &Config{Mount: DefaultMount, Timeout: DefaultTimeout}
}

// Validate checks the config without touching files or the network. Errors
// name keys relative to the provider's section.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Address == "" {
		add("address: required (e.g. https://vault.example.com:8200)")
	} else if u, err := parseAddress(c.Address); err != nil {
		add("address: %v", err)
	} else if u.Scheme == "http" && c.TLS.isSet() {
		add("tls: set, but address %q is http://; use https://", c.Address)
	}
	if c.Namespace != "" {
		if err := checkPath(c.Namespace); err != nil {
			add("namespace: %v", err)
		}
	}
	if err := checkPath(c.Mount); err != nil {
		add("mount: %v", err)
	}
	errs = append(errs, c.Auth.validate(c)...)
	if c.Timeout < 100*time.Millisecond || c.Timeout > 5*time.Minute {
		add("timeout: %v is out of range (100ms to 5m)", c.Timeout)
	}

	t := &c.TLS
	pem := t.CertFile != "" || t.KeyFile != ""
	switch {
	case pem && t.PKCS12File != "":
		add("tls.pkcs12File: set either certFile+keyFile or pkcs12File, not both")
	case t.CertFile != "" && t.KeyFile == "":
		add("tls.keyFile: required with tls.certFile")
	case t.KeyFile != "" && t.CertFile == "":
		add("tls.certFile: required with tls.keyFile")
	}
	if t.PKCS12PasswordFile != "" && t.PKCS12PasswordEnv != "" {
		add("tls.pkcs12PasswordEnv: set either pkcs12PasswordFile or pkcs12PasswordEnv, not both")
	}
	if (t.PKCS12PasswordFile != "" || t.PKCS12PasswordEnv != "") && t.PKCS12File == "" {
		add("tls.pkcs12File: required when a PKCS#12 password is set")
	}
	return errors.Join(errs...)
}

// validate checks the auth section and its interplay with the token keys.
func (a *AuthConfig) validate(c *Config) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	notFor := func(key, val string) {
		if val != "" {
			add("auth.%s: not used by auth.method %q", key, a.Method)
		}
	}
	switch a.Method {
	case "", AuthToken:
		switch {
		case c.TokenFile == "" && c.TokenEnv == "":
			add("tokenFile: one of tokenFile or tokenEnv is required (or set auth.method)")
		case c.TokenFile != "" && c.TokenEnv != "":
			add("tokenEnv: set either tokenFile or tokenEnv, not both")
		}
		notFor("mount", a.Mount)
		notFor("roleIdFile", a.RoleIDFile)
		notFor("secretIdFile", a.SecretIDFile)
		notFor("role", a.Role)
		notFor("jwtFile", a.JWTFile)
		return errs
	case AuthAppRole:
		if a.RoleIDFile == "" {
			add("auth.roleIdFile: required with auth.method approle")
		}
		notFor("role", a.Role)
		notFor("jwtFile", a.JWTFile)
	case AuthKubernetes, AuthJWT:
		if a.Role == "" {
			add("auth.role: required with auth.method %s", a.Method)
		} else if len(a.Role) > 255 || strings.ContainsFunc(a.Role, func(r rune) bool { return !isNameChar(r) }) {
			add("auth.role: %q: only letters, digits, '.', '_' and '-', at most 255 bytes", a.Role)
		}
		if a.Method == AuthJWT && a.JWTFile == "" {
			add("auth.jwtFile: required with auth.method jwt")
		}
		notFor("roleIdFile", a.RoleIDFile)
		notFor("secretIdFile", a.SecretIDFile)
	default:
		add("auth.method: %q is not one of token, approle, kubernetes, jwt", a.Method)
		return errs
	}
	if a.Mount != "" {
		if err := checkPath(a.Mount); err != nil {
			add("auth.mount: %v", err)
		}
	}
	if c.TokenFile != "" {
		add("tokenFile: not used with auth.method %s (kseal logs in for its token)", a.Method)
	}
	if c.TokenEnv != "" {
		add("tokenEnv: not used with auth.method %s (kseal logs in for its token)", a.Method)
	}
	return errs
}

// Open builds the client; see New.
func (c *Config) Open(ctx context.Context, logger *slog.Logger) (kms.KMS, error) {
	return New(ctx, c, logger)
}

// parseAddress accepts http(s)://host[:port] with an optional trailing
// slash, nothing else (kmsutil.ParseAddress).
func parseAddress(s string) (*url.URL, error) {
	return kmsutil.ParseAddress(s, kmsutil.AddressHints{
		Credentials: "; use tokenFile or tokenEnv",
		Path:        " (the mount and namespace have their own keys)",
	})
}

// checkPath accepts a mount or namespace path: segments of ASCII letters,
// digits, '.', '_' and '-', joined by '/', at most 255 bytes. It goes into
// URLs and headers as is, so nothing else is allowed.
func checkPath(p string) error {
	if p == "" {
		return errors.New("must not be empty")
	}
	if len(p) > 255 {
		return errors.New("longer than 255 bytes")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q: empty, '.' or '..' segment (no leading, trailing or double slashes)", p)
		}
		for _, r := range seg {
			if !isNameChar(r) {
				return fmt.Errorf("%q: character %q not allowed (letters, digits, '.', '_', '-', '/')", p, r)
			}
		}
	}
	return nil
}

func isNameChar[T rune | byte](c T) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

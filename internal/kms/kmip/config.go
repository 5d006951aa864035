package kmip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

func init() {
	kms.Register("kmip", kms.ProviderFunc(func() kms.Config { return NewConfig() }))
	// Inspection tools read EDEKs at the broker with no server at hand.
	kms.RegisterDescriber("kmip", DescribeEDEK)
}

// Defaults.
const (
	DefaultPort            = "5696"
	DefaultProtocolVersion = "1.4"
	DefaultCipherMode      = "GCM"
	// DefaultTimeout bounds connecting plus one request and its response;
	// internal/dek retries transient failures within its own longer budget.
	DefaultTimeout          = 5 * time.Second
	DefaultMaxConnections   = 4
	DefaultMaxResponseBytes = 64 << 10
)

// Config is the `kms.config` section for `type: kmip`.
type Config struct {
	// Endpoint is the server's host:port (port 5696 when left out).
	Endpoint string `yaml:"endpoint"`
	// CAFile is a PEM bundle of the CAs that sign the server certificate
	// ("" for the system's roots).
	CAFile string `yaml:"caFile"`
	// CertFile and KeyFile are kseal's PEM client certificate (with its
	// chain) and private key: KMIP servers authenticate clients by them.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ServerName is the name checked against the server certificate
	// (default: the host of Endpoint).
	ServerName string `yaml:"serverName"`
	// ProtocolVersion is the KMIP version sent in every request header:
	// 1.2, 1.3 or 1.4 (the default). Encrypt and Decrypt appeared in 1.2,
	// the authentication tag GCM needs in 1.4; servers of KMIP 2.x answer
	// 1.x requests.
	ProtocolVersion string `yaml:"protocolVersion"`
	// CipherMode is the block cipher mode the server wraps DEKs with under
	// the AES KEK: GCM (authenticated, the default) or CBC (PKCS#5 padding,
	// for servers without GCM in Encrypt).
	CipherMode string `yaml:"cipherMode"`
	// Timeout bounds connecting and one request.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConnections bounds the TLS connections kseal keeps to the server;
	// requests beyond it wait for a free connection.
	MaxConnections int `yaml:"maxConnections"`
	// MaxResponseBytes bounds one response message read into memory.
	MaxResponseBytes int `yaml:"maxResponseBytes"`
}

// NewConfig returns a Config with defaults set.
func NewConfig() *Config {
	return &Config{
		ProtocolVersion:  DefaultProtocolVersion,
		CipherMode:       DefaultCipherMode,
		Timeout:          DefaultTimeout,
		MaxConnections:   DefaultMaxConnections,
		MaxResponseBytes: DefaultMaxResponseBytes,
	}
}

// Validate checks the config without touching files or the network. Errors
// name keys relative to the provider's section.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Endpoint == "" {
		add("endpoint: required (host:port, e.g. kmip.example.com:5696)")
	} else if _, err := endpointAddr(c.Endpoint); err != nil {
		add("endpoint: %v", err)
	}
	if c.CertFile == "" {
		add("certFile: required (KMIP servers authenticate clients by certificate)")
	}
	if c.KeyFile == "" {
		add("keyFile: required with certFile")
	}
	if _, _, err := parseVersion(c.ProtocolVersion); err != nil {
		add("protocolVersion: %v", err)
	}
	if mode, err := parseMode(c.CipherMode); err != nil {
		add("cipherMode: %v", err)
	} else if _, minor, err := parseVersion(c.ProtocolVersion); err == nil && mode == edekModeGCM && minor < 4 {
		add("cipherMode: GCM needs protocolVersion 1.4 (KMIP 1.2 and 1.3 have no authentication tag); use CBC with %s", c.ProtocolVersion)
	}
	if c.Timeout < 100*time.Millisecond || c.Timeout > 5*time.Minute {
		add("timeout: %v is out of range (100ms to 5m)", c.Timeout)
	}
	if c.MaxConnections < 1 || c.MaxConnections > 256 {
		add("maxConnections: %d is out of range (1 to 256)", c.MaxConnections)
	}
	if c.MaxResponseBytes < 4<<10 || c.MaxResponseBytes > 16<<20 {
		add("maxResponseBytes: %d is out of range (4096 to 16777216)", c.MaxResponseBytes)
	}
	return errors.Join(errs...)
}

// Open builds the client; see New.
func (c *Config) Open(ctx context.Context, logger *slog.Logger) (kms.KMS, error) {
	return New(ctx, c, logger)
}

// endpointAddr returns host:port, adding the KMIP port when there is none.
func endpointAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if net.ParseIP(s) == nil && !validHost(s) {
			return "", fmt.Errorf("%q is not host:port", s)
		}
		host, port = s, DefaultPort
	}
	if host == "" || !(net.ParseIP(host) != nil || validHost(host)) {
		return "", fmt.Errorf("%q: bad host", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("%q: bad port", s)
	}
	return net.JoinHostPort(host, port), nil
}

func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := range len(h) {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func parseVersion(s string) (major, minor int32, err error) {
	switch s {
	case "1.2":
		return 1, 2, nil
	case "1.3":
		return 1, 3, nil
	case "1.4":
		return 1, 4, nil
	}
	return 0, 0, fmt.Errorf("%q: want 1.2, 1.3 or 1.4", s)
}

func parseMode(s string) (byte, error) {
	switch s {
	case "GCM":
		return edekModeGCM, nil
	case "CBC":
		return edekModeCBC, nil
	}
	return 0, fmt.Errorf("%q: want GCM or CBC", s)
}

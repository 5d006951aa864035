// Package tlsconfig turns kseal's TLS settings into crypto/tls configs, for
// the client-facing listeners and for connections to brokers. Private keys
// and passwords are read from files or environment variables and never
// logged.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// Identity is a certificate and its key: PEM files, or a PKCS#12 file.
type Identity struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// PKCS12File is a .p12/.pfx bundle holding the key, the certificate
	// and optionally its chain; the password comes from PKCS12PasswordFile
	// or PKCS12PasswordEnv (empty password when neither is set).
	PKCS12File         string `yaml:"pkcs12File"`
	PKCS12PasswordFile string `yaml:"pkcs12PasswordFile"`
	PKCS12PasswordEnv  string `yaml:"pkcs12PasswordEnv"`
}

// Server is a TLS listener's settings.
type Server struct {
	Identity `yaml:",inline"`
	// ClientAuth: none (default), request, require (mutual TLS).
	ClientAuth   string `yaml:"clientAuth"`
	ClientCAFile string `yaml:"clientCaFile"`
	MinVersion   string `yaml:"minVersion"` // "1.2" (default) or "1.3"
}

// Client is the settings for connecting to a TLS server.
type Client struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"caFile"` // default: the system roots
	ServerName         string `yaml:"serverName"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
	Identity           `yaml:",inline"`
}

// Validate checks the settings without reading files; errors name keys.
func (id *Identity) validate(required bool) []string {
	var errs []string
	pem := id.CertFile != "" || id.KeyFile != ""
	p12 := id.PKCS12File != ""
	switch {
	case pem && p12:
		errs = append(errs, "set either certFile+keyFile or pkcs12File, not both")
	case pem && (id.CertFile == "" || id.KeyFile == ""):
		errs = append(errs, "certFile and keyFile go together")
	case !pem && !p12 && required:
		errs = append(errs, "certFile+keyFile or pkcs12File is required")
	}
	if id.PKCS12PasswordFile != "" && id.PKCS12PasswordEnv != "" {
		errs = append(errs, "set pkcs12PasswordFile or pkcs12PasswordEnv, not both")
	}
	return errs
}

// Validate checks the server settings; errors are "key: problem" strings.
func (s *Server) Validate() []string {
	errs := s.validate(true)
	switch s.ClientAuth {
	case "", "none", "request":
	case "require":
		if s.ClientCAFile == "" {
			errs = append(errs, "clientCaFile: required with clientAuth: require")
		}
	default:
		errs = append(errs, fmt.Sprintf("clientAuth: %q is not one of none, request, require", s.ClientAuth))
	}
	if _, err := minVersion(s.MinVersion); err != nil {
		errs = append(errs, "minVersion: "+err.Error())
	}
	return errs
}

// Validate checks the client settings.
func (c *Client) Validate() []string { return c.validate(false) }

func minVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q is not 1.2 or 1.3", v)
}

func (id *Identity) load() ([]tls.Certificate, error) {
	switch {
	case id.CertFile != "":
		c, err := tls.LoadX509KeyPair(id.CertFile, id.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load certFile/keyFile: %w", err)
		}
		return []tls.Certificate{c}, nil
	case id.PKCS12File != "":
		data, err := os.ReadFile(id.PKCS12File)
		if err != nil {
			return nil, fmt.Errorf("pkcs12File: %w", err)
		}
		password := ""
		if id.PKCS12PasswordFile != "" {
			b, err := os.ReadFile(id.PKCS12PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("pkcs12PasswordFile: %w", err)
			}
			password = strings.TrimRight(string(b), "\r\n")
		} else if id.PKCS12PasswordEnv != "" {
			v, ok := os.LookupEnv(id.PKCS12PasswordEnv)
			if !ok {
				return nil, fmt.Errorf("pkcs12PasswordEnv: environment variable %s is not set", id.PKCS12PasswordEnv)
			}
			password = v
		}
		key, cert, chain, err := pkcs12.DecodeChain(data, password)
		if err != nil {
			return nil, fmt.Errorf("pkcs12File %s: %w", id.PKCS12File, err)
		}
		c := tls.Certificate{PrivateKey: key, Leaf: cert, Certificate: [][]byte{cert.Raw}}
		for _, ca := range chain {
			c.Certificate = append(c.Certificate, ca.Raw)
		}
		return []tls.Certificate{c}, nil
	}
	return nil, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}

// Config builds the listener's tls.Config.
func (s *Server) Config() (*tls.Config, error) {
	certs, err := s.load()
	if err != nil {
		return nil, err
	}
	mv, err := minVersion(s.MinVersion)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: certs, MinVersion: mv}
	switch s.ClientAuth {
	case "request":
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case "require":
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if s.ClientCAFile != "" {
		if cfg.ClientCAs, err = loadPool(s.ClientCAFile); err != nil {
			return nil, fmt.Errorf("clientCaFile: %w", err)
		}
	}
	return cfg, nil
}

// Config builds the dialer's tls.Config, or nil when TLS is off. host is
// the server's host name, used when ServerName is not set.
func (c *Client) Config(host string) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	certs, err := c.load()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12, ServerName: c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if c.CAFile != "" {
		if cfg.RootCAs, err = loadPool(c.CAFile); err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
	}
	return cfg, nil
}

package vault

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// maxPEMFile bounds the CA bundles and identity files read into memory.
const maxPEMFile = 4 << 20

// clientConfig builds the tls.Config for an https:// address. host is the
// address's host name, checked against the server certificate unless
// ServerName overrides it.
func (t *TLSConfig) clientConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if t.CAFile != "" {
		b, err := readSmall(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls.caFile %s: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.certFile/keyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case t.PKCS12File != "":
		cert, err := t.loadPKCS12()
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (t *TLSConfig) loadPKCS12() (tls.Certificate, error) {
	data, err := readSmall(t.PKCS12File)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls.pkcs12File: %w", err)
	}
	var password string
	switch {
	case t.PKCS12PasswordFile != "":
		b, err := readSmall(t.PKCS12PasswordFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("tls.pkcs12PasswordFile: %w", err)
		}
		// Only the line break an editor or `echo` adds: a password may
		// legitimately end in spaces.
		password = strings.TrimRight(string(b), "\r\n")
	case t.PKCS12PasswordEnv != "":
		v, ok := os.LookupEnv(t.PKCS12PasswordEnv)
		if !ok {
			return tls.Certificate{}, fmt.Errorf("tls.pkcs12PasswordEnv: environment variable %s is not set", t.PKCS12PasswordEnv)
		}
		password = v
	}
	key, cert, chain, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		// The error says "decryption password incorrect" or what is
		// malformed; it never contains the password.
		return tls.Certificate{}, fmt.Errorf("tls.pkcs12File %s: %w", t.PKCS12File, err)
	}
	c := tls.Certificate{PrivateKey: key, Leaf: cert, Certificate: [][]byte{cert.Raw}}
	for _, ca := range chain {
		c.Certificate = append(c.Certificate, ca.Raw)
	}
	return c, nil
}

// readSmall reads a file that must be small (certificates, keys, tokens,
// passwords): a wrong path pointing at a huge file must not fill memory.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxPEMFile)
	}
	return b, nil
}

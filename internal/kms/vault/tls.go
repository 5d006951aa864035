package vault

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/kseal/kseal/internal/kms/kmsutil"
)

// clientConfig builds the tls.Config for an https:// address. host is the
// address's host name, checked against the server certificate unless
// ServerName overrides it.
func (t *TLSConfig) clientConfig(host string) (*tls.Config, error) {
	files := kmsutil.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, KeyPrefix: "tls."}
	cfg, err := files.ClientConfig(host)
	if err != nil {
		return nil, err
	}
	if t.CertFile == "" && t.PKCS12File != "" {
		cert, err := t.loadPKCS12()
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (t *TLSConfig) loadPKCS12() (tls.Certificate, error) {
	data, err := kmsutil.ReadSmall(t.PKCS12File)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls.pkcs12File: %w", err)
	}
	var password string
	switch {
	case t.PKCS12PasswordFile != "":
		b, err := kmsutil.ReadSmall(t.PKCS12PasswordFile)
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

package hadoop

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := func() *Config {
		c := NewConfig()
		c.Address = "https://kms.example.com:9600"
		c.User = "kseal"
		return c
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no address", func(c *Config) { c.Address = "" }, "address: required"},
		{"kms scheme", func(c *Config) { c.Address = "kms://http@kms:9600/kms" }, "address:"},
		{"path", func(c *Config) { c.Address = "https://kms:9600/kms" }, "address:"},
		{"credentials", func(c *Config) { c.Address = "https://u:p@kms:9600" }, "credentials"},
		{"tls with http", func(c *Config) { c.Address = "http://kms:9600"; c.TLS.CAFile = "ca.pem" }, "tls: set"},
		{"no user", func(c *Config) { c.User = "" }, "user: required"},
		{"bad user", func(c *Config) { c.User = "a&b" }, "user:"},
		{"kerberos", func(c *Config) { c.Auth = "kerberos" }, "auth: kerberos (SPNEGO) is not implemented"},
		{"unknown auth", func(c *Config) { c.Auth = "token" }, `auth: "token" unknown`},
		{"short timeout", func(c *Config) { c.Timeout = time.Millisecond }, "timeout:"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, "tls.keyFile: required"},
		{"key without cert", func(c *Config) { c.TLS.KeyFile = "k.pem" }, "tls.certFile: required"},
	} {
		c := ok()
		tc.edit(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

package kmip

import (
	"strings"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

func validConfig() *Config {
	c := NewConfig()
	c.Endpoint = "kmip.example.com:5696"
	c.CertFile = "/etc/kseal/kmip.crt"
	c.KeyFile = "/etc/kseal/kmip.key"
	return c
}

func TestConfigDefaultsValid(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := validConfig()
	c.ProtocolVersion, c.CipherMode = "1.2", "CBC"
	if err := c.Validate(); err != nil {
		t.Fatalf("CBC on 1.2: %v", err)
	}
	if _, ok := kms.Lookup("kmip"); !ok {
		t.Fatal("provider kmip not registered")
	}
	if _, ok := kms.LookupDescriber("kmip"); !ok {
		t.Fatal("describer kmip not registered")
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, "endpoint: required"},
		{"bad endpoint", func(c *Config) { c.Endpoint = "https://kmip:5696" }, "endpoint:"},
		{"bad port", func(c *Config) { c.Endpoint = "kmip:99999" }, "endpoint:"},
		{"no cert", func(c *Config) { c.CertFile = "" }, "certFile: required"},
		{"no key", func(c *Config) { c.KeyFile = "" }, "keyFile: required"},
		{"version", func(c *Config) { c.ProtocolVersion = "1.1" }, "protocolVersion:"},
		{"mode", func(c *Config) { c.CipherMode = "ECB" }, "cipherMode:"},
		{"GCM on 1.2", func(c *Config) { c.ProtocolVersion = "1.2" }, "cipherMode: GCM needs protocolVersion 1.4"},
		{"timeout", func(c *Config) { c.Timeout = time.Millisecond }, "timeout:"},
		{"connections", func(c *Config) { c.MaxConnections = 0 }, "maxConnections:"},
		{"response", func(c *Config) { c.MaxResponseBytes = 100 }, "maxResponseBytes:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig()
			c.mod(cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestEndpointAddr(t *testing.T) {
	for in, want := range map[string]string{
		"kmip.example.com":      "kmip.example.com:5696",
		"kmip.example.com:5697": "kmip.example.com:5697",
		"127.0.0.1":             "127.0.0.1:5696",
		"[::1]:5696":            "[::1]:5696",
	} {
		got, err := endpointAddr(in)
		if err != nil || got != want {
			t.Errorf("endpointAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

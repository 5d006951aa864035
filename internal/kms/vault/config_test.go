package vault

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/kms"
)

func TestRegistered(t *testing.T) {
	p, ok := kms.Lookup("vault")
	if !ok {
		t.Fatal(`"vault" is not registered`)
	}
	if _, ok := p.NewConfig().(*Config); !ok {
		t.Fatalf("NewConfig returns %T", p.NewConfig())
	}
	describe, ok := kms.LookupDescriber("vault")
	if !ok {
		t.Fatal("no describer registered for vault")
	}
	info, err := describe(appendEDEK(nil, "KEK-orders", 3, make([]byte, 60)))
	if err != nil || info != (kms.EDEKInfo{KEK: "KEK-orders", Version: "3"}) {
		t.Fatalf("describe = %+v, %v", info, err)
	}
}

func TestConfigFromYAML(t *testing.T) {
	const doc = `
address: https://vault.example.com:8200
namespace: team-a/kafka
mount: kafka-transit
tokenFile: /run/secrets/vault-token
renewToken: true
timeout: 3s
tls:
  caFile: /etc/kseal/vault-ca.pem
  pkcs12File: /etc/kseal/client.p12
  pkcs12PasswordEnv: P12_PASSWORD
`
	cfg := NewConfig()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.Timeout != 3*time.Second || cfg.Mount != "kafka-transit" || !cfg.RenewToken || cfg.TLS.PKCS12PasswordEnv != "P12_PASSWORD" {
		t.Fatalf("decoded %+v", cfg)
	}
	if d := NewConfig(); d.Mount != "transit" || d.Timeout != DefaultTimeout {
		t.Fatalf("defaults %+v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid; else a substring of the error
	}{
		{"minimal", func(c *Config) {}, ""},
		{"trailing slash", func(c *Config) { c.Address = "http://127.0.0.1:8200/" }, ""},
		{"https with tls", func(c *Config) {
			c.Address = "https://v:8200"
			c.TLS = TLSConfig{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "vault"}
		}, ""},
		{"nested namespace and mount", func(c *Config) { c.Namespace = "a/b"; c.Mount = "kafka/transit" }, ""},
		{"no address", func(c *Config) { c.Address = "" }, "address: required"},
		{"bad scheme", func(c *Config) { c.Address = "ftp://v:8200" }, "address: "},
		{"no host", func(c *Config) { c.Address = "http://:8200" }, "address: "},
		{"path", func(c *Config) { c.Address = "http://v:8200/v1/transit" }, "address: "},
		{"query", func(c *Config) { c.Address = "http://v:8200?x=1" }, "address: "},
		{"userinfo", func(c *Config) { c.Address = "http://u:secret@v:8200" }, "address: "},
		{"tls on http", func(c *Config) { c.TLS.CAFile = "ca.pem" }, "tls: set, but address"},
		{"empty mount", func(c *Config) { c.Mount = "" }, "mount: must not be empty"},
		{"mount slashes", func(c *Config) { c.Mount = "/transit/" }, "mount: "},
		{"mount dotdot", func(c *Config) { c.Mount = "a/../sys" }, "mount: "},
		{"mount space", func(c *Config) { c.Mount = "my transit" }, "mount: "},
		{"namespace bad char", func(c *Config) { c.Namespace = "ns?x" }, "namespace: "},
		{"no token", func(c *Config) { c.TokenEnv = "" }, "tokenFile: one of tokenFile or tokenEnv"},
		{"both tokens", func(c *Config) { c.TokenFile = "/t" }, "tokenEnv: set either"},
		{"timeout too short", func(c *Config) { c.Timeout = time.Millisecond }, "timeout: "},
		{"timeout zero", func(c *Config) { c.Timeout = 0 }, "timeout: "},
		{"cert without key", func(c *Config) { c.Address = "https://v"; c.TLS.CertFile = "c" }, "tls.keyFile: required"},
		{"key without cert", func(c *Config) { c.Address = "https://v"; c.TLS.KeyFile = "k" }, "tls.certFile: required"},
		{"pem and p12", func(c *Config) {
			c.Address = "https://v"
			c.TLS = TLSConfig{CertFile: "c", KeyFile: "k", PKCS12File: "p"}
		}, "tls.pkcs12File: set either"},
		{"two p12 passwords", func(c *Config) {
			c.Address = "https://v"
			c.TLS = TLSConfig{PKCS12File: "p", PKCS12PasswordFile: "f", PKCS12PasswordEnv: "E"}
		}, "tls.pkcs12PasswordEnv: set either"},
		{"auth token explicit", func(c *Config) { c.Auth.Method = "token" }, ""},
		{"approle", func(c *Config) {
			c.TokenEnv = ""
			c.Auth = AuthConfig{Method: "approle", RoleIDFile: "r", SecretIDFile: "s"}
		}, ""},
		{"approle on a mount", func(c *Config) {
			c.TokenEnv = ""
			c.Auth = AuthConfig{Method: "approle", Mount: "apps/kseal", RoleIDFile: "r"}
		}, ""},
		{"kubernetes default jwt", func(c *Config) { c.TokenEnv = ""; c.Auth = AuthConfig{Method: "kubernetes", Role: "kseal"} }, ""},
		{"jwt", func(c *Config) { c.TokenEnv = ""; c.Auth = AuthConfig{Method: "jwt", Role: "kseal", JWTFile: "j"} }, ""},
		{"unknown method", func(c *Config) { c.Auth.Method = "userpass" }, "auth.method: \"userpass\" is not one of"},
		{"token with role", func(c *Config) { c.Auth.Role = "x" }, "auth.role: not used by auth.method \"\""},
		{"approle without role id", func(c *Config) { c.TokenEnv = ""; c.Auth = AuthConfig{Method: "approle"} }, "auth.roleIdFile: required"},
		{"approle with role", func(c *Config) { c.TokenEnv = ""; c.Auth = AuthConfig{Method: "approle", RoleIDFile: "r", Role: "x"} }, "auth.role: not used"},
		{"approle and token", func(c *Config) { c.Auth = AuthConfig{Method: "approle", RoleIDFile: "r"} }, "tokenEnv: not used with auth.method approle"},
		{"kubernetes without role", func(c *Config) { c.TokenEnv = ""; c.Auth = AuthConfig{Method: "kubernetes"} }, "auth.role: required"},
		{"kubernetes bad role", func(c *Config) { c.TokenEnv = ""; c.Auth = AuthConfig{Method: "kubernetes", Role: "a/b"} }, "auth.role: "},
		{"kubernetes with secret id", func(c *Config) {
			c.TokenEnv = ""
			c.Auth = AuthConfig{Method: "kubernetes", Role: "r", SecretIDFile: "s"}
		}, "auth.secretIdFile: not used"},
		{"jwt without file", func(c *Config) { c.TokenEnv = ""; c.Auth = AuthConfig{Method: "jwt", Role: "r"} }, "auth.jwtFile: required"},
		{"bad auth mount", func(c *Config) {
			c.TokenEnv = ""
			c.Auth = AuthConfig{Method: "jwt", Role: "r", JWTFile: "j", Mount: "/x"}
		}, "auth.mount: "},
		{"password without p12", func(c *Config) { c.Address = "https://v"; c.TLS.PKCS12PasswordEnv = "E" }, "tls.pkcs12File: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			c.Address = "http://127.0.0.1:8200"
			c.TokenEnv = "VAULT_TOKEN"
			tc.edit(c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), ":secret@"):
				t.Fatalf("error shows the URL's password: %v", err)
			}
		})
	}
}

func TestAuthConfigFromYAML(t *testing.T) {
	const doc = `
address: https://vault.example.com:8200
auth:
  method: approle
  mount: apps/kseal
  roleIdFile: /etc/kseal/role-id
  secretIdFile: /etc/kseal/secret-id
`
	cfg := NewConfig()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := AuthConfig{Method: "approle", Mount: "apps/kseal", RoleIDFile: "/etc/kseal/role-id", SecretIDFile: "/etc/kseal/secret-id"}
	if cfg.Auth != want || cfg.Auth.mount() != "apps/kseal" {
		t.Fatalf("decoded %+v", cfg.Auth)
	}
	k8s := AuthConfig{Method: "kubernetes", Role: "kseal"}
	if k8s.mount() != "kubernetes" || k8s.jwtFile() != DefaultKubernetesJWTFile {
		t.Fatalf("kubernetes defaults: mount %q jwtFile %q", k8s.mount(), k8s.jwtFile())
	}
	bad := yaml.NewDecoder(strings.NewReader("auth: {method: jwt, secretID: x}"))
	bad.KnownFields(true)
	if err := bad.Decode(NewConfig()); err == nil {
		t.Fatal("unknown auth key accepted")
	}
}

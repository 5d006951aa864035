package azure

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/kms"
)

func TestRegistered(t *testing.T) {
	p, ok := kms.Lookup("azure")
	if !ok {
		t.Fatal(`"azure" is not registered`)
	}
	if _, ok := p.NewConfig().(*Config); !ok {
		t.Fatalf("NewConfig returns %T", p.NewConfig())
	}
}

func TestConfigValidate(t *testing.T) {
	mi := func(c *Config) { c.Auth.Method = MethodManagedIdentity }
	cs := func(c *Config) {
		c.Auth.Method = MethodClientSecret
		c.Auth.TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
		c.Auth.ClientID = "app"
		c.Auth.ClientSecretFile = "/etc/kseal/secret"
	}
	tests := []struct {
		name string
		mod  func(c *Config)
		want string // substring of the error; "" for valid
	}{
		{"vault name, managed identity", func(c *Config) { c.VaultName = "kseal-prod"; mi(c) }, ""},
		{"vault url, client secret", func(c *Config) { c.VaultURL = "https://127.0.0.1:8443"; cs(c) }, ""},
		{"managed hsm", func(c *Config) { c.VaultName = "kseal-hsm"; c.VaultHost = "managedhsm.azure.net"; mi(c) }, ""},
		{"secret from env", func(c *Config) {
			c.VaultName = "kv1"
			cs(c)
			c.Auth.ClientSecretFile = ""
			c.Auth.ClientSecretEnv = "AZURE_CLIENT_SECRET"
		}, ""},
		{"no vault", mi, "vaultName: one of vaultName or vaultUrl is required"},
		{"both vaults", func(c *Config) { c.VaultName = "kv1"; c.VaultURL = "https://x"; mi(c) }, "vaultUrl: set either"},
		{"bad vault name", func(c *Config) { c.VaultName = "a/b"; mi(c) }, "vaultName: "},
		{"short vault name", func(c *Config) { c.VaultName = "ab"; mi(c) }, "vaultName: "},
		{"bad vault host", func(c *Config) { c.VaultName = "kv1"; c.VaultHost = "evil.com/x?"; mi(c) }, "vaultHost: "},
		{"http vault url", func(c *Config) { c.VaultURL = "http://127.0.0.1:8443"; mi(c) }, "vaultUrl: "},
		{"vault url with query", func(c *Config) { c.VaultURL = "https://h/?a=b"; mi(c) }, "vaultUrl: "},
		{"bad api version", func(c *Config) { c.VaultName = "kv1"; c.APIVersion = "7.4&x=y"; mi(c) }, "apiVersion: "},
		{"bad resource", func(c *Config) { c.VaultName = "kv1"; c.Resource = "vault"; mi(c) }, "resource: "},
		{"tiny timeout", func(c *Config) { c.VaultName = "kv1"; c.Timeout = time.Millisecond; mi(c) }, "timeout: "},
		{"client certificate", func(c *Config) {
			c.VaultName = "kv1"
			c.Auth = AuthConfig{Method: MethodClientCertificate, TenantID: "t1", ClientID: "app", ClientCertificateFile: "/etc/kseal/app.pem",
				SendCertificateChain: true, AuthorityHost: DefaultAuthorityHost, IdentityEndpoint: DefaultIdentityEndpoint}
		}, ""},
		{"client certificate without file", func(c *Config) {
			c.VaultName = "kv1"
			c.Auth.Method = MethodClientCertificate
			c.Auth.TenantID, c.Auth.ClientID = "t1", "app"
		}, "auth.clientCertificateFile: required"},
		{"client certificate with secret", func(c *Config) {
			c.VaultName = "kv1"
			c.Auth.Method = MethodClientCertificate
			c.Auth.TenantID, c.Auth.ClientID, c.Auth.ClientCertificateFile, c.Auth.ClientSecretEnv = "t1", "app", "/x.pem", "S"
		}, "auth.clientSecretEnv: only used with method clientSecret"},
		{"workload identity from env", func(c *Config) { c.VaultName = "kv1"; c.Auth.Method = MethodWorkloadIdentity }, ""},
		{"workload identity with token file", func(c *Config) {
			c.VaultName = "kv1"
			c.Auth.Method = MethodWorkloadIdentity
			c.Auth.TokenFile = "/var/run/secrets/azure/tokens/azure-identity-token"
			c.Auth.TenantID, c.Auth.ClientID = "72f988bf-86f1-41af-91ab-2d7cd011db47", "c1"
		}, ""},
		{"workload identity with certificate", func(c *Config) {
			c.VaultName = "kv1"
			c.Auth.Method = MethodWorkloadIdentity
			c.Auth.ClientCertificateFile = "/x.pem"
		}, "auth.clientCertificateFile: only used with method clientCertificate"},
		{"token file with secret", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.TokenFile = "/t" }, "auth.tokenFile: only used with method workloadIdentity"},
		{"chain without certificate", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.SendCertificateChain = true }, "auth.sendCertificateChain: only used"},
		{"authority with managed identity", func(c *Config) { c.VaultName = "kv1"; mi(c); c.Auth.AuthorityHost = "https://login.example" }, "auth.authorityHost: not used"},
		{"china", func(c *Config) { c.VaultName = "kv1"; c.Cloud = CloudChina; mi(c) }, ""},
		{"unknown cloud", func(c *Config) { c.VaultName = "kv1"; c.Cloud = "AzureGermany"; mi(c) }, `cloud: unknown "AzureGermany"`},
		{"no method", func(c *Config) { c.VaultName = "kv1" }, "auth.method: required"},
		{"unknown method", func(c *Config) { c.VaultName = "kv1"; c.Auth.Method = "password" }, `auth.method: unknown "password"`},
		{"no tenant", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.TenantID = "" }, "auth.tenantId: required"},
		{"no client id", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.ClientID = "" }, "auth.clientId: required"},
		{"no secret", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.ClientSecretFile = "" }, "auth.clientSecretFile: one of"},
		{"two secrets", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.ClientSecretEnv = "X" }, "auth.clientSecretEnv: set either"},
		{"http authority", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.AuthorityHost = "http://login" }, "auth.authorityHost: "},
		{"identity endpoint with secret", func(c *Config) { c.VaultName = "kv1"; cs(c); c.Auth.IdentityEndpoint = "http://x/" }, "auth.identityEndpoint: only used"},
		{"secret with managed identity", func(c *Config) { c.VaultName = "kv1"; mi(c); c.Auth.ClientSecretEnv = "X" }, "auth.tenantId: tenantId, clientSecretFile"},
		{"bad identity endpoint", func(c *Config) { c.VaultName = "kv1"; mi(c); c.Auth.IdentityEndpoint = "ftp://x" }, "auth.identityEndpoint: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewConfig()
			tt.mod(c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted the config, want %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConfigDerived(t *testing.T) {
	tests := []struct {
		mod          func(c *Config)
		base, audien string
	}{
		{func(c *Config) { c.VaultName = "kv1" }, "https://kv1.vault.azure.net", "https://vault.azure.net"},
		{func(c *Config) { c.VaultName = "hsm1"; c.VaultHost = "managedhsm.azure.net" }, "https://hsm1.managedhsm.azure.net", "https://managedhsm.azure.net"},
		{func(c *Config) { c.VaultURL = "https://127.0.0.1:8443/" }, "https://127.0.0.1:8443", "https://vault.azure.net"},
		{func(c *Config) { c.VaultURL = "https://hsm1.managedhsm.azure.net" }, "https://hsm1.managedhsm.azure.net", "https://managedhsm.azure.net"},
		{func(c *Config) {
			c.VaultName = "kv1"
			c.VaultHost = "vault.azure.cn"
			c.Resource = "https://vault.azure.cn/"
		}, "https://kv1.vault.azure.cn", "https://vault.azure.cn"},
		{func(c *Config) { c.VaultName = "kv1"; c.Cloud = CloudChina }, "https://kv1.vault.azure.cn", "https://vault.azure.cn"},
		{func(c *Config) { c.VaultName = "kv1"; c.Cloud = CloudGovernment }, "https://kv1.vault.usgovcloudapi.net", "https://vault.usgovcloudapi.net"},
		{func(c *Config) {
			c.VaultName = "hsm1"
			c.Cloud = CloudGovernment
			c.VaultHost = "managedhsm.usgovcloudapi.net"
		}, "https://hsm1.managedhsm.usgovcloudapi.net", "https://managedhsm.usgovcloudapi.net"},
	}
	for _, tt := range tests {
		c := NewConfig()
		tt.mod(c)
		if got := c.baseURL(); got != tt.base {
			t.Errorf("baseURL = %q, want %q", got, tt.base)
		}
		if got := c.resource(); got != tt.audien {
			t.Errorf("resource = %q, want %q", got, tt.audien)
		}
	}
	for cl, want := range map[string]string{"": "https://login.microsoftonline.com", CloudChina: "https://login.chinacloudapi.cn", CloudGovernment: "https://login.microsoftonline.us"} {
		c := NewConfig()
		c.Cloud = cl
		if got := c.authorityHost(); got != want {
			t.Errorf("cloud %q: authorityHost = %q, want %q", cl, got, want)
		}
		c.Auth.AuthorityHost = "https://login.private.example/"
		if got := c.authorityHost(); got != "https://login.private.example" {
			t.Errorf("cloud %q with an authorityHost: %q", cl, got)
		}
	}
}

// The documented example decodes strictly (unknown keys refused, as the
// config loader does) and validates.
func TestConfigYAMLExample(t *testing.T) {
	const doc = `
vaultName: kseal-prod
timeout: 3s
auth:
  method: clientSecret
  tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
  clientId: 0b7b6c52-4b8e-4c6c-9d43-3c6b0e5c1f00
  clientSecretFile: /etc/kseal/azure-client-secret
tls:
  caFile: /etc/kseal/corp-ca.pem
`
	c := NewConfig()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Timeout != 3*time.Second || c.VaultHost != DefaultVaultHost || c.Auth.AuthorityHost != DefaultAuthorityHost {
		t.Fatalf("decoded %+v", c)
	}
	dec = yaml.NewDecoder(bytes.NewReader([]byte("vaultName: kv1\nvaultname: x\n")))
	dec.KnownFields(true)
	if err := dec.Decode(NewConfig()); err == nil {
		t.Fatal("unknown key accepted")
	}
}

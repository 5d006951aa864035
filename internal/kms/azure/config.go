package azure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"

	"github.com/kseal/kseal/internal/kms"
)

func init() {
	kms.Register("azure", kms.ProviderFunc(func() kms.Config { return NewConfig() }))
}

// Defaults.
const (
	// DefaultVaultHost is the DNS suffix of Key Vault vaults in Azure's
	// public cloud; Managed HSM pools use "managedhsm.azure.net".
	DefaultVaultHost = "vault.azure.net"
	// DefaultAPIVersion is the Key Vault REST API version kseal speaks.
	DefaultAPIVersion = "7.4"
	// DefaultTimeout bounds one KMS call, token acquisition included.
	DefaultTimeout = 5 * time.Second
	// DefaultAuthorityHost is Microsoft Entra ID in Azure's public cloud.
	DefaultAuthorityHost = "https://login.microsoftonline.com"
	// DefaultIdentityEndpoint is the Azure Instance Metadata Service's
	// managed identity token endpoint.
	DefaultIdentityEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token"
)

// Authentication methods.
const (
	MethodClientSecret    = "clientSecret"    // OAuth 2.0 client credentials of an app registration
	MethodManagedIdentity = "managedIdentity" // a token from the host's managed identity endpoint
	// MethodClientCertificate is an app registration's certificate
	// (azidentity.ClientCertificateCredential).
	MethodClientCertificate = "clientCertificate"
	// MethodWorkloadIdentity is a federated token file, as AKS workload
	// identity mounts it (azidentity.WorkloadIdentityCredential).
	MethodWorkloadIdentity = "workloadIdentity"
)

// Clouds: the Entra ID authority, the vault DNS suffix and the token
// audiences of each national cloud.
const (
	CloudPublic     = "AzurePublic"
	CloudChina      = "AzureChina"
	CloudGovernment = "AzureGovernment"
)

type cloudInfo struct {
	authority, vaultHost, vaultResource, hsmResource string
}

var clouds = map[string]cloudInfo{
	CloudPublic:     {strings.TrimRight(cloud.AzurePublic.ActiveDirectoryAuthorityHost, "/"), "vault.azure.net", "https://vault.azure.net", "https://managedhsm.azure.net"},
	CloudChina:      {strings.TrimRight(cloud.AzureChina.ActiveDirectoryAuthorityHost, "/"), "vault.azure.cn", "https://vault.azure.cn", "https://managedhsm.azure.cn"},
	CloudGovernment: {strings.TrimRight(cloud.AzureGovernment.ActiveDirectoryAuthorityHost, "/"), "vault.usgovcloudapi.net", "https://vault.usgovcloudapi.net", "https://managedhsm.usgovcloudapi.net"},
}

// allMethods lists the auth methods for messages.
const allMethods = MethodClientSecret + ", " + MethodClientCertificate + ", " + MethodWorkloadIdentity + ", " + MethodManagedIdentity

// Config is the `kms.config` section for `type: azure`.
type Config struct {
	// VaultName is the vault (or Managed HSM pool) name: the vault is
	// https://<vaultName>.<vaultHost>. Exactly one of VaultName and VaultURL
	// is set.
	VaultName string `yaml:"vaultName"`
	// VaultHost is the DNS suffix for VaultName: vault.azure.net (default),
	// managedhsm.azure.net, or a sovereign cloud's suffix
	// (vault.azure.cn, vault.usgovcloudapi.net).
	VaultHost string `yaml:"vaultHost"`
	// VaultURL is the vault's full base URL, for private endpoints with
	// custom names and emulators (https://127.0.0.1:8443).
	VaultURL string `yaml:"vaultUrl"`
	// APIVersion is the Key Vault REST API version sent with every request.
	APIVersion string `yaml:"apiVersion"`
	// Resource is the token audience. Empty picks https://managedhsm.azure.net
	// when the vault host is a Managed HSM one, else https://vault.azure.net.
	Resource string `yaml:"resource"`
	// Timeout bounds one KMS call, token acquisition included.
	Timeout time.Duration `yaml:"timeout"`
	// Cloud is AzurePublic (default), AzureChina or AzureGovernment: it
	// picks the defaults of vaultHost, auth.authorityHost and the token
	// audience. An explicit vaultHost, auth.authorityHost or resource wins
	// (a private cloud sets all three).
	Cloud string `yaml:"cloud"`
	// AllowRSAKeys lets RSA and RSA-HSM keys be KEKs. Wrapping with RSA
	// needs only the public key, so anyone who has it (any identity with
	// "get" on the key, or a copy of it) can make EDEKs that kseal unwraps
	// and records that kseal delivers as genuine. False refuses RSA keys in
	// GenerateDEK and RSA EDEKs in DecryptDEK, leaving AES keys (oct-HSM,
	// Managed HSM only), whose wrap needs the vault. Default true: Key Vault
	// Standard and Premium have no AES keys.
	AllowRSAKeys bool `yaml:"allowRsaKeys"`
	// Auth says how kseal gets its access token.
	Auth AuthConfig `yaml:"auth"`
	// TLS is the trust used for the vault and the token endpoints.
	TLS TLSConfig `yaml:"tls"`
}

// AuthConfig is the `auth` section. Secrets are never inline: a client
// secret comes from a file (re-read at each token request, so a rotated
// file is picked up) or an environment variable.
type AuthConfig struct {
	// Method is clientSecret, clientCertificate, workloadIdentity or
	// managedIdentity.
	Method string `yaml:"method"`
	// TenantID is the Entra ID tenant (clientSecret, clientCertificate;
	// workloadIdentity: default $AZURE_TENANT_ID).
	TenantID string `yaml:"tenantId"`
	// ClientID is the application (client) id for clientSecret and
	// clientCertificate (workloadIdentity: default $AZURE_CLIENT_ID), and
	// for managedIdentity the client id of a user-assigned identity
	// (empty: the system-assigned one).
	ClientID string `yaml:"clientId"`
	// ClientCertificateFile is the app's certificate and private key, PEM
	// (unencrypted key) or PKCS#12 without a password (clientCertificate).
	// It is read again for each new token, so a renewed file is picked up.
	ClientCertificateFile string `yaml:"clientCertificateFile"`
	// SendCertificateChain sends the certificate chain with each token
	// request (x5c), for subject name/issuer authentication.
	SendCertificateChain bool `yaml:"sendCertificateChain"`
	// TokenFile is the federated (Kubernetes service account) token
	// (workloadIdentity); default $AZURE_FEDERATED_TOKEN_FILE.
	TokenFile string `yaml:"tokenFile"`
	// ClientSecretFile and ClientSecretEnv hold the client secret
	// (clientSecret); exactly one is set.
	ClientSecretFile string `yaml:"clientSecretFile"`
	ClientSecretEnv  string `yaml:"clientSecretEnv"`
	// AuthorityHost is the Entra ID endpoint (clientSecret,
	// clientCertificate, workloadIdentity), default the cloud's
	// (https://login.microsoftonline.com in AzurePublic).
	AuthorityHost string `yaml:"authorityHost"`
	// IdentityEndpoint is the managed identity token endpoint
	// (managedIdentity), default the Instance Metadata Service.
	IdentityEndpoint string `yaml:"identityEndpoint"`
}

// TLSConfig is the `tls` section.
type TLSConfig struct {
	// CAFile is a PEM bundle trusted in addition to the system roots.
	CAFile string `yaml:"caFile"`
	// InsecureSkipVerify turns certificate verification off (logged as a
	// warning at startup). For throwaway test setups only: prefer CAFile.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify"`
}

// NewConfig returns a Config with defaults set.
func NewConfig() *Config {
	return &Config{
		VaultHost:    DefaultVaultHost,
		APIVersion:   DefaultAPIVersion,
		Timeout:      DefaultTimeout,
		AllowRSAKeys: true,
		Auth: AuthConfig{
			AuthorityHost:    DefaultAuthorityHost,
			IdentityEndpoint: DefaultIdentityEndpoint,
		},
	}
}

// Validate checks the config without touching files or the network.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	switch {
	case c.VaultName == "" && c.VaultURL == "":
		add("vaultName: one of vaultName or vaultUrl is required")
	case c.VaultName != "" && c.VaultURL != "":
		add("vaultUrl: set either vaultName or vaultUrl, not both")
	case c.VaultName != "":
		if !validVaultName(c.VaultName) {
			add("vaultName: %q is not a vault name (3-24 letters, digits and dashes)", c.VaultName)
		}
		if !validHostname(c.VaultHost) {
			add("vaultHost: %q is not a host name", c.VaultHost)
		}
	default:
		if err := checkBaseURL(c.VaultURL, true); err != nil {
			add("vaultUrl: %v", err)
		}
	}
	if c.APIVersion == "" || strings.ContainsAny(c.APIVersion, "&?#/ ") {
		add("apiVersion: %q is not an API version", c.APIVersion)
	}
	if c.Resource != "" {
		if err := checkBaseURL(c.Resource, false); err != nil {
			add("resource: %v", err)
		}
	}
	if _, ok := clouds[c.Cloud]; !ok && c.Cloud != "" {
		add("cloud: unknown %q (known: %s, %s, %s)", c.Cloud, CloudPublic, CloudChina, CloudGovernment)
	}
	if c.Timeout < 100*time.Millisecond || c.Timeout > 5*time.Minute {
		add("timeout: %v is out of range (100ms to 5m)", c.Timeout)
	}

	a := &c.Auth
	only := func(key, val string, methods string) {
		if val != "" {
			add("auth.%s: only used with method %s", key, methods)
		}
	}
	entra := a.Method == MethodClientSecret || a.Method == MethodClientCertificate || a.Method == MethodWorkloadIdentity
	if entra {
		if err := checkBaseURL(a.AuthorityHost, true); err != nil {
			add("auth.authorityHost: %v", err)
		}
		if a.IdentityEndpoint != DefaultIdentityEndpoint && a.IdentityEndpoint != "" {
			add("auth.identityEndpoint: only used with method managedIdentity")
		}
	}
	switch a.Method {
	case MethodClientSecret, MethodClientCertificate:
		if !validGUIDOrDomain(a.TenantID) {
			add("auth.tenantId: required for %s (a tenant id or domain)", a.Method)
		}
		if a.ClientID == "" {
			add("auth.clientId: required for %s", a.Method)
		}
	case MethodWorkloadIdentity:
		if a.TenantID != "" && !validGUIDOrDomain(a.TenantID) {
			add("auth.tenantId: %q is not a tenant id or domain", a.TenantID)
		}
	}
	switch a.Method {
	case MethodClientSecret:
		switch {
		case a.ClientSecretFile == "" && a.ClientSecretEnv == "":
			add("auth.clientSecretFile: one of clientSecretFile or clientSecretEnv is required for clientSecret")
		case a.ClientSecretFile != "" && a.ClientSecretEnv != "":
			add("auth.clientSecretEnv: set either clientSecretFile or clientSecretEnv, not both")
		}
		only("clientCertificateFile", a.ClientCertificateFile, MethodClientCertificate)
		only("tokenFile", a.TokenFile, MethodWorkloadIdentity)
	case MethodClientCertificate:
		if a.ClientCertificateFile == "" {
			add("auth.clientCertificateFile: required for clientCertificate")
		}
		only("clientSecretFile", a.ClientSecretFile, MethodClientSecret)
		only("clientSecretEnv", a.ClientSecretEnv, MethodClientSecret)
		only("tokenFile", a.TokenFile, MethodWorkloadIdentity)
	case MethodWorkloadIdentity:
		only("clientSecretFile", a.ClientSecretFile, MethodClientSecret)
		only("clientSecretEnv", a.ClientSecretEnv, MethodClientSecret)
		only("clientCertificateFile", a.ClientCertificateFile, MethodClientCertificate)
	case MethodManagedIdentity:
		if a.TenantID != "" || a.ClientSecretFile != "" || a.ClientSecretEnv != "" {
			add("auth.tenantId: tenantId, clientSecretFile and clientSecretEnv are only used with method clientSecret")
		}
		only("clientCertificateFile", a.ClientCertificateFile, MethodClientCertificate)
		only("tokenFile", a.TokenFile, MethodWorkloadIdentity)
		if a.AuthorityHost != DefaultAuthorityHost && a.AuthorityHost != "" {
			add("auth.authorityHost: not used with method managedIdentity")
		}
		if err := checkEndpointURL(a.IdentityEndpoint); err != nil {
			add("auth.identityEndpoint: %v", err)
		}
	case "":
		add("auth.method: required (%s)", allMethods)
	default:
		add("auth.method: unknown %q (known: %s)", a.Method, allMethods)
	}
	if a.SendCertificateChain && a.Method != MethodClientCertificate {
		add("auth.sendCertificateChain: only used with method clientCertificate")
	}
	return errors.Join(errs...)
}

// Open opens the KMS; see New.
func (c *Config) Open(ctx context.Context, logger *slog.Logger) (kms.KMS, error) {
	return New(ctx, c, logger)
}

// baseURL is the vault's base URL without a trailing slash.
func (c *Config) baseURL() string {
	if c.VaultURL != "" {
		return strings.TrimRight(c.VaultURL, "/")
	}
	return "https://" + c.VaultName + "." + c.vaultHost()
}

// cloudInfo is the configured cloud's.
func (c *Config) cloud() cloudInfo {
	if ci, ok := clouds[c.Cloud]; ok {
		return ci
	}
	return clouds[CloudPublic]
}

// vaultHost is VaultHost, or the cloud's when it is left at the default.
func (c *Config) vaultHost() string {
	if c.VaultHost == DefaultVaultHost || c.VaultHost == "" {
		return c.cloud().vaultHost
	}
	return c.VaultHost
}

// authorityHost is AuthorityHost without a trailing slash, or the cloud's
// when it is left at the default.
func (c *Config) authorityHost() string {
	if c.Auth.AuthorityHost == DefaultAuthorityHost || c.Auth.AuthorityHost == "" {
		return c.cloud().authority
	}
	return strings.TrimRight(c.Auth.AuthorityHost, "/")
}

// resource is the token audience for the vault.
func (c *Config) resource() string {
	if c.Resource != "" {
		return strings.TrimRight(c.Resource, "/")
	}
	host := c.vaultHost()
	if c.VaultURL != "" {
		if u, err := url.Parse(c.VaultURL); err == nil {
			host = u.Hostname()
		}
	}
	if strings.Contains(strings.ToLower(host), "managedhsm.") {
		return c.cloud().hsmResource
	}
	return c.cloud().vaultResource
}

// checkBaseURL accepts an absolute http(s) URL with a host and no query or
// fragment; https only when httpsOnly.
func checkBaseURL(s string, httpsOnly bool) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "https" && (httpsOnly || u.Scheme != "http") {
		if httpsOnly {
			return fmt.Errorf("%q must be an https URL", s)
		}
		return fmt.Errorf("%q must be an http or https URL", s)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be scheme://host[:port][/path] only", s)
	}
	return nil
}

// checkEndpointURL accepts the managed identity endpoint: http (IMDS is
// plain HTTP on a link-local address) or https, query allowed.
func checkEndpointURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// validVaultName follows Azure's rule for vault names: 3 to 24 letters,
// digits and dashes (the service also wants a letter first and no "--";
// a wrong name simply fails to resolve).
func validVaultName(s string) bool {
	if len(s) < 3 || len(s) > 24 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

func validHostname(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isNameByte(c) && c != '.' {
			return false
		}
	}
	return true
}

// validGUIDOrDomain accepts what goes into the authority URL path as the
// tenant: a GUID, a domain name, or "organizations"-style words.
func validGUIDOrDomain(s string) bool { return validHostname(s) }

package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

func init() {
	kms.Register("aws", kms.ProviderFunc(func() kms.Config { return NewConfig() }))
}

const (
	// DefaultAliasPrefix turns a policy's KEK name "KEK-orders" into the
	// alias "alias/KEK-orders".
	DefaultAliasPrefix = "alias/"
	// DefaultTimeout bounds one KMS call (the caller retries).
	DefaultTimeout = 5 * time.Second
)

// Credential sources.
const (
	SourceDefault = "default" // the SDK's chain: env, shared files, web identity, ECS, EC2
	SourceProfile = "profile" // a named profile of the shared config/credentials files
	SourceEnv     = "env"     // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN only
	SourceStatic  = "static"  // an access key read from files or named environment variables
)

// Config is the `kms.config` section for `type: aws`.
type Config struct {
	// Region is the AWS region of the keys. Empty takes it from the
	// environment (AWS_REGION) or the shared config profile.
	Region string `yaml:"region"`
	// Endpoint overrides the KMS endpoint URL: a VPC endpoint, or an
	// emulator in tests.
	Endpoint string `yaml:"endpoint"`
	// AliasPrefix is put before a KEK name from the policy to make the key
	// identifier looked up with DescribeKey: "alias/" (the default), or an
	// alias ARN prefix ("arn:aws:kms:eu-west-1:111122223333:alias/") for
	// keys in another account. Empty uses the names as they are (key ids,
	// key ARNs or full alias names).
	AliasPrefix string `yaml:"aliasPrefix"`
	// AllowedAccounts lists the AWS accounts (12 digits) whose keys an EDEK
	// may name by key ARN, besides the account of an alias ARN AliasPrefix.
	// An EDEK naming a key ARN of any other account, or of another region
	// than the client's, is refused without calling AWS: anyone able to
	// write to a topic could otherwise make kseal decrypt (and deliver as
	// genuine) records under a key of their own. EDEKs holding a bare key id
	// need no entry: AWS looks those up in kseal's own account and region.
	AllowedAccounts []string `yaml:"allowedAccounts"`
	// AllowedRegions lists further regions whose multi-Region key ARNs
	// (key/mrk-...) an EDEK may name, besides the client's region. kseal
	// decrypts such an EDEK with the replica of the same key in its own
	// region (same key id and key material), so an EDEK written by kseal in
	// a replica region opens here. Single-Region key ARNs of other regions
	// stay refused: this client reaches only its own region's keys.
	AllowedRegions []string `yaml:"allowedRegions"`
	// Timeout bounds one KMS call, credential retrieval included.
	Timeout time.Duration `yaml:"timeout"`
	// Credentials says where the AWS credentials come from.
	Credentials CredentialsConfig `yaml:"credentials"`
}

// CredentialsConfig is the `credentials` section. Secrets are never inline:
// a static secret access key comes from a file or an environment variable.
type CredentialsConfig struct {
	// Source is default, profile, env or static (see the Source constants).
	Source string `yaml:"source"`
	// Profile names the shared config profile (source profile).
	Profile string `yaml:"profile"`
	// SharedConfigFile and SharedCredentialsFile replace the SDK's default
	// paths (~/.aws/config, ~/.aws/credentials) for sources default and
	// profile.
	SharedConfigFile      string `yaml:"sharedConfigFile"`
	SharedCredentialsFile string `yaml:"sharedCredentialsFile"`
	// Source static: the access key id inline or from a file or a variable,
	// the secret access key and the optional session token from a file or a
	// variable. Files are re-read every few minutes, so a rotated secret
	// file is picked up without a restart.
	AccessKeyID         string `yaml:"accessKeyId"`
	AccessKeyIDFile     string `yaml:"accessKeyIdFile"`
	AccessKeyIDEnv      string `yaml:"accessKeyIdEnv"`
	SecretAccessKeyFile string `yaml:"secretAccessKeyFile"`
	SecretAccessKeyEnv  string `yaml:"secretAccessKeyEnv"`
	SessionTokenFile    string `yaml:"sessionTokenFile"`
	SessionTokenEnv     string `yaml:"sessionTokenEnv"`
}

// NewConfig returns a Config with defaults set.
func NewConfig() *Config {
	return &Config{
		AliasPrefix: DefaultAliasPrefix,
		Timeout:     DefaultTimeout,
		Credentials: CredentialsConfig{Source: SourceDefault},
	}
}

// Validate checks the config without touching files or the network.
func (c *Config) Validate() error {
	var errs []error
	if c.Region != "" && !validRegion(c.Region) {
		errs = append(errs, fmt.Errorf("region: %q is not a region name", c.Region))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("endpoint: %w", err))
		case u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
			errs = append(errs, fmt.Errorf("endpoint: %q is not an http(s) URL", c.Endpoint))
		case u.User != nil:
			errs = append(errs, errors.New("endpoint: must not contain credentials"))
		}
	}
	if p := c.AliasPrefix; p != "" && !strings.HasPrefix(p, "alias/") && !(strings.HasPrefix(p, "arn:") && strings.Contains(p, ":alias/")) {
		errs = append(errs, fmt.Errorf(`aliasPrefix: %q must start with "alias/", be an alias ARN prefix ("arn:aws:kms:<region>:<account>:alias/"), or be empty`, p))
	} else if p != "" && !validKeyID(p) {
		errs = append(errs, fmt.Errorf("aliasPrefix: %q has spaces or non-ASCII characters", p))
	}
	for i, a := range c.AllowedAccounts {
		if !validAccount(a) {
			errs = append(errs, fmt.Errorf("allowedAccounts[%d]: %q is not an AWS account id (12 digits)", i, a))
		}
	}
	for i, r := range c.AllowedRegions {
		if !validRegion(r) {
			errs = append(errs, fmt.Errorf("allowedRegions[%d]: %q is not a region name", i, r))
		}
	}
	if c.Timeout < 100*time.Millisecond || c.Timeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("timeout: %v is out of range (100ms to 5m)", c.Timeout))
	}
	errs = append(errs, c.Credentials.validate()...)
	return errors.Join(errs...)
}

func (c *CredentialsConfig) validate() []error {
	var errs []error
	notWith := func(key, val string, sources ...string) {
		if val == "" {
			return
		}
		for _, s := range sources {
			if c.Source == s {
				return
			}
		}
		errs = append(errs, fmt.Errorf("credentials.%s: only with source %s", key, strings.Join(sources, " or ")))
	}
	switch c.Source {
	case SourceDefault, SourceEnv:
	case SourceProfile:
		if c.Profile == "" {
			errs = append(errs, errors.New("credentials.profile: required with source profile"))
		}
	case SourceStatic:
		if n := count(c.AccessKeyID, c.AccessKeyIDFile, c.AccessKeyIDEnv); n != 1 {
			errs = append(errs, errors.New("credentials.accessKeyId: set exactly one of accessKeyId, accessKeyIdFile, accessKeyIdEnv"))
		}
		if n := count(c.SecretAccessKeyFile, c.SecretAccessKeyEnv); n != 1 {
			errs = append(errs, errors.New("credentials.secretAccessKeyFile: set exactly one of secretAccessKeyFile, secretAccessKeyEnv (never the secret itself)"))
		}
		if count(c.SessionTokenFile, c.SessionTokenEnv) > 1 {
			errs = append(errs, errors.New("credentials.sessionTokenFile: set at most one of sessionTokenFile, sessionTokenEnv"))
		}
	default:
		errs = append(errs, fmt.Errorf("credentials.source: unknown %q (known: default, profile, env, static)", c.Source))
		return errs
	}
	notWith("profile", c.Profile, SourceProfile)
	notWith("sharedConfigFile", c.SharedConfigFile, SourceDefault, SourceProfile)
	notWith("sharedCredentialsFile", c.SharedCredentialsFile, SourceDefault, SourceProfile)
	for _, f := range []struct{ key, val string }{
		{"accessKeyId", c.AccessKeyID}, {"accessKeyIdFile", c.AccessKeyIDFile}, {"accessKeyIdEnv", c.AccessKeyIDEnv},
		{"secretAccessKeyFile", c.SecretAccessKeyFile}, {"secretAccessKeyEnv", c.SecretAccessKeyEnv},
		{"sessionTokenFile", c.SessionTokenFile}, {"sessionTokenEnv", c.SessionTokenEnv},
	} {
		notWith(f.key, f.val, SourceStatic)
	}
	return errs
}

func count(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}

// validRegion accepts AWS region names such as "eu-west-1", "us-gov-west-1"
// and emulator regions; it only keeps junk out of the endpoint host name.
func validRegion(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validAccount(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Open builds the KMS client; see New.
func (c *Config) Open(ctx context.Context, logger *slog.Logger) (kms.KMS, error) {
	return New(ctx, c, logger)
}

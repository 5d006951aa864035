package aws

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/kms"
)

func TestRegistered(t *testing.T) {
	p, ok := kms.Lookup("aws")
	if !ok {
		t.Fatal(`provider "aws" not registered`)
	}
	c, ok := p.NewConfig().(*Config)
	if !ok || c.AliasPrefix != "alias/" || c.Timeout != DefaultTimeout || c.Credentials.Source != SourceDefault {
		t.Fatalf("NewConfig = %#v", p.NewConfig())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want string // substring of the error; "" means valid
	}{
		{"defaults", ``, ""},
		{"full static", `
region: eu-west-1
endpoint: https://vpce-0123.kms.eu-west-1.vpce.amazonaws.com
aliasPrefix: alias/kseal/
timeout: 2s
credentials: {source: static, accessKeyIdEnv: KID, secretAccessKeyFile: /run/secrets/aws, sessionTokenEnv: TOK}`, ""},
		{"profile", `credentials: {source: profile, profile: kseal, sharedConfigFile: /etc/aws/config}`, ""},
		{"env", `credentials: {source: env}`, ""},
		{"alias ARN prefix", `aliasPrefix: "arn:aws:kms:eu-west-1:111122223333:alias/"`, ""},
		{"empty alias prefix", `aliasPrefix: ""`, ""},
		{"bad region", `region: "eu west"`, "region:"},
		{"endpoint not a URL", `endpoint: "localhost:4566"`, "endpoint:"},
		{"endpoint with user", `endpoint: "http://u:p@localhost:4566"`, "endpoint: must not contain credentials"},
		{"bad alias prefix", `aliasPrefix: "KEK-"`, "aliasPrefix:"},
		{"timeout too short", `timeout: 1ms`, "timeout:"},
		{"timeout too long", `timeout: 1h`, "timeout:"},
		{"unknown source", `credentials: {source: vault}`, "credentials.source: unknown"},
		{"profile without name", `credentials: {source: profile}`, "credentials.profile: required"},
		{"profile name with default source", `credentials: {profile: x}`, "credentials.profile: only with source profile"},
		{"static without key id", `credentials: {source: static, secretAccessKeyEnv: S}`, "credentials.accessKeyId: set exactly one"},
		{"static with two key ids", `credentials: {source: static, accessKeyId: A, accessKeyIdEnv: B, secretAccessKeyEnv: S}`, "credentials.accessKeyId: set exactly one"},
		{"static without secret", `credentials: {source: static, accessKeyId: A}`, "credentials.secretAccessKeyFile: set exactly one"},
		{"static with two secrets", `credentials: {source: static, accessKeyId: A, secretAccessKeyEnv: S, secretAccessKeyFile: f}`, "credentials.secretAccessKeyFile: set exactly one"},
		{"static with two tokens", `credentials: {source: static, accessKeyId: A, secretAccessKeyEnv: S, sessionTokenEnv: T, sessionTokenFile: f}`, "credentials.sessionTokenFile:"},
		{"static fields with default source", `credentials: {secretAccessKeyFile: f}`, "credentials.secretAccessKeyFile: only with source static"},
		{"shared files with static", `credentials: {source: static, accessKeyId: A, secretAccessKeyEnv: S, sharedCredentialsFile: f}`, "credentials.sharedCredentialsFile: only with source default or profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			if err := yaml.Unmarshal([]byte(tc.yaml), c); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestConfigRejectsInlineSecret: there is no key for an inline secret, so
// strict decoding (what the config loader does) refuses one.
func TestConfigRejectsInlineSecret(t *testing.T) {
	dec := yaml.NewDecoder(strings.NewReader("credentials: {source: static, accessKeyId: A, secretAccessKey: S}"))
	dec.KnownFields(true)
	if err := dec.Decode(NewConfig()); err == nil || !strings.Contains(err.Error(), "secretAccessKey") {
		t.Fatalf("decode = %v, want an unknown-field error", err)
	}
}

func TestOpenCredentialSources(t *testing.T) {
	f := newFakeKMS(t)
	f.addKey(testKeyID, "alias/KEK-orders")
	write := func(t *testing.T, name, content string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, c *Config)
		akid    string // the access key id requests must be signed with
		openErr string // substring of New's error
	}{
		{"static from files", func(t *testing.T, c *Config) {
			c.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyIDFile: write(t, "id", "AKIDFILE\n"),
				SecretAccessKeyFile: write(t, "secret", testSecret)}
		}, "AKIDFILE", ""},
		{"static from env", func(t *testing.T, c *Config) {
			t.Setenv("KSEAL_TEST_KID", "AKIDENV")
			t.Setenv("KSEAL_TEST_SECRET", testSecret)
			c.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyIDEnv: "KSEAL_TEST_KID", SecretAccessKeyEnv: "KSEAL_TEST_SECRET"}
		}, "AKIDENV", ""},
		{"static secret file missing", func(t *testing.T, c *Config) {
			c.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyID: "A", SecretAccessKeyFile: filepath.Join(t.TempDir(), "nope")}
		}, "", "secretAccessKey file"},
		{"static secret env unset", func(t *testing.T, c *Config) {
			c.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyID: "A", SecretAccessKeyEnv: "KSEAL_TEST_UNSET"}
		}, "", "KSEAL_TEST_UNSET is not set"},
		{"static secret file empty", func(t *testing.T, c *Config) {
			c.Credentials = CredentialsConfig{Source: SourceStatic, AccessKeyID: "A", SecretAccessKeyFile: write(t, "secret", "\n")}
		}, "", "secretAccessKey is empty"},
		{"env", func(t *testing.T, c *Config) {
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDAWSENV")
			t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
			c.Credentials = CredentialsConfig{Source: SourceEnv}
		}, "AKIDAWSENV", ""},
		{"env unset", func(t *testing.T, c *Config) {
			c.Credentials = CredentialsConfig{Source: SourceEnv}
		}, "", "AWS_ACCESS_KEY_ID"},
		{"profile from shared files, region from the profile", func(t *testing.T, c *Config) {
			c.Region = ""
			c.Credentials = CredentialsConfig{Source: SourceProfile, Profile: "kseal",
				SharedConfigFile:      write(t, "config", "[profile kseal]\nregion = us-east-1\n"),
				SharedCredentialsFile: write(t, "credentials", "[kseal]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = "+testSecret+"\n")}
		}, "AKIDPROFILE", ""},
		{"profile missing", func(t *testing.T, c *Config) {
			c.Credentials = CredentialsConfig{Source: SourceProfile, Profile: "nope", SharedConfigFile: write(t, "config", "")}
		}, "", "nope"},
		{"default chain picks up the environment", func(t *testing.T, c *Config) {
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDDEFAULT")
			t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
			c.Credentials = CredentialsConfig{Source: SourceDefault}
		}, "AKIDDEFAULT", ""},
		{"no region anywhere", func(t *testing.T, c *Config) {
			c.Region = ""
			c.Credentials = CredentialsConfig{Source: SourceDefault}
		}, "", "region: not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWSEnv(t)
			c := NewConfig()
			c.Region = "us-east-1"
			c.Endpoint = f.srv.URL
			tc.setup(t, c)
			var logs bytes.Buffer
			k, err := c.Open(t.Context(), slog.New(slog.NewTextHandler(&logs, nil)))
			if tc.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.openErr) {
					t.Fatalf("Open = %v, want an error containing %q", err, tc.openErr)
				}
				if strings.Contains(err.Error(), testSecret) {
					t.Fatal("the error shows the secret")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if _, err := k.ResolveKEK(t.Context(), "KEK-orders"); err != nil {
				t.Fatal(err)
			}
			reqs := f.reqs()
			if auth := reqs[len(reqs)-1].Auth; !strings.Contains(auth, "Credential="+tc.akid+"/") {
				t.Fatalf("Authorization %q, want access key %s", auth, tc.akid)
			}
			if strings.Contains(logs.String(), testSecret) {
				t.Fatal("the secret was logged")
			}
		})
	}
}

// TestStaticFileRotation: a rewritten secret file is read again once the
// cached credentials run out.
func TestStaticFileRotation(t *testing.T) {
	dir := t.TempDir()
	idFile := filepath.Join(dir, "id")
	os.WriteFile(idFile, []byte("AKIDOLD"), 0o600)
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(testSecret), 0o600)
	p := &staticProvider{c: &CredentialsConfig{Source: SourceStatic, AccessKeyIDFile: idFile, SecretAccessKeyFile: secretFile}}
	c1, err := p.Retrieve(t.Context())
	if err != nil || c1.AccessKeyID != "AKIDOLD" || !c1.CanExpire || time.Until(c1.Expires) > staticRefresh {
		t.Fatalf("Retrieve = %+v, %v", c1, err)
	}
	os.WriteFile(idFile, []byte("AKIDNEW"), 0o600)
	if c2, err := p.Retrieve(t.Context()); err != nil || c2.AccessKeyID != "AKIDNEW" {
		t.Fatalf("after rotation Retrieve = %+v, %v", c2, err)
	}
	os.WriteFile(secretFile, bytes.Repeat([]byte{'a'}, maxSecretFile+1), 0o600)
	if _, err := p.Retrieve(t.Context()); err == nil {
		t.Fatal("oversized secret file accepted")
	}
}

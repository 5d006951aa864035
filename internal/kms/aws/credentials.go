package aws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

// staticRefresh is how long credentials read from files are used before the
// files are read again: a rotated secret file (a remounted Kubernetes
// secret, say) takes effect within this time.
const staticRefresh = 5 * time.Minute

// maxSecretFile bounds a credential file read into memory.
const maxSecretFile = 4 << 10

// loadOptions turns the credentials section into SDK load options.
func (c *CredentialsConfig) loadOptions() ([]func(*config.LoadOptions) error, error) {
	var opts []func(*config.LoadOptions) error
	if c.SharedConfigFile != "" {
		opts = append(opts, config.WithSharedConfigFiles([]string{c.SharedConfigFile}))
	}
	if c.SharedCredentialsFile != "" {
		opts = append(opts, config.WithSharedCredentialsFiles([]string{c.SharedCredentialsFile}))
	}
	switch c.Source {
	case SourceProfile:
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	case SourceEnv:
		env, err := config.NewEnvConfig()
		if err != nil {
			return nil, fmt.Errorf("credentials: environment: %w", err)
		}
		if env.Credentials.AccessKeyID == "" || env.Credentials.SecretAccessKey == "" {
			return nil, errors.New("credentials: source env but AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set")
		}
		creds := env.Credentials
		creds.Source = "kseal env"
		opts = append(opts, config.WithCredentialsProvider(awssdk.CredentialsProviderFunc(
			func(context.Context) (awssdk.Credentials, error) { return creds, nil })))
	case SourceStatic:
		p := &staticProvider{c: c}
		// Fail at startup, not on the first record, when a file or a
		// variable is missing.
		if _, err := p.Retrieve(context.Background()); err != nil {
			return nil, err
		}
		opts = append(opts, config.WithCredentialsProvider(awssdk.NewCredentialsCache(p)))
	}
	return opts, nil
}

// staticProvider reads an access key from the files or variables the
// config names, on every Retrieve; the SDK's cache in front of it calls it
// once per staticRefresh.
type staticProvider struct {
	c *CredentialsConfig
}

func (p *staticProvider) Retrieve(context.Context) (awssdk.Credentials, error) {
	id, err := secretValue("accessKeyId", p.c.AccessKeyID, p.c.AccessKeyIDFile, p.c.AccessKeyIDEnv)
	if err != nil {
		return awssdk.Credentials{}, err
	}
	secret, err := secretValue("secretAccessKey", "", p.c.SecretAccessKeyFile, p.c.SecretAccessKeyEnv)
	if err != nil {
		return awssdk.Credentials{}, err
	}
	var token string
	if p.c.SessionTokenFile != "" || p.c.SessionTokenEnv != "" {
		if token, err = secretValue("sessionToken", "", p.c.SessionTokenFile, p.c.SessionTokenEnv); err != nil {
			return awssdk.Credentials{}, err
		}
	}
	return awssdk.Credentials{
		AccessKeyID:     id,
		SecretAccessKey: secret,
		SessionToken:    token,
		Source:          "kseal static",
		CanExpire:       true,
		Expires:         time.Now().Add(staticRefresh),
	}, nil
}

// secretValue returns the inline value, or the trimmed content of the file,
// or the value of the environment variable, whichever is configured. Errors
// name where the value was looked for, never the value.
func secretValue(what, inline, file, env string) (string, error) {
	var v string
	switch {
	case inline != "":
		v = inline
	case file != "":
		b, err := readSmallFile(file)
		if err != nil {
			return "", fmt.Errorf("credentials: %s file: %w", what, err)
		}
		v = strings.TrimSpace(string(b))
		clear(b)
	case env != "":
		var ok bool
		if v, ok = os.LookupEnv(env); !ok {
			return "", fmt.Errorf("credentials: %s: environment variable %s is not set", what, env)
		}
		v = strings.TrimSpace(v)
	}
	if v == "" {
		return "", fmt.Errorf("credentials: %s is empty", what)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' {
			return "", fmt.Errorf("credentials: %s has spaces or non-ASCII characters", what)
		}
	}
	return v, nil
}

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxSecretFile)
	}
	return b, nil
}

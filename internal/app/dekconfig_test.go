package app

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/dek"
)

func TestDEKConfigDecryptCacheMaxAge(t *testing.T) {
	compile := func(dekYAML string) (*Encryption, error) {
		t.Helper()
		var e config.Encryption
		src := "kms: {type: vault, config: {address: 'http://127.0.0.1:8200', tokenEnv: X}}\n" +
			"policy: {rules: [{topicPrefix: a, kek: K}]}\n" + "dek: " + dekYAML + "\n"
		if err := yaml.Unmarshal([]byte(src), &e); err != nil {
			t.Fatal(err)
		}
		return Compile(0, &e)
	}
	e, err := compile("{decryptCacheMaxAge: 90s}")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.DEK.options().DecryptCacheMaxAge; got.Seconds() != 90 {
		t.Errorf("decryptCacheMaxAge = %v, want 90s", got)
	}
	if e, err := compile("{}"); err != nil || e.DEK.options().DecryptCacheMaxAge != 0 {
		t.Errorf("unset: %v (0 takes dek's default %v)", err, dek.DefaultDecryptCacheMaxAge)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"{decryptCacheMaxAge: 500ms}", "virtualClusters[0].encryption.dek.decryptCacheMaxAge: 500ms is below the minimum 1s"},
		{"{decryptCacheMaxAge: -1s}", "virtualClusters[0].encryption.dek.decryptCacheMaxAge: -1s must not be negative"},
		{"{decryptCacheMaxAge: 5m, decryptCacheTtl: 1h}", "virtualClusters[0].encryption.dek.decryptCacheTtl: 1h0m0s is longer than decryptCacheMaxAge 5m0s"},
	} {
		if _, err := compile(tc.yaml); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// An explicit TTL with the default maximum age is accepted (the TTL
	// then has no effect past 10 min).
	if _, err := compile("{decryptCacheTtl: 1h}"); err != nil {
		t.Errorf("decryptCacheTtl 1h alone: %v", err)
	}
}

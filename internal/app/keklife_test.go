package app

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/config"
)

// PASSTHROUGH_UNENCRYPTED with a rule matching every topic logs one
// warning at start; REJECT (the default) none.
func TestPassthroughCatchAllWarnsOnce(t *testing.T) {
	const warning = "matches every topic"
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	if n := strings.Count(e.logs.String(), warning); n != 1 {
		t.Errorf("%d warnings %q with PASSTHROUGH_UNENCRYPTED and topicRegex '.*', want 1", n, warning)
	}
	e = startEncrypting(t, "REJECT")
	if n := strings.Count(e.logs.String(), warning); n != 0 {
		t.Errorf("%d warnings with REJECT, want none", n)
	}
}

func TestKEKCheckIntervalValidation(t *testing.T) {
	for _, tc := range []struct {
		dek, want string
	}{
		{"{kekCheckInterval: 10ms}", "virtualClusters[0].encryption.dek.kekCheckInterval: 10ms is below the minimum of 100ms"},
		{"{kekCheckInterval: -1s}", "virtualClusters[0].encryption.dek.kekCheckInterval: -1s must not be negative"},
		{"{kekCheckInterval: 5s}", ""},
		{"{}", ""},
	} {
		var e config.Encryption
		doc := "kms: {type: local, config: {keyStore: /x, masterKeyFile: /y}}\ndek: " + tc.dek + "\n"
		if err := yaml.Unmarshal([]byte(doc), &e); err != nil {
			t.Fatal(err)
		}
		_, err := Compile(0, &e)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("dek %s: error %q, want %q", tc.dek, got, tc.want)
		}
	}
}

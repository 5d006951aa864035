package app

import (
	"strings"
	"testing"
)

// The integrity keys (requireEncrypted, requireEncryptedFrom, allowedKeks,
// keyTopic.maxFirstOffsets) are validated with their full key paths.
func TestValidateIntegrityKeys(t *testing.T) {
	doc := vcHead + `      kms: {type: local, config: {keyStore: /k, masterKeyFile: /m}}
      keyTopic: {maxFirstOffsets: -1}
      policy:
        rules:
          - {topics: [a], kek: K, requireEncryptedFrom: latest, allowedKeks: ["$1"]}
          - {topics: [b], passthrough: true, requireEncrypted: true}
          - {topics: [c], kek: K, requireEncrypted: false, requireEncryptedFrom: earliest}
`
	want := map[string]string{
		"virtualClusters[0].encryption.keyTopic.maxFirstOffsets":             "-1 must not be negative",
		"virtualClusters[0].encryption.policy.rules[0].requireEncryptedFrom": `"latest" is neither first-encrypted nor earliest`,
		"virtualClusters[0].encryption.policy.rules[0].allowedKeks[0]":       "group",
		"virtualClusters[0].encryption.policy.rules[1].requireEncrypted":     "a passthrough rule encrypts nothing",
		"virtualClusters[0].encryption.policy.rules[2].requireEncryptedFrom": "set only with requireEncrypted",
	}
	got := map[string]string{}
	for _, p := range validateDoc(t, doc) {
		got[p.Path] = p.Msg
	}
	for path, msg := range want {
		if !strings.Contains(got[path], msg) {
			t.Errorf("%s: got %q, want %q (all: %v)", path, got[path], msg, got)
		}
	}
}

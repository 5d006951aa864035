package app

import (
	"strings"
	"testing"
)

// A rule's access section is decoded strictly and validated with full key
// paths and the file's lines, like the rest of the policy.
func TestValidatePolicyAccess(t *testing.T) {
	got := validateDoc(t, vcHead+`      kms: {type: local, config: {keyStore: /k, masterKeyFile: /m}}
      policy:
        rules:
          - topics: [a]
            kek: K
            access: {decrypt: ['User:a'], onDenied: cipher}
          - topics: [b]
            kek: K
            access: {deny: ['User:b']}
          - topics: [c]
            passthrough: true
            access: {produce: ['User:c']}
          - topics: [d]
            kek: K
            access: {decrypt: ['User:d', 'User:d'], produce: ['*', 'User:x']}
          - topics: [e]
            kek: K
            access: {decrypt: ['User:*', 'CN=svc,O=Example', 'SAN:URI:spiffe://prod/*'], produce: [], onDenied: CIPHERTEXT}
`)
	wants := []wantProblem{
		{11, "virtualClusters[0].encryption.policy.rules[0].access.onDenied", `"cipher" is neither ERROR nor CIPHERTEXT`},
		{14, "virtualClusters[0].encryption.policy.rules[1].access.deny", "unknown key"},
		{14, "virtualClusters[0].encryption.policy.rules[1].access", "set decrypt or produce"},
		{17, "virtualClusters[0].encryption.policy.rules[2].access", "a passthrough rule"},
		{20, "virtualClusters[0].encryption.policy.rules[3].access.decrypt[1]", `"User:d" is listed twice`},
		{20, "virtualClusters[0].encryption.policy.rules[3].access.produce", "'*' already matches every identity"},
	}
	var all strings.Builder
	for _, p := range got {
		all.WriteString("\n  " + p.Error())
	}
	for _, w := range wants {
		found := false
		for _, p := range got {
			if p.Line == w.line && strings.Contains(p.Path+": "+p.Msg, w.path) && strings.Contains(p.Msg, w.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem at line %d, %s, saying %q in:%s", w.line, w.path, w.msg, all.String())
		}
	}
	if len(got) != len(wants) {
		t.Errorf("%d problems, want %d:%s", len(got), len(wants), all.String())
	}
}

// gateway.oauthbearerSubClaim must be a claim name.
func TestValidateOAuthBearerSubClaim(t *testing.T) {
	got := validateDoc(t, `virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["127.0.0.1:9092"]}
    gateway: {bootstrapPort: 19092, oauthbearerSubClaim: "client id"}
`)
	if len(got) != 1 || got[0].Path != "virtualClusters[0].gateway.oauthbearerSubClaim" || !strings.Contains(got[0].Msg, "not a JWT claim name") {
		t.Fatalf("problems %v", got)
	}
	if got := validateDoc(t, `virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["127.0.0.1:9092"]}
    gateway: {bootstrapPort: 19092, oauthbearerSubClaim: client_id}
`); len(got) != 0 {
		t.Fatalf("problems %v", got)
	}
}

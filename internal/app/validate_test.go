package app

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/config"
)

// goTypeName matches what a message must never show: Go type names and
// yaml.v3's own wording.
var goTypeName = regexp.MustCompile(`\bconfig\.[A-Z]|time\.Duration|\[\]string|\bu?int(8|16|32|64)?\b|float64|\bstruct\b|map\[|!!(str|int|bool|map|seq|float)|unmarshal|in a \w+ section`)

type wantProblem struct {
	line int
	path string
	msg  string
}

// validateDoc decodes and validates doc as `kseal validate` does.
func validateDoc(t *testing.T, doc string) []*config.Problem {
	t.Helper()
	cfg, err := config.DecodeAll([]byte(doc))
	if err != nil {
		t.Fatalf("DecodeAll: %v", err)
	}
	err = Validate(cfg)
	if err == nil {
		return nil
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is not a list of problems: %v", err)
	}
	var out []*config.Problem
	for _, e := range errs {
		var p *config.Problem
		if !errors.As(e, &p) {
			t.Fatalf("problem %q is not a config.Problem", e)
		}
		out = append(out, p)
	}
	return out
}

const vcHead = `virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["127.0.0.1:9092"]}
    gateway: {bootstrapPort: 19092}
    encryption:
`

// Every problem of a file, those of the KMS provider's, policy's and dek's
// sections included, is reported at once with its full key path, the line
// of the user's file and plain words.
func TestValidateEveryProblem(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		wants []wantProblem
	}{
		{"vault", `lgo: {level: info}
drainTimeout: 30
` + vcHead + `      kms:
        type: vault
        config:
          vaultAddr: http://vault:8200
          tokenEnv: VAULT_TOKEN
          timeout: 5
          renewToken: maybe
          tls: {caFile: [a, b]}
      policy:
        unresolvedKeyPolicy: DROP
        rules:
          - topicPrefix: orders
            kek: KEK-orders
            topic: x
          - {topicRegex: '(', kek: K}
      dek:
        kmsTimeout: fast
        decryptCacheSize: -1
        maxEncryptionsPerDek: lots
        refreshAfterWrite: 1h
        expireAfterWrite: 30m
`, []wantProblem{
			{1, "lgo", "unknown key (did you mean log?)"},
			{2, "drainTimeout", `"30" is not a duration like 30s`},
			{10, "virtualClusters[0].encryption.kms.config", "address: required"},
			{11, "virtualClusters[0].encryption.kms.config.vaultAddr", "unknown key (this section has: address, namespace, mount, tokenFile, tokenEnv, renewToken, timeout, tls, auth)"},
			{13, "virtualClusters[0].encryption.kms.config.timeout", `"5" is not a duration like 30s, 5m or 1h30m (a number needs a unit)`},
			{14, "virtualClusters[0].encryption.kms.config.renewToken", `expected true or false, got "maybe"`},
			{15, "virtualClusters[0].encryption.kms.config.tls.caFile", "expected a string, got a list"},
			{17, "virtualClusters[0].encryption.policy.unresolvedKeyPolicy", `"DROP" is neither PASSTHROUGH_UNENCRYPTED nor REJECT`},
			{21, "virtualClusters[0].encryption.policy.rules[0].topic", "unknown key (did you mean topics?)"},
			{22, "virtualClusters[0].encryption.policy.rules[1].topicRegex", "error parsing regexp"},
			{24, "virtualClusters[0].encryption.dek.kmsTimeout", `"fast" is not a duration like 30s`},
			{25, "virtualClusters[0].encryption.dek.decryptCacheSize", "-1 must not be negative"},
			{26, "virtualClusters[0].encryption.dek.maxEncryptionsPerDek", `expected a whole number (0 or more), got "lots"`},
			{28, "virtualClusters[0].encryption.dek.expireAfterWrite", "30m0s is shorter than refreshAfterWrite (1h0m0s)"},
		}},
		{"local", vcHead + `      kms:
        type: local
        config: {keyStore: /k, masterKeyFile: /m, masterKeyEnv: M, reloadInterval: 1ms, reload: 1s}
      policy: {rules: [{topics: orders, kek: K}]}
      dek: {notFoundTtl: -5s, kekCheckInterval: 1ms}
`, []wantProblem{
			{8, "virtualClusters[0].encryption.kms.config.masterKeyEnv", "set either masterKeyFile or masterKeyEnv, not both"},
			{8, "virtualClusters[0].encryption.kms.config.reloadInterval", "1ms is too short (minimum 100ms)"},
			{8, "virtualClusters[0].encryption.kms.config.reload", "unknown key (this section has: keyStore, masterKeyFile, masterKeyEnv, reloadInterval)"},
			{9, "virtualClusters[0].encryption.policy.rules[0].topics", `expected a list of strings, got "orders"`},
			// and not "rules[0]: set exactly one of topics, ...": topics is
			// there, of the wrong kind.
			{10, "virtualClusters[0].encryption.dek.notFoundTtl", "-5s must not be negative"},
			{10, "virtualClusters[0].encryption.dek.kekCheckInterval", "1ms is below the minimum of 100ms"},
		}},
		{"keyTopic", vcHead + `      kms: {type: local, config: {keyStore: /k, masterKeyFile: /m}}
      keyTopic: {name: "keys/v2", replicationFactor: -1, maxKeys: -3, maxkey: 1}
`, []wantProblem{
			{7, "virtualClusters[0].encryption.keyTopic.name", `"keys/v2" is not a valid Kafka topic name`},
			{7, "virtualClusters[0].encryption.keyTopic.replicationFactor", "-1 must be 0"},
			{7, "virtualClusters[0].encryption.keyTopic.maxKeys", "-3 must not be negative"},
			{7, "virtualClusters[0].encryption.keyTopic.maxkey", "unknown key (did you mean maxKeys?)"},
		}},
		{"aws", vcHead + `      kms:
        type: aws
        config:
          region: eu-west-1
          allowedAccounts: 111122223333
          timeout: 1 minute
          credentials:
            source: vault
            secretAccessKey: s3cret
      policy: {rules: [{topicPrefix: o, kek: K}]}
`, []wantProblem{
			{10, "virtualClusters[0].encryption.kms.config.allowedAccounts", `expected a list of strings, got "111122223333"`},
			{11, "virtualClusters[0].encryption.kms.config.timeout", `"1 minute" is not a duration`},
			{13, "virtualClusters[0].encryption.kms.config.credentials.source", `unknown "vault" (known: default, profile, env, static)`},
			{14, "virtualClusters[0].encryption.kms.config.credentials.secretAccessKey", "unknown key (this section has: source, profile"},
		}},
		{"azure", vcHead + `      kms:
        type: azure
        config:
          vaultName: kv
          allowRSAKeys: false
          auth: {method: password, tenantId: [t]}
          tls: {insecureSkipVerify: 1}
      policy: {rules: [{topicPrefix: o, kek: K}]}
`, []wantProblem{
			{9, "virtualClusters[0].encryption.kms.config.vaultName", `"kv" is not a vault name`},
			{10, "virtualClusters[0].encryption.kms.config.allowRSAKeys", "unknown key (did you mean allowRsaKeys?)"},
			{11, "virtualClusters[0].encryption.kms.config.auth.method", `unknown "password"`},
			{11, "virtualClusters[0].encryption.kms.config.auth.tenantId", "expected a string, got a list"},
			{12, "virtualClusters[0].encryption.kms.config.tls.insecureSkipVerify", `expected true or false, got "1"`},
		}},
		{"format v2 parts", vcHead + `      kms: {type: local, config: {keyStore: /k, masterKeyFile: /m}}
      policy:
        rules:
          - topics: [a]
            kek: K
            encrypt: {key: true, headers: ['x-*']}
          - topics: [b]
            passthrough: true
            encrypt: {value: true}
          - topics: [c]
            kek: K
            encrypt: {value: false}
          - topics: [d]
            kek: K
            encrypt: {vlaue: true, headers: ['', 'a**']}
`, []wantProblem{
			{11, "virtualClusters[0].encryption.policy.rules[0].encrypt.headers", "headers are encrypted in format v2 only: set encryption.format.writeVersion: 2"},
			{11, "virtualClusters[0].encryption.policy.rules[0].encrypt.key", "record keys are encrypted in format v2 only"},
			{14, "virtualClusters[0].encryption.policy.rules[1].encrypt", "a passthrough rule encrypts nothing"},
			{17, "virtualClusters[0].encryption.policy.rules[2].encrypt", "encrypts nothing"},
			{20, "virtualClusters[0].encryption.policy.rules[3].encrypt.vlaue", "unknown key (did you mean value?)"},
			{20, "virtualClusters[0].encryption.policy.rules[3].encrypt.headers", "headers are encrypted in format v2 only"},
			{20, "virtualClusters[0].encryption.policy.rules[3].encrypt.headers[0]", "empty pattern"},
			{20, "virtualClusters[0].encryption.policy.rules[3].encrypt.headers[1]", `"a**" has '**'`},
		}},
		{"format version", vcHead + `      kms: {type: local, config: {keyStore: /k, masterKeyFile: /m}}
      format: {writeVersion: 3, readVersion: 1, recompress: zstd}
      policy: {rules: [{topics: [a], kek: K, encrypt: {key: true}}]}
`, []wantProblem{
			{7, "virtualClusters[0].encryption.format.writeVersion", "3 is neither 1 nor 2"},
			{7, "virtualClusters[0].encryption.format.readVersion", "unknown key (this section has: writeVersion, recompress)"},
			{7, "virtualClusters[0].encryption.format.recompress", `"zstd" is neither "stored" nor "compressed"`},
		}},
		{"unknown provider", vcHead + `      kms: {type: vualt, config: {anything: 1}}
      policy: {rules: [{topicPrefix: o, kek: K}]}
`, []wantProblem{
			{6, "virtualClusters[0].encryption.kms.type", `unknown "vualt" (known: aws, azure, `},
		}},
		{"missing provider section", vcHead + `      kms: {type: vault}
      policy: {rules: [{topicPrefix: o, kek: K}]}
`, []wantProblem{
			{6, "virtualClusters[0].encryption.kms.config", "address: required"},
			{6, "virtualClusters[0].encryption.kms.config", "tokenFile: one of tokenFile or tokenEnv is required"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := validateDoc(t, tc.doc)
			var all strings.Builder
			for _, p := range got {
				all.WriteString("\n  " + p.Error())
			}
			for _, w := range tc.wants {
				found := false
				for _, p := range got {
					if p.Line == w.line && (p.Path == w.path && strings.Contains(p.Msg, w.msg) ||
						strings.Contains(p.Path+": "+p.Msg, w.path+"."+w.msg)) {
						found = true
					}
				}
				if !found {
					t.Errorf("no problem at line %d, %s, saying %q in:%s", w.line, w.path, w.msg, all.String())
				}
			}
			if len(got) != len(tc.wants) {
				t.Errorf("%d problems, want %d:%s", len(got), len(tc.wants), all.String())
			}
			for i, p := range got {
				if goTypeName.MatchString(p.Error()) {
					t.Errorf("message names a Go type or yaml.v3 internals: %q", p.Error())
				}
				if strings.Contains(p.Error(), "s3cret") {
					t.Errorf("message repeats a value that may be a secret: %q", p.Error())
				}
				if i > 0 && (got[i-1].Line == 0 || got[i-1].Line > p.Line && p.Line != 0) {
					t.Errorf("problems not sorted by line:%s", all.String())
				}
			}
		})
	}
}

// Compile on a section decoded by yaml.v3 alone (as the tests and tools
// do) still reports every problem with its path, and lines relative to the
// section it was given.
func TestCompileStandalone(t *testing.T) {
	var e config.Encryption
	src := "kms: {type: local, config: {keyStore: /k, masterKeyFile: /m, extra: 1}}\npolicy: {rules: [{topicPrefix: a, kek: K}]}\ndek: {kmsTimeout: x}\n"
	if err := yaml.Unmarshal([]byte(src), &e); err != nil {
		t.Fatal(err)
	}
	_, err := Compile(2, &e)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{
		"line 1: virtualClusters[2].encryption.kms.config.extra: unknown key",
		`line 3: virtualClusters[2].encryption.dek.kmsTimeout: "x" is not a duration`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%v\nlacks %q", err, w)
		}
	}
}

// FuzzValidate: any document, encryption sections included, is either
// valid or a list of problems sorted by line, never a panic.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(vcHead + "      kms: {type: vault, config: {address: 'http://v:8200', tokenEnv: T, timeout: 5}}\n      policy: {rules: [{topicPrefix: o, kek: K}]}\n"))
	f.Add([]byte(vcHead + "      kms: {type: aws, config: {credentials: {source: static, accessKeyId: [a]}}}\n      dek: {kmsTimeout: x, <<: {notFoundTtl: 1s}}\n"))
	f.Add([]byte(vcHead + "      kms: {type: azure, config: &c {vaultName: abc, auth: {method: managedIdentity}, tls: *c}}\n"))
	f.Add([]byte(vcHead + "      kms: {type: local, config: {keyStore: /k, masterKeyEnv: M}}\n      policy: {replicas: [{topicRegex: '(.*)', originTopic: $1}], encryptedTopicCheck: {ttl: 1m}}\n"))
	f.Add([]byte(vcHead + "      kms: {type: local, config: {keyStore: /k, masterKeyEnv: M}}\n      format: {writeVersion: 2}\n      policy: {rules: [{topics: [a], kek: K, encrypt: {value: false, key: true, headers: ['x-*', '*']}}]}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := config.DecodeAll(doc)
		if err != nil {
			return
		}
		err = Validate(cfg)
		if err == nil {
			return
		}
		var errs config.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("not a list of problems: %v", err)
		}
		last := 0
		for _, e := range errs {
			var p *config.Problem
			if !errors.As(e, &p) {
				t.Fatalf("not a Problem: %v", e)
			}
			if p.Msg == "" {
				t.Fatalf("empty message: %+v", p)
			}
			if last < 0 && p.Line != 0 || p.Line != 0 && p.Line < last {
				t.Fatalf("not sorted by line: %v", err)
			}
			if p.Line == 0 {
				last = -1
			} else {
				last = p.Line
			}
		}
	})
}

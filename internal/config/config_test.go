package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `
virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["127.0.0.1:9092"]}
    gateway: {bootstrapPort: 19092}
`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	vc := c.VirtualClusters[0]
	if vc.Gateway.BrokerPortStart != 19093 || vc.Gateway.BrokerPortCount != DefaultBrokerPortCount ||
		vc.Limits.MaxFrameBytes != DefaultMaxFrameBytes || vc.Gateway.AdvertisedHost != "localhost" ||
		c.DrainTimeout.Std() != DefaultDrainTimeout || c.Log.Level != "info" ||
		c.Limits.MaxRewriteBytes != DefaultMaxRewriteBytes || vc.Limits.MaxProduceRewriteBytes != DefaultMaxProduceRewriteBytes ||
		vc.Limits.MaxTopicLabels != DefaultMaxTopicLabels ||
		vc.Limits.MaxConnections != DefaultMaxConnections || vc.Limits.IdleTimeout.Std() != DefaultIdleTimeout {
		t.Errorf("defaults not applied: %+v %+v", c, vc)
	}
}

func TestFormatWriteVersion(t *testing.T) {
	c, err := Parse([]byte(good + "    encryption: {kms: {type: local}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v := c.VirtualClusters[0].Encryption.Format.WriteVersion; v != FormatV1 {
		t.Errorf("default writeVersion %d, want 1", v)
	}
	c, err = Parse([]byte(good + "    encryption: {kms: {type: local}, format: {writeVersion: 2}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v := c.VirtualClusters[0].Encryption.Format.WriteVersion; v != FormatV2 {
		t.Errorf("writeVersion %d, want 2", v)
	}
	for doc, want := range map[string]string{
		"{writeVersion: 3}":   "line 6: virtualClusters[0].encryption.format.writeVersion: 3 is neither 1 nor 2",
		"{writeVersion: -1}":  "line 6: virtualClusters[0].encryption.format.writeVersion: -1 is neither 1 nor 2",
		"{writeVersion: two}": `line 6: virtualClusters[0].encryption.format.writeVersion: expected a whole number, got "two"`,
		"{version: 2}":        "line 6: virtualClusters[0].encryption.format.version: unknown key",
	} {
		_, err := Parse([]byte(good + "    encryption: {kms: {type: local}, format: " + doc + "}\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\nwant %q", doc, err, want)
		}
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // substrings of the error, each naming a key
	}{
		{"empty", ``, []string{"config is empty"}},
		{"no clusters", `log: {level: info}`, []string{"virtualClusters: at least one"}},
		{"unknown key", good + "    extra: 1\n", []string{`line 6: virtualClusters[0].extra: unknown key`}},
		{"bad level", "log: {level: loud}\n" + good, []string{`log.level: "loud"`}},
		{"bad format", "log: {format: xml}\n" + good, []string{`log.format: "xml"`}},
		{"bad duration", "drainTimeout: soon\n" + good, []string{`"soon" is not a duration`}},
		{"bad admin", "admin: {listen: nope}\n" + good, []string{`admin.listen: "nope"`}},
		{"bad upstream", `
virtualClusters:
  - name: a
    upstream: {bootstrapServers: [nohost]}
    gateway: {bootstrapPort: 19092}
`, []string{`virtualClusters[0].upstream.bootstrapServers[0]: "nohost"`}},
		{"missing name and ports", `
virtualClusters:
  - upstream: {bootstrapServers: ["h:1"]}
`, []string{"virtualClusters[0].name: is required", "virtualClusters[0].gateway.bootstrapPort: 0 is not a port"}},
		{"bootstrap inside broker range", `
virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["h:1"]}
    gateway: {bootstrapPort: 19095, brokerPortStart: 19090}
`, []string{"virtualClusters[0].gateway.bootstrapPort: 19095 falls inside"}},
		{"duplicate names and overlapping ports", `
virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["h:1"]}
    gateway: {bootstrapPort: 19092}
  - name: a
    upstream: {bootstrapServers: ["h:1"]}
    gateway: {bootstrapPort: 19100}
`, []string{`virtualClusters[1].name: "a" is used twice`, "virtualClusters[1].gateway: ports overlap"}},
		{"tiny frames", good + "    limits: {maxFrameBytes: 10}\n", []string{"virtualClusters[0].limits.maxFrameBytes: 10 is too small"}},
		{"tiny rewrite budgets", "limits: {maxRewriteBytes: 10}\n" + good + "    limits: {maxProduceRewriteBytes: 10, maxTopicLabels: -1}\n", []string{
			"limits.maxRewriteBytes: 10 is too small",
			"virtualClusters[0].limits.maxProduceRewriteBytes: 10 is too small",
			"virtualClusters[0].limits.maxTopicLabels: must be at least 1",
		}},
		{"request budget over the process's", "limits: {maxRewriteBytes: 2097152}\n" + good + "    limits: {maxProduceRewriteBytes: 4194304}\n", []string{
			"virtualClusters[0].limits.maxProduceRewriteBytes: 4194304 is more than limits.maxRewriteBytes",
		}},
		{"negative connection limit", good + "    limits: {maxConnections: -1}\n", []string{"virtualClusters[0].limits.maxConnections: must be at least 1"}},
		{"tiny idle timeout", good + "    limits: {idleTimeout: 1ms}\n", []string{"virtualClusters[0].limits.idleTimeout: 1ms is too short (minimum 100ms)"}},
		{"negative idle timeout", good + "    limits: {idleTimeout: -5m}\n", []string{"virtualClusters[0].limits.idleTimeout: -5m0s is too short"}},
		{"encryption without kms", good + "    encryption: {kms: {}}\n", []string{"virtualClusters[0].encryption.kms.type: is required"}},
		{"empty sasl", saslDoc("{}"), []string{
			"virtualClusters[0].upstream.sasl.mechanism: is required",
			"virtualClusters[0].upstream.sasl.username: is required",
			"virtualClusters[0].upstream.sasl.passwordFile: one of passwordFile and passwordEnv is required",
		}},
		{"sasl mechanism", saslDoc("{mechanism: GSSAPI, username: u, passwordEnv: P}"),
			[]string{`virtualClusters[0].upstream.sasl.mechanism: "GSSAPI" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`}},
		{"sasl lower-case mechanism", saslDoc("{mechanism: plain, username: u, passwordEnv: P}"),
			[]string{`virtualClusters[0].upstream.sasl.mechanism: "plain" is not one of`}},
		{"sasl two password sources", saslDoc("{mechanism: PLAIN, username: u, passwordEnv: P, passwordFile: /f}"),
			[]string{"virtualClusters[0].upstream.sasl.passwordEnv: set either passwordFile or passwordEnv, not both"}},
		{"sasl inline password", saslDoc("{mechanism: PLAIN, username: u, password: hunter2}"),
			[]string{`virtualClusters[0].upstream.sasl.password: unknown key`}},
		{"sasl NUL user", saslDoc(`{mechanism: SCRAM-SHA-512, username: "a\0b", passwordEnv: P}`),
			[]string{"virtualClusters[0].upstream.sasl.username: must not contain a NUL character"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// saslDoc is a one-cluster config whose upstream has the sasl section s.
func saslDoc(s string) string {
	return `
virtualClusters:
  - name: a
    upstream: {bootstrapServers: ["127.0.0.1:9092"], sasl: ` + s + `}
    gateway: {bootstrapPort: 19092}
`
}

func TestSASLValid(t *testing.T) {
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		c, err := Parse([]byte(saslDoc("{mechanism: " + mech + ", username: kseal, passwordFile: /run/secrets/kafka}")))
		if err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if s := c.VirtualClusters[0].Upstream.SASL; s == nil || s.Mechanism != mech || s.Username != "kseal" {
			t.Errorf("%s: decoded %+v", mech, s)
		}
	}
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.VirtualClusters[0].Upstream.SASL != nil {
		t.Error("no sasl section decoded as one")
	}
}

func TestSASLPassword(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("KSEAL_TEST_SASL_PW", "from env ")
	t.Setenv("KSEAL_TEST_SASL_EMPTY", "")
	cases := []struct {
		name    string
		s       SASL
		want    string
		wantErr string
	}{
		{"file, final newline dropped", SASL{Mechanism: SASLPlain, PasswordFile: write("pw", "s3cret \n")}, "s3cret ", ""},
		{"file, CRLF dropped", SASL{Mechanism: SASLPlain, PasswordFile: write("crlf", "s3cret\r\n")}, "s3cret", ""},
		{"env kept as is", SASL{Mechanism: SASLPlain, PasswordEnv: "KSEAL_TEST_SASL_PW"}, "from env ", ""},
		{"missing file", SASL{PasswordFile: filepath.Join(dir, "nope")}, "", "passwordFile: open " + filepath.Join(dir, "nope")},
		{"empty file", SASL{PasswordFile: write("empty", "\n")}, "", "passwordFile: " + filepath.Join(dir, "empty") + " is empty"},
		{"huge file", SASL{PasswordFile: write("huge", strings.Repeat("x", maxPasswordFile+1))}, "", "is larger than 65536 bytes"},
		{"unset env", SASL{PasswordEnv: "KSEAL_TEST_SASL_UNSET"}, "", "passwordEnv: environment variable KSEAL_TEST_SASL_UNSET is not set"},
		{"empty env", SASL{PasswordEnv: "KSEAL_TEST_SASL_EMPTY"}, "", "passwordEnv: environment variable KSEAL_TEST_SASL_EMPTY is empty"},
		{"NUL in a PLAIN password", SASL{Mechanism: SASLPlain, PasswordFile: write("nul", "a\x00b")}, "", "must not contain a NUL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Password()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Password() = %q, %v; want error %q", got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error carries the password: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Password() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// FuzzParse: any document is either a valid config or an error, never a
// panic, and a valid one validates again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("virtualClusters: [{name: a, upstream: {bootstrapServers: [\"h:1\"]}, gateway: {bootstrapPort: 1, sni: {bootstrapHost: b, brokerHostPattern: 'x$(nodeId)'}, tls: {certFile: c, keyFile: k}}}]"))
	f.Add([]byte("drainTimeout: 1h\nadmin: {listen: ':1'}\nvirtualClusters: []"))
	f.Add([]byte(saslDoc("{mechanism: SCRAM-SHA-256, username: u, passwordEnv: P}")))
	f.Add([]byte("virtualClusters:\n  - &vc {name: a, upstream: {bootstrapServers: [\"h:1\"]}, gateway: {bootstrapPort: 1}, limits: &l {maxConnections: 2}}\n  - <<: *vc\n    name: b\n    limits: {<<: [*l], idleTimeout: 1m}\n"))
	f.Add([]byte("log: {level: [x], format: 1}\ndrainTimeout: 5\nlog: {}\nvirtualClusters: {a: b}\n---\nx: 1\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Parse(doc)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
	})
}

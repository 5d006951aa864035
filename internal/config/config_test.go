package config

import (
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
		c.DrainTimeout.Std() != DefaultDrainTimeout || c.Log.Level != "info" {
		t.Errorf("defaults not applied: %+v %+v", c, vc)
	}
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // substrings of the error, each naming a key
	}{
		{"empty", ``, []string{"config is empty"}},
		{"no clusters", `log: {level: info}`, []string{"virtualClusters: at least one"}},
		{"unknown key", good + "    extra: 1\n", []string{`line 6: unknown key "extra"`}},
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
		{"encryption without kms", good + "    encryption: {kms: {}}\n", []string{"virtualClusters[0].encryption.kms.type: is required"}},
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

// FuzzParse: any document is either a valid config or an error, never a
// panic, and a valid one validates again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("virtualClusters: [{name: a, upstream: {bootstrapServers: [\"h:1\"]}, gateway: {bootstrapPort: 1, sni: {bootstrapHost: b, brokerHostPattern: 'x$(nodeId)'}, tls: {certFile: c, keyFile: k}}}]"))
	f.Add([]byte("drainTimeout: 1h\nadmin: {listen: ':1'}\nvirtualClusters: []"))
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

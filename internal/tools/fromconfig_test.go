package tools

import (
	"strings"
	"testing"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
)

// With several encrypting virtual clusters, the tools take the one named
// by --cluster: its upstream, proxy address, policy and KMS type.
func TestFromConfigPicksAVirtualCluster(t *testing.T) {
	doc := `
virtualClusters:
  - name: east
    upstream: {bootstrapServers: ["east:9092"]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: kseal-east, bootstrapPort: 19092, brokerPortStart: 19093, brokerPortCount: 4}
    encryption:
      kms: {type: local, config: {keyStore: /k/keys.json, masterKeyFile: /k/master.key}}
      policy: {rules: [{topicPrefix: e-, kek: KEK-east}]}
  - name: west
    upstream: {bootstrapServers: ["west:9092"]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: kseal-west, bootstrapPort: 29092, brokerPortStart: 29093, brokerPortCount: 4}
    encryption:
      kms: {type: local, config: {keyStore: /k/keys.json, masterKeyFile: /k/master.key}}
      policy: {rules: [{topicPrefix: w-, kek: KEK-west}]}
`
	cfg, err := config.Parse([]byte(doc))
	if err == nil {
		err = app.Validate(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromConfig(cfg, ""); err == nil || !strings.Contains(err.Error(), "--cluster") {
		t.Errorf("no name with two clusters: %v", err)
	}
	if _, err := FromConfig(cfg, "north"); err == nil || !strings.Contains(err.Error(), `"north"`) {
		t.Errorf("unknown name: %v", err)
	}
	for name, want := range map[string]struct{ broker, proxy, topic, kek string }{
		"east": {"east:9092", "kseal-east:19092", "e-orders", "KEK-east"},
		"west": {"west:9092", "kseal-west:29092", "w-orders", "KEK-west"},
	} {
		c, err := FromConfig(cfg, name)
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != name || len(c.Direct.Brokers) != 1 || c.Direct.Brokers[0] != want.broker || c.Proxy != want.proxy || c.KMSType != "local" || c.Policy == nil {
			t.Errorf("%s: %+v", name, c)
			continue
		}
		if sel := c.Policy.Select(want.topic); sel.KEK != want.kek {
			t.Errorf("%s: policy selects %+v for %s, want %s", name, sel, want.topic, want.kek)
		}
	}
}

package tools

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
)

// Conn is how a tool reaches a Kafka cluster or a kseal proxy.
type Conn struct {
	Brokers     []string
	TLS         *tls.Config    // nil: plaintext
	SASL        sasl.Mechanism // nil: no authentication
	DialTimeout time.Duration  // 0: franz-go's default
}

func (c Conn) opts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID("kseal-tools")}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(c.SASL))
	}
	if c.DialTimeout > 0 {
		opts = append(opts, kgo.DialTimeout(c.DialTimeout))
	}
	return opts
}

// Cluster is what the tools take from one virtual cluster of a config file.
type Cluster struct {
	Name string
	// Direct reaches the real brokers (the upstream), bypassing kseal.
	Direct Conn
	// Proxy is the address clients use to reach kseal's bootstrap.
	Proxy string
	// ProxyTLS reports whether the proxy's client-facing ports speak TLS.
	ProxyTLS bool
	// Policy is the compiled encryption policy, nil when the cluster does
	// not encrypt.
	Policy *policy.Policy
	// KMSType is the encryption.kms.type, "" when the cluster does not
	// encrypt.
	KMSType string
	// KMSConfig opens the cluster's KMS (kseal shred); nil when the
	// cluster does not encrypt.
	KMSConfig kms.Config
	// KeyTopic is encryption.keyTopic (name defaulted).
	KeyTopic detkey.Options
}

// FromConfig picks the virtual cluster called name (the only one when name
// is empty) and compiles what the tools need, without opening the KMS.
func FromConfig(cfg *config.Config, name string) (*Cluster, error) {
	idx := -1
	for i := range cfg.VirtualClusters {
		if name == "" || cfg.VirtualClusters[i].Name == name {
			if idx >= 0 && name == "" {
				return nil, errors.New("the config has several virtual clusters: choose one with --cluster")
			}
			idx = i
		}
	}
	if idx < 0 {
		if name == "" {
			return nil, errors.New("the config has no virtual cluster")
		}
		return nil, fmt.Errorf("no virtual cluster named %q", name)
	}
	vc := &cfg.VirtualClusters[idx]
	c := &Cluster{Name: vc.Name}
	c.Direct.Brokers = append([]string(nil), vc.Upstream.BootstrapServers...)
	c.Direct.DialTimeout = vc.Upstream.DialTimeout.Std()
	// An empty host makes franz-go set each broker's host as the server name.
	tc, err := vc.Upstream.TLS.Config("")
	if err != nil {
		return nil, fmt.Errorf("virtual cluster %q: upstream.tls: %w", vc.Name, err)
	}
	c.Direct.TLS = tc
	g := vc.Gateway
	host, port := g.AdvertisedHost, g.BootstrapPort
	if g.SNI != nil {
		host = g.SNI.BootstrapHost
		if g.SNI.AdvertisedPort != 0 {
			port = g.SNI.AdvertisedPort
		}
	}
	c.Proxy = net.JoinHostPort(host, strconv.Itoa(port))
	c.ProxyTLS = g.TLS != nil
	if vc.Encryption != nil {
		enc, err := app.Compile(idx, vc.Encryption)
		if err != nil {
			return nil, err
		}
		c.Policy = enc.Policy
		c.KMSType = vc.Encryption.KMS.Type
		c.KMSConfig = enc.KMSConfig
		c.KeyTopic = enc.KeyTopic.Options()
		if c.KeyTopic.Topic == "" {
			c.KeyTopic.Topic = detkey.DefaultTopic
		}
	}
	return c, nil
}

// Describer returns the offline EDEK describer of the cluster's KMS, or nil
// when there is none (records then show their DEK id only).
func (c *Cluster) Describer() kms.DescribeFunc {
	if c.KMSType == "" {
		return nil
	}
	f, _ := kms.LookupDescriber(c.KMSType)
	return f
}

// Package config is kseal's one configuration tree: a YAML file decoded
// strictly (unknown keys are errors), defaulted, and validated as a whole
// before anything starts, so `kseal validate` and `kseal run` agree. Every
// problem is reported with the key path that has it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/tlsconfig"
)

// Config is the whole file.
type Config struct {
	Log             Log              `yaml:"log"`
	Admin           Admin            `yaml:"admin"`
	DrainTimeout    Duration         `yaml:"drainTimeout"`
	Limits          ProcessLimits    `yaml:"limits"`
	VirtualClusters []VirtualCluster `yaml:"virtualClusters"`
	// Audit is the security event stream (audit.go).
	Audit Audit `yaml:"audit"`

	// pos and decodeErrs are what DecodeAll learnt of the file: where each
	// key is written, and the problems found while decoding it.
	pos        *Positions
	decodeErrs Errors
}

// ProcessLimits bound what all connections together can make the proxy
// hold.
type ProcessLimits struct {
	// MaxRewriteBytes is the budget for the buffers Produce rewrites use,
	// shared by every connection of every virtual cluster.
	MaxRewriteBytes int64 `yaml:"maxRewriteBytes"`
}

// Log configures structured logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Admin is the HTTP listener for metrics and health endpoints.
type Admin struct {
	Listen string `yaml:"listen"` // host:port; empty disables it
	// Profiling serves Go's profiler (net/http/pprof) under /debug/pprof/
	// on the admin listener. Off by default: enable it to investigate,
	// on a listener only operators can reach.
	Profiling bool `yaml:"profiling"`
}

// VirtualCluster is one upstream Kafka cluster presented to clients
// through its own set of proxy ports.
type VirtualCluster struct {
	Name       string      `yaml:"name"`
	Upstream   Upstream    `yaml:"upstream"`
	Gateway    Gateway     `yaml:"gateway"`
	Limits     Limits      `yaml:"limits"`
	Encryption *Encryption `yaml:"encryption"`
}

// Upstream is how the proxy reaches the real cluster.
type Upstream struct {
	BootstrapServers []string         `yaml:"bootstrapServers"`
	DialTimeout      Duration         `yaml:"dialTimeout"`
	TLS              tlsconfig.Client `yaml:"tls"`
	// SASL authenticates kseal's own connections to the brokers (broker
	// discovery, topic id lookups). Clients' connections never use it:
	// their SASL passes through to the broker. nil: no authentication.
	SASL *SASL `yaml:"sasl"`
}

// SASL is the credentials of kseal's own upstream connections. The password
// is never written in the file: it comes from PasswordFile (re-read at each
// login, so a rotated secret is picked up) or PasswordEnv.
type SASL struct {
	Mechanism    string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"passwordFile"`
	PasswordEnv  string `yaml:"passwordEnv"`
}

// SASL mechanisms kseal can log in with.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Validate checks the settings without reading the password; each error
// names its key under prefix (the sasl section's path).
func (s *SASL) Validate(prefix string) []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	switch s.Mechanism {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	case "":
		add("mechanism", "is required (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
	default:
		add("mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)
	}
	switch {
	case s.Username == "":
		add("username", "is required")
	case strings.ContainsRune(s.Username, 0):
		add("username", "must not contain a NUL character")
	}
	switch {
	case s.PasswordFile == "" && s.PasswordEnv == "":
		add("passwordFile", "one of passwordFile and passwordEnv is required (passwords are never written in the config file)")
	case s.PasswordFile != "" && s.PasswordEnv != "":
		add("passwordEnv", "set either passwordFile or passwordEnv, not both")
	}
	return errs
}

// maxPasswordFile bounds a password file.
const maxPasswordFile = 64 << 10

// Password reads the password from PasswordFile (a trailing line break is
// dropped, as editors add one) or PasswordEnv. Errors name the key and the
// file or variable, never the value.
func (s *SASL) Password() (string, error) {
	var v string
	if s.PasswordEnv != "" {
		var ok bool
		if v, ok = os.LookupEnv(s.PasswordEnv); !ok {
			return "", fmt.Errorf("passwordEnv: environment variable %s is not set", s.PasswordEnv)
		}
		if v == "" {
			return "", fmt.Errorf("passwordEnv: environment variable %s is empty", s.PasswordEnv)
		}
	} else {
		f, err := os.Open(s.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("passwordFile: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
		if err != nil {
			return "", fmt.Errorf("passwordFile: %s: %w", s.PasswordFile, err)
		}
		if len(b) > maxPasswordFile {
			return "", fmt.Errorf("passwordFile: %s is larger than %d bytes", s.PasswordFile, maxPasswordFile)
		}
		v = strings.TrimRight(string(b), "\r\n")
		clear(b)
		if v == "" {
			return "", fmt.Errorf("passwordFile: %s is empty", s.PasswordFile)
		}
	}
	if s.Mechanism == SASLPlain && strings.ContainsRune(v, 0) {
		return "", errors.New("password: PLAIN passwords must not contain a NUL character")
	}
	return v, nil
}

// Gateway is how clients reach the proxy: a bootstrap port, and one port per
// broker node id (node N is served on BrokerPortStart+N, for
// 0 <= N < BrokerPortCount).
type Gateway struct {
	BindAddress     string `yaml:"bindAddress"`
	AdvertisedHost  string `yaml:"advertisedHost"`
	BootstrapPort   int    `yaml:"bootstrapPort"`
	BrokerPortStart int    `yaml:"brokerPortStart"`
	BrokerPortCount int    `yaml:"brokerPortCount"`
	// TLS makes the client-facing ports TLS listeners.
	TLS *tlsconfig.Server `yaml:"tls"`
	// SNI serves the whole cluster on the bootstrap port alone, choosing
	// the broker from the TLS server name (TLS required).
	SNI *SNI `yaml:"sni"`
	// OAuthBearerSubClaim is the JWT claim an observed OAUTHBEARER login's
	// identity is taken from (docs/authorization.md), as the brokers'
	// sasl.oauthbearer.sub.claim.name; default "sub".
	OAuthBearerSubClaim string `yaml:"oauthbearerSubClaim"`
}

// SNI is SNI-routing: clients reach broker N at BrokerHostPattern with
// $(nodeId) replaced by N, and the bootstrap at BootstrapHost, all on one
// port (AdvertisedPort, default the bootstrap port: set it when a load
// balancer in front listens on another port).
type SNI struct {
	BootstrapHost     string `yaml:"bootstrapHost"`
	BrokerHostPattern string `yaml:"brokerHostPattern"`
	AdvertisedPort    int    `yaml:"advertisedPort"`
}

// DefaultOAuthBearerSubClaim is gateway.oauthbearerSubClaim's default,
// Kafka's default sasl.oauthbearer.sub.claim.name.
const DefaultOAuthBearerSubClaim = "sub"

// NodeIDPlaceholder is what SNI.BrokerHostPattern must contain.
const NodeIDPlaceholder = "$(nodeId)"

// Limits bound what clients can make the proxy hold: per connection
// (frame size, pipelined requests, idle time) and per virtual cluster (open
// connections).
type Limits struct {
	MaxFrameBytes            int `yaml:"maxFrameBytes"`
	MaxInFlightPerConnection int `yaml:"maxInFlightPerConnection"`
	// MaxProduceRewriteBytes bounds the bytes one Produce request may make
	// the encryption filter decompress and write.
	MaxProduceRewriteBytes int64 `yaml:"maxProduceRewriteBytes"`
	// MaxTopicLabels caps the distinct topic label values of
	// kseal_records_total.
	MaxTopicLabels int `yaml:"maxTopicLabels"`
	// MaxConnections bounds the client connections of the virtual cluster
	// open at once (TLS handshakes and upstream dials included); past it a
	// new connection is accepted and closed at once.
	MaxConnections int `yaml:"maxConnections"`
	// IdleTimeout closes a client connection that sent no request and got
	// no response for this long with nothing in flight.
	IdleTimeout Duration `yaml:"idleTimeout"`
}

// Encryption is filled in by the encryption feature; its sub-trees are
// kept as the file's YAML nodes and decoded (with DecodeNode, so problems
// keep the file's lines) into the types of the packages that own them.
type Encryption struct {
	KMS    KMS       `yaml:"kms"`
	Policy yaml.Node `yaml:"policy"`
	DEK    yaml.Node `yaml:"dek"`
	// Format is the record format kseal writes.
	Format Format `yaml:"format"`
	// KeyTopic is decoded by internal/detkey (detkey.Config).
	KeyTopic yaml.Node `yaml:"keyTopic"`
}

// Format is `encryption.format`: which record format kseal writes. Every
// version is always read ("upgrade readers before writers").
type Format struct {
	// WriteVersion is 1 (values only, the default) or 2 (values, keys and
	// headers: docs/format.md "Version 2").
	WriteVersion int `yaml:"writeVersion"`
	// Recompress is how a compressed Produce batch whose records kseal
	// encrypted is written back: RecompressStored (the default) keeps the
	// producer's codec but writes stored (uncompressed) blocks of it,
	// RecompressCompressed compresses it again.
	Recompress string `yaml:"recompress"`
}

// Values of encryption.format.recompress.
const (
	RecompressStored     = "stored"
	RecompressCompressed = "compressed"
)

// Record format versions encryption.format.writeVersion accepts.
const (
	FormatV1 = 1
	FormatV2 = 2
)

// KMS selects a provider by name; Config is decoded by that provider.
type KMS struct {
	Type   string    `yaml:"type"`
	Config yaml.Node `yaml:"config"`
}

// Duration is a time.Duration written as "1h30m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 30s, 5m or 1h30m", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the Go duration syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Defaults.
const (
	DefaultMaxFrameBytes            = 100 << 20
	DefaultMaxInFlightPerConnection = 128
	// DefaultMaxConnections: each client connection holds two sockets
	// (client and broker) and up to two frame buffers.
	DefaultMaxConnections = 10000
	// DefaultIdleTimeout is Kafka brokers' connections.max.idle.ms (10
	// minutes), longer than clients' own 9 minutes, so clients close their
	// idle connections first as they do against a broker.
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultBrokerPortCount = 100
	DefaultDialTimeout     = 10 * time.Second
	DefaultDrainTimeout    = 30 * time.Second
	// MinIdleTimeout keeps a typo (1ms) from closing every connection.
	MinIdleTimeout = 100 * time.Millisecond
)

// Defaults and bounds of the encryption filter's memory limits.
const (
	DefaultMaxRewriteBytes        = 1 << 30
	DefaultMaxProduceRewriteBytes = 128 << 20
	DefaultMaxTopicLabels         = 1000
	// MinMaxProduceRewriteBytes keeps one ordinary batch rewritable.
	MinMaxProduceRewriteBytes = 1 << 20
)

// Load reads, decodes, defaults and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse decodes, defaults and validates a config document.
func Parse(b []byte) (*Config, error) {
	c, err := DecodeAll(b)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Decode decodes and defaults a config document without validating it, for
// callers that add their own checks to Validate's. Any problem found while
// decoding (unknown keys, values of the wrong kind) is an error listing
// them all.
func Decode(b []byte) (*Config, error) {
	c, err := DecodeAll(b)
	if err != nil {
		return nil, err
	}
	if len(c.decodeErrs) > 0 {
		return nil, Settle(c.decodeErrs, nil, c.pos)
	}
	return c, nil
}

// DecodeAll decodes and defaults as much of a config document as it can.
// Problems found while decoding do not stop it: they are kept in the
// Config and reported by Validate together with everything else, so one
// bad value does not hide the others. The error is for a document that is
// not YAML, or is empty.
func DecodeAll(b []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		return nil, Errors{syntaxProblem(err)}
	}
	if len(root.Content) == 0 {
		return nil, errors.New("config is empty")
	}
	if top := root.Content[0]; top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null" {
		return nil, errors.New("config is empty")
	}
	c := &Config{pos: &Positions{}}
	c.decodeErrs = DecodeNode(&root, c, "", c.pos)
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		c.decodeErrs = append(c.decodeErrs, &Problem{Line: extra.Line, Msg: "a second YAML document (after ---): the config is one document"})
	} else if !errors.Is(err, io.EOF) {
		c.decodeErrs = append(c.decodeErrs, syntaxProblem(err))
	}
	c.applyDefaults()
	return c, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem words a YAML parser error (whose lines are the file's).
func syntaxProblem(err error) *Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Problem{Line: line, Msg: "not valid YAML: " + m[2]}
	}
	return &Problem{Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// Positions returns where the file decoded into c wrote each key (nil for a
// Config not decoded from a file).
func (c *Config) Positions() *Positions { return c.pos }

func (c *Config) applyDefaults() {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = Duration(DefaultDrainTimeout)
	}
	for i := range c.VirtualClusters {
		vc := &c.VirtualClusters[i]
		if vc.Upstream.DialTimeout == 0 {
			vc.Upstream.DialTimeout = Duration(DefaultDialTimeout)
		}
		if vc.Gateway.BindAddress == "" {
			vc.Gateway.BindAddress = "0.0.0.0"
		}
		if vc.Gateway.AdvertisedHost == "" {
			vc.Gateway.AdvertisedHost = "localhost"
		}
		if vc.Gateway.BrokerPortCount == 0 {
			vc.Gateway.BrokerPortCount = DefaultBrokerPortCount
		}
		if vc.Gateway.OAuthBearerSubClaim == "" {
			vc.Gateway.OAuthBearerSubClaim = DefaultOAuthBearerSubClaim
		}
		if sni := vc.Gateway.SNI; sni != nil && sni.AdvertisedPort == 0 {
			sni.AdvertisedPort = vc.Gateway.BootstrapPort
		}
		if vc.Gateway.BrokerPortStart == 0 && vc.Gateway.BootstrapPort != 0 {
			vc.Gateway.BrokerPortStart = vc.Gateway.BootstrapPort + 1
		}
		if vc.Limits.MaxFrameBytes == 0 {
			vc.Limits.MaxFrameBytes = DefaultMaxFrameBytes
		}
		if vc.Limits.MaxInFlightPerConnection == 0 {
			vc.Limits.MaxInFlightPerConnection = DefaultMaxInFlightPerConnection
		}
		if vc.Limits.MaxProduceRewriteBytes == 0 {
			vc.Limits.MaxProduceRewriteBytes = DefaultMaxProduceRewriteBytes
		}
		if vc.Limits.MaxTopicLabels == 0 {
			vc.Limits.MaxTopicLabels = DefaultMaxTopicLabels
		}
		if vc.Limits.MaxConnections == 0 {
			vc.Limits.MaxConnections = DefaultMaxConnections
		}
		if vc.Limits.IdleTimeout == 0 {
			vc.Limits.IdleTimeout = Duration(DefaultIdleTimeout)
		}
		if e := vc.Encryption; e != nil && e.Format.WriteVersion == 0 {
			e.Format.WriteVersion = FormatV1
		}
		if e := vc.Encryption; e != nil && e.Format.Recompress == "" {
			e.Format.Recompress = RecompressStored
		}
	}
	if c.Limits.MaxRewriteBytes == 0 {
		c.Limits.MaxRewriteBytes = DefaultMaxRewriteBytes
	}
}

// Errors collects every validation problem, each naming its key.
type Errors []error

func (e Errors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config (%d problem", len(e))
	if len(e) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, err := range e {
		b.WriteString("\n  - ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is/As look inside.
func (e Errors) Unwrap() []error { return e }

// Validate reports every problem in the tree.
func (c *Config) Validate() error {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Problem{Path: key, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Limits.MaxRewriteBytes < MinMaxProduceRewriteBytes {
		add("limits.maxRewriteBytes", "%d is too small (minimum %d)", c.Limits.MaxRewriteBytes, MinMaxProduceRewriteBytes)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			add("admin.listen", "%q is not host:port", c.Admin.Listen)
		}
	}
	if c.DrainTimeout < 0 {
		add("drainTimeout", "must not be negative")
	}
	errs = c.Audit.validate(errs)
	if len(c.VirtualClusters) == 0 {
		add("virtualClusters", "at least one virtual cluster is required")
	}
	names := map[string]bool{}
	for i := range c.VirtualClusters {
		vc := &c.VirtualClusters[i]
		p := fmt.Sprintf("virtualClusters[%d]", i)
		if vc.Name == "" {
			add(p+".name", "is required")
		} else if names[vc.Name] {
			add(p+".name", "%q is used twice", vc.Name)
		}
		names[vc.Name] = true
		if len(vc.Upstream.BootstrapServers) == 0 {
			add(p+".upstream.bootstrapServers", "at least one host:port is required")
		}
		for j, s := range vc.Upstream.BootstrapServers {
			if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
				add(fmt.Sprintf("%s.upstream.bootstrapServers[%d]", p, j), "%q is not host:port", s)
			}
		}
		if vc.Upstream.DialTimeout < 0 {
			add(p+".upstream.dialTimeout", "must be positive")
		}
		g := vc.Gateway
		if net.ParseIP(g.BindAddress) == nil && g.BindAddress != "localhost" {
			add(p+".gateway.bindAddress", "%q is not an IP address", g.BindAddress)
		}
		if strings.ContainsAny(g.AdvertisedHost, " :/") {
			add(p+".gateway.advertisedHost", "%q is not a host name", g.AdvertisedHost)
		}
		bootstrapOK := g.BootstrapPort >= 1 && g.BootstrapPort <= 65535
		if !bootstrapOK {
			add(p+".gateway.bootstrapPort", "%d is not a port (1-65535)", g.BootstrapPort)
		}
		if g.BrokerPortCount < 1 {
			add(p+".gateway.brokerPortCount", "must be at least 1")
		}
		// A start defaulted from a bad bootstrap port is that port's problem.
		derived := !bootstrapOK && (g.BrokerPortStart == 0 || g.BrokerPortStart == g.BootstrapPort+1)
		if !derived && (g.BrokerPortStart < 1 || g.BrokerPortStart+g.BrokerPortCount-1 > 65535) {
			add(p+".gateway.brokerPortStart", "ports %d..%d are not all valid ports", g.BrokerPortStart, g.BrokerPortStart+g.BrokerPortCount-1)
		}
		if g.TLS != nil {
			errs = append(errs, SubStrings(p+".gateway.tls", g.TLS.Validate())...)
		}
		errs = append(errs, SubStrings(p+".upstream.tls", vc.Upstream.TLS.Validate())...)
		if vc.Upstream.SASL != nil {
			errs = append(errs, vc.Upstream.SASL.Validate(p+".upstream.sasl")...)
		}
		if c := g.OAuthBearerSubClaim; len(c) > 256 || strings.IndexFunc(c, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			add(p+".gateway.oauthbearerSubClaim", "%q is not a JWT claim name (1 to 256 printable ASCII characters, no spaces)", c)
		}
		if sni := g.SNI; sni != nil {
			if g.TLS == nil {
				add(p+".gateway.sni", "needs gateway.tls: the server name is only known from a TLS handshake")
			}
			if strings.Count(sni.BrokerHostPattern, NodeIDPlaceholder) != 1 {
				add(p+".gateway.sni.brokerHostPattern", "%q must contain %s exactly once", sni.BrokerHostPattern, NodeIDPlaceholder)
			}
			if sni.BootstrapHost == "" {
				add(p+".gateway.sni.bootstrapHost", "is required")
			}
			if sni.AdvertisedPort < 1 || sni.AdvertisedPort > 65535 {
				add(p+".gateway.sni.advertisedPort", "%d is not a port", sni.AdvertisedPort)
			}
		}
		if !derived && g.BootstrapPort >= g.BrokerPortStart && g.BootstrapPort < g.BrokerPortStart+g.BrokerPortCount {
			add(p+".gateway.bootstrapPort", "%d falls inside the broker port range %d..%d", g.BootstrapPort, g.BrokerPortStart, g.BrokerPortStart+g.BrokerPortCount-1)
		}
		if vc.Limits.MaxFrameBytes < 1024 {
			add(p+".limits.maxFrameBytes", "%d is too small (minimum 1024)", vc.Limits.MaxFrameBytes)
		}
		if vc.Limits.MaxInFlightPerConnection < 1 {
			add(p+".limits.maxInFlightPerConnection", "must be at least 1")
		}
		if r := vc.Limits.MaxProduceRewriteBytes; r < MinMaxProduceRewriteBytes {
			add(p+".limits.maxProduceRewriteBytes", "%d is too small (minimum %d)", r, MinMaxProduceRewriteBytes)
		} else if r > c.Limits.MaxRewriteBytes && c.Limits.MaxRewriteBytes > 0 {
			add(p+".limits.maxProduceRewriteBytes", "%d is more than limits.maxRewriteBytes (%d), which every request shares", r, c.Limits.MaxRewriteBytes)
		}
		if vc.Limits.MaxTopicLabels < 1 {
			add(p+".limits.maxTopicLabels", "must be at least 1")
		}
		if vc.Limits.MaxConnections < 1 {
			add(p+".limits.maxConnections", "must be at least 1")
		}
		if vc.Limits.IdleTimeout < Duration(MinIdleTimeout) {
			add(p+".limits.idleTimeout", "%s is too short (minimum %s)", vc.Limits.IdleTimeout.Std(), MinIdleTimeout)
		}
		if vc.Encryption != nil && vc.Encryption.KMS.Type == "" {
			add(p+".encryption.kms.type", "is required")
		}
		if e := vc.Encryption; e != nil && e.Format.WriteVersion != FormatV1 && e.Format.WriteVersion != FormatV2 {
			add(p+".encryption.format.writeVersion", "%d is neither 1 nor 2", e.Format.WriteVersion)
		}
		if e := vc.Encryption; e != nil && e.Format.Recompress != "" && e.Format.Recompress != RecompressStored && e.Format.Recompress != RecompressCompressed {
			add(p+".encryption.format.recompress", "%q is neither %q nor %q", e.Format.Recompress, RecompressStored, RecompressCompressed)
		}
	}
	// Port ranges of different virtual clusters must not overlap.
	for i := range c.VirtualClusters {
		for j := i + 1; j < len(c.VirtualClusters); j++ {
			a, b := c.VirtualClusters[i].Gateway, c.VirtualClusters[j].Gateway
			if overlaps(a, b) {
				add(fmt.Sprintf("virtualClusters[%d].gateway", j), "ports overlap with virtualClusters[%d] (%s)", i, c.VirtualClusters[i].Name)
			}
		}
	}
	if errs = Settle(c.decodeErrs, errs, c.pos); len(errs) > 0 {
		return errs
	}
	return nil
}

func overlaps(a, b Gateway) bool {
	in := func(p int, g Gateway) bool {
		return p == g.BootstrapPort || (p >= g.BrokerPortStart && p < g.BrokerPortStart+g.BrokerPortCount)
	}
	if in(a.BootstrapPort, b) || in(b.BootstrapPort, a) {
		return true
	}
	return a.BrokerPortStart < b.BrokerPortStart+b.BrokerPortCount && b.BrokerPortStart < a.BrokerPortStart+a.BrokerPortCount
}

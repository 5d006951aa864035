// Package policy decides, per topic, which KEK encrypts its records: rules
// matching exact names, prefixes or regular expressions, evaluated in order,
// the first match winning, each naming a KEK (possibly built from the topic
// name) or passthrough. It also maps MirrorMaker 2 replica topics to the
// topic their records were first written to, whose name the record
// encryption binds (AAD).
//
// It never talks to a KMS: whether the KEK a rule names exists is the
// caller's question, and so is applying UnresolvedKeyPolicy when it does
// not. Select and AADTopic are on the hot path: results are cached per topic,
// and a cache hit neither allocates nor takes a contended lock.
package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// UnresolvedKeyPolicy says what happens to records of a topic no rule
// matches, or whose KEK does not exist. A KEK that exists but is disabled,
// pending deletion or deleted after use is not "unresolved": its topics are
// refused whatever this policy says (docs/policy.md).
type UnresolvedKeyPolicy string

const (
	// PassthroughUnencrypted forwards such records unencrypted. It must be
	// chosen explicitly.
	PassthroughUnencrypted UnresolvedKeyPolicy = "PASSTHROUGH_UNENCRYPTED"
	// Reject refuses to produce such records (the default: fail closed).
	Reject UnresolvedKeyPolicy = "REJECT"
)

// DefaultCacheSize is the default bound of each per-topic cache.
const DefaultCacheSize = 10000

// Config is the `encryption.policy` section.
type Config struct {
	// Rules are tried in order; the first that matches the topic decides.
	Rules []RuleConfig `yaml:"rules"`
	// UnresolvedKeyPolicy applies when no rule matches or the KEK named does
	// not exist: REJECT (default) or PASSTHROUGH_UNENCRYPTED.
	UnresolvedKeyPolicy UnresolvedKeyPolicy `yaml:"unresolvedKeyPolicy"`
	// Replicas map replica topics (MirrorMaker 2) to their origin topic.
	Replicas []ReplicaConfig `yaml:"replicas"`
	// CacheSize bounds how many topics' results are remembered (0: default).
	CacheSize int `yaml:"cacheSize"`
	// EncryptedTopicCheck tunes the check made before a topic whose KEK does
	// not exist is passed through under PASSTHROUGH_UNENCRYPTED.
	EncryptedTopicCheck EncryptedTopicCheckConfig `yaml:"encryptedTopicCheck"`
	// MaxKeksPerTopic and MaxKeks bound the distinct entity KEKs (rules
	// whose kek uses $(header:...) or $(key...)) one topic, and the process,
	// may use (0: DefaultMaxKeksPerTopic, DefaultMaxKeks).
	MaxKeksPerTopic int `yaml:"maxKeksPerTopic"`
	MaxKeks         int `yaml:"maxKeks"`

	// WriteVersion is `encryption.format.writeVersion` (not part of this
	// section: the caller copies it in): the record format written, 1 (0
	// means 1) or 2. Rules that encrypt keys or headers need 2.
	WriteVersion int `yaml:"-"`

	// Recompress is `encryption.format.recompress: compressed` (copied in
	// by the caller too): compressed batches kseal encrypted are compressed
	// again. False (the default, `stored`): they are written back as stored
	// blocks of their codec.
	Recompress bool `yaml:"-"`
}

// EncryptedTopicCheckConfig is `encryption.policy.encryptedTopicCheck`:
// before kseal passes a topic through because its KEK does not exist, it
// reads the topic's newest batches from the cluster and refuses the topic if
// kseal encrypted them. The answer is cached per topic.
type EncryptedTopicCheckConfig struct {
	// TTL is how long an answer is reused (0: DefaultEncryptedTopicCheckTTL).
	TTL time.Duration `yaml:"ttl"`
	// CacheSize bounds the topics whose answer is cached (0: DefaultCacheSize).
	CacheSize int `yaml:"cacheSize"`
}

// DefaultEncryptedTopicCheckTTL is how long the encrypted-topic check's
// answer for a topic is reused.
const DefaultEncryptedTopicCheckTTL = time.Minute

// RuleConfig is one rule: exactly one of Topics, TopicPrefix, TopicRegex
// says what it matches, and exactly one of KEK, Passthrough what it does.
type RuleConfig struct {
	Topics      []string `yaml:"topics"`      // exact topic names
	TopicPrefix string   `yaml:"topicPrefix"` // names starting with this
	TopicRegex  string   `yaml:"topicRegex"`  // RE2 syntax, matching the whole name
	KEK         string   `yaml:"kek"`         // KEK name template
	Passthrough bool     `yaml:"passthrough"` // leave matching topics unencrypted
	// Encrypt says which parts of the records are encrypted (nil: the
	// value only).
	Encrypt *EncryptConfig `yaml:"encrypt"`
	// Access restricts which client identities may decrypt and produce
	// (access.go; nil: everyone).
	Access *AccessConfig `yaml:"access"`
	// OnDestroyedKek: ERROR (default) or NULL_VALUE, for records whose KEK
	// was destroyed with `kseal shred` (entity.go, docs/shredding.md).
	OnDestroyedKek string `yaml:"onDestroyedKek"`
	// RequireEncrypted: on Fetch, records that have something the rule
	// encrypts must be valid envelopes under an allowed KEK (nil: true for
	// rules that encrypt). integrity.go.
	RequireEncrypted *bool `yaml:"requireEncrypted"`
	// RequireEncryptedFrom: first-encrypted (default) or earliest.
	RequireEncryptedFrom RequireFrom `yaml:"requireEncryptedFrom"`
	// AllowedKEKs are KEK name templates also accepted on Fetch (besides
	// kek), e.g. a KEK the rule named before.
	AllowedKEKs []string `yaml:"allowedKeks"`
}

// ReplicaConfig maps topics matching TopicRegex to the origin topic
// OriginTopic builds (a template, e.g. "$1").
type ReplicaConfig struct {
	TopicRegex  string `yaml:"topicRegex"`
	OriginTopic string `yaml:"originTopic"`
}

// Action is what a Selection tells the caller to do.
type Action uint8

const (
	// Unresolved: no rule matched (or the KEK name came out empty); apply
	// the UnresolvedKeyPolicy.
	Unresolved Action = iota
	// Encrypt under Selection.KEK; if it does not exist, apply the
	// UnresolvedKeyPolicy.
	Encrypt
	// Passthrough: a rule says to leave the topic unencrypted.
	Passthrough
)

func (a Action) String() string {
	switch a {
	case Encrypt:
		return "encrypt"
	case Passthrough:
		return "passthrough"
	}
	return "unresolved"
}

// Selection is the policy's answer for one topic.
type Selection struct {
	Action Action
	KEK    string // set when Action is Encrypt
	Rule   int    // index of the matching rule in Config.Rules, -1 for none
	// Parts are what the rule encrypts (set when Action is Encrypt); with
	// write version 1 always PartValue.
	Parts Parts

	headers *headerMatcher // EncryptHeader's patterns
	access  *Access        // the rule's access section (nil: none)
	ent     *entitySel     // entity KEK template and onDestroyedKek (entity.go)
}

// Policy is a compiled Config. It is safe for concurrent use.
type Policy struct {
	rules      []rule
	unresolved UnresolvedKeyPolicy
	replicas   []replica
	kekCache   *cache[Selection]
	aadCache   *cache[string]
	checkTTL   time.Duration
	checkSize  int
	version    int
	stored     bool

	maxKeksPerTopic, maxKeks int
}

// WriteVersion is the record format version written: 1 or 2.
func (p *Policy) WriteVersion() int { return p.version }

// StoredRewrite reports whether compressed batches kseal encrypted are
// written as stored (uncompressed) blocks of their codec
// (`encryption.format.recompress: stored`).
func (p *Policy) StoredRewrite() bool { return p.stored }

// EncryptedTopicCheck returns the encrypted-topic check's answer TTL and
// cache bound (defaulted).
func (p *Policy) EncryptedTopicCheck() (ttl time.Duration, cacheSize int) {
	return p.checkTTL, p.checkSize
}

type rule struct {
	exact       map[string]struct{}
	prefix      string
	re          *regexp.Regexp
	kek         template
	passthrough bool
	parts       Parts
	headers     *headerMatcher
	access      *Access
	onDestroyed OnDestroyedKek
	require     Requirement // integrity.go
	allowed     []template  // allowedKeks
}

type replica struct {
	re     *regexp.Regexp
	origin template
}

// Validate checks the config; its errors name keys relative to the section
// ("rules[2].topicRegex: ...").
func (c *Config) Validate() error {
	_, err := Compile(c)
	return err
}

// Compile checks cfg and builds the Policy. All problems are reported
// together, each prefixed by its key path.
func Compile(cfg *Config) (*Policy, error) {
	var errs []error
	bad := func(path string, err error) { errs = append(errs, fmt.Errorf("%s: %w", path, err)) }
	p := &Policy{unresolved: cfg.UnresolvedKeyPolicy, version: cfg.WriteVersion, stored: !cfg.Recompress}
	switch cfg.WriteVersion {
	case 0:
		p.version = WriteV1
	case WriteV1, WriteV2:
	default:
		// The caller checks its own key (encryption.format.writeVersion).
		errs = append(errs, fmt.Errorf("write version %d is neither 1 nor 2", cfg.WriteVersion))
	}

	switch cfg.UnresolvedKeyPolicy {
	case "":
		p.unresolved = Reject
	case PassthroughUnencrypted, Reject:
	default:
		bad("unresolvedKeyPolicy", fmt.Errorf("%q is neither %s nor %s", cfg.UnresolvedKeyPolicy, PassthroughUnencrypted, Reject))
	}

	for i, rc := range cfg.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		var r rule
		kinds := 0
		if rc.Topics != nil {
			kinds++
			if len(rc.Topics) == 0 {
				bad(path+".topics", errors.New("empty list"))
			}
			r.exact = make(map[string]struct{}, len(rc.Topics))
			for j, t := range rc.Topics {
				if err := checkTopicName(t, false); err != nil {
					bad(fmt.Sprintf("%s.topics[%d]", path, j), err)
				}
				r.exact[t] = struct{}{}
			}
		}
		if rc.TopicPrefix != "" {
			kinds++
			if err := checkTopicName(rc.TopicPrefix, true); err != nil {
				bad(path+".topicPrefix", err)
			}
			r.prefix = rc.TopicPrefix
		}
		if rc.TopicRegex != "" {
			kinds++
			re, err := compileWhole(rc.TopicRegex)
			if err != nil {
				bad(path+".topicRegex", err)
			}
			r.re = re
		}
		if kinds != 1 {
			bad(path, errors.New("set exactly one of topics, topicPrefix, topicRegex (for every topic: topicRegex: '.*')"))
		}
		switch {
		case rc.Passthrough && rc.KEK != "":
			bad(path, errors.New("set either kek or passthrough, not both"))
		case rc.Passthrough:
			r.passthrough = true
		case rc.KEK == "":
			bad(path+".kek", errors.New("required (or passthrough: true)"))
		case rc.TopicRegex != "" && r.re == nil:
			// The regex failed; its groups are unknown.
		default:
			t, err := parseTemplate(rc.KEK, r.re)
			if err != nil {
				bad(path+".kek", err)
			}
			r.kek = t
		}
		r.parts, r.headers = compileEncrypt(path, &rc, p.version, bad)
		r.access = compileAccess(path, &rc, bad)
		r.onDestroyed = compileShred(path, &rc, r.kek, r.parts, r.headers, bad)
		compileIntegrity(path, &rc, &r, bad)
		p.rules = append(p.rules, r)
	}

	for i, rc := range cfg.Replicas {
		path := fmt.Sprintf("replicas[%d]", i)
		if rc.TopicRegex == "" {
			bad(path+".topicRegex", errors.New("required"))
			continue
		}
		re, err := compileWhole(rc.TopicRegex)
		if err != nil {
			bad(path+".topicRegex", err)
			continue
		}
		if rc.OriginTopic == "" {
			bad(path+".originTopic", errors.New("required (e.g. '$1')"))
			continue
		}
		t, err := parseTemplate(rc.OriginTopic, re)
		if err == nil && t.hasEntity() {
			err = errors.New("$(header:...) and $(key...) are for rules' kek only")
		}
		if err != nil {
			bad(path+".originTopic", err)
			continue
		}
		p.replicas = append(p.replicas, replica{re: re, origin: t})
	}

	size := cfg.CacheSize
	switch {
	case size < 0:
		bad("cacheSize", fmt.Errorf("%d is negative", size))
	case size == 0:
		size = DefaultCacheSize
	}
	p.checkTTL, p.checkSize = cfg.EncryptedTopicCheck.TTL, cfg.EncryptedTopicCheck.CacheSize
	switch {
	case p.checkTTL < 0:
		bad("encryptedTopicCheck.ttl", fmt.Errorf("%v is negative", p.checkTTL))
	case p.checkTTL == 0:
		p.checkTTL = DefaultEncryptedTopicCheckTTL
	}
	switch {
	case p.checkSize < 0:
		bad("encryptedTopicCheck.cacheSize", fmt.Errorf("%d is negative", p.checkSize))
	case p.checkSize == 0:
		p.checkSize = DefaultCacheSize
	}
	p.compileBounds(cfg, bad)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.kekCache = newCache[Selection](size)
	p.aadCache = newCache[string](size)
	return p, nil
}

// compileWhole compiles an RE2 expression that must match a whole topic
// name, as Java's Pattern.matches does for MirrorMaker 2's filters: "orders"
// does not match "old-orders". The expression is compiled alone first, so
// its error message shows it as written and a wrapper cannot be escaped.
func compileWhole(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// checkTopicName applies Kafka's rule for topic names (1 to 249 of
// a-z A-Z 0-9 . _ -), so that a typo in a name is a config error rather than
// a rule that silently never matches.
func checkTopicName(s string, prefix bool) error {
	if s == "" {
		return errors.New("empty topic name")
	}
	if len(s) > 249 {
		return fmt.Errorf("%d bytes, longer than a Kafka topic name can be (249)", len(s))
	}
	if !prefix && (s == "." || s == "..") {
		return fmt.Errorf("%q is not a valid Kafka topic name", s)
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q has %q, which Kafka topic names cannot contain", s, c)
		}
	}
	return nil
}

// catchAllProbes are topic names of every shape Kafka allows: a rule whose
// regex matches all of them is taken to match every topic.
var catchAllProbes = []string{"a", "Z", "0", "_", "-", ".a", "orders", "__consumer_offsets", "x.y-z_9", "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"}

// Warnings lists what in the policy is allowed but dangerous, for one log
// line each at start: PASSTHROUGH_UNENCRYPTED together with a rule that
// matches every topic and names a KEK (every topic whose KEK does not
// exist then goes to the broker in clear).
func (p *Policy) Warnings() []string {
	if p.unresolved != PassthroughUnencrypted {
		return nil
	}
	var out []string
	for i := range p.rules {
		r := &p.rules[i]
		if r.re == nil || r.passthrough || r.kek.hasEntity() {
			// Entity KEKs are never passed through (docs/shredding.md).
			continue
		}
		all := true
		for _, t := range catchAllProbes {
			if !r.re.MatchString(t) {
				all = false
				break
			}
		}
		if all {
			out = append(out, fmt.Sprintf("unresolvedKeyPolicy is PASSTHROUGH_UNENCRYPTED and rules[%d] matches every topic: "+
				"records of any topic whose KEK does not exist in the KMS (a typo, a topic created before its KEK) reach the broker unencrypted; "+
				"set unresolvedKeyPolicy: REJECT (the default) unless that is intended", i))
		}
	}
	return out
}

// UnresolvedKeyPolicy returns the configured policy (defaulted).
func (p *Policy) UnresolvedKeyPolicy() UnresolvedKeyPolicy { return p.unresolved }

// Select decides what to do with records of topic.
func (p *Policy) Select(topic string) Selection {
	if s, ok := p.kekCache.get(topic); ok {
		return s
	}
	s := p.evaluate(topic)
	p.kekCache.put(topic, s)
	return s
}

// SelectBytes is Select for a topic name still in wire bytes; a cache hit
// does not allocate.
func (p *Policy) SelectBytes(topic []byte) Selection {
	if s, ok := p.kekCache.getBytes(topic); ok {
		return s
	}
	return p.Select(string(topic))
}

func (p *Policy) evaluate(topic string) Selection {
	for i := range p.rules {
		r := &p.rules[i]
		var match []int
		switch {
		case r.exact != nil:
			if _, ok := r.exact[topic]; !ok {
				continue
			}
		case r.re != nil:
			if match = r.re.FindStringSubmatchIndex(topic); match == nil {
				continue
			}
		default:
			if !strings.HasPrefix(topic, r.prefix) {
				continue
			}
		}
		if r.passthrough {
			return Selection{Action: Passthrough, Rule: i}
		}
		ent := r.entitySelection(i, topic, match)
		kek := r.kek.expand(topic, match)
		if ent != nil && ent.segs != nil {
			kek = ent.displayKEK() // the KEK is each record's (AppendKEK)
		}
		if kek == "" {
			return Selection{Action: Unresolved, Rule: i, access: r.access}
		}
		return Selection{Action: Encrypt, KEK: kek, Rule: i, Parts: r.parts, headers: r.headers, access: r.access, ent: ent}
	}
	return Selection{Action: Unresolved, Rule: -1}
}

// AADTopic returns the topic name that records of topic are bound to: for
// a replica topic, the origin topic its first matching replicas rule builds
// (if that comes out empty, topic itself); otherwise topic itself. Both
// encryption and decryption should bind to it, so that a replica topic
// behaves the same whether records arrived by replication or by a producer.
func (p *Policy) AADTopic(topic string) string {
	if len(p.replicas) == 0 {
		return topic
	}
	if s, ok := p.aadCache.get(topic); ok {
		return s
	}
	s := p.origin(topic)
	p.aadCache.put(topic, s)
	return s
}

// AADTopicBytes is AADTopic for a topic name still in wire bytes. A cache
// hit does not allocate; without replicas rules it returns string(topic).
func (p *Policy) AADTopicBytes(topic []byte) string {
	if len(p.replicas) > 0 {
		if s, ok := p.aadCache.getBytes(topic); ok {
			return s
		}
	}
	return p.AADTopic(string(topic))
}

func (p *Policy) origin(topic string) string {
	for _, r := range p.replicas {
		if m := r.re.FindStringSubmatchIndex(topic); m != nil {
			if o := r.origin.expand(topic, m); o != "" {
				return o
			}
			break
		}
	}
	// Cached values must not alias the caller's (possibly reused) bytes.
	return strings.Clone(topic)
}

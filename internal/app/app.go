// Package app assembles a running kseal from its config tree: the proxy
// plumbing of every virtual cluster and, where configured, its KMS, policy,
// DEK manager and encryption filter. `kseal run`, `kseal validate` and the
// tests all go through it, so a config that validates is one that runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/dek"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/encrypt"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	_ "github.com/kseal/kseal/internal/kms/aws"    // registers "aws"
	_ "github.com/kseal/kseal/internal/kms/azure"  // registers "azure"
	_ "github.com/kseal/kseal/internal/kms/hadoop" // registers "hadoop"
	_ "github.com/kseal/kseal/internal/kms/kmip"   // registers "kmip"
	_ "github.com/kseal/kseal/internal/kms/local"  // registers "local"
	_ "github.com/kseal/kseal/internal/kms/vault"  // registers "vault"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/proxy"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// DEKConfig is the `encryption.dek` section.
type DEKConfig struct {
	RefreshAfterWrite    config.Duration `yaml:"refreshAfterWrite"`
	ExpireAfterWrite     config.Duration `yaml:"expireAfterWrite"`
	MaxEncryptionsPerDEK uint64          `yaml:"maxEncryptionsPerDek"`
	DecryptCacheSize     int             `yaml:"decryptCacheSize"`
	DecryptCacheTTL      config.Duration `yaml:"decryptCacheTtl"`
	DecryptCacheMaxAge   config.Duration `yaml:"decryptCacheMaxAge"`
	NotFoundTTL          config.Duration `yaml:"notFoundTtl"`
	KMSTimeout           config.Duration `yaml:"kmsTimeout"`
	KMSAttempts          int             `yaml:"kmsAttempts"`
	KEKCheckInterval     config.Duration `yaml:"kekCheckInterval"`
}

func (c DEKConfig) options() dek.Options {
	return dek.Options{
		RefreshAfterWrite:    c.RefreshAfterWrite.Std(),
		ExpireAfterWrite:     c.ExpireAfterWrite.Std(),
		MaxEncryptionsPerDEK: c.MaxEncryptionsPerDEK,
		DecryptCacheSize:     c.DecryptCacheSize,
		DecryptCacheTTL:      c.DecryptCacheTTL.Std(),
		DecryptCacheMaxAge:   c.DecryptCacheMaxAge.Std(),
		NotFoundTTL:          c.NotFoundTTL.Std(),
		KMSTimeout:           c.KMSTimeout.Std(),
		KMSAttempts:          c.KMSAttempts,
		KEKCheckInterval:     c.KEKCheckInterval.Std(),
	}
}

// validate checks the section; each error names its key ("kmsTimeout: ...").
func (c DEKConfig) validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for _, d := range []struct {
		key string
		v   config.Duration
	}{
		{"refreshAfterWrite", c.RefreshAfterWrite}, {"expireAfterWrite", c.ExpireAfterWrite},
		{"decryptCacheTtl", c.DecryptCacheTTL}, {"decryptCacheMaxAge", c.DecryptCacheMaxAge},
		{"notFoundTtl", c.NotFoundTTL}, {"kmsTimeout", c.KMSTimeout}, {"kekCheckInterval", c.KEKCheckInterval},
	} {
		if d.v < 0 {
			add(d.key, "%v must not be negative", d.v.Std())
		}
	}
	if c.RefreshAfterWrite > 0 && c.ExpireAfterWrite > 0 && c.ExpireAfterWrite < c.RefreshAfterWrite {
		add("expireAfterWrite", "%v is shorter than refreshAfterWrite (%v)", c.ExpireAfterWrite.Std(), c.RefreshAfterWrite.Std())
	}
	if c.DecryptCacheMaxAge > 0 && c.DecryptCacheMaxAge.Std() < dek.MinDecryptCacheMaxAge {
		add("decryptCacheMaxAge", "%v is below the minimum %v", c.DecryptCacheMaxAge.Std(), dek.MinDecryptCacheMaxAge)
	}
	if c.DecryptCacheTTL > 0 && c.DecryptCacheMaxAge > 0 && c.DecryptCacheTTL > c.DecryptCacheMaxAge {
		add("decryptCacheTtl", "%v is longer than decryptCacheMaxAge %v, so it would never apply", c.DecryptCacheTTL.Std(), c.DecryptCacheMaxAge.Std())
	}
	if c.MaxEncryptionsPerDEK > dek.MaxEncryptionsCeiling {
		add("maxEncryptionsPerDek", "at most %d (GCM's limit per key)", uint64(dek.MaxEncryptionsCeiling))
	}
	if c.KEKCheckInterval > 0 && c.KEKCheckInterval.Std() < 100*time.Millisecond {
		add("kekCheckInterval", "%v is below the minimum of 100ms", c.KEKCheckInterval.Std())
	}
	if c.DecryptCacheSize < 0 {
		add("decryptCacheSize", "%d must not be negative", c.DecryptCacheSize)
	}
	if c.KMSAttempts < 0 {
		add("kmsAttempts", "%d must not be negative", c.KMSAttempts)
	}
	return errors.Join(errs...)
}

// Encryption is one virtual cluster's compiled encryption section.
type Encryption struct {
	KMSConfig kms.Config
	Policy    *policy.Policy
	DEK       DEKConfig
	KeyTopic  detkey.Config
}

// Compile checks a virtual cluster's encryption section (without opening
// the KMS) and returns its parts. It reports every problem of the section,
// the KMS provider's, policy's and dek's sub-sections included, each with
// its full key path and, when the section was decoded from a file, its line
// there (the sub-sections are decoded from the file's own YAML nodes).
func Compile(vcIndex int, e *config.Encryption) (*Encryption, error) {
	enc, errs := compile(vcIndex, e)
	if len(errs) > 0 {
		return nil, errs
	}
	return enc, nil
}

func compile(vcIndex int, e *config.Encryption) (*Encryption, config.Errors) {
	p := fmt.Sprintf("virtualClusters[%d].encryption", vcIndex)
	var pos config.Positions
	var decoded, invalid config.Errors
	out := &Encryption{}
	prov, ok := kms.Lookup(e.KMS.Type)
	switch {
	case e.KMS.Type == "":
		// As config.Validate says (Settle drops the repeat).
		invalid = append(invalid, &config.Problem{Path: p + ".kms.type", Msg: "is required"})
	case !ok:
		invalid = append(invalid, &config.Problem{Path: p + ".kms.type",
			Msg: fmt.Sprintf("unknown %q (known: %s)", e.KMS.Type, strings.Join(kms.Names(), ", "))})
	default:
		out.KMSConfig = prov.NewConfig()
		decoded = append(decoded, config.DecodeNode(&e.KMS.Config, out.KMSConfig, p+".kms.config", &pos)...)
		invalid = append(invalid, config.Sub(p+".kms.config", out.KMSConfig.Validate())...)
	}
	var pc policy.Config
	decoded = append(decoded, config.DecodeNode(&e.Policy, &pc, p+".policy", &pos)...)
	// An invalid writeVersion is config.Validate's problem; the rules
	// are checked as if it were 2, so it is not reported again through them.
	switch pc.WriteVersion = e.Format.WriteVersion; pc.WriteVersion {
	case 0:
		pc.WriteVersion = policy.WriteV1
	case policy.WriteV1, policy.WriteV2:
	default:
		pc.WriteVersion = policy.WriteV2
		// As config.Validate says (Settle drops the repeat).
		invalid = append(invalid, &config.Problem{Path: p + ".format.writeVersion",
			Msg: fmt.Sprintf("%d is neither 1 nor 2", e.Format.WriteVersion)})
	}
	// Unset means stored (config.Validate reports other values).
	pc.Recompress = e.Format.Recompress == config.RecompressCompressed
	pol, err := policy.Compile(&pc)
	invalid = append(invalid, config.Sub(p+".policy", err)...)
	out.Policy = pol
	decoded = append(decoded, config.DecodeNode(&e.DEK, &out.DEK, p+".dek", &pos)...)
	invalid = append(invalid, config.Sub(p+".dek", out.DEK.validate())...)
	decoded = append(decoded, config.DecodeNode(&e.KeyTopic, &out.KeyTopic, p+".keyTopic", &pos)...)
	invalid = append(invalid, config.Sub(p+".keyTopic", out.KeyTopic.Validate())...)
	if errs := config.Settle(decoded, invalid, &pos); len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// Validate checks the whole tree, encryption sections included, and
// reports every problem, sorted by line.
func Validate(cfg *config.Config) error {
	var errs config.Errors
	if err := cfg.Validate(); err != nil {
		var ce config.Errors
		if !errors.As(err, &ce) {
			return err
		}
		errs = append(errs, ce...)
	}
	for i := range cfg.VirtualClusters {
		if e := cfg.VirtualClusters[i].Encryption; e != nil {
			_, ce := compile(i, e)
			errs = append(errs, ce...)
		}
	}
	if errs = config.Settle(nil, errs, cfg.Positions()); len(errs) > 0 {
		return errs
	}
	return nil
}

// Load reads and validates a config file completely.
func Load(path string) (*config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := config.DecodeAll(b)
	if err != nil {
		return nil, err
	}
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// App is a built kseal: the server plus what must be closed with it.
type App struct {
	Server *proxy.Server

	cfg      *config.Config
	log      *slog.Logger
	km       *kmsMetrics
	clusters map[string]*encCluster

	retiredMu sync.Mutex
	retired   map[*retiredKeys]struct{} // replaced by a reload, closed after reloadGrace

	// auditW writes the audit stream (nil: audit.path unset); audit is
	// it as an Emitter, nil when off.
	auditW *audit.Writer
	audit  audit.Emitter
}

// retiredKeys are KMS clients and DEK loops a reload replaced, kept open for
// requests that started before it.
type retiredKeys struct {
	once  sync.Once
	close func()
	timer *time.Timer
}

// encCluster is one virtual cluster's encryption, swappable on reload.
type encCluster struct {
	filter *encrypt.Filter
	mgr    atomic.Pointer[dek.Manager]
	close  func() // closes the KMS and stops the manager's loop
	// counters are shared by the cluster's successive DEK managers, so
	// the DEK metrics keep counting across reloads.
	counters dek.Counters
	// usedKEKs too: a KEK used before a reload and deleted after it is
	// still refused, never unresolved.
	usedKEKs dek.UsedKEKs
	// health says whether the current KMS answers (readiness).
	health atomic.Pointer[kmsHealth]
	// audit is the cluster's audit events (nil: off), kek its KEK state
	// changes, kept across reloads.
	audit audit.Emitter
	kek   *audit.KEKTracker
	// detKeys is the cluster's deterministic-key store (format v2 record
	// keys), kept across reloads (its keys stay valid); it calls the
	// current KMS (kms). keyTopic is the section it was made from: a reload
	// cannot change it.
	detKeys  *detkey.Store
	keyTopic detkey.Config
	kms      atomic.Pointer[keys]
	// conns is the current KMS's own connection pool, for its metrics.
	conns kmsConns
}

// storeKMS is the KMS a cluster's deterministic-key store calls: the one
// the cluster's current config opened, across reloads.
type storeKMS struct{ ec *encCluster }

func (s storeKMS) GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error) {
	return s.ec.kms.Load().kms.GenerateDEK(ctx, kek)
}

func (s storeKMS) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	return s.ec.kms.Load().kms.DecryptDEK(ctx, edek)
}

// Close releases KMS clients and background loops (after Server.Shutdown),
// those a reload replaced included.
func (a *App) Close() {
	for _, c := range a.clusters {
		c.close()
	}
	a.retiredMu.Lock()
	retired := a.retired
	a.retired = nil
	a.retiredMu.Unlock()
	for r := range retired {
		r.timer.Stop()
		r.once.Do(r.close)
	}
	if a.auditW != nil {
		a.auditW.Close()
	}
}

// retire closes old after reloadGrace, or at Close if that comes first.
func (a *App) retire(old func()) {
	r := &retiredKeys{close: old}
	a.retiredMu.Lock()
	defer a.retiredMu.Unlock()
	if a.retired == nil {
		a.retired = map[*retiredKeys]struct{}{}
	}
	a.retired[r] = struct{}{}
	r.timer = time.AfterFunc(reloadGrace, func() {
		a.retiredMu.Lock()
		delete(a.retired, r)
		a.retiredMu.Unlock()
		r.once.Do(r.close)
	})
}

// openKeys opens a virtual cluster's KMS and a DEK manager counting into
// counters.
func (a *App) openKeys(ctx context.Context, vc *config.VirtualCluster, enc *Encryption, counters *dek.Counters, used *dek.UsedKEKs, ec *encCluster) (keys, func(), error) {
	vlog := a.log.With("virtualCluster", vc.Name)
	k, err := enc.KMSConfig.Open(ctx, vlog.With("kms", vc.Encryption.KMS.Type))
	if err != nil {
		return keys{}, nil, fmt.Errorf("virtual cluster %q: open KMS %q: %w", vc.Name, vc.Encryption.KMS.Type, err)
	}
	closeKMS := func() {
		if c, ok := k.(kms.Closer); ok {
			c.Close()
		}
	}
	health := newKMSHealth(k, defaultKMSHealth)
	metricsHook := a.km.hook(vc.Name, vc.Encryption.KMS.Type)
	dopts := enc.DEK.options()
	dopts.Hooks.OnKMSCall = func(op dek.Op, d time.Duration, err error) {
		metricsHook(op, d, err)
		health.observe(err)
	}
	dopts.Counters = counters
	if ec.audit != nil {
		dopts.Hooks.OnKEKState = ec.kek.Observe
		dopts.Hooks.OnDEKGenerated = func(kek kms.KEKRef, edek []byte) {
			ec.audit.Emit(audit.Event{Type: audit.DEKGenerated, KEK: kek.Name,
				EDEKFingerprint: recordcrypt.DEKIDOf(edek).String()})
		}
	}
	dopts.UsedKEKs = used
	mgr, err := dek.New(k, dopts)
	if err != nil {
		closeKMS()
		return keys{}, nil, fmt.Errorf("virtual cluster %q: %w", vc.Name, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	go mgr.Run(runCtx, time.Minute)
	go health.run(runCtx)
	return keys{mgr: mgr, kms: k, health: health}, func() { cancel(); closeKMS() }, nil
}

// Build opens every KMS and assembles the server. reg may be nil.
func Build(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*App, error) {
	a := &App{cfg: cfg, log: log, km: newKMSMetrics(reg), clusters: map[string]*encCluster{}}
	opts := map[string]proxy.ClusterOptions{}
	if err := a.openAudit(cfg, reg); err != nil {
		return nil, err
	}
	budget := encrypt.NewBudget(cfg.Limits.MaxRewriteBytes, reg) // one for the process, shared by every cluster
	for i := range cfg.VirtualClusters {
		vc := &cfg.VirtualClusters[i]
		if vc.Encryption == nil {
			continue
		}
		enc, err := Compile(i, vc.Encryption)
		if err != nil {
			a.Close()
			return nil, err
		}
		for _, w := range enc.Policy.Warnings() {
			log.Warn(w, "virtualCluster", vc.Name)
		}
		// Each encrypting cluster has its own filter and DEK metrics,
		// told apart by a virtual_cluster label (the same names and label
		// names, so Prometheus takes them as one metric family).
		vcReg := clusterRegisterer(reg, vc.Name)
		ec := &encCluster{audit: audit.ForCluster(a.audit, vc.Name)}
		ec.kek = audit.NewKEKTracker(ec.audit)
		ks, closeKeys, err := a.openKeys(ctx, vc, enc, &ec.counters, &ec.usedKEKs, ec)
		if err != nil {
			a.Close()
			return nil, err
		}
		ec.close = closeKeys
		ec.mgr.Store(ks.mgr)
		ec.health.Store(ks.health)
		ec.kms.Store(&ks)
		ec.keyTopic = enc.KeyTopic
		dopts := enc.KeyTopic.Options()
		dopts.KMSTimeout, dopts.KMSAttempts = enc.DEK.KMSTimeout.Std(), enc.DEK.KMSAttempts
		// Record keys follow the revocation bound of values: a key in use
		// is unwrapped again once as old as decryptCacheMaxAge (as it is at
		// start; a reload does not change it), and dropped if the KMS
		// refuses.
		dopts.RecheckAfter = ks.mgr.DecryptCacheMaxAge()
		dopts.Metrics = detkey.NewMetrics(vcReg)
		if ec.detKeys, err = detkey.New(storeKMS{ec}, dopts); err != nil {
			a.Close()
			return nil, fmt.Errorf("virtual cluster %q: %w", vc.Name, err)
		}
		ec.conns.set(vc.Encryption.KMS.Type, ks.kms)
		ec.filter = encrypt.New(encrypt.Options{
			Policy:     enc.Policy,
			Keys:       ks,
			Log:        log.With("virtualCluster", vc.Name),
			KMSTimeout: enc.DEK.KMSTimeout.Std(),
			Metrics:    encrypt.NewMetrics(vcReg),

			Budget:                 budget,
			MaxProduceRewriteBytes: vc.Limits.MaxProduceRewriteBytes,
			MaxTopicLabels:         vc.Limits.MaxTopicLabels,
			Audit:                  ec.audit,
			DetKeys:                encrypt.StoreKeys{Store: ec.detKeys},
			KeyTopic:               ec.detKeys.Topic(),
			Shreds:                 encrypt.StoreKeys{Store: ec.detKeys},
			FirstOffsets:           encrypt.StoreKeys{Store: ec.detKeys},
		})
		a.clusters[vc.Name] = ec
		if vcReg != nil {
			vcReg.MustRegister(dekCollector{mgr: &ec.mgr}, kmsConnCollector{c: &ec.conns})
		}
		opts[vc.Name] = proxy.ClusterOptions{Filters: []filter.Filter{ec.filter}, VersionCaps: encrypt.MaxVersions}
	}
	for i := range cfg.VirtualClusters {
		name := cfg.VirtualClusters[i].Name
		o := opts[name]
		o.Audit = audit.ForCluster(a.audit, name)
		opts[name] = o
	}
	srv, err := proxy.New(cfg, log, proxy.NewMetrics(reg), opts)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Server = srv
	return a, nil
}

// clusterRegisterer registers metrics of one virtual cluster: each gets a
// virtual_cluster label with its name. nil stays nil (not registered).
func clusterRegisterer(reg prometheus.Registerer, name string) prometheus.Registerer {
	if reg == nil {
		return nil
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"virtual_cluster": name}, reg)
}

// reloadGrace is how long replaced KMS clients stay open for requests that
// started before a reload.
const reloadGrace = 30 * time.Second

// Reload applies a new config's encryption policy and KMS settings without
// touching connections. Everything is opened first; if anything fails, or
// the new config changes what cannot change while running (listeners,
// upstreams, limits, which clusters encrypt), nothing changes and the old
// config stays in force.
func (a *App) Reload(ctx context.Context, cfg *config.Config) (err error) {
	reason := "invalid_config"
	defer func() { a.auditReload(reason, err) }()
	if err := Validate(cfg); err != nil {
		return err
	}
	reason = "restart_needed"
	if err := a.restartNeeded(cfg); err != nil {
		return err
	}
	reason = "kms"
	type swap struct {
		ec       *encCluster
		pol      *policy.Policy
		keys     keys
		close    func()
		provider string
	}
	var swaps []swap
	fail := func(err error) error {
		for _, s := range swaps {
			s.close()
		}
		return err
	}
	for i := range cfg.VirtualClusters {
		vc := &cfg.VirtualClusters[i]
		if vc.Encryption == nil {
			continue
		}
		enc, err := Compile(i, vc.Encryption)
		if err != nil {
			return fail(err)
		}
		ec := a.clusters[vc.Name]
		if enc.KeyTopic != ec.keyTopic {
			reason = "restart_needed"
			return fail(fmt.Errorf("virtualClusters[%d].encryption.keyTopic: changes need a restart", i))
		}
		ks, closeKeys, err := a.openKeys(ctx, vc, enc, &ec.counters, &ec.usedKEKs, ec)
		if err != nil {
			return fail(err)
		}
		swaps = append(swaps, swap{ec: a.clusters[vc.Name], pol: enc.Policy, keys: ks, close: closeKeys, provider: vc.Encryption.KMS.Type})
	}
	for _, s := range swaps {
		s.ec.filter.Swap(s.pol, s.keys)
		s.ec.mgr.Store(s.keys.mgr)
		s.ec.health.Store(s.keys.health)
		s.ec.kms.Store(&s.keys)
		s.ec.conns.set(s.provider, s.keys.kms)
		old := s.ec.close
		s.ec.close = s.close
		a.retire(old)
	}
	a.cfg = cfg
	return nil
}

// restartNeeded reports the parts of cfg that differ from the running
// config and cannot be applied by Reload.
func (a *App) restartNeeded(cfg *config.Config) error {
	var errs config.Errors
	if cfg.Limits != a.cfg.Limits {
		errs = append(errs, errors.New("limits: changes need a restart"))
	}
	if cfg.Audit != a.cfg.Audit {
		errs = append(errs, errors.New("audit: changes need a restart"))
	}
	if len(cfg.VirtualClusters) != len(a.cfg.VirtualClusters) {
		errs = append(errs, errors.New("virtualClusters: adding or removing a virtual cluster needs a restart"))
		return errs
	}
	for i := range cfg.VirtualClusters {
		n, o := &cfg.VirtualClusters[i], &a.cfg.VirtualClusters[i]
		p := fmt.Sprintf("virtualClusters[%d]", i)
		switch {
		case n.Name != o.Name:
			errs = append(errs, fmt.Errorf("%s.name: renaming needs a restart", p))
		case !reflect.DeepEqual(n.Upstream, o.Upstream):
			errs = append(errs, fmt.Errorf("%s.upstream: changes need a restart", p))
		case !reflect.DeepEqual(n.Gateway, o.Gateway):
			errs = append(errs, fmt.Errorf("%s.gateway: changes need a restart", p))
		case n.Limits != o.Limits:
			errs = append(errs, fmt.Errorf("%s.limits: changes need a restart", p))
		case (n.Encryption == nil) != (o.Encryption == nil):
			errs = append(errs, fmt.Errorf("%s.encryption: turning encryption on or off needs a restart", p))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Package proxy is kseal's connection plumbing: it listens on a bootstrap
// port and one port per upstream broker, pairs every client connection with
// an upstream connection to the broker that port stands for, and forwards
// size-prefixed Kafka frames both ways in order. Messages pass through as
// bytes unless a filter (internal/filter) registered for their API key
// changes them; address rewriting and encryption are such filters. This
// package knows nothing about encryption.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/filter"
)

// Server runs every virtual cluster of a config.
type Server struct {
	log      *slog.Logger
	clusters []*virtualCluster
	metrics  *Metrics
	drain    time.Duration

	mu       sync.Mutex
	conns    map[*conn]struct{}
	closing  bool
	connsWG  sync.WaitGroup
	acceptWG sync.WaitGroup
	bgWG     sync.WaitGroup // broker discovery loops
	setupWG  sync.WaitGroup // accepted connections not yet tracked (TLS handshake, broker dial)
	ctx      context.Context
	cancel   context.CancelFunc
}

// ClusterOptions are what the caller adds to a virtual cluster besides its
// config: extra filters (encryption) run after the built-in ones on
// requests and before them on responses. No filter sees a broker address
// rewritten: the plumbing rewrites every one after the response filters
// ran (addresses.go), in the same walk as the filters' edits of a Fetch or
// ShareFetch response (filter.Exchange.Partitions). A filter that replaces
// a response holding broker endpoints must keep them as they are.
type ClusterOptions struct {
	Filters []filter.Filter
	// VersionCaps lowers the highest version ApiVersions advertises for
	// some APIs (e.g. to keep topic names in Produce and Fetch).
	VersionCaps map[int16]int16
	// Audit receives security events: recovered panics, connections
	// refused at limits.maxConnections, a TLS handshake or SNI routing
	// (rate-limited like their log lines). Nil: none.
	Audit audit.Emitter
}

// New builds a server; nothing listens until Start.
func New(cfg *config.Config, log *slog.Logger, metrics *Metrics, opts map[string]ClusterOptions) (*Server, error) {
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	s := &Server{
		log:     log,
		metrics: metrics,
		drain:   cfg.DrainTimeout.Std(),
		conns:   map[*conn]struct{}{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, vcCfg := range cfg.VirtualClusters {
		vc, err := newVirtualCluster(s, vcCfg, opts[vcCfg.Name])
		if err != nil {
			return nil, err
		}
		s.clusters = append(s.clusters, vc)
	}
	return s, nil
}

// Start binds every bootstrap port and starts learning the upstream brokers
// (binding their ports as they are discovered). It returns once the
// bootstrap ports listen.
func (s *Server) Start() error {
	for _, vc := range s.clusters {
		if err := vc.start(); err != nil {
			s.closeListeners()
			return err
		}
	}
	return nil
}

// Ready reports whether every virtual cluster has reached its upstream
// cluster at least once since start, or why not. Without upstream.sasl any
// answer counts: kseal's own Metadata request, a client's connection
// reaching a broker, or a broker saying its listener requires SASL (kseal
// then learns brokers from clients' Metadata). With upstream.sasl, kseal's
// own login and Metadata request must have succeeded once: wrong
// credentials keep the cluster unready (naming the broker's refusal) even
// while clients pass through with their own.
func (s *Server) Ready() error {
	var problems []string
	for _, vc := range s.clusters {
		if err := vc.ready(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (vc *virtualCluster) ready() error {
	vc.ownMu.Lock()
	last := vc.ownErr
	vc.ownMu.Unlock()
	why := ""
	if last != nil {
		why = ": " + last.Error()
	}
	if vc.sasl != nil {
		if !vc.ownReached.Load() {
			return fmt.Errorf("virtual cluster %q: upstream not reached yet with kseal's SASL credentials%s", vc.name, why)
		}
		return nil
	}
	if !vc.reachedUpstream.Load() {
		return fmt.Errorf("virtual cluster %q: upstream not reached yet%s", vc.name, why)
	}
	return nil
}

// Shutdown stops accepting connections, lets in-flight requests finish for
// up to the drain timeout (or ctx), then closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.closeListeners()
	s.acceptWG.Wait()
	for _, c := range conns {
		c.drain()
	}
	done := make(chan struct{})
	go func() { s.connsWG.Wait(); close(done) }()
	timer := time.NewTimer(s.drain)
	defer timer.Stop()
	var err error
	select {
	case <-done:
	case <-timer.C:
		err = fmt.Errorf("drain timeout %s passed with connections open", s.drain)
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	<-done
	s.setupWG.Wait() // handshakes end with s.ctx, dials with their timeout
	s.bgWG.Wait()    // nothing logs after Shutdown returns
	return err
}

func (s *Server) closeListeners() {
	for _, vc := range s.clusters {
		vc.closeListeners()
	}
}

// track registers a new connection unless the server is closing.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.connsWG.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connsWG.Done()
}

// ServeConn serves c, a client connection accepted elsewhere (an in-memory
// or Unix socket connection in tests and fuzzing), as one accepted on the
// named virtual cluster's bootstrap port, and returns once it is closed.
// It counts against limits.maxConnections like any other.
func (s *Server) ServeConn(name string, c net.Conn) error {
	for _, vc := range s.clusters {
		if vc.name == name {
			if vc.admit(c) {
				s.setupWG.Add(1)
				vc.handle(c, -1)
			}
			return nil
		}
	}
	c.Close()
	return fmt.Errorf("no virtual cluster %q", name)
}

// BootstrapAddr returns the address the named virtual cluster's bootstrap
// port listens on (useful when the config asked for port 0 in tests).
func (s *Server) BootstrapAddr(name string) string {
	for _, vc := range s.clusters {
		if vc.name == name {
			return vc.bootstrapAddr
		}
	}
	return ""
}

// virtualCluster is one upstream cluster and its proxy ports.
type virtualCluster struct {
	srv  *Server
	name string
	cfg  config.VirtualCluster
	log  *slog.Logger
	// audit receives security events (ClusterOptions.Audit); may be nil.
	audit audit.Emitter
	// reqFilters and respFilters are the filters of each API key in the
	// order they run on requests and on responses (see ClusterOptions).
	reqFilters, respFilters map[int16][]filter.Filter
	// api counts exchanges by API (kseal_requests_total and the other
	// per-API series).
	api *apiSeries

	bootstrapAddr string
	nextBootstrap atomic.Uint32
	// reachedUpstream: the cluster answered since start (any way, see
	// Ready); ownReached: kseal's own Metadata request succeeded.
	reachedUpstream atomic.Bool
	ownReached      atomic.Bool

	// sasl logs kseal's own connections in (nil: upstream.sasl unset).
	sasl *upstreamSASL
	// ownErr is the latest outcome of kseal's own upstream request and
	// ownState what of it was last logged (see noteOwn).
	ownMu    sync.Mutex
	ownErr   error
	ownState string

	mu        sync.RWMutex
	brokers   map[int32]string // node id -> upstream host:port
	listeners map[int]net.Listener
	closed    bool
	warned    map[int32]bool

	refreshSem chan struct{} // one metadata refresh at a time (a lock that gives up with ctx)
	// unknownNodeRefresh rate-limits the metadata refreshes connections to
	// node ids kseal does not know cause (unix nanoseconds of the last).
	unknownNodeRefresh atomic.Int64

	// open counts client connections from accept to close, for
	// limits.maxConnections.
	open      atomic.Int64
	refuseLog rateLog // connections over limits.maxConnections
	setupLog  rateLog // connections refused at TLS, SNI or broker dial
	panicLog  rateLog

	topics topicNames

	tlsServer   *tls.Config // nil: plaintext listeners
	tlsUpstream *tls.Config // nil: plaintext to brokers
	sni         *sniRouter  // nil: port per broker
}

func newVirtualCluster(s *Server, cfg config.VirtualCluster, opts ClusterOptions) (*virtualCluster, error) {
	vc := &virtualCluster{
		srv:       s,
		name:      cfg.Name,
		cfg:       cfg,
		log:       s.log.With("virtualCluster", cfg.Name),
		brokers:   map[int32]string{},
		listeners: map[int]net.Listener{},
		warned:    map[int32]bool{},

		reqFilters:  map[int16][]filter.Filter{},
		respFilters: map[int16][]filter.Filter{},

		refreshSem: make(chan struct{}, 1),

		audit: opts.Audit,
	}
	vc.api = newAPISeries(s.metrics, cfg.Name)
	builtin := builtinFilters(vc, opts.VersionCaps)
	for _, f := range append(builtin[:len(builtin):len(builtin)], opts.Filters...) {
		for _, k := range f.APIKeys() {
			vc.reqFilters[k] = append(vc.reqFilters[k], f)
		}
	}
	for _, f := range append(opts.Filters[:len(opts.Filters):len(opts.Filters)], builtin...) {
		for _, k := range filter.ResponseKeys(f) {
			vc.respFilters[k] = append(vc.respFilters[k], f)
		}
	}
	if cfg.Encryption != nil && cfg.Gateway.TLS == nil {
		vc.log.Warn("this virtual cluster encrypts records but its client listener is plaintext (no gateway.tls): records of encrypted topics cross the network between clients and kseal in clear; set gateway.tls")
	}
	var err error
	if cfg.Gateway.TLS != nil {
		if vc.tlsServer, err = cfg.Gateway.TLS.Config(); err != nil {
			return nil, fmt.Errorf("virtual cluster %q: gateway.tls: %w", cfg.Name, err)
		}
	}
	if vc.tlsUpstream, err = cfg.Upstream.TLS.Config(""); err != nil {
		return nil, fmt.Errorf("virtual cluster %q: upstream.tls: %w", cfg.Name, err)
	}
	if cfg.Upstream.TLS.InsecureSkipVerify {
		vc.log.Warn("upstream.tls.insecureSkipVerify is set: broker certificates are NOT verified")
	}
	if cfg.Gateway.SNI != nil {
		vc.sni = newSNIRouter(cfg.Gateway.SNI)
	}
	if cfg.Upstream.SASL != nil {
		vc.sasl = &upstreamSASL{cfg: *cfg.Upstream.SASL}
		if _, err := vc.sasl.mechanism(); err != nil { // the password can be read
			return nil, fmt.Errorf("virtual cluster %q: %w", cfg.Name, err)
		}
		vc.log.Info("kseal's own upstream connections log in with SASL", "mechanism", cfg.Upstream.SASL.Mechanism, "user", cfg.Upstream.SASL.Username)
	}
	return vc, nil
}

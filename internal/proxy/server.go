// Package proxy is kseal's connection plumbing: it listens on a bootstrap
// port and one port per upstream broker, pairs every client connection with
// an upstream connection to the broker that port stands for, and forwards
// size-prefixed Kafka frames both ways in order. Messages pass through as
// bytes unless a Filter registered for their API key changes them; address
// rewriting and encryption are such filters. This package knows nothing
// about encryption.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/config"
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
// requests and before them on responses. So the built-in address filter
// is the last to see a response: it rewrites every broker address in what
// the extra filters leave, once. An extra filter that re-encodes a
// response holding broker endpoints must keep them as they are (a codec
// walker with Mapper KeepAddresses), not drop or map them.
type ClusterOptions struct {
	Filters []Filter
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

// noteOwn records the outcome of kseal's own upstream request for Ready,
// and logs authentication outcomes once per change instead of at every
// retry: a listener requiring SASL without upstream.sasl (a hint; it also
// counts as reaching the cluster), a refused login (an error naming the
// mechanism and the broker's message), and the recovery from either.
func (vc *virtualCluster) noteOwn(err error) {
	var required *saslRequiredError
	var login *saslLoginError
	vc.ownMu.Lock()
	prev := vc.ownState
	state := prev // a network failure does not change what is known of the login
	switch {
	case err == nil:
		state = ""
	case errors.As(err, &required):
		state = "required"
		vc.reachedUpstream.Store(true)
	case errors.As(err, &login):
		state = "login failed: " + login.reason
	}
	vc.ownErr, vc.ownState = err, state
	vc.ownMu.Unlock()
	if state == prev {
		if err != nil && state != "" {
			vc.log.Debug("kseal's own upstream request failed again", "error", err.Error())
		}
		return
	}
	switch {
	case required != nil:
		vc.log.Warn("the upstream cluster requires SASL and upstream.sasl is not set: kseal cannot discover brokers or resolve topic ids on its own, and learns brokers only from the Metadata responses clients receive; set upstream.sasl (clients' own SASL passes through either way)",
			"broker", required.addr, "mechanisms", required.mechanismList())
	case login != nil:
		vc.log.Error("upstream SASL login failed: kseal cannot discover brokers or resolve topic ids on its own; check upstream.sasl",
			"mechanism", login.mechanism, "user", vc.sasl.cfg.Username, "broker", login.addr, "error", login.reason)
	case err == nil && strings.HasPrefix(prev, "login failed"):
		vc.log.Info("upstream SASL login succeeded", "mechanism", vc.sasl.cfg.Mechanism)
	case err == nil:
		vc.log.Info("the upstream cluster answers kseal's own Metadata requests")
	}
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
	reqFilters, respFilters map[int16][]Filter
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

		reqFilters:  map[int16][]Filter{},
		respFilters: map[int16][]Filter{},

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
		for _, k := range f.APIKeys() {
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

// dialUpstream connects to a broker, over TLS when configured.
func (vc *virtualCluster) dialUpstream(ctx context.Context, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: vc.cfg.Upstream.DialTimeout.Std(), KeepAlive: 30 * time.Second}
	if vc.tlsUpstream == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	cfg := vc.tlsUpstream
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	td := &tls.Dialer{NetDialer: d, Config: cfg}
	return td.DialContext(ctx, "tcp", addr)
}

func (vc *virtualCluster) start() error {
	addr := net.JoinHostPort(vc.cfg.Gateway.BindAddress, strconv.Itoa(vc.cfg.Gateway.BootstrapPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("virtual cluster %q: bootstrap listener: %w", vc.name, err)
	}
	vc.bootstrapAddr = ln.Addr().String()
	vc.mu.Lock()
	vc.listeners[vc.cfg.Gateway.BootstrapPort] = ln
	vc.mu.Unlock()
	vc.serve(ln, -1)
	vc.log.Info("listening", "bootstrap", vc.bootstrapAddr, "advertisedHost", vc.cfg.Gateway.AdvertisedHost,
		"brokerPorts", fmt.Sprintf("%d-%d", vc.cfg.Gateway.BrokerPortStart, vc.cfg.Gateway.BrokerPortStart+vc.cfg.Gateway.BrokerPortCount-1),
		"upstream", vc.cfg.Upstream.BootstrapServers)
	// Learn the brokers now so their ports listen before any client asks.
	vc.srv.bgWG.Add(1)
	go func() {
		defer vc.srv.bgWG.Done()
		vc.discover()
	}()
	return nil
}

// discover learns the upstream brokers now (retrying with backoff until it
// succeeds, so broker ports are bound early even when the cluster starts
// after kseal) and then every metadataRefresh, so a broker added to the
// cluster gets its port on every kseal replica without waiting for a
// client's Metadata request to pass through this one.
func (vc *virtualCluster) discover() {
	backoff := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(vc.srv.ctx, vc.cfg.Upstream.DialTimeout.Std())
		err := vc.guard(sideDiscovery, vc.log, func() error { return vc.refreshMetadata(ctx) })
		cancel()
		if vc.srv.ctx.Err() != nil {
			return // shutting down
		}
		wait := metadataRefresh
		switch {
		case err == nil:
			backoff = 250 * time.Millisecond
		case isSASLError(err):
			// Logged once by noteOwn. Only a change of configuration
			// (a fixed password file, a reconfigured listener) helps:
			// try again at the refresh interval.
		default:
			vc.log.Warn("cannot reach upstream cluster", "error", err.Error(), "retryIn", backoff.String())
			wait = backoff
			backoff = min(backoff*2, 10*time.Second)
		}
		select {
		case <-time.After(wait):
		case <-vc.srv.ctx.Done():
			return
		}
	}
}

// metadataRefresh is how often kseal asks the cluster for its brokers.
const metadataRefresh = 30 * time.Second

// serve accepts connections on ln for node (-1 = bootstrap).
func (vc *virtualCluster) serve(ln net.Listener, node int32) {
	vc.srv.acceptWG.Add(1)
	go func() {
		defer vc.srv.acceptWG.Done()
		var delay time.Duration
		for vc.accept(ln, node, &delay) {
		}
	}()
}

// accept accepts one connection on ln and starts serving it; it returns
// false once ln is closed.
func (vc *virtualCluster) accept(ln net.Listener, node int32, delay *time.Duration) (more bool) {
	defer func() {
		if v := recover(); v != nil {
			vc.recovered(sideAccept, vc.log, v)
			more = true
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return false
		}
		// Temporary failures (EMFILE...): back off, keep serving.
		*delay = max(5*time.Millisecond, min(*delay*2, time.Second))
		vc.log.Error("accept failed", "error", err.Error(), "retryIn", delay.String())
		time.Sleep(*delay)
		return true
	}
	*delay = 0
	if vc.admit(c) {
		vc.srv.setupWG.Add(1)
		go vc.handle(c, node)
	}
	return true
}

// handle serves one accepted client connection (holding a slot admit
// took) until it ends. A panic while setting it up (TLS handshake, routing,
// broker dial) closes it; the two sides of a served connection recover
// their own (conn.serve).
func (vc *virtualCluster) handle(client net.Conn, node int32) {
	defer vc.release()
	setupDone := sync.OnceFunc(vc.srv.setupWG.Done)
	defer setupDone()
	log := vc.log.With("client", addrString(client.RemoteAddr()))
	var up net.Conn
	served := false // from here on the request side runs in this goroutine
	defer func() {
		if v := recover(); v != nil {
			side := sideSetup
			if served {
				side = sideRequest
			}
			vc.recovered(side, log, v)
			client.Close()
			if up != nil {
				up.Close()
			}
		}
	}()
	refuse := func(reason, msg string, args ...any) {
		vc.srv.metrics.refused.WithLabelValues(vc.name, reason).Inc()
		// Anyone can make these: logged up to a rate, all counted.
		if ok, n := vc.setupLog.allow(time.Now(), setupLogBurst, setupLogEvery); ok {
			log.Warn(msg, append(args, "refusedUnlogged", n)...)
			if vc.audit != nil && reason != refusedUpstream {
				vc.audit.Emit(audit.Event{Type: audit.ConnectionRefused, Reason: reason,
					RemoteAddr: addrString(client.RemoteAddr()), Suppressed: n})
			}
		}
		client.Close()
	}
	if vc.tlsServer != nil {
		tc := tls.Server(client, vc.tlsServer)
		ctx, cancel := context.WithTimeout(vc.srv.ctx, 10*time.Second)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			refuse(refusedTLS, "rejecting client connection: TLS handshake failed", "error", err.Error())
			return
		}
		client = tc
		if vc.sni != nil {
			name := tc.ConnectionState().ServerName
			var ok bool
			if node, ok = vc.sni.route(name); !ok {
				refuse(refusedSNI, "rejecting client connection: TLS server name matches neither the bootstrap host nor the broker pattern", "serverName", printable(name))
				return
			}
		}
	}
	if node >= 0 {
		log = log.With("node", node)
	}
	up, err := vc.connectUpstream(node)
	if err != nil {
		refuse(refusedUpstream, "rejecting client connection: upstream unreachable", "error", err.Error())
		return
	}
	vc.reachedUpstream.Store(true)
	var certNames []string
	if tc, ok := client.(*tls.Conn); ok {
		if certNames = certIdentity(tc.ConnectionState()); len(certNames) > 0 {
			log = log.With("certificate", certNames[0])
			vc.srv.metrics.identities.WithLabelValues(vc.name, "TLS").Inc()
		}
	}
	c := &conn{
		vc:       vc,
		client:   client,
		upstream: up,
		log:      log,
		inflight: make(chan *Exchange, vc.cfg.Limits.MaxInFlightPerConnection),
		draining: make(chan struct{}),
		dead:     make(chan struct{}),
	}
	if certNames != nil {
		c.identity.Store(NewIdentity(certNames, "", ""))
	}
	if !vc.srv.track(c) {
		c.close()
		return
	}
	defer vc.srv.untrack(c)
	setupDone() // tracked: Shutdown drains it like any other connection
	served = true
	vc.srv.metrics.connOpened(vc.name)
	c.serve(vc.srv.ctx)
}

// addrString is a peer's address for logs (a connection that is not TCP
// may have none).
func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return a.String()
}

// maxWarnedNodes bounds the node ids warnUnmapped remembers (they come from
// broker responses); past it the others are not logged.
const maxWarnedNodes = 1024

// upstreamWait is how long a client connection is held while its broker
// cannot be reached (a broker restarting, leaders moving). Closing at once
// would look to clients like a protocol or TLS mismatch, which some treat
// as fatal (franz-go fails the records); a connection that is slow to
// answer is what they expect from a troubled broker, and they retry.
const upstreamWait = 30 * time.Second

// connectUpstream dials the broker node's port stands for, retrying with
// backoff for up to upstreamWait (the broker's address is looked up again
// on every try, since it may have moved).
func (vc *virtualCluster) connectUpstream(node int32) (net.Conn, error) {
	deadline := time.Now().Add(upstreamWait)
	backoff := 100 * time.Millisecond
	for {
		target, err := vc.upstreamFor(node)
		if err == nil {
			var up net.Conn
			if up, err = vc.dialUpstream(vc.srv.ctx, target); err == nil {
				return up, nil
			}
			err = fmt.Errorf("%s: %w", target, err)
		}
		if time.Now().Add(backoff).After(deadline) || vc.srv.ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-time.After(backoff):
		case <-vc.srv.ctx.Done():
			return nil, err
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// upstreamFor picks the upstream address for a connection to node's port.
func (vc *virtualCluster) upstreamFor(node int32) (string, error) {
	if node < 0 {
		servers := vc.cfg.Upstream.BootstrapServers
		i := vc.nextBootstrap.Add(1)
		return servers[int(i)%len(servers)], nil
	}
	if addr, ok := vc.brokerAddr(node); ok {
		return addr, nil
	}
	// A client may hold metadata from before a restart of kseal, or from a
	// broker we have not seen yet: learn the cluster again, at most once per
	// refreshInterval for all such connections (a client naming node ids
	// that do not exist must not turn into a stream of Metadata requests).
	now := time.Now().UnixNano()
	last := vc.unknownNodeRefresh.Load()
	if now-last < int64(refreshInterval) || !vc.unknownNodeRefresh.CompareAndSwap(last, now) {
		return "", fmt.Errorf("node %d is not known yet (metadata was refreshed less than %s ago)", node, refreshInterval)
	}
	ctx, cancel := context.WithTimeout(vc.srv.ctx, vc.cfg.Upstream.DialTimeout.Std())
	defer cancel()
	if err := vc.refreshMetadata(ctx); err != nil {
		return "", fmt.Errorf("node %d unknown and metadata refresh failed: %w", node, err)
	}
	if addr, ok := vc.brokerAddr(node); ok {
		return addr, nil
	}
	return "", fmt.Errorf("node %d is not in the upstream cluster's metadata", node)
}

func (vc *virtualCluster) brokerAddr(node int32) (string, bool) {
	vc.mu.RLock()
	defer vc.mu.RUnlock()
	a, ok := vc.brokers[node]
	return a, ok
}

// MapBroker records an upstream broker's address and returns the proxy
// address that stands for it, binding its port on first sight. It is the
// codec.AddressMapper for every response that names brokers.
func (vc *virtualCluster) MapBroker(node int32, host string, port int32) (string, int32, bool) {
	g := vc.cfg.Gateway
	if vc.sni != nil {
		if node < 0 {
			return "", 0, false
		}
		upstream := net.JoinHostPort(host, strconv.Itoa(int(port)))
		vc.mu.RLock()
		known := vc.brokers[node] == upstream
		vc.mu.RUnlock()
		if !known {
			vc.mu.Lock()
			vc.brokers[node] = upstream
			vc.mu.Unlock()
			vc.log.Info("serving broker by SNI", "node", node, "host", vc.sni.host(node), "upstream", upstream)
		}
		return vc.sni.host(node), int32(g.SNI.AdvertisedPort), true
	}
	if node < 0 || int(node) >= g.BrokerPortCount {
		vc.warnUnmapped(node, fmt.Sprintf("node id outside 0..%d (gateway.brokerPortCount)", g.BrokerPortCount-1))
		return "", 0, false
	}
	proxyPort := g.BrokerPortStart + int(node)
	upstream := net.JoinHostPort(host, strconv.Itoa(int(port)))

	vc.mu.RLock()
	known := vc.brokers[node] == upstream
	_, bound := vc.listeners[proxyPort]
	vc.mu.RUnlock()
	if known && bound {
		return g.AdvertisedHost, int32(proxyPort), true
	}

	vc.mu.Lock()
	defer vc.mu.Unlock()
	if old, ok := vc.brokers[node]; ok && old != upstream {
		vc.log.Info("broker address changed", "node", node, "from", old, "to", upstream)
	}
	vc.brokers[node] = upstream
	if _, ok := vc.listeners[proxyPort]; !ok {
		if vc.closed {
			return "", 0, false
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(g.BindAddress, strconv.Itoa(proxyPort)))
		if err != nil {
			vc.log.Error("cannot listen for broker", "node", node, "port", proxyPort, "error", err.Error())
			return "", 0, false
		}
		vc.listeners[proxyPort] = ln
		vc.serve(ln, node)
		vc.log.Info("serving broker", "node", node, "port", proxyPort, "upstream", upstream)
	}
	return g.AdvertisedHost, int32(proxyPort), true
}

func (vc *virtualCluster) warnUnmapped(node int32, why string) {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if !vc.warned[node] && len(vc.warned) < maxWarnedNodes {
		vc.warned[node] = true
		vc.log.Error("broker cannot be served: it is hidden from clients", "node", node, "reason", why)
	}
}

func (vc *virtualCluster) closeListeners() {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	vc.closed = true
	for _, ln := range vc.listeners {
		ln.Close()
	}
}

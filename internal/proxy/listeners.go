package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/kseal/kseal/internal/audit"
	"github.com/kseal/kseal/internal/filter"
)

// This file holds the client side of the plumbing: the bootstrap listener
// (start; MapBroker binds the broker ports, brokers.go), the accept loops,
// and the setup of each accepted connection (TLS handshake, SNI routing,
// the upstream dial) until conn.serve takes it over.

// start binds the bootstrap port and starts broker discovery (discover),
// which binds the broker ports as it learns the brokers.
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
		inflight: make(chan *exchange, vc.cfg.Limits.MaxInFlightPerConnection),
		draining: make(chan struct{}),
		dead:     make(chan struct{}),
	}
	if certNames != nil {
		c.identity.Store(filter.NewIdentity(certNames, "", ""))
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

func (vc *virtualCluster) closeListeners() {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	vc.closed = true
	for _, ln := range vc.listeners {
		ln.Close()
	}
}

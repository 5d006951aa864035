package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"
)

// This file holds the broker map: which upstream broker each node id stands
// for, the proxy port (or SNI host name) that stands for it, binding that
// port on first sight (MapBroker), and dialing the broker a client
// connection's port stands for.

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

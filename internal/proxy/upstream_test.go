package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/frame"
)

// logSink keeps what the proxy logs (and passes it to the test log).
type logSink struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	s.mu.Unlock()
	s.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *logSink) count(substr string) int { return strings.Count(s.String(), substr) }

// ownProxy is a proxy in front of one upstream address, with upstreamExtra
// (indented by 6 spaces) added to its upstream section.
type ownProxy struct {
	srv  *Server
	vc   *virtualCluster
	log  *logSink
	base int
}

func startOwnProxy(t *testing.T, upstream, upstreamExtra string) *ownProxy {
	t.Helper()
	base := freePortRange(t, 5)
	doc := fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream:
      bootstrapServers: [%q]
      dialTimeout: 3s
%s    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 4}
`, upstream, upstreamExtra, base, base+1)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{t: t}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo})), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &ownProxy{srv: srv, vc: srv.clusters[0], log: sink, base: base}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
	}
}

// listening reports whether the proxy's port for node accepts connections.
func (p *ownProxy) listening(node int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p.base+1+node), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// With upstream.sasl kseal logs in on its own connections and learns every
// broker before any client connects (their ports are bound, /readyz is
// ready); clients' own SASL still passes through to the broker.
func TestOwnSASLLoginDiscoversBrokers(t *testing.T) {
	pki := newPKI(t)
	_, _, brokerCert := pki.issue(t, "broker", "127.0.0.1")
	for _, tc := range []struct {
		name, mech string
		tls, env   bool
	}{
		{"PLAIN", config.SASLPlain, false, false},
		{"SCRAM-SHA-256", config.SASLScramSHA256, false, true},
		{"SCRAM-SHA-512", config.SASLScramSHA512, false, false},
		{"SCRAM-SHA-512 over TLS", config.SASLScramSHA512, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const ownPass = "kseal-own-secret"
			opts := []kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(2, "t1"), kfake.EnableSASL(),
				kfake.Superuser(tc.mech, "kseal", ownPass), kfake.Superuser(config.SASLScramSHA512, "alice", "alice-pw")}
			extra := ""
			if tc.tls {
				opts = append(opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{brokerCert}}))
				extra = fmt.Sprintf("      tls: {enabled: true, caFile: %q}\n", pki.caFile)
			}
			fake, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer fake.Close()
			if tc.env {
				t.Setenv("KSEAL_TEST_OWN_PW", ownPass)
				extra += fmt.Sprintf("      sasl: {mechanism: %s, username: kseal, passwordEnv: KSEAL_TEST_OWN_PW}\n", tc.mech)
			} else {
				extra += fmt.Sprintf("      sasl: {mechanism: %s, username: kseal, passwordFile: %q}\n", tc.mech, writeSecret(t, ownPass+"\n"))
			}
			p := startOwnProxy(t, fake.ListenAddrs()[0], extra)

			// No client has connected: only kseal's own login can have
			// taught it the brokers.
			// (Ports are bound while the discovery is still recording its
			// success: wait for both.)
			waitFor(t, 10*time.Second, "broker ports not bound", func() bool {
				return p.listening(0) && p.listening(1) && p.listening(2)
			})
			waitFor(t, 5*time.Second, "not ready before any client", func() bool { return p.srv.Ready() == nil })
			if n := p.log.count("cannot reach upstream"); n != 0 {
				t.Errorf("%d 'cannot reach upstream' warnings", n)
			}

			// kseal's gateway is plaintext; only the upstream side is TLS.
			auth := kgo.SASL(scram.Auth{User: "alice", Pass: "alice-pw"}.AsSha512Mechanism())
			if err := roundTrip(t, kgo.SeedBrokers(p.srv.BootstrapAddr("test")), auth); err != nil {
				t.Fatalf("client SCRAM round trip through kseal: %v", err)
			}
			if strings.Contains(p.log.String(), ownPass) {
				t.Error("the password reached the log")
			}
		})
	}
}

// Without upstream.sasl, a SASL-only cluster makes kseal log one hint (not
// a warning per refresh) and still counts as reachable for readiness;
// clients with their own SASL work and teach kseal the brokers.
func TestSASLRequiredHint(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(2, "t1"), kfake.EnableSASL(),
		kfake.Superuser(config.SASLScramSHA512, "alice", "alice-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	p := startOwnProxy(t, fake.ListenAddrs()[0], "")
	const hint = "the upstream cluster requires SASL and upstream.sasl is not set"
	waitFor(t, 10*time.Second, "no hint logged", func() bool { return p.log.count(hint) > 0 })
	if err := p.srv.Ready(); err != nil {
		t.Errorf("Ready() = %v, want ready: the cluster answered and asked for SASL", err)
	}
	for range 3 {
		err := p.vc.refreshMetadata(context.Background())
		var required *saslRequiredError
		if !errors.As(err, &required) {
			t.Fatalf("refresh = %v, want saslRequiredError", err)
		}
	}
	if n := p.log.count(hint); n != 1 {
		t.Errorf("hint logged %d times, want once", n)
	}
	if n := p.log.count("cannot reach upstream"); n != 0 {
		t.Errorf("%d 'cannot reach upstream' warnings", n)
	}
	if p.listening(0) {
		t.Error("a broker port is bound before any client Metadata")
	}
	auth := kgo.SASL(scram.Auth{User: "alice", Pass: "alice-pw"}.AsSha512Mechanism())
	if err := roundTrip(t, kgo.SeedBrokers(p.srv.BootstrapAddr("test")), auth); err != nil {
		t.Fatalf("client SCRAM round trip through kseal: %v", err)
	}
	if !p.listening(0) || !p.listening(1) {
		t.Error("broker ports not bound after clients' Metadata passed through")
	}
}

// scriptBroker is a scripted upstream: handle gets every request and returns
// the whole response frame to write, or nil to close the connection.
type scriptBroker struct {
	addr   string
	handle func(h frame.RequestHeader, body []byte) []byte
}

func startScriptBroker(t *testing.T, handle func(h frame.RequestHeader, body []byte) []byte) *scriptBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	b := &scriptBroker{addr: ln.Addr().String(), handle: handle}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					msg, err := frame.ReadRequest(c, nil, 1<<20)
					if err != nil {
						return
					}
					msg = msg[frame.SizeLen:]
					h, err := frame.ParseRequestHeader(msg)
					if err != nil || !h.Known() {
						return
					}
					out := b.handle(h, msg[h.Len:])
					if out == nil {
						return
					}
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}()
		}
	}()
	return b
}

// reply frames a response body for request h.
func reply(h frame.RequestHeader, body []byte) []byte {
	hv, _ := frame.ResponseHeaderVersion(h.APIKey, h.APIVersion)
	out, err := frame.AppendResponse(nil, h.CorrelationID, hv, body)
	if err != nil {
		panic(err)
	}
	return out
}

func handshakeReply(h frame.RequestHeader, code int16, mechs ...string) []byte {
	r := kmsg.NewPtrSASLHandshakeResponse()
	r.Version = h.APIVersion
	r.ErrorCode = code
	r.SupportedMechanisms = mechs
	return reply(h, r.AppendTo(nil))
}

func authReply(h frame.RequestHeader, code int16, msg string, auth []byte) []byte {
	r := kmsg.NewPtrSASLAuthenticateResponse()
	r.Version = h.APIVersion
	r.ErrorCode = code
	if msg != "" {
		r.ErrorMessage = &msg
	}
	r.SASLAuthBytes = auth
	return reply(h, r.AppendTo(nil))
}

// metadataReply names one broker, node 0, at addr.
func metadataReply(h frame.RequestHeader, addr string) []byte {
	host, port, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(port)
	r := kmsg.NewPtrMetadataResponse()
	r.Version = h.APIVersion
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = 0, host, int32(pn)
	r.Brokers = append(r.Brokers, b)
	r.ControllerID = 0
	return reply(h, r.AppendTo(nil))
}

// A refused login is one error line naming the mechanism and the broker's
// message (made printable), keeps the cluster unready with that reason even
// once a client connection reached the broker, and a fixed password file is
// picked up at the next login.
func TestOwnSASLLoginRefused(t *testing.T) {
	var (
		mu   sync.Mutex
		good = "right-password"
		addr string
	)
	const brokerMsg = "Authentication failed: Invalid username or password"
	b := startScriptBroker(t, func(h frame.RequestHeader, body []byte) []byte {
		switch kmsg.Key(h.APIKey) {
		case kmsg.SASLHandshake:
			return handshakeReply(h, 0, "PLAIN", "SCRAM-SHA-512")
		case kmsg.SASLAuthenticate:
			req := kmsg.NewPtrSASLAuthenticateRequest()
			req.Version = h.APIVersion
			if err := req.ReadFrom(body); err != nil { // test code decoding kseal's own request
				return nil
			}
			mu.Lock()
			ok := bytes.Equal(req.SASLAuthBytes, []byte("\x00kseal\x00"+good))
			mu.Unlock()
			if !ok {
				return authReply(h, kerr.SaslAuthenticationFailed.Code, brokerMsg+"\nlevel=ERROR msg=forged", nil)
			}
			return authReply(h, 0, "", nil)
		case kmsg.Metadata:
			return metadataReply(h, addr)
		}
		return nil
	})
	addr = b.addr
	pwFile := writeSecret(t, "wrong-password\n")
	p := startOwnProxy(t, b.addr, fmt.Sprintf("      sasl: {mechanism: PLAIN, username: kseal, passwordFile: %q}\n", pwFile))

	const logged = "upstream SASL login failed"
	waitFor(t, 10*time.Second, "no login error logged", func() bool { return p.log.count(logged) > 0 })
	for range 3 {
		var login *saslLoginError
		if err := p.vc.refreshMetadata(context.Background()); !errors.As(err, &login) {
			t.Fatalf("refresh = %v, want saslLoginError", err)
		}
	}
	logs := p.log.String()
	if n := strings.Count(logs, logged); n != 1 {
		t.Errorf("login error logged %d times, want once", n)
	}
	line := ""
	for l := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(l, logged) {
			line = l
		}
	}
	for _, want := range []string{"level=ERROR", "mechanism=PLAIN", "user=kseal", "SASL_AUTHENTICATION_FAILED: " + brokerMsg + "?level=ERROR msg=forged"} {
		if !strings.Contains(line, want) {
			t.Errorf("login error line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(logs, "\nlevel=ERROR msg=forged") {
		t.Error("the broker's message forged a log line")
	}
	if strings.Contains(logs, "wrong-password") {
		t.Error("the password reached the log")
	}

	// A client connection reaching the broker does not make kseal ready:
	// its own credentials are wrong.
	c := rawConn(t, p.srv.BootstrapAddr("test"))
	defer c.Close()
	waitFor(t, 5*time.Second, "client connection did not reach the broker", p.vc.reachedUpstream.Load)
	err := p.srv.Ready()
	wantReady := fmt.Sprintf("virtual cluster \"test\": upstream not reached yet with kseal's SASL credentials: SASL PLAIN login to %s failed: SASL_AUTHENTICATION_FAILED: %s", b.addr, brokerMsg)
	if err == nil || !strings.Contains(err.Error(), wantReady) {
		t.Errorf("Ready() = %v\nwant it to contain %q", err, wantReady)
	}

	// The password file is fixed: the next login works, no restart.
	if err := os.WriteFile(pwFile, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.vc.refreshMetadata(context.Background()); err != nil {
		t.Fatalf("refresh with the fixed password: %v", err)
	}
	if err := p.srv.Ready(); err != nil {
		t.Errorf("Ready() after a successful login = %v", err)
	}
	if !p.listening(0) {
		t.Error("broker port not bound after the login")
	}
	if p.log.count("upstream SASL login succeeded") != 1 {
		t.Error("recovery not logged")
	}
}

// scramServer answers a SCRAM login with a well-formed server-first message
// and then final, whatever the client proves.
func scramServer(final string) func(h frame.RequestHeader, body []byte) []byte {
	return func(h frame.RequestHeader, body []byte) []byte {
		if kmsg.Key(h.APIKey) == kmsg.SASLHandshake {
			return handshakeReply(h, 0, "SCRAM-SHA-512")
		}
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version = h.APIVersion
		if err := req.ReadFrom(body); err != nil {
			return nil
		}
		msg := string(req.SASLAuthBytes)
		if _, nonce, ok := strings.Cut(msg, ",r="); ok && strings.HasPrefix(msg, "n,,") { // client-first
			return authReply(h, 0, "", []byte("r="+nonce+"server,s=c2FsdA==,i=4096"))
		}
		return authReply(h, 0, "", []byte(final))
	}
}

// Handshake refusals name what to change; hostile or broken answers are
// refused at once, without the work they ask for.
func TestOwnSASLBrokerAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, mech string
		handle     func(h frame.RequestHeader, body []byte) []byte
		want       string
		login      bool // a saslLoginError, shown by Ready (else a network-level error)
	}{
		{"mechanism not enabled", config.SASLScramSHA256, func(h frame.RequestHeader, _ []byte) []byte {
			return handshakeReply(h, kerr.UnsupportedSaslMechanism.Code, "PLAIN", "SCRAM-SHA-512")
		}, "the broker's listener does not enable SCRAM-SHA-256 (it enables PLAIN, SCRAM-SHA-512)", true},
		{"not a SASL listener", config.SASLPlain, func(h frame.RequestHeader, _ []byte) []byte {
			return handshakeReply(h, kerr.IllegalSaslState.Code)
		}, "the broker's listener does not take SASL (ILLEGAL_SASL_STATE)", true},
		{"huge SCRAM iteration count", config.SASLScramSHA512, func(h frame.RequestHeader, _ []byte) []byte {
			if kmsg.Key(h.APIKey) == kmsg.SASLHandshake {
				return handshakeReply(h, 0, "SCRAM-SHA-512")
			}
			return authReply(h, 0, "", []byte("r=abc,s=c2FsdA==,i=2147483647"))
		}, "the broker asks for 2147483647 SCRAM iterations (kseal allows at most 65536)", true},
		{"wrong SCRAM server signature", config.SASLScramSHA512, scramServer("v=AAAA"),
			"server signature mismatch (the broker does not hold this password: a changed credential, or not the real broker)", true},
		{"SCRAM server error", config.SASLScramSHA512, scramServer("e=invalid-proof"), `server sent authentication error "invalid-proof"`, true},
		{"closed mid-login", config.SASLPlain, func(h frame.RequestHeader, _ []byte) []byte {
			if kmsg.Key(h.APIKey) == kmsg.SASLHandshake {
				return handshakeReply(h, 0, "PLAIN")
			}
			return nil // closes instead of answering
		}, "sasl authenticate with", false},
		{"1 GiB handshake response", config.SASLPlain, func(frame.RequestHeader, []byte) []byte {
			return []byte{0x40, 0, 0, 0, 0, 0, 0, 1}
		}, "frame size 1073741824 exceeds limit 65536", false},
		{"2^31-1 mechanisms", config.SASLPlain, func(h frame.RequestHeader, _ []byte) []byte {
			body := append(kbin.AppendInt16(nil, 0), kbin.AppendInt32(nil, 1<<31-1)...)
			return reply(h, body)
		}, "malformed kafka message", false},
		{"wrong correlation id", config.SASLPlain, func(h frame.RequestHeader, _ []byte) []byte {
			h.CorrelationID++
			return handshakeReply(h, 0, "PLAIN")
		}, "correlation id 2, want 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startScriptBroker(t, tc.handle)
			t.Setenv("KSEAL_TEST_OWN_PW", "pw")
			p := startOwnProxy(t, b.addr, fmt.Sprintf("      sasl: {mechanism: %s, username: kseal, passwordEnv: KSEAL_TEST_OWN_PW}\n", tc.mech))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			err := p.vc.refreshMetadata(ctx)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refresh = %v, want it to contain %q", err, tc.want)
			}
			if took > time.Second {
				t.Errorf("took %v", took)
			}
			var login *saslLoginError
			if errors.As(err, &login) != tc.login {
				t.Errorf("refresh = %T %v; login error: want %v", err, err, tc.login)
			}
			if rerr := p.srv.Ready(); rerr == nil || !strings.Contains(rerr.Error(), tc.want) {
				t.Errorf("Ready() = %v, want it to name %q", rerr, tc.want)
			}
			if tc.login && p.log.count("upstream SASL login failed") != 1 {
				t.Errorf("login error not logged once")
			}
			if strings.Contains(p.log.String(), "!= exp") {
				t.Error("the SCRAM signature kseal expected (derived from the password) reached the log")
			}
		})
	}
}

// A broker that never answers costs kseal's refresh its deadline, no more.
func TestOwnSASLSilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	t.Setenv("KSEAL_TEST_OWN_PW", "pw")
	p := startOwnProxy(t, ln.Addr().String(), "      sasl: {mechanism: PLAIN, username: kseal, passwordEnv: KSEAL_TEST_OWN_PW}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.vc.refreshMetadata(ctx)
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("refresh = %v after %v", err, took)
	}
	// Shutdown interrupts the discovery loop waiting on the silent broker
	// (its timeout is 3s).
	mu.Lock()
	n := len(held)
	mu.Unlock()
	waitFor(t, 5*time.Second, "discovery is not waiting on the broker", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(held) > n
	})
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	start = time.Now()
	if err := p.srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Shutdown took %v", took)
	}
}

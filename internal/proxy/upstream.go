package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/frame"
)

// This file is kseal's own connections to the upstream cluster (broker
// discovery, topic id lookups), as opposed to the ones it opens for
// clients: those carry the client's own SASL exchange through untouched.
// With upstream.sasl kseal logs in on its own connections with SaslHandshake
// v1 and SaslAuthenticate v2 before its Metadata request.
//
// The broker's answers are read like client bytes: frames of at most
// saslFrameMax bytes, decoded by codec's bounded readers (never kmsg's). The
// mechanism's server messages then go to franz-go's PLAIN and SCRAM client
// sessions, whose parsing is linear in the (bounded) message; their one
// unbounded cost, the SCRAM iteration count the server asks for, is capped
// here first (maxSCRAMIterations).

const (
	// saslFrameMax bounds a SaslHandshake or SaslAuthenticate response.
	saslFrameMax = 64 << 10
	// maxSASLSteps bounds the SaslAuthenticate round trips of one login
	// (PLAIN takes one, SCRAM two).
	maxSASLSteps = 8
	// maxSCRAMIterations caps the PBKDF2 work a broker can ask of kseal.
	// Kafka stores SCRAM credentials with 4096 to 16384 iterations.
	maxSCRAMIterations = 1 << 16
	// ownClientID is the client id of kseal's own requests.
	ownClientID = "kseal"
	// probeMechanism is named in the handshake that asks a broker which
	// mechanisms it enables (see probeSASL).
	probeMechanism = config.SASLPlain
)

// upstreamSASL logs kseal's own connections in.
type upstreamSASL struct {
	cfg config.SASL
}

// mechanism builds the client side of the exchange, reading the password
// now (a rotated password file is picked up at the next login).
func (s *upstreamSASL) mechanism() (sasl.Mechanism, error) {
	pass, err := s.cfg.Password()
	if err != nil {
		return nil, fmt.Errorf("upstream.sasl.%w", err)
	}
	switch s.cfg.Mechanism {
	case config.SASLPlain:
		return plain.Auth{User: s.cfg.Username, Pass: pass}.AsMechanism(), nil
	case config.SASLScramSHA256:
		return scram.Auth{User: s.cfg.Username, Pass: pass}.AsSha256Mechanism(), nil
	case config.SASLScramSHA512:
		return scram.Auth{User: s.cfg.Username, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("upstream.sasl.mechanism: %q is not supported", s.cfg.Mechanism)
}

// saslLoginError is a login of kseal's own that failed for another reason
// than the network: the broker refused the credentials or the mechanism,
// or kseal could not produce them. Retrying does not help until the
// configuration (or the broker's) changes.
type saslLoginError struct {
	mechanism string
	addr      string
	reason    string // the broker's error and message (made printable), or kseal's reason
}

func (e *saslLoginError) Error() string {
	return fmt.Sprintf("SASL %s login to %s failed: %s", e.mechanism, e.addr, e.reason)
}

// saslRequiredError is a broker that closed kseal's Metadata request
// unanswered and, asked, said its listener requires SASL: kseal has no
// upstream.sasl to log in with.
type saslRequiredError struct {
	addr       string
	mechanisms []string
}

func (e *saslRequiredError) Error() string {
	return fmt.Sprintf("%s requires SASL authentication (its listener enables %s) and upstream.sasl is not set",
		e.addr, e.mechanismList())
}

func (e *saslRequiredError) mechanismList() string {
	if len(e.mechanisms) == 0 {
		return probeMechanism + " at least"
	}
	return strings.Join(e.mechanisms, ", ")
}

// isSASLError reports whether err is an authentication outcome (a refused
// login, or a listener that requires one) rather than a network failure.
func isSASLError(err error) bool {
	var login *saslLoginError
	var required *saslRequiredError
	return errors.As(err, &login) || errors.As(err, &required)
}

// ownConn opens one of kseal's own connections to a broker: TCP, TLS when
// configured, then the SASL login when configured.
func (vc *virtualCluster) ownConn(ctx context.Context, addr string) (net.Conn, error) {
	c, err := vc.dialOwn(ctx, addr)
	if err != nil {
		return nil, err
	}
	if vc.sasl != nil {
		if err := vc.sasl.login(ctx, c, addr); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// dialOwn dials addr for one of kseal's own requests. The connection's
// deadline is ctx's (or the dial timeout from now), and ctx ending (kseal
// shutting down) interrupts any read or write on it.
func (vc *virtualCluster) dialOwn(ctx context.Context, addr string) (net.Conn, error) {
	c, err := vc.dialUpstream(ctx, addr)
	if err != nil {
		return nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(vc.cfg.Upstream.DialTimeout.Std())
	}
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	return &ownConnection{Conn: c, stop: stop}, nil
}

// ownConnection stops watching its context when closed.
type ownConnection struct {
	net.Conn
	stop func() bool
}

func (c *ownConnection) Close() error {
	c.stop()
	return c.Conn.Close()
}

// login runs the SASL exchange on c: SaslHandshake v1 naming the
// mechanism, then SaslAuthenticate v2 round trips until the mechanism is
// done.
func (s *upstreamSASL) login(ctx context.Context, c net.Conn, addr string) error {
	name := s.cfg.Mechanism
	fail := func(format string, args ...any) error {
		return &saslLoginError{mechanism: name, addr: addr, reason: fmt.Sprintf(format, args...)}
	}
	mech, err := s.mechanism()
	if err != nil {
		return fail("%v", err)
	}
	hs, err := saslHandshake(c, name)
	if err != nil {
		return fmt.Errorf("sasl handshake with %s: %w", addr, err)
	}
	switch hs.ErrorCode {
	case 0:
	case kerr.UnsupportedSaslMechanism.Code:
		return fail("the broker's listener does not enable %s (it enables %s)", name, printable(strings.Join(hs.Mechanisms, ", ")))
	case kerr.IllegalSaslState.Code:
		return fail("the broker's listener does not take SASL (ILLEGAL_SASL_STATE): point upstream.bootstrapServers at a SASL listener, or remove upstream.sasl")
	default:
		return fail("handshake refused: %s", errorName(hs.ErrorCode))
	}
	sess, msg, err := mech.Authenticate(ctx, addr)
	if err != nil {
		return fail("%s", printable(err.Error()))
	}
	scramMech := name != config.SASLPlain
	last := false
	for step := range maxSASLSteps {
		corr := int32(2 + step)
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version = codec.SaslAuthenticateMaxVersion
		req.SASLAuthBytes = msg
		body, err := ownRoundTrip(c, int16(kmsg.SASLAuthenticate), req.Version, corr, req, saslFrameMax)
		if err != nil {
			return fmt.Errorf("sasl authenticate with %s: %w", addr, err)
		}
		resp, err := codec.ReadSaslAuthenticateResponse(body, req.Version)
		if err != nil {
			return fmt.Errorf("sasl authenticate response from %s: %w", addr, err)
		}
		if resp.ErrorCode != 0 {
			reason := errorName(resp.ErrorCode)
			if m := printable(resp.ErrorMessage); m != "" {
				reason += ": " + m
			}
			return fail("%s", reason)
		}
		if last {
			return nil
		}
		if scramMech && step == 0 {
			if err := checkSCRAMServerFirst(resp.AuthBytes); err != nil {
				return fail("%v", err)
			}
		}
		done, next, err := sess.Challenge(resp.AuthBytes)
		if err != nil {
			return fail("%s", challengeError(err))
		}
		if done && len(next) == 0 {
			return nil
		}
		msg, last = next, done
	}
	return fail("no outcome after %d SaslAuthenticate round trips", maxSASLSteps)
}

// challengeError words a mechanism's refusal of a server message for the
// log. franz-go's SCRAM puts the server signature it expected into its
// mismatch error: derived from the password, it stays out of logs.
func challengeError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "; got "); i >= 0 {
		msg = msg[:i] + " (the broker does not hold this password: a changed credential, or not the real broker)"
	}
	return printable(msg)
}

// saslHandshake sends SaslHandshake v1 naming mechanism and reads the answer.
func saslHandshake(c net.Conn, mechanism string) (codec.SaslHandshakeResponse, error) {
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version = codec.SaslHandshakeMaxVersion
	req.Mechanism = mechanism
	body, err := ownRoundTrip(c, int16(kmsg.SASLHandshake), req.Version, 1, req, saslFrameMax)
	if err != nil {
		return codec.SaslHandshakeResponse{}, err
	}
	return codec.ReadSaslHandshakeResponse(body, req.Version)
}

// checkSCRAMServerFirst refuses a server-first message asking for more
// PBKDF2 iterations than maxSCRAMIterations (the SCRAM session checks the
// rest of it).
func checkSCRAMServerFirst(msg []byte) error {
	for attr := range strings.SplitSeq(string(msg), ",") {
		v, ok := strings.CutPrefix(attr, "i=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n > maxSCRAMIterations {
			return fmt.Errorf("the broker asks for %s SCRAM iterations (kseal allows at most %d)", printable(v), maxSCRAMIterations)
		}
		return nil
	}
	return nil
}

// probeSASL asks a broker that closed kseal's Metadata request unanswered
// whether its listener requires SASL: a SASL listener answers a
// SaslHandshake with the mechanisms it enables, any other listener with
// ILLEGAL_SASL_STATE (or not at all). It returns nil when that is not what
// the broker says.
func (vc *virtualCluster) probeSASL(ctx context.Context, addr string) *saslRequiredError {
	c, err := vc.dialOwn(ctx, addr)
	if err != nil {
		return nil
	}
	defer c.Close()
	hs, err := saslHandshake(c, probeMechanism)
	switch {
	case err != nil:
		return nil
	case hs.ErrorCode == 0: // a SASL listener that enables PLAIN
	case hs.ErrorCode == kerr.UnsupportedSaslMechanism.Code && len(hs.Mechanisms) > 0:
	default: // ILLEGAL_SASL_STATE: not a SASL listener
		return nil
	}
	mechs := make([]string, len(hs.Mechanisms))
	for i, m := range hs.Mechanisms {
		mechs[i] = printable(m)
	}
	return &saslRequiredError{addr: addr, mechanisms: mechs}
}

// closedByPeer reports whether err says the broker closed the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ownRoundTrip writes one request on c and reads its response, returning the
// response body. The response frame may be at most maxFrame bytes and must
// carry corr.
func ownRoundTrip(c net.Conn, key, version int16, corr int32, req kmsg.Request, maxFrame int) ([]byte, error) {
	hv, ok := frame.RequestHeaderVersion(key, version)
	if !ok {
		return nil, fmt.Errorf("api %d v%d: %w", key, version, frame.ErrUnknownHeader)
	}
	msg, start := frame.StartFrame(nil)
	msg = appendRequestHeader(msg, key, version, corr, ownClientID, hv >= 2)
	msg = req.AppendTo(msg)
	if err := frame.FinishFrame(msg, start); err != nil {
		return nil, err
	}
	if _, err := c.Write(msg); err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	resp, err := frame.ReadResponse(c, nil, maxFrame)
	if err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	resp = resp[frame.SizeLen:]
	h, err := frame.ParseResponseHeader(resp, key, version)
	if err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if h.CorrelationID != corr {
		return nil, fmt.Errorf("response: correlation id %d, want %d", h.CorrelationID, corr)
	}
	return resp[h.Len:], nil
}

// appendRequestHeader appends a request header: v2 (with an empty
// tagged-field section) for flexible requests, v1 otherwise.
func appendRequestHeader(dst []byte, key, version int16, corr int32, clientID string, flexible bool) []byte {
	dst = append(dst, byte(key>>8), byte(key), byte(version>>8), byte(version))
	dst = append(dst, byte(corr>>24), byte(corr>>16), byte(corr>>8), byte(corr))
	dst = append(dst, byte(len(clientID)>>8), byte(len(clientID)))
	dst = append(dst, clientID...)
	if flexible {
		dst = append(dst, 0) // no tagged fields
	}
	return dst
}

// errorName is a Kafka error code's name, e.g. SASL_AUTHENTICATION_FAILED.
func errorName(code int16) string {
	if e := kerr.TypedErrorForCode(code); e != nil && e.Code == code {
		return e.Message
	}
	return "error code " + strconv.Itoa(int(code))
}

// printable keeps at most 300 bytes of printable ASCII of a broker's words
// (others become '?'), so they cannot forge log lines.
func printable(s string) string {
	const max = 300
	b := []byte(s)
	if len(b) > max {
		b = append(b[:max], "..."...)
	}
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}

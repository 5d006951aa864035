package kmip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmip/ttlv"
)

// client sends KMIP requests over a bounded pool of mutual-TLS connections,
// one request at a time per connection.
type client struct {
	addr    string
	tls     *tls.Config
	timeout time.Duration
	major   int32
	minor   int32
	maxResp int
	limits  ttlv.Limits

	slots chan struct{} // one token per connection that may be open
	idle  chan *conn    // connections waiting for the next request
	dial  func(ctx context.Context) (net.Conn, error)

	// The pool's counters (kms.ConnStats).
	inUse                            atomic.Int64
	dials, dialErrors, broken, waits atomic.Uint64
}

type conn struct {
	nc  net.Conn
	hdr [ttlv.HeaderSize]byte
}

func newClient(addr string, tc *tls.Config, timeout time.Duration, major, minor int32, maxConns, maxResp int) *client {
	c := &client{
		addr: addr, tls: tc, timeout: timeout, major: major, minor: minor, maxResp: maxResp,
		limits: ttlv.DefaultLimits,
		slots:  make(chan struct{}, maxConns),
		idle:   make(chan *conn, maxConns),
	}
	c.dial = func(ctx context.Context) (net.Conn, error) {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: c.tls}
		return d.DialContext(ctx, "tcp", c.addr)
	}
	return c
}

// ServerError is a KMIP response whose Result Status is not Success.
type ServerError struct {
	Operation int
	Reason    int64
	Message   string
}

// Is makes Permission Denied and Authentication Not Successful match
// kms.ErrAccessDenied.
func (e *ServerError) Is(target error) bool {
	return target == kms.ErrAccessDenied && (e.Reason == reasonPermissionDenied || e.Reason == reasonAuthentication)
}

func (e *ServerError) Error() string {
	msg := e.Message
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return fmt.Sprintf("kmip kms: %s failed: %s: %q", opName(e.Operation), reasonName(e.Reason), msg)
}

func opName(op int) string {
	switch op {
	case opCreate:
		return "Create"
	case opLocate:
		return "Locate"
	case opGetAttributes:
		return "Get Attributes"
	case opActivate:
		return "Activate"
	case opRevoke:
		return "Revoke"
	case opDestroy:
		return "Destroy"
	case opEncrypt:
		return "Encrypt"
	case opDecrypt:
		return "Decrypt"
	}
	return fmt.Sprintf("operation 0x%x", op)
}

// stats reads the pool's counters.
func (c *client) stats() kms.ConnStats {
	// DialErrors before Dials: every failure counted has its dial counted,
	// so Dials-DialErrors (the successful ones) never underflows.
	dialErrors := c.dialErrors.Load()
	return kms.ConnStats{
		InUse: int(c.inUse.Load()), Idle: len(c.idle),
		Dials: c.dials.Load(), DialErrors: dialErrors,
		Broken: c.broken.Load(), Waits: c.waits.Load(),
	}
}

// close closes every idle connection. Requests in flight close theirs when
// they find the pool full.
func (c *client) close() {
	for {
		select {
		case cn := <-c.idle:
			cn.nc.Close()
			<-c.slots
		default:
			return
		}
	}
}

// get returns an idle connection, or a new one when fewer than the maximum
// are open, waiting for one otherwise. reused tells which.
func (c *client) get(ctx context.Context) (cn *conn, reused bool, err error) {
	select {
	case cn := <-c.idle:
		c.inUse.Add(1)
		return cn, true, nil
	default:
	}
	select {
	case c.slots <- struct{}{}:
	default:
		// Every connection is busy: wait for one to come back or close.
		c.waits.Add(1)
		select {
		case cn := <-c.idle:
			c.inUse.Add(1)
			return cn, true, nil
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, false, fmt.Errorf("%w: kmip: waiting for a connection: %v", kms.ErrUnavailable, ctx.Err())
		}
	}
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.dials.Add(1)
	nc, err := c.dial(dctx)
	if err != nil {
		c.dialErrors.Add(1)
		<-c.slots
		return nil, false, fmt.Errorf("%w: kmip: connecting to %s: %v", kms.ErrUnavailable, c.addr, err)
	}
	c.inUse.Add(1)
	return &conn{nc: nc}, false, nil
}

// put returns a connection after a successful exchange.
func (c *client) put(cn *conn) {
	c.inUse.Add(-1)
	select {
	case c.idle <- cn:
	default:
		cn.nc.Close()
		<-c.slots
	}
}

// discard closes a connection after a failed exchange.
func (c *client) discard(cn *conn) {
	c.inUse.Add(-1)
	c.broken.Add(1)
	cn.nc.Close()
	<-c.slots
}

// do sends one operation and returns the response payload (nil when the
// response has none). A connection taken from the pool that fails before
// a response arrives is replaced by a new one once: the server may have
// closed it while idle.
func (c *client) do(ctx context.Context, op int, payload ttlv.Item) (*ttlv.Item, error) {
	payload.Tag = tagRequestPayload
	req := ttlv.Encode(ttlv.Struct(tagRequestMessage,
		ttlv.Struct(tagRequestHeader,
			ttlv.Struct(tagProtocolVersion, ttlv.Int(tagProtocolVersionMajor, c.major), ttlv.Int(tagProtocolVersionMinor, c.minor)),
			ttlv.Int(tagMaximumResponseSize, int32(c.maxResp)),
			ttlv.Int(tagBatchCount, 1)),
		ttlv.Struct(tagBatchItem, ttlv.Enum(tagOperation, uint32(op)), payload)))
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(ctx, cn, req)
		if err != nil {
			c.discard(cn)
			if reused && attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, fmt.Errorf("%w: kmip %s: %v", kms.ErrUnavailable, opName(op), err)
		}
		c.put(cn)
		return parseResponse(op, resp, c.limits)
	}
}

// roundTrip writes req and reads one response message, bounded in time by
// the timeout and ctx, and in size by maxResp.
func (c *client) roundTrip(ctx context.Context, cn *conn, req []byte) ([]byte, error) {
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := cn.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := cn.nc.Write(req); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(cn.nc, cn.hdr[:]); err != nil {
		return nil, err
	}
	n, err := ttlv.MessageLen(cn.hdr[:])
	if err != nil {
		return nil, err
	}
	if n > c.maxResp {
		return nil, fmt.Errorf("response of %d bytes is larger than maxResponseBytes %d", n, c.maxResp)
	}
	buf := make([]byte, n)
	copy(buf, cn.hdr[:])
	if _, err := io.ReadFull(cn.nc, buf[ttlv.HeaderSize:]); err != nil {
		return nil, err
	}
	return buf, nil
}

var errBadResponse = errors.New("kmip kms: malformed response")

// parseResponse checks a one-item response and returns its payload.
func parseResponse(op int, b []byte, lim ttlv.Limits) (*ttlv.Item, error) {
	msg, err := ttlv.Decode(b, lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadResponse, err)
	}
	if msg.Tag != tagResponseMessage {
		return nil, fmt.Errorf("%w: not a Response Message (tag 0x%06x)", errBadResponse, uint32(msg.Tag))
	}
	bi := msg.Find(tagBatchItem)
	if bi == nil || bi.Type != ttlv.Structure {
		return nil, fmt.Errorf("%w: no Batch Item", errBadResponse)
	}
	if o := bi.Find(tagOperation); o != nil && o.Int != int64(op) {
		return nil, fmt.Errorf("%w: answers %s, asked %s", errBadResponse, opName(int(o.Int)), opName(op))
	}
	st := bi.Find(tagResultStatus)
	if st == nil || st.Type != ttlv.Enumeration {
		return nil, fmt.Errorf("%w: no Result Status", errBadResponse)
	}
	if st.Int != statusSuccess {
		se := &ServerError{Operation: op}
		if r := bi.Find(tagResultReason); r != nil && r.Type == ttlv.Enumeration {
			se.Reason = r.Int
		}
		if m := bi.Find(tagResultMessage); m != nil && m.Type == ttlv.TextString {
			se.Message = m.Text()
		}
		return nil, classify(se)
	}
	p := bi.Find(tagResponsePayload)
	if p != nil && p.Type != ttlv.Structure {
		return nil, fmt.Errorf("%w: payload is a %v", errBadResponse, p.Type)
	}
	return p, nil
}

// classify wraps a server error in the kms error it means: Item Not Found
// is kms.ErrKeyNotFound, General Failure (the KMIP 500) kms.ErrUnavailable;
// the rest are plain errors that retrying cannot fix (callers that know
// better, such as a refused Encrypt on a key that is no longer Active,
// reclassify them).
func classify(se *ServerError) error {
	switch se.Reason {
	case reasonItemNotFound:
		return fmt.Errorf("%w: %w", kms.ErrKeyNotFound, se)
	case reasonGeneralFailure:
		return fmt.Errorf("%w: %w", kms.ErrUnavailable, se)
	}
	return se
}

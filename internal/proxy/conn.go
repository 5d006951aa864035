package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/frame"
)

// Buffers larger than this are dropped after use instead of being kept for
// the connection's next frame, so one huge fetch does not pin memory.
const maxRetainedBuffer = filter.MaxKept

// conn is one client connection and its upstream connection. Requests are
// read, filtered and forwarded by one goroutine; responses are read,
// filtered and written back by another, in request order. The in-flight
// queue between them is bounded: when it is full the request side stops
// reading, so a client (or a slow consumer) pushes back through TCP instead
// of growing the proxy's memory.
type conn struct {
	vc       *virtualCluster
	client   net.Conn
	upstream net.Conn
	log      *slog.Logger

	inflight chan *exchange
	dead     chan struct{} // closed when both sockets are closed
	closeOne sync.Once
	draining chan struct{}

	// Request side reader, whose buffer holds the requests read (owned by
	// the request goroutine).
	reqs *frame.Reader
	// Response side buffers and state (owned by the response goroutine).
	respBuf     []byte
	fetchStream codec.FetchStream
	// Filter scratch buffers and state, per side (filter.Side).
	reqSide, respSide filter.Side

	// For limits.idleTimeout: when a request was last read or a response
	// last written (unix nanoseconds), and how many requests await their
	// response.
	lastActive atomic.Int64
	pending    atomic.Int32
	idleTimer  *time.Timer

	// identity is who the client is, as far as kseal knows (identity.go):
	// set from the TLS handshake, replaced by the response side when a
	// SASL login succeeds, read by filters on both sides.
	identity atomic.Pointer[filter.Identity]
}

// errDraining ends the request side at shutdown without a log line: like
// a closed socket (isClosed), it is a normal way for a connection to end.
var errDraining = errors.New("draining")

func (c *conn) serve(ctx context.Context) {
	defer c.vc.srv.metrics.connClosed(c.vc.name)
	c.lastActive.Store(time.Now().UnixNano())
	c.idleTimer = time.AfterFunc(time.Duration(math.MaxInt64), c.checkIdle)
	c.idleTimer.Reset(c.vc.cfg.Limits.IdleTimeout.Std())
	defer c.idleTimer.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := c.vc.guard(sideResponse, c.log, func() error { return c.responses(ctx) })
		c.finish("response side", err)
	}()
	err := c.vc.guard(sideRequest, c.log, func() error { return c.requests(ctx) })
	if !errors.Is(err, errDraining) {
		c.finish("request side", err)
	}
	// The request side is the only sender: closing lets the response side
	// deliver what is in flight (or fail fast on closed sockets) and return.
	close(c.inflight)
	<-done
	c.close()
}

// checkIdle closes the connection when it has been idle for
// limits.idleTimeout with nothing in flight, and otherwise looks again
// when that could next be the case.
func (c *conn) checkIdle() {
	select {
	case <-c.dead:
		return
	default:
	}
	idle := c.vc.cfg.Limits.IdleTimeout.Std()
	if c.pending.Load() > 0 {
		c.idleTimer.Reset(idle)
		return
	}
	since := time.Since(time.Unix(0, c.lastActive.Load()))
	if since < idle {
		c.idleTimer.Reset(idle - since)
		return
	}
	c.closeOne.Do(func() {
		c.vc.srv.metrics.idleClosed.WithLabelValues(c.vc.name).Inc()
		c.log.Debug("closing idle client connection", "idleFor", since.Round(time.Millisecond).String())
		c.closeSockets()
	})
}

// finish logs why the connection ended (once) and closes both sides.
func (c *conn) finish(side string, err error) {
	first := false
	c.closeOne.Do(func() {
		first = true
		c.closeSockets()
	})
	if !first || err == nil || isClosed(err) || errors.Is(err, errPanicked) {
		return
	}
	c.log.Warn("closing client connection", "side", side, "error", err.Error(), "identity", c.identityLog())
}

func (c *conn) close() {
	c.closeOne.Do(c.closeSockets)
}

func (c *conn) closeSockets() {
	c.client.Close()
	c.upstream.Close()
	close(c.dead)
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// requestReadBuffer is the request reader's buffer between frames: one
// read system call takes up to this much (more once bigger requests come,
// up to maxRetainedBuffer, which is kept).
const requestReadBuffer = 32 << 10

func (c *conn) requests(ctx context.Context) error {
	c.reqs = frame.NewReader(socketIO(c.client), requestReadBuffer, maxRetainedBuffer, frame.MinRequestSize, c.vc.cfg.Limits.MaxFrameBytes)
	w := socketIO(c.upstream)
	var sizeBuf [4]byte
	for {
		body, err := c.reqs.Next()
		if err != nil {
			select {
			case <-c.draining:
				return errDraining
			default:
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read request: %w", err)
		}
		start := time.Now()
		c.lastActive.Store(start.UnixNano())
		h, err := frame.ParseRequestHeader(body)
		if err != nil {
			return fmt.Errorf("request header: %w", err)
		}
		maxVersion, known := frame.MaxVersion(h.APIKey)
		if !known || refusedAPIs[h.APIKey] {
			// Never advertised by ApiVersions, so no conforming client
			// sends it; forwarding unknown bytes helps nobody.
			return fmt.Errorf("request with API key %d (%s), which kseal does not advertise (correlation id %d)", h.APIKey, apiName(h.APIKey), h.CorrelationID)
		}
		if (h.APIVersion < 0 || h.APIVersion > maxVersion) && h.APIKey != int16(kmsg.ApiVersions) {
			// A version past kseal's tables (ApiVersions excepted: clients
			// probe with their newest, and get UNSUPPORTED_VERSION back). It
			// was never advertised, and no filter could read it.
			return fmt.Errorf("%s request v%d, a version kseal does not advertise (correlation id %d)", apiName(h.APIKey), h.APIVersion, h.CorrelationID)
		}
		x := &exchange{
			Exchange: filter.Exchange{
				APIKey:        h.APIKey,
				APIVersion:    h.APIVersion,
				CorrelationID: h.CorrelationID,
				HeaderLen:     h.Len,
				Request:       body,
			},
			started: start,
		}
		c.reqSide.Bind(&x.Exchange, c)
		for _, f := range c.vc.reqFilters[h.APIKey] {
			if err := f.OnRequest(ctx, &x.Exchange); err != nil {
				return fmt.Errorf("%s v%d request (correlation id %d): %w", apiName(h.APIKey), h.APIVersion, h.CorrelationID, err)
			}
			if x.Local {
				break
			}
		}
		if h.APIKey == int16(kmsg.Produce) && !x.Local {
			// acks=0: the broker never answers, so no response is waited
			// for (and mismatched). Read from the filters' parse if one
			// parsed the request, else from the fields before acks.
			acks, err := x.Acks()
			if err != nil {
				return fmt.Errorf("%s v%d request (correlation id %d): %w", apiName(h.APIKey), h.APIVersion, h.CorrelationID, err)
			}
			x.NoResponse = acks == 0
		}
		x.added = time.Since(start)
		c.vc.api.request(h.APIKey, len(body))
		if x.Local {
			// A local answer was built in a request-side scratch buffer that
			// the next request reuses: the queued copy must be its own.
			x.Response = append([]byte(nil), x.Response...)
		}
		local, req := x.Local, x.Request
		if !x.NoResponse || x.Local {
			c.pending.Add(1)
			// Blocks when the queue is full: backpressure on the client.
			select {
			case c.inflight <- x:
			case <-c.dead:
				return net.ErrClosed
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// x belongs to the response side once queued: only the copies above
		// are used from here on.
		if !local {
			if err := writeFrame(w, &sizeBuf, req); err != nil {
				return fmt.Errorf("write upstream: %w", err)
			}
		}
		c.reqSide.Keep(req, c.reqs.Storage())
		c.reqSide.Done()
	}
}

func (c *conn) responses(ctx context.Context) error {
	up := socketIO(c.upstream)
	r := bufio.NewReaderSize(up, 64<<10)
	w := socketIO(c.client)
	// Streamed responses go through bw, flushed at the end of each frame, so
	// it is empty whenever the buffered path writes to w directly.
	bw := newStreamWriter(w, up, 64<<10, c.vc.srv.metrics.spliced.WithLabelValues(c.vc.name))
	defer bw.Close()
	c.fetchStream.Mapper = c.vc
	c.respSide.Addresses = c.vc
	var sizeBuf [4]byte
	for x := range c.inflight {
		var read time.Time
		if x.Local {
			read = time.Now() // a local answer's own time starts when it is dequeued
		}
		if mode := c.vc.responseMode(x.APIKey); mode != buffered && !x.Local {
			size, ok, err := c.stream(r, bw, x, mode)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("broker closed the connection with %d request(s) in flight", len(c.inflight)+1)
				}
				return err
			}
			if ok {
				now := time.Now()
				c.answered(now)
				// Forwarding overlaps the broker's sending: only the
				// request side's time is kseal's own.
				c.vc.api.response(x.APIKey, size, now.Sub(x.started), x.added)
				continue
			}
		}
		if !x.Local {
			body, err := c.readFrame(r, &c.respBuf, frame.MinResponseSize)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("broker closed the connection with %d request(s) in flight", len(c.inflight)+1)
				}
				return fmt.Errorf("read response: %w", err)
			}
			read = time.Now()
			if len(body) < 4 {
				return fmt.Errorf("response frame of %d bytes has no correlation id", len(body))
			}
			if got := int32(binary.BigEndian.Uint32(body)); got != x.CorrelationID {
				return fmt.Errorf("broker answered correlation id %d, expected %d (%s)", got, x.CorrelationID, apiName(x.APIKey))
			}
			x.Response = body
			c.respSide.Bind(&x.Exchange, c)
			filters := c.vc.respFilters[x.APIKey]
			addresses := carriesAddresses(x.APIKey)
			if len(filters) > 0 || addresses {
				rh, err := frame.ParseResponseHeader(body, x.APIKey, x.APIVersion)
				if err != nil {
					return fmt.Errorf("%s v%d response: %w", apiName(x.APIKey), x.APIVersion, err)
				}
				x.RespHeaderLen = rh.Len
			}
			for _, f := range filters {
				if err := f.OnResponse(ctx, &x.Exchange); err != nil {
					return fmt.Errorf("%s v%d response (correlation id %d): %w", apiName(x.APIKey), x.APIVersion, x.CorrelationID, err)
				}
			}
			if addresses {
				// After the filters, in the one walk of the response.
				if err := c.rewriteAddresses(&x.Exchange); err != nil {
					return fmt.Errorf("%s v%d response (correlation id %d): %w", apiName(x.APIKey), x.APIVersion, x.CorrelationID, err)
				}
			}
		}
		if err := writeFrame(w, &sizeBuf, x.Response); err != nil {
			return fmt.Errorf("write to client: %w", err)
		}
		now := time.Now()
		c.answered(now)
		c.vc.api.response(x.APIKey, len(x.Response), now.Sub(x.started), x.added+now.Sub(read))
		c.respSide.Keep(x.Response, c.respBuf)
		c.respSide.Done()
		x.Response = nil
	}
	return nil
}

// answered notes a response written to the client (for the idle timeout).
func (c *conn) answered(now time.Time) {
	c.lastActive.Store(now.UnixNano())
	c.pending.Add(-1)
}

// readFrame reads one size-prefixed frame into *buf (growing it as needed,
// bounded by the virtual cluster's maximum frame size) and returns the
// message after the size prefix.
func (c *conn) readFrame(r *bufio.Reader, buf *[]byte, minSize int) ([]byte, error) {
	b, err := frame.ReadFrame(r, *buf, minSize, c.vc.cfg.Limits.MaxFrameBytes)
	if cap(b) <= maxRetainedBuffer {
		*buf = b[:0]
	}
	if err != nil {
		return nil, err
	}
	return b[frame.SizeLen:], nil
}

// drain stops reading new requests; what is in flight is still answered.
func (c *conn) drain() {
	select {
	case <-c.draining:
	default:
		close(c.draining)
		c.client.SetReadDeadline(time.Now())
	}
}

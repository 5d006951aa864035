// Package filter is kseal's filter API: the Exchange a filter sees (one
// request and its response on a client connection), the Filter interface,
// the Conn an exchange reaches its connection through (topic ids, the
// client's identity, kseal's own upstream client), the per-side buffers and
// state a connection keeps for its exchanges (Side), and Standalone, which
// runs filters outside the proxy (in their own tests). An exchange parses
// the messages filters edit once, for every filter and the plumbing: a
// Produce request (ProduceRequest) and a Fetch or ShareFetch response
// (Partitions, scanned with the broker endpoints mapped in the same walk
// and spliced once after the last filter, FinishResponse). Filters never
// see or rewrite broker addresses. The proxy plumbing (internal/proxy)
// implements Conn and runs the filters; filters (internal/encrypt) import
// this package, not the plumbing.
package filter

import (
	"context"
	"fmt"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/frame"
)

// An Exchange is one request and its response on a client connection, as
// the filter chain sees it. Frames are Kafka frames without the 4-byte size
// prefix: header then body.
type Exchange struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	// HeaderLen is the length of the request header within Request.
	HeaderLen int

	// Request is the request frame to forward. A request filter may replace
	// it (writing into Scratch) or answer locally (Answer).
	Request []byte
	// Response is the response frame for the client. For a locally answered
	// request a request filter sets it (Answer); for a forwarded one the
	// plumbing sets it when the broker answers, before the response filters
	// run.
	Response []byte
	// Local is set by a request filter that answered with Response; the
	// request is then not forwarded.
	Local bool
	// NoResponse marks a request the broker will not answer (Produce with
	// acks=0, which the plumbing reads after the request filters, see
	// Acks); the plumbing then expects no response frame.
	NoResponse bool
	// RespHeaderLen is the length of the response header within Response.
	RespHeaderLen int

	// State carries what a filter learned from the request to its response
	// side (e.g. which partitions were rejected locally).
	State any

	conn Conn  // set by Side.Bind
	side *Side // the side running the exchange's filters now
	turn int   // the scratch buffer Scratch gave last

	// The Produce request as parsed (ProduceRequest) and the response as
	// scanned (Partitions), in the storage of the side that did it.
	produceParsed bool
	produceBody   []byte // the request body parsed
	produce       *codec.ProduceRequest
	produceErr    error
	scanned       bool
	scanBody      []byte // the response body scanned
	scan          *Partitions
	scanErr       error
}

// Filter transforms the messages of the API keys it registers for. Filters
// are shared by all connections and must be safe for concurrent use; per
// exchange state goes in Exchange.State.
type Filter interface {
	// APIKeys lists the API keys the filter wants to see.
	APIKeys() []int16
	// OnRequest runs before the request is forwarded.
	OnRequest(ctx context.Context, x *Exchange) error
	// OnResponse runs before the response is written to the client.
	OnResponse(ctx context.Context, x *Exchange) error
}

// ResponseKeyer is implemented by a filter that sees the responses of
// fewer API keys than it registers for (APIKeys), say one that only checks
// Fetch requests. The plumbing reads a response whole, not streamed, when a
// filter sees it: a filter that does not need a response should say so.
// Without it a filter sees the responses of every key in APIKeys.
type ResponseKeyer interface {
	// ResponseAPIKeys lists the API keys whose responses the filter sees.
	ResponseAPIKeys() []int16
}

// ResponseKeys returns the API keys whose responses f sees: its
// ResponseAPIKeys if it has them, else its APIKeys.
func ResponseKeys(f Filter) []int16 {
	if r, ok := f.(ResponseKeyer); ok {
		return r.ResponseAPIKeys()
	}
	return f.APIKeys()
}

// NopFilter can be embedded to implement only one side.
type NopFilter struct{}

// OnRequest does nothing.
func (NopFilter) OnRequest(context.Context, *Exchange) error { return nil }

// OnResponse does nothing.
func (NopFilter) OnResponse(context.Context, *Exchange) error { return nil }

// Conn returns the connection the exchange runs on (nil for an exchange
// no Side bound).
func (x *Exchange) Conn() Conn { return x.conn }

// Scratch returns an empty buffer owned by the connection that does not
// alias the current request or response, for a filter to build a new frame
// in. The buffer is reused: it is valid until the next call of Scratch on
// this exchange.
func (x *Exchange) Scratch() []byte {
	for i := 0; i < 2; i++ {
		x.turn ^= 1
		b := x.side.scratch[x.turn]
		if !aliases(b, x.Request) && !aliases(b, x.Response) {
			return b[:0]
		}
	}
	return nil
}

// Lend tells the exchange's side that b, a buffer of the filter's own
// (not Scratch) that it builds x.Request or x.Response in, goes back to the
// filter: once the plumbing is done with the message (it wrote it, Side.
// Keep), release is called with it instead of the side keeping it as
// scratch. A filter pools large buffers so; the side never keeps a buffer
// over MaxKept. If the message is replaced by another buffer, or the
// connection ends first, release is not called and b is left to the
// garbage collector. One buffer per side at a time: a later Lend replaces
// an earlier one.
func (x *Exchange) Lend(b []byte, release func([]byte)) {
	x.side.lent, x.side.release = b, release
}

// RewriteResponse runs fn over the response body with a scratch buffer
// that already holds the response header; if fn reports a change, its
// output becomes the response.
func (x *Exchange) RewriteResponse(fn func(dst, body []byte) ([]byte, bool, error)) error {
	out := append(x.Scratch(), x.Response[:x.RespHeaderLen]...)
	out, changed, err := fn(out, x.Response[x.RespHeaderLen:])
	if err != nil {
		return err
	}
	if changed {
		x.Response = out
	}
	return nil
}

// Answer answers the request locally, for a request filter: it builds the
// response frame in a scratch buffer (the correlation id, the response
// header version of the exchange's API key and version, then what body
// appends to its argument), and sets Response, RespHeaderLen and Local. The
// request is then not forwarded, and later request filters do not run.
func (x *Exchange) Answer(body func(dst []byte) []byte) error {
	hv, ok := frame.ResponseHeaderVersion(x.APIKey, x.APIVersion)
	if !ok {
		return fmt.Errorf("no response header version for API key %d v%d", x.APIKey, x.APIVersion)
	}
	msg, start := frame.StartResponse(x.Scratch(), x.CorrelationID, hv)
	header := len(msg) - start - frame.SizeLen
	msg = body(msg)
	if err := frame.FinishFrame(msg, start); err != nil {
		return err
	}
	x.Response = msg[start+frame.SizeLen:]
	x.RespHeaderLen = header
	x.Local = true
	return nil
}

// ConnState returns the connection's value for key on this exchange's side
// (request or response), creating it with mk on first use. Filters keep
// reusable, non-thread-safe helpers there (walkers, buffers).
func (x *Exchange) ConnState(key any, mk func() any) any {
	s := x.side
	if v, ok := s.state[key]; ok {
		return v
	}
	if s.state == nil {
		s.state = map[any]any{}
	}
	v := mk()
	s.state[key] = v
	return v
}

// TopicName returns the name of a topic id (Conn.TopicName); false when
// the connection cannot tell.
func (x *Exchange) TopicName(ctx context.Context, id [16]byte) (string, bool) {
	if x.conn == nil {
		return "", false
	}
	return x.conn.TopicName(ctx, id)
}

// Identity returns what kseal knows of the client on this exchange's
// connection: never nil (an identity without names when nothing is known).
func (x *Exchange) Identity() *Identity {
	if x.conn != nil {
		if id := x.conn.ClientIdentity(); id != nil {
			return id
		}
	}
	return noIdentity
}

// Upstream returns kseal's own client of this exchange's upstream cluster.
// It is never nil: outside the proxy (an exchange of a Standalone) its
// methods fail with ErrNoUpstream.
func (x *Exchange) Upstream() Upstream {
	if x.conn == nil {
		return noUpstream{}
	}
	return x.conn.Upstream()
}

// NewestBatches reads the newest record batches of every partition of
// topic from the upstream cluster and hands them to visit
// (Conn.NewestBatches); without a connection it fails with ErrNoUpstream.
func (x *Exchange) NewestBatches(ctx context.Context, topic string, visit TailVisitor) error {
	if x.conn == nil {
		return ErrNoUpstream
	}
	return x.conn.NewestBatches(ctx, topic, visit)
}

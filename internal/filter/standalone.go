package filter

import (
	"context"

	"github.com/kseal/kseal/internal/codec"
)

// Standalone is the Conn and Side of filters run outside the proxy, in
// their own tests: it owns what a client connection gives its exchanges
// (scratch buffers, per-connection filter state, topic id resolution, the
// client's identity). One Side serves both the requests and the responses.
// Like a connection's side, it is not safe for concurrent use.
type Standalone struct {
	// Topics resolves topic ids for Exchange.TopicName.
	Topics map[[16]byte]string
	// Identity is the client's identity for Exchange.Identity (nil: none);
	// a SASL login the proxy's identity filter sees succeed replaces it.
	Identity *Identity

	side Side
	// The caller's frames of the current exchange: never kept as scratch.
	request, response []byte
}

var _ Conn = (*Standalone)(nil)

// Exchange returns an exchange for one message: request is the request
// frame without its size prefix; response, if not nil, the response frame
// (for Respond). headerLen and respHeaderLen are the header lengths
// within them.
func (s *Standalone) Exchange(apiKey, version int16, request []byte, headerLen int, response []byte, respHeaderLen int) *Exchange {
	s.request, s.response = request, response
	if s.side.Addresses == nil {
		// No proxy to map broker endpoints to: they stay as they are.
		s.side.Addresses = keepEndpoints
	}
	x := &Exchange{
		APIKey:        apiKey,
		APIVersion:    version,
		HeaderLen:     headerLen,
		Request:       request,
		Response:      response,
		RespHeaderLen: respHeaderLen,
	}
	s.side.Bind(x, s)
	return x
}

// Respond runs the response filters fs on x, in order, and finishes the
// response as the plumbing does (Exchange.FinishResponse: the edits made to
// a scanned Fetch or ShareFetch response written in one pass; broker
// endpoints are kept as they are).
func (s *Standalone) Respond(ctx context.Context, x *Exchange, fs ...Filter) error {
	for _, f := range fs {
		if err := f.OnResponse(ctx, x); err != nil {
			return err
		}
	}
	return x.FinishResponse()
}

// Done ends an exchange: the buffers its filters built are kept for the
// next exchanges, as a connection does once a response is written. x must
// not be used afterwards.
func (s *Standalone) Done(x *Exchange) {
	if !aliases(x.Request, s.request) {
		s.side.Keep(x.Request, nil)
	}
	if !aliases(x.Response, s.response) {
		s.side.Keep(x.Response, nil)
	}
	s.request, s.response = nil, nil
	s.side.Done()
}

// keepEndpoints maps every broker endpoint to itself.
var keepEndpoints codec.AddressMapper = codec.MapperFunc(func(_ int32, host string, port int32) (string, int32, bool) {
	return host, port, true
})

// TopicName looks id up in Topics.
func (s *Standalone) TopicName(_ context.Context, id [16]byte) (string, bool) {
	n, ok := s.Topics[id]
	return n, ok
}

// ClientIdentity is Identity.
func (s *Standalone) ClientIdentity() *Identity { return s.Identity }

// Upstream is a client whose methods fail with ErrNoUpstream.
func (s *Standalone) Upstream() Upstream { return noUpstream{} }

// NewestBatches fails with ErrNoUpstream.
func (s *Standalone) NewestBatches(context.Context, string, TailVisitor) error {
	return ErrNoUpstream
}

package proxy

// Standalone owns what a client connection gives its exchanges (scratch
// buffers, per-connection filter state, topic id resolution), so filters
// can run outside the proxy, in their own tests. Like a
// connection, it is not safe for concurrent use.
type Standalone struct {
	// Topics resolves topic ids for Exchange.TopicName.
	Topics map[[16]byte]string
	// Identity is the client's identity for Exchange.Identity (nil: none);
	// a SASL login the identity filter sees succeed replaces it.
	Identity *Identity

	scratch [2][]byte
	state   map[any]any
	// The caller's frames of the current exchange: never kept as scratch.
	request, response []byte
}

// Exchange returns an exchange for one message: request is the request
// frame without its size prefix; response, if not nil, the response frame
// (for OnResponse). headerLen and respHeaderLen are the header lengths
// within them.
func (s *Standalone) Exchange(apiKey, version int16, request []byte, headerLen int, response []byte, respHeaderLen int) *Exchange {
	s.request, s.response = request, response
	return &Exchange{
		APIKey:        apiKey,
		APIVersion:    version,
		HeaderLen:     headerLen,
		Request:       request,
		Response:      response,
		RespHeaderLen: respHeaderLen,
		scratch:       &s.scratch,
		state:         &s.state,
		standalone:    s,
	}
}

// Done ends an exchange: the buffers its filters built are kept for the
// next exchanges, as a connection does once a response is written. x must
// not be used afterwards.
func (s *Standalone) Done(x *Exchange) {
	if !aliases(x.Request, s.request) {
		keepScratch(&s.scratch, nil, x.Request)
	}
	if !aliases(x.Response, s.response) {
		keepScratch(&s.scratch, nil, x.Response)
	}
	s.request, s.response = nil, nil
}

func (s *Standalone) topicName(id [16]byte) (string, bool) {
	n, ok := s.Topics[id]
	return n, ok
}

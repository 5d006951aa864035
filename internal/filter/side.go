package filter

import "github.com/kseal/kseal/internal/codec"

// MaxKept bounds the buffers a Side keeps for later exchanges (and the
// plumbing its read buffers): a larger one is dropped after use, so one
// huge fetch does not pin memory.
const MaxKept = 4 << 20

// Side is what one side (requests or responses) of a client connection
// keeps for the exchanges it runs: two scratch buffers, reused from
// exchange to exchange (Exchange.Scratch), and the filters' per-connection
// state (Exchange.ConnState). A proxy connection has one per side, a
// Standalone one for both. Like a side's goroutine, it is not safe for
// concurrent use.
type Side struct {
	// Addresses maps the broker endpoints of the responses this side scans
	// (Exchange.Partitions): the plumbing's mapper to the proxy's
	// addresses. Nil drops every endpoint.
	Addresses codec.AddressMapper

	scratch [2][]byte
	state   map[any]any
	// lent is a buffer of a filter's own the exchange's message was built
	// in (Exchange.Lend), handed to release when the plumbing is done.
	lent    []byte
	release func([]byte)
	// The storage of the message an exchange parses (ProduceRequest) or
	// scans (Partitions), reused from exchange to exchange.
	produce *codec.ProduceRequest
	scan    *Partitions
	// parses and scans count them (tests check there is one per exchange).
	parses, scans int
}

// Bind makes x an exchange of c run by this side: from now on x's Scratch
// buffers and ConnState are the side's. The plumbing binds an exchange to
// its request side for the request filters, then to its response side for
// the response filters; what the other side parsed is then gone.
func (s *Side) Bind(x *Exchange, c Conn) {
	if x.side != s {
		x.produceParsed, x.produceBody, x.produce, x.produceErr = false, nil, nil, nil
		x.scanned, x.scanBody, x.scan, x.scanErr = false, nil, nil, nil
	}
	x.conn = c
	x.side = s
}

// Done ends the side's part of an exchange: the plumbing calls it once the
// message is written. The scan's references to the response are dropped,
// and parse or scan storage of more than maxKeptPartitions partitions is
// not kept for the next exchange.
func (s *Side) Done() {
	s.lent, s.release = nil, nil
	if s.produce != nil {
		if fwd, rej := s.produce.Counts(); fwd+rej > maxKeptPartitions {
			s.produce = nil
		}
	}
	if s.scan != nil {
		if s.scan.cur != nil && s.scan.Len() > maxKeptPartitions {
			s.scan = nil
		} else {
			s.scan.reset()
		}
	}
}

// Keep keeps b, a buffer a filter built, as one of the side's scratch
// buffers for later exchanges, unless it is read (the plumbing's read
// buffer, which b may be) or larger than MaxKept. A buffer a filter lent
// (Exchange.Lend) goes back to the filter instead. The caller is done with
// b.
func (s *Side) Keep(b, read []byte) {
	if s.release != nil && aliases(b, s.lent) {
		release := s.release
		s.lent, s.release = nil, nil
		release(b)
		return
	}
	if cap(b) == 0 || cap(b) > MaxKept || aliases(b, read) {
		return
	}
	for i := range s.scratch {
		if aliases(b, s.scratch[i]) {
			if cap(b) > cap(s.scratch[i]) {
				s.scratch[i] = b[:0]
			}
			return
		}
	}
	// A filter allocated a fresh buffer: keep it in place of the smaller slot.
	i := 0
	if cap(s.scratch[1]) < cap(s.scratch[0]) {
		i = 1
	}
	if cap(b) > cap(s.scratch[i]) {
		s.scratch[i] = b[:0]
	}
}

// aliases reports whether a and b start at the same address (a buffer and
// a slice of it from its start).
func aliases(a, b []byte) bool {
	if cap(a) == 0 || cap(b) == 0 {
		return false
	}
	return &a[:1][0] == &b[:1][0]
}

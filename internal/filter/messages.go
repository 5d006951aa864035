package filter

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
)

// This file holds the messages an exchange parses or scans once for every
// filter and the plumbing: a Produce request (ProduceRequest, Acks) and a
// Fetch or ShareFetch response (Partitions, FinishResponse). Their storage
// is the side's, reused from one exchange to the next.

// maxKeptPartitions bounds the partitions a side keeps parse and scan
// storage for between exchanges: a message of very many partitions does not
// leave a connection holding its storage.
const maxKeptPartitions = 4096

// ProduceRequest returns the exchange's Produce request parsed, for request
// filters. It is parsed once per exchange, into storage of the connection's
// request side: every filter gets the same result (and the plumbing reads
// acks from it instead of reading the request again). The result aliases
// x.Request and is valid until the exchange's request side is done with it;
// a filter that replaces x.Request ends it (the next call parses the new
// request).
func (x *Exchange) ProduceRequest() (*codec.ProduceRequest, error) {
	if x.APIKey != int16(kmsg.Produce) {
		return nil, fmt.Errorf("%w: API key %d is not Produce", errNotThisMessage, x.APIKey)
	}
	if x.side == nil {
		return nil, errNoSide
	}
	body := x.Request[min(x.HeaderLen, len(x.Request)):]
	if x.produceParsed && sameSlice(x.produceBody, body) {
		return x.produce, x.produceErr
	}
	s := x.side
	if s.produce == nil {
		s.produce = new(codec.ProduceRequest)
	}
	s.parses++
	x.produceParsed, x.produceBody = true, body
	x.produce, x.produceErr = s.produce, s.produce.Parse(body, x.APIVersion)
	if x.produceErr != nil {
		x.produce = nil
	}
	return x.produce, x.produceErr
}

// Acks returns the acks field of the exchange's Produce request, for the
// plumbing (acks=0: the broker sends no response). It comes from the parse
// a filter made (ProduceRequest) when that is of the request as it is now;
// otherwise only the fields before acks are read.
func (x *Exchange) Acks() (int16, error) {
	body := x.Request[min(x.HeaderLen, len(x.Request)):]
	if x.produceParsed && x.produceErr == nil && sameSlice(x.produceBody, body) {
		return x.produce.Acks, nil
	}
	return codec.ProduceAcks(body, x.APIVersion)
}

var (
	errNotThisMessage = errors.New("not the message asked for")
	errNoSide         = errors.New("exchange not bound to a connection side")
	errFinished       = errors.New("the response is finished")
)

// sameSlice reports whether a and b are the same bytes of the same buffer.
func sameSlice(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0]
}

// Partitions returns the partitions of the exchange's Fetch or ShareFetch
// response, for response filters: the response is scanned once per
// exchange, in storage of the connection's response side, and the same
// scan rewrites the broker endpoints the response carries through the
// plumbing's address mapper. Filters read partitions and edit them by
// index; once the last filter has run, the plumbing builds the response
// from the scan in one copy pass (FinishResponse), also when only the
// endpoints changed. A filter must not replace x.Response while the
// exchange has been scanned.
func (x *Exchange) Partitions() (*Partitions, error) {
	share := x.APIKey == int16(kmsg.ShareFetch)
	if !share && x.APIKey != int16(kmsg.Fetch) {
		return nil, fmt.Errorf("%w: API key %d is neither Fetch nor ShareFetch", errNotThisMessage, x.APIKey)
	}
	if x.side == nil {
		return nil, errNoSide
	}
	if x.scanned {
		return x.scan, x.scanErr
	}
	s := x.side
	if s.scan == nil {
		s.scan = new(Partitions)
	}
	p := s.scan
	s.scans++
	x.scanned = true
	x.scanBody = x.Response[min(x.RespHeaderLen, len(x.Response)):]
	x.scanErr = p.scan(x.scanBody, x.APIVersion, share, s.Addresses)
	if x.scanErr == nil {
		x.scan = p
	}
	return x.scan, x.scanErr
}

// FinishResponse writes the edits made to the exchange's scanned response
// (Partitions) and the endpoints the scan rewrote into a new response
// frame, in one copy pass; without a scan, or when nothing changed, the
// response stays as it is. The plumbing calls it once the last response
// filter has run. A response a filter replaced after the scan is an error.
func (x *Exchange) FinishResponse() error {
	p := x.scan
	if p == nil {
		return nil
	}
	x.scan, x.scanErr = nil, errFinished
	defer p.reset()
	if !sameSlice(x.scanBody, x.Response[min(x.RespHeaderLen, len(x.Response)):]) {
		return errors.New("the response was replaced after it was scanned")
	}
	out := append(x.Scratch(), x.Response[:x.RespHeaderLen]...)
	if out, changed := p.splice(out); changed {
		x.Response = out
	}
	return nil
}

// Partitions is a Fetch or ShareFetch response walked once (see
// Exchange.Partitions): its partitions in wire order, read and edited by
// index. What it returns aliases the response; records given to SetRecords
// must stay valid until the response is finished (FinishResponse).
type Partitions struct {
	share bool
	fetch codec.FetchScan
	sfs   codec.ShareFetchScan
	cur   scanner
}

// scanner is what codec's Fetch and ShareFetch scans have in common.
type scanner interface {
	Len() int
	TopicID(i int) [16]byte
	Partition(i int) int32
	ErrorCode(i int) int16
	Records(i int) []byte
	SetRecords(i int, b []byte)
	SetErrorCode(i int, code int16)
	Splice(dst []byte) ([]byte, bool)
	Reset()
}

func (p *Partitions) scan(body []byte, version int16, share bool, m codec.AddressMapper) error {
	p.share = share
	if share {
		p.cur = &p.sfs
		return p.sfs.Scan(body, version, m)
	}
	p.cur = &p.fetch
	return p.fetch.Scan(body, version, m)
}

func (p *Partitions) splice(dst []byte) ([]byte, bool) { return p.cur.Splice(dst) }

// reset drops the scan's references to the response and the records set.
func (p *Partitions) reset() {
	if p.cur != nil {
		p.cur.Reset()
	}
}

// Share reports whether the response is a ShareFetch response.
func (p *Partitions) Share() bool { return p.share }

// Len is the number of partitions.
func (p *Partitions) Len() int { return p.cur.Len() }

// Topic is partition i's topic name; "" when the response names topics by
// id (ShareFetch, Fetch v13 and later).
func (p *Partitions) Topic(i int) string {
	if p.share {
		return ""
	}
	return p.fetch.Topic(i)
}

// TopicID is partition i's topic id (zero when the response names topics).
func (p *Partitions) TopicID(i int) [16]byte { return p.cur.TopicID(i) }

// Partition is partition i's partition index.
func (p *Partitions) Partition(i int) int32 { return p.cur.Partition(i) }

// ErrorCode is partition i's error code as the broker sent it.
func (p *Partitions) ErrorCode(i int) int16 { return p.cur.ErrorCode(i) }

// Records is partition i's record batches as the broker sent them (nil when
// null); the last batch may be partial.
func (p *Partitions) Records(i int) []byte { return p.cur.Records(i) }

// SetRecords makes the finished response carry b as partition i's records
// (nil: null, an empty non-nil slice: empty). b must stay valid until the
// response is finished.
func (p *Partitions) SetRecords(i int, b []byte) { p.cur.SetRecords(i, b) }

// SetErrorCode makes the finished response carry code as partition i's
// error code.
func (p *Partitions) SetErrorCode(i int, code int16) { p.cur.SetErrorCode(i, code) }

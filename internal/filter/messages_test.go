package filter

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
)

func produceBody(t *testing.T, acks int16) []byte {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = acks
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = 3
	rp.Records = []byte("records")
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req.AppendTo(nil)
}

// A Produce request is parsed once per exchange: every filter that asks
// gets the same parse, and the plumbing reads acks from it; without a
// parse, acks are read from the fields before them, and a request a filter
// replaced is never answered from the old parse.
func TestProduceRequestParsedOnce(t *testing.T) {
	var s Standalone
	x := s.Exchange(int16(kmsg.Produce), 9, produceBody(t, 0), 0, nil, 0)
	if acks, err := x.Acks(); err != nil || acks != 0 || s.side.parses != 0 {
		t.Fatalf("acks %d, %v, %d parses; want 0 and no parse", acks, err, s.side.parses)
	}
	a, err := x.ProduceRequest()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := x.ProduceRequest()
	if acks, err := x.Acks(); a != b || err != nil || acks != 0 || s.side.parses != 1 {
		t.Fatalf("same parse %v, acks %d, %v, %d parses; want one", a == b, acks, err, s.side.parses)
	}
	if len(a.Topics) != 1 || string(a.Topics[0].Name) != "t" || a.Topics[0].Partitions[0].Partition != 3 {
		t.Fatalf("parsed %+v", a.Topics)
	}
	// A filter replaces the request (acks=1 now): the old parse is not used.
	x.Request = produceBody(t, 1)
	if acks, err := x.Acks(); err != nil || acks != 1 || s.side.parses != 1 {
		t.Fatalf("acks %d, %v, %d parses after the request was replaced", acks, err, s.side.parses)
	}
	if r, err := x.ProduceRequest(); err != nil || r.Acks != 1 || s.side.parses != 2 {
		t.Fatalf("parse of the new request: %v, %d parses", err, s.side.parses)
	}
	// The parse is the request side's: an exchange bound to another side
	// does not reach it.
	var other Side
	other.Bind(x, &s)
	if x.produceParsed || x.produce != nil {
		t.Fatal("the parse followed the exchange to the other side")
	}
	if _, err := s.Exchange(int16(kmsg.Fetch), 4, nil, 0, nil, 0).ProduceRequest(); err == nil {
		t.Fatal("a Fetch exchange parsed as Produce")
	}
	y := s.Exchange(int16(kmsg.Produce), 9, []byte{1, 2}, 0, nil, 0)
	if _, err := y.ProduceRequest(); err == nil {
		t.Fatal("a malformed request parsed")
	}
	if _, err := y.Acks(); err == nil {
		t.Fatal("acks of a malformed request")
	}
}

// fetchFrame is a Fetch response frame (header v1) of two partitions and a
// KIP-951 node endpoint.
func fetchFrame(version int16) ([]byte, int) {
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(version)
	rt := kmsg.NewFetchResponseTopic()
	rt.Topic, rt.TopicID = "t", [16]byte{5}
	for i, rec := range []string{"first", "second"} {
		rp := kmsg.NewFetchResponseTopicPartition()
		rp.Partition = int32(i)
		rp.RecordBatches = []byte(rec)
		rt.Partitions = append(rt.Partitions, rp)
	}
	resp.Topics = append(resp.Topics, rt)
	be := kmsg.NewFetchResponseBroker()
	be.NodeID, be.Host, be.Port = 1, "broker-1.internal", 9092
	resp.Brokers = append(resp.Brokers, be)
	return resp.AppendTo([]byte{0, 0, 0, 7, 0}), 5
}

type proxyMapper struct{ calls int }

func (m *proxyMapper) MapBroker(id int32, _ string, _ int32) (string, int32, bool) {
	m.calls++
	return "proxy", 10000 + id, true
}

// A Fetch response is scanned once per exchange, with the side's address
// mapper; the edits of every filter and the rewritten endpoints are
// spliced in by one FinishResponse.
func TestPartitionsScannedOnceSplicedOnce(t *testing.T) {
	var s Standalone
	m := &proxyMapper{}
	s.side.Addresses = m
	frame, hl := fetchFrame(16)
	x := s.Exchange(int16(kmsg.Fetch), 16, nil, 0, bytes.Clone(frame), hl)
	p, err := x.Partitions()
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := x.Partitions(); q != p || s.side.scans != 1 {
		t.Fatalf("scanned %d times", s.side.scans)
	}
	if p.Len() != 2 || p.Topic(1) != "" || p.TopicID(1) != [16]byte{5} || p.Partition(1) != 1 || string(p.Records(0)) != "first" || p.Share() {
		t.Fatalf("scan: %d partitions, %q %d %q %v", p.Len(), p.Topic(1), p.Partition(1), p.Records(0), p.Share())
	}
	p.SetRecords(1, []byte("edited"))
	p.SetErrorCode(0, 91)
	if err := x.FinishResponse(); err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(16)
	if err := resp.ReadFrom(x.Response[hl:]); err != nil {
		t.Fatal(err)
	}
	got := resp.Topics[0].Partitions
	if got[0].ErrorCode != 91 || string(got[1].RecordBatches) != "edited" || string(got[0].RecordBatches) != "first" {
		t.Fatalf("edits not spliced: %+v", got)
	}
	if len(resp.Brokers) != 1 || resp.Brokers[0].Host != "proxy" || resp.Brokers[0].Port != 10001 || m.calls != 1 {
		t.Fatalf("endpoints %+v, %d mapper calls", resp.Brokers, m.calls)
	}
	if !bytes.Equal(x.Response[:hl], frame[:hl]) {
		t.Fatal("response header changed")
	}
	if err := x.FinishResponse(); err != nil { // nothing left to finish
		t.Fatal(err)
	}
	s.Done(x)

	// Only the endpoints change: the response is still rebuilt.
	y := s.Exchange(int16(kmsg.Fetch), 16, nil, 0, bytes.Clone(frame), hl)
	if _, err := y.Partitions(); err != nil {
		t.Fatal(err)
	}
	before := y.Response
	if err := y.FinishResponse(); err != nil || bytes.Equal(y.Response, before) {
		t.Fatalf("endpoints not rewritten: %v", err)
	}
	s.Done(y)

	// A filter that replaces a scanned response breaks the splice: an error.
	z := s.Exchange(int16(kmsg.Fetch), 16, nil, 0, bytes.Clone(frame), hl)
	if _, err := z.Partitions(); err != nil {
		t.Fatal(err)
	}
	z.Response = bytes.Clone(z.Response)
	if err := z.FinishResponse(); err == nil {
		t.Fatal("a replaced response was spliced")
	}
	if _, err := s.Exchange(int16(kmsg.Produce), 9, nil, 0, nil, 0).Partitions(); err == nil {
		t.Fatal("a Produce exchange scanned as Fetch")
	}
	bad := s.Exchange(int16(kmsg.Fetch), 16, nil, 0, []byte{0, 0, 0, 7, 0, 1}, 5)
	if _, err := bad.Partitions(); err == nil {
		t.Fatal("a malformed response scanned")
	}
}

// Standalone keeps broker endpoints as they are: there is no proxy to map
// them to.
func TestStandaloneKeepsEndpoints(t *testing.T) {
	var s Standalone
	frame, hl := fetchFrame(16)
	x := s.Exchange(int16(kmsg.Fetch), 16, nil, 0, bytes.Clone(frame), hl)
	p, err := x.Partitions()
	if err != nil {
		t.Fatal(err)
	}
	p.SetRecords(0, []byte("x"))
	if err := s.Respond(t.Context(), x); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(x.Response, []byte("broker-1.internal")) {
		t.Fatal("endpoint dropped")
	}
}

var _ codec.AddressMapper = (*proxyMapper)(nil)

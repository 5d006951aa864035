package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/frame"
)

// fetchBroker is a one-node upstream that answers Metadata with itself and
// Fetch with records big enough to be streamed in many chunks, plus KIP-951
// node endpoints: its own and one of a broker kseal has not heard of, with
// a longer host name than kseal's.
type fetchBroker struct {
	ln      net.Listener
	port    int32
	records []byte
	// gate, when set, holds a Fetch response after its first piece until
	// it is closed.
	gate chan struct{}
}

const strangerHost = "broker-7.internal.example"

func startFetchBroker(t *testing.T) *fetchBroker {
	t.Helper()
	return startFetchBrokerSize(t, 3<<20)
}

// startFetchBrokerSize starts a fetchBroker whose Fetch responses carry n
// bytes of records.
func startFetchBrokerSize(t *testing.T, n int) *fetchBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fetchBroker{ln: ln, port: int32(ln.Addr().(*net.TCPAddr).Port), records: make([]byte, n)}
	rand.Read(b.records)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *fetchBroker) serve(c net.Conn) {
	defer c.Close()
	var buf []byte
	for {
		var err error
		buf, err = frame.ReadRequest(c, buf, 1<<20)
		if err != nil {
			return
		}
		h, err := frame.ParseRequestHeader(buf[frame.SizeLen:])
		if err != nil {
			return
		}
		var body []byte
		flexible := false
		switch kmsg.Key(h.APIKey) {
		case kmsg.Metadata:
			resp := kmsg.NewPtrMetadataResponse()
			resp.SetVersion(h.APIVersion)
			br := kmsg.NewMetadataResponseBroker()
			br.NodeID, br.Host, br.Port = 1, "127.0.0.1", b.port
			resp.Brokers = append(resp.Brokers, br)
			body, flexible = resp.AppendTo(nil), h.APIVersion >= 9
		case kmsg.Fetch:
			resp := kmsg.NewPtrFetchResponse()
			resp.SetVersion(h.APIVersion)
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic = "t"
			rp := kmsg.NewFetchResponseTopicPartition()
			rp.HighWatermark = 100
			rp.RecordBatches = b.records
			rt.Partitions = append(rt.Partitions, rp)
			resp.Topics = append(resp.Topics, rt)
			for _, e := range []struct {
				id   int32
				host string
				port int32
			}{{1, "127.0.0.1", b.port}, {7, strangerHost, 9092}} {
				be := kmsg.NewFetchResponseBroker()
				be.NodeID, be.Host, be.Port = e.id, e.host, e.port
				resp.Brokers = append(resp.Brokers, be)
			}
			body, flexible = resp.AppendTo(nil), h.APIVersion >= 12
		default:
			return
		}
		out := binary.BigEndian.AppendUint32(nil, 0)
		out = binary.BigEndian.AppendUint32(out, uint32(h.CorrelationID))
		if flexible {
			out = append(out, 0)
		}
		out = append(out, body...)
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		// In pieces, as a broker's sendfile can arrive.
		for first := true; len(out) > 0; first = false {
			n := min(len(out), 200_000)
			if _, err := c.Write(out[:n]); err != nil {
				return
			}
			out = out[n:]
			if first && h.APIKey == int16(kmsg.Fetch) && b.gate != nil {
				select {
				case <-b.gate:
				case <-time.After(10 * time.Second):
				}
			}
		}
	}
}

// fetchThroughProxy sends a Fetch request of version v and returns the
// response frame's message.
func fetchThroughProxy(t *testing.T, addr string, v int16) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(v)
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "t"
	rt.Partitions = append(rt.Partitions, kmsg.NewFetchRequestTopicPartition())
	req.Topics = append(req.Topics, rt)
	msg := appendRequestHeaderFor(nil, int16(kmsg.Fetch), v, 42)
	msg = req.AppendTo(msg)
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(msg)))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	resp, err := frame.ReadResponse(c, nil, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	return resp[frame.SizeLen:]
}

// appendRequestHeaderFor appends a request header of the version the API
// version needs (v1 before Fetch v12, v2 after).
func appendRequestHeaderFor(dst []byte, key, version int16, corr int32) []byte {
	return appendRequestHeader(dst, key, version, corr, "t", key == int16(kmsg.Fetch) && version >= 12)
}

func TestFetchResponsesStreamedWithEndpointsRewritten(t *testing.T) {
	b := startFetchBroker(t)
	p := startProxy(t, []string{b.ln.Addr().String()}, func(vc *config.VirtualCluster) {
		vc.Limits.MaxFrameBytes = 8 << 20
	})
	for _, v := range []int16{11, 12, 16} {
		msg := fetchThroughProxy(t, p.bootstrap, v)
		if got := int32(binary.BigEndian.Uint32(msg)); got != 42 {
			t.Fatalf("v%d: correlation id %d", v, got)
		}
		resp := checkFetchedRecords(t, msg, v, b.records)
		if bytes.Contains(msg, []byte(strangerHost)) {
			t.Fatalf("v%d: a broker's address reached the client", v)
		}
		if v < 12 {
			continue
		}
		// kseal learns node 7 from the endpoints and gives it a port; its
		// shorter address leaves the section padded to its old length.
		if len(resp.Brokers) != 2 {
			t.Fatalf("v%d: node endpoints %+v, want nodes 1 and 7", v, resp.Brokers)
		}
		for _, be := range resp.Brokers {
			if !p.isProxyAddr(be.Host, be.Port) {
				t.Fatalf("v%d: node %d at %s:%d, not at the proxy", v, be.NodeID, be.Host, be.Port)
			}
		}
	}
}

func TestStreamedFetchMalformedClosesConnection(t *testing.T) {
	// A broker whose Fetch response claims more records than the frame
	// holds: kseal has forwarded part of it when it finds out, so the only
	// safe answer is to close the client's connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf, err := frame.ReadRequest(c, nil, 1<<20)
				if err != nil {
					return
				}
				h, _ := frame.ParseRequestHeader(buf[frame.SizeLen:])
				if h.APIKey != int16(kmsg.Fetch) {
					return
				}
				resp := kmsg.NewPtrFetchResponse()
				resp.SetVersion(h.APIVersion)
				rt := kmsg.NewFetchResponseTopic()
				rt.Topic = "t"
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.RecordBatches = bytes.Repeat([]byte{1}, 100_000)
				rt.Partitions = append(rt.Partitions, rp)
				resp.Topics = append(resp.Topics, rt)
				body := resp.AppendTo(nil)
				body = body[:len(body)-50_000] // cut inside the records
				out := binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))
				out = binary.BigEndian.AppendUint32(out, uint32(h.CorrelationID))
				c.Write(append(out, body...))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	p := startProxy(t, []string{ln.Addr().String()}, nil)
	c, err := net.Dial("tcp", p.bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := appendRequestHeaderFor(nil, int16(kmsg.Fetch), 11, 1)
	msg = kmsg.NewPtrFetchRequest().AppendTo(msg)
	c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(msg))))
	c.Write(msg)
	_, err = frame.ReadResponse(c, nil, 1<<20)
	if err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("client read: %v; want the connection closed mid-frame", err)
	}
}

func TestFetchFirstBytesArriveBeforeTheLast(t *testing.T) {
	b := startFetchBroker(t)
	b.gate = make(chan struct{})
	p := startProxy(t, []string{b.ln.Addr().String()}, func(vc *config.VirtualCluster) {
		vc.Limits.MaxFrameBytes = 8 << 20
	})
	c, err := net.Dial("tcp", p.bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(16)
	msg := req.AppendTo(appendRequestHeaderFor(nil, int16(kmsg.Fetch), 16, 9))
	c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(msg))))
	c.Write(msg)
	// The broker holds the rest of the response until the client has seen
	// its beginning: a proxy that waits for the whole frame never delivers.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	head := make([]byte, 100_000)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatalf("first 100 kB of a 3 MB fetch while the broker holds the rest: %v", err)
	}
	close(b.gate)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	size := int(binary.BigEndian.Uint32(head))
	if _, err := io.CopyN(io.Discard, c, int64(size+4-len(head))); err != nil {
		t.Fatalf("rest of the response: %v", err)
	}
}

// recordsEditor edits the records of every Fetch response partition through
// the exchange's one scan, asking for it twice.
type recordsEditor struct {
	filter.NopFilter
	scans atomic.Int32
}

func (*recordsEditor) APIKeys() []int16 { return []int16{int16(kmsg.Fetch)} }

func (e *recordsEditor) OnResponse(_ context.Context, x *filter.Exchange) error {
	p, err := x.Partitions()
	if err != nil {
		return err
	}
	if q, _ := x.Partitions(); q != p {
		return errors.New("scanned twice")
	}
	e.scans.Add(1)
	for i := range p.Len() {
		p.SetRecords(i, []byte("edited"))
	}
	return nil
}

// A Fetch response a filter edits is buffered: the filter's edits and the
// endpoints the plumbing maps (in the same scan) reach the client, in one
// response. What decides is the hook the response needs, not which filter
// asks: with no filter, the same response streams (see above).
func TestFetchEditedByAFilterIsBuffered(t *testing.T) {
	b := startFetchBroker(t)
	ed := &recordsEditor{}
	p := startLimitsProxy(t, []string{b.ln.Addr().String()}, "{maxFrameBytes: 8388608}", ed)
	if mode := p.srv.clusters[0].responseMode(int16(kmsg.Fetch)); mode != buffered {
		t.Fatalf("response mode %d with a Fetch filter", mode)
	}
	for _, v := range []int16{11, 16} {
		msg := fetchThroughProxy(t, p.bootstrap, v)
		hdr := 4
		if v >= 12 {
			hdr++
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(v)
		if err := resp.ReadFrom(msg[hdr:]); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if got := resp.Topics[0].Partitions[0].RecordBatches; string(got) != "edited" {
			t.Fatalf("v%d: %d record bytes, not the filter's", v, len(got))
		}
		if bytes.Contains(msg, []byte(strangerHost)) {
			t.Fatalf("v%d: a broker's address reached the client", v)
		}
		if v < 16 {
			continue
		}
		if len(resp.Brokers) != 2 {
			t.Fatalf("v%d: node endpoints %+v, want nodes 1 and 7", v, resp.Brokers)
		}
		for _, be := range resp.Brokers {
			if be.Host != "127.0.0.1" || be.Port == b.port || be.Port == 9092 {
				t.Fatalf("v%d: node %d at %s:%d, not at the proxy", v, be.NodeID, be.Host, be.Port)
			}
		}
	}
	if n := ed.scans.Load(); n != 2 {
		t.Fatalf("the filter saw %d responses, want 2", n)
	}
}

// fetchRequestOnly sees Fetch requests and no response.
type fetchRequestOnly struct{ filter.NopFilter }

func (fetchRequestOnly) APIKeys() []int16         { return []int16{int16(kmsg.Fetch)} }
func (fetchRequestOnly) ResponseAPIKeys() []int16 { return nil }

// How a response travels follows from the hooks it needs, whatever the
// filters' types: a filter that sees only Fetch requests leaves Fetch
// responses streamed (endpoints rewritten on the way); one that sees the
// responses has them buffered; responses with broker addresses are
// buffered for the plumbing's rewrite, others stream untouched.
func TestResponseModeFollowsHooks(t *testing.T) {
	b := startFetchBroker(t)
	p := startLimitsProxy(t, []string{b.ln.Addr().String()}, "{}", fetchRequestOnly{})
	vc := p.srv.clusters[0]
	for key, want := range map[kmsg.Key]streamMode{
		kmsg.Fetch: streamFetch, kmsg.Metadata: buffered, kmsg.ShareFetch: buffered, kmsg.Produce: buffered,
		kmsg.ApiVersions: buffered, kmsg.ListOffsets: streamRaw, kmsg.OffsetCommit: streamRaw,
	} {
		if got := vc.responseMode(int16(key)); got != want {
			t.Errorf("%s: mode %d, want %d", key.Name(), got, want)
		}
	}
	if len(vc.reqFilters[int16(kmsg.Fetch)]) != 1 {
		t.Fatal("the filter does not see Fetch requests")
	}
	q := startLimitsProxy(t, []string{b.ln.Addr().String()}, "{}", &recordsEditor{})
	if got := q.srv.clusters[0].responseMode(int16(kmsg.Fetch)); got != buffered {
		t.Fatalf("Fetch with a response filter: mode %d", got)
	}
}

// checkFetchedRecords decodes msg, a Fetch response frame of version v as
// kseal sent it (without the size), and fails t unless its first
// partition's records are want. It returns the decoded response.
func checkFetchedRecords(t *testing.T, msg []byte, v int16, want []byte) *kmsg.FetchResponse {
	t.Helper()
	hdr := 4
	if v >= 12 {
		hdr++
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.SetVersion(v)
	if err := resp.ReadFrom(msg[hdr:]); err != nil { // kseal's output in a test
		t.Fatalf("v%d: %v", v, err)
	}
	if got := resp.Topics[0].Partitions[0].RecordBatches; !bytes.Equal(got, want) {
		t.Fatalf("v%d: %d record bytes came through, not the broker's %d", v, len(got), len(want))
	}
	return resp
}

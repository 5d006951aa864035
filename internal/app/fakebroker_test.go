package app

import (
	"encoding/binary"
	"hash/crc32"
	"net"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/frame"
)

// cannedBroker is a one-node upstream that answers every request it is
// sent with a plausible response of the request's API and version, built
// without reading the request body (so arbitrary bodies cost it nothing):
// Metadata names itself and two topics, Fetch and ShareFetch return the
// record set it holds for "orders" partition 0 plus KIP-951 node endpoints
// naming itself, Produce succeeds (and answers nothing for acks=0), and
// every other API gets kmsg's default response.
type cannedBroker struct {
	ln   net.Listener
	host string
	port int32

	mu sync.Mutex
	// records is served for orders/0; capture makes the next Produce
	// store its first partition's records there (decoding the body with
	// kmsg: only for requests the test itself sent through kseal).
	records []byte
	capture bool
}

var (
	cannedOrdersID = [16]byte{0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	cannedPlainID  = [16]byte{0x0d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
)

const cannedNode = 0

func startCannedBroker(tb testing.TB) *cannedBroker {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &cannedBroker{ln: ln, host: "127.0.0.1", port: int32(ln.Addr().(*net.TCPAddr).Port)}
	tb.Cleanup(func() { ln.Close() })
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

func (b *cannedBroker) addr() string { return b.ln.Addr().String() }

// captureNext makes the next Produce's records the ones Fetch serves.
func (b *cannedBroker) captureNext() {
	b.mu.Lock()
	b.capture = true
	b.mu.Unlock()
}

func (b *cannedBroker) stored() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.records
}

func (b *cannedBroker) serve(c net.Conn) {
	// kseal closes first; a reset in answer spares its socket the TIME_WAIT
	// state, so fuzzing does not use up the machine's ephemeral ports.
	c.(*net.TCPConn).SetLinger(0)
	defer c.Close()
	defer func() {
		if v := recover(); v != nil {
			panic(v) // a bug in this fake: let the test see it
		}
	}()
	var buf []byte
	for {
		var err error
		buf, err = frame.ReadRequest(c, buf, 8<<20)
		if err != nil {
			return
		}
		msg := buf[frame.SizeLen:]
		h, err := frame.ParseRequestHeader(msg)
		if err != nil {
			return
		}
		body := msg[h.Len:]
		resp, answer := b.respond(h, body)
		if !answer {
			continue
		}
		hv, ok := frame.ResponseHeaderVersion(h.APIKey, h.APIVersion)
		if !ok {
			return
		}
		out, err := frame.AppendResponse(nil, h.CorrelationID, hv, resp)
		if err != nil {
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func (b *cannedBroker) respond(h frame.RequestHeader, body []byte) ([]byte, bool) {
	v := h.APIVersion
	switch kmsg.Key(h.APIKey) {
	case kmsg.ApiVersions:
		r := kmsg.NewPtrApiVersionsResponse()
		r.SetVersion(v)
		for k := int16(0); k < 200; k++ {
			if max, ok := frame.MaxVersion(k); ok {
				ak := kmsg.NewApiVersionsResponseApiKey()
				ak.ApiKey, ak.MinVersion, ak.MaxVersion = k, 0, max
				r.ApiKeys = append(r.ApiKeys, ak)
			}
		}
		return r.AppendTo(nil), true
	case kmsg.Metadata:
		r := kmsg.NewPtrMetadataResponse()
		r.SetVersion(v)
		br := kmsg.NewMetadataResponseBroker()
		br.NodeID, br.Host, br.Port = cannedNode, b.host, b.port
		r.Brokers = append(r.Brokers, br)
		r.ControllerID = cannedNode
		for _, tp := range []struct {
			name string
			id   [16]byte
		}{{"orders", cannedOrdersID}, {"plain", cannedPlainID}} {
			mt := kmsg.NewMetadataResponseTopic()
			name := tp.name
			mt.Topic, mt.TopicID = &name, tp.id
			p := kmsg.NewMetadataResponseTopicPartition()
			p.Leader, p.Replicas, p.ISR = cannedNode, []int32{cannedNode}, []int32{cannedNode}
			mt.Partitions = append(mt.Partitions, p)
			r.Topics = append(r.Topics, mt)
		}
		return r.AppendTo(nil), true
	case kmsg.Produce:
		acks, err := codec.ProduceAcks(body, v)
		if err != nil {
			return nil, false
		}
		b.mu.Lock()
		if b.capture {
			req := kmsg.NewPtrProduceRequest()
			req.SetVersion(v)
			if req.ReadFrom(body) == nil && len(req.Topics) > 0 && len(req.Topics[0].Partitions) > 0 {
				b.records = append([]byte(nil), req.Topics[0].Partitions[0].Records...)
				b.capture = false
			}
		}
		b.mu.Unlock()
		if acks == 0 {
			return nil, false
		}
		r := kmsg.NewPtrProduceResponse()
		r.SetVersion(v)
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = "orders", cannedOrdersID
		rt.Partitions = append(rt.Partitions, kmsg.NewProduceResponseTopicPartition())
		r.Topics = append(r.Topics, rt)
		r.Brokers = append(r.Brokers, kmsg.ProduceResponseBroker{NodeID: cannedNode, Host: b.host, Port: b.port})
		return r.AppendTo(nil), true
	case kmsg.Fetch:
		r := kmsg.NewPtrFetchResponse()
		r.SetVersion(v)
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic, rt.TopicID = "orders", cannedOrdersID
		p := kmsg.NewFetchResponseTopicPartition()
		p.RecordBatches = b.stored()
		p.HighWatermark = 1
		rt.Partitions = append(rt.Partitions, p)
		r.Topics = append(r.Topics, rt)
		r.Brokers = append(r.Brokers, kmsg.FetchResponseBroker{NodeID: cannedNode, Host: b.host, Port: b.port})
		return r.AppendTo(nil), true
	case kmsg.ShareFetch:
		r := kmsg.NewPtrShareFetchResponse()
		r.SetVersion(v)
		rt := kmsg.NewShareFetchResponseTopic()
		rt.TopicID = cannedOrdersID
		p := kmsg.NewShareFetchResponseTopicPartition()
		p.Records = b.stored()
		p.CurrentLeader.LeaderID, p.CurrentLeader.LeaderEpoch = cannedNode, 1
		ar := kmsg.NewShareFetchResponseTopicPartitionAcquiredRecord()
		ar.FirstOffset, ar.LastOffset, ar.DeliveryCount = 0, 0, 1
		p.AcquiredRecords = append(p.AcquiredRecords, ar)
		rt.Partitions = append(rt.Partitions, p)
		r.Topics = append(r.Topics, rt)
		r.NodeEndpoints = append(r.NodeEndpoints, kmsg.ShareFetchResponseNodeEndpoint{NodeID: cannedNode, Host: b.host, Port: b.port})
		return r.AppendTo(nil), true
	case kmsg.FindCoordinator:
		r := kmsg.NewPtrFindCoordinatorResponse()
		r.SetVersion(v)
		r.NodeID, r.Host, r.Port = cannedNode, b.host, b.port
		if v >= 4 {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key, c.NodeID, c.Host, c.Port = "g", cannedNode, b.host, b.port
			r.Coordinators = append(r.Coordinators, c)
		}
		return r.AppendTo(nil), true
	case kmsg.DescribeCluster:
		r := kmsg.NewPtrDescribeClusterResponse()
		r.SetVersion(v)
		br := kmsg.NewDescribeClusterResponseBroker()
		br.NodeID, br.Host, br.Port = cannedNode, b.host, b.port
		r.Brokers = append(r.Brokers, br)
		return r.AppendTo(nil), true
	}
	r := kmsg.ResponseForKey(h.APIKey)
	if r == nil {
		return nil, false
	}
	r.SetVersion(v)
	return r.AppendTo(nil), true
}

// appendTestRequest appends a whole request frame (size, header with
// client id "fz", body) for req at version v.
func appendTestRequest(dst []byte, req kmsg.Request, v int16, corr int32) []byte {
	req.SetVersion(v)
	msg := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	msg = binary.BigEndian.AppendUint16(msg, uint16(v))
	msg = binary.BigEndian.AppendUint32(msg, uint32(corr))
	msg = append(msg, 0, 2, 'f', 'z')
	if req.IsFlexible() {
		msg = append(msg, 0)
	}
	msg = req.AppendTo(msg)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msg)))
	return append(dst, msg...)
}

// testBatch is an uncompressed record batch of one record per value.
func testBatch(values ...string) []byte {
	var recs []byte
	for i, v := range values {
		rec := []byte{0}
		rec = kbin.AppendVarlong(rec, 0)
		rec = kbin.AppendVarint(rec, int32(i))
		rec = kbin.AppendVarintBytes(rec, nil)
		rec = kbin.AppendVarintBytes(rec, []byte(v))
		rec = kbin.AppendVarint(rec, 0)
		recs = append(recs, kbin.AppendVarint(nil, int32(len(rec)))...)
		recs = append(recs, rec...)
	}
	batch := kmsg.RecordBatch{Magic: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(values)), LastOffsetDelta: int32(len(values) - 1), Records: recs}
	raw := batch.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	crc := crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(raw[17:], crc)
	return raw
}

package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/config"
)

// freePortRange finds n consecutive free loopback ports.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if base+n > 65000 {
			continue
		}
		ok := true
		var held []net.Listener
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

type testProxy struct {
	srv       *Server
	bootstrap string
	base      int
	count     int
}

func startProxy(t *testing.T, upstream []string, mutate func(*config.VirtualCluster)) *testProxy {
	t.Helper()
	const count = 8
	base := freePortRange(t, count+1)
	vc := config.VirtualCluster{
		Name:     "test",
		Upstream: config.Upstream{BootstrapServers: upstream},
		Gateway: config.Gateway{
			BindAddress:     "127.0.0.1",
			AdvertisedHost:  "127.0.0.1",
			BootstrapPort:   base,
			BrokerPortStart: base + 1,
			BrokerPortCount: count,
		},
	}
	if mutate != nil {
		mutate(&vc)
	}
	doc := fmt.Sprintf(`
virtualClusters:
  - name: test
    upstream: {bootstrapServers: [%s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: %d}
    limits: {maxFrameBytes: %d}
`, strings.Join(upstream, ","), base, base+1, count, max(vc.Limits.MaxFrameBytes, 1<<20))
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &testProxy{srv: srv, bootstrap: srv.BootstrapAddr("test"), base: base, count: count}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (p *testProxy) isProxyAddr(host string, port int32) bool {
	return host == "127.0.0.1" && int(port) >= p.base && int(port) <= p.base+p.count
}

func newFake(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, "t1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestRoundTripThroughProxy(t *testing.T) {
	fake := newFake(t)
	p := startProxy(t, fake.ListenAddrs()[:1], nil)

	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap), kgo.ConsumeTopics("t1"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 200
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: "t1", Key: []byte(strconv.Itoa(i)), Value: []byte("value-" + strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("fetch: %v (seen %d)", err, len(seen))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != "value-"+string(r.Key) || len(r.Headers) != 1 {
				t.Errorf("record %q = %q %v", r.Key, r.Value, r.Headers)
			}
			seen[string(r.Key)] = true
		})
	}

	// Every broker address the client learned is a proxy address.
	adm := kadm.NewClient(cl)
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 3 {
		t.Errorf("brokers = %v, want 3", md.Brokers)
	}
	for _, b := range md.Brokers {
		if !p.isProxyAddr(b.Host, b.Port) {
			t.Errorf("broker %d advertised as %s:%d: not a proxy address", b.NodeID, b.Host, b.Port)
		}
	}
	if _, err := adm.DescribeGroups(ctx, "g"); err != nil {
		t.Errorf("describe groups (find coordinator through proxy): %v", err)
	}
}

// rawConn dials the proxy and returns the connection.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectClosed asserts the proxy closes c within d.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s", d)
	}
	return time.Since(start)
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	fake := newFake(t)
	p := startProxy(t, fake.ListenAddrs()[:1], nil)

	frameOf := func(body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		return append(b, body...)
	}
	cases := map[string][]byte{
		"oversized":       binary.BigEndian.AppendUint32(nil, 200<<20),
		"negative size":   binary.BigEndian.AppendUint32(nil, 0xffffffff),
		"tiny frame":      frameOf([]byte{0, 1}),
		"garbage header":  frameOf([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}),
		"truncated frame": append(binary.BigEndian.AppendUint32(nil, 100), 0, 18, 0, 3),
		// ApiVersions v3 uses request header v2: a client id, then a tag
		// count of 2^32-1 with nothing behind it (the kmsg DoS shape).
		"huge tag count": frameOf([]byte{0, 18, 0, 3, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			c := rawConn(t, p.bootstrap)
			if _, err := c.Write(data); err != nil {
				t.Fatal(err)
			}
			if name == "truncated frame" {
				c.(*net.TCPConn).CloseWrite()
			}
			if took := expectClosed(t, c, 3*time.Second); name == "huge tag count" && took > 500*time.Millisecond {
				t.Errorf("huge tag count rejected after %s", took)
			}
		})
	}
	// The proxy still serves everyone else.
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t1", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce after bad input: %v", err)
	}
}

// DescribeQuorum would hand out controller addresses: it is neither
// advertised nor forwarded.
func TestDescribeQuorumRefused(t *testing.T) {
	fake := newFake(t)
	p := startProxy(t, fake.ListenAddrs()[:1], nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vers, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range vers.ApiKeys {
		if k.ApiKey == int16(kmsg.DescribeQuorum) {
			t.Fatal("DescribeQuorum advertised")
		}
	}
	c := rawConn(t, p.bootstrap)
	req := kmsg.NewPtrDescribeQuorumRequest()
	req.SetVersion(0)
	msg := binary.BigEndian.AppendUint16(nil, uint16(kmsg.DescribeQuorum))
	msg = binary.BigEndian.AppendUint16(msg, 0)
	msg = binary.BigEndian.AppendUint32(msg, 7)
	msg = append(msg, 0, 0, 0) // empty client id, no tags (header v2)
	msg = req.AppendTo(msg)
	c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...))
	expectClosed(t, c, 3*time.Second)
}

// acks=0 requests get no response, and the connection keeps working for
// the requests after them (responses stay matched to requests).
func TestAcksZeroPipelined(t *testing.T) {
	fake := newFake(t)
	p := startProxy(t, fake.ListenAddrs()[:1], nil)
	// Broker 0 leads some partition of t1; talk to it through its proxy port.
	leader := fake.LeaderFor("t1", 0)
	addr := fmt.Sprintf("127.0.0.1:%d", p.base+1+int(leader))
	deadline := time.Now().Add(5 * time.Second)
	for { // kseal binds broker ports once it has learned the cluster
		probe, err := net.Dial("tcp", addr)
		if err == nil {
			probe.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker port %s never opened: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := rawConn(t, addr)
	send := func(key int16, version int16, corr int32, body []byte) {
		msg := binary.BigEndian.AppendUint16(nil, uint16(key))
		msg = binary.BigEndian.AppendUint16(msg, uint16(version))
		msg = binary.BigEndian.AppendUint32(msg, uint32(corr))
		msg = append(msg, 0, 0) // empty client id
		// Produce v7 and ApiVersions v2 use request header v1: no tags.
		msg = append(msg, body...)
		if _, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
			t.Fatal(err)
		}
	}
	for corr := int32(1); corr <= 20; corr += 2 {
		prod := kmsg.NewPtrProduceRequest()
		prod.SetVersion(7)
		prod.Acks = 0
		prod.TimeoutMillis = 1000
		rec := []byte{0}                 // attributes
		rec = kbin.AppendVarlong(rec, 0) // timestamp delta
		rec = kbin.AppendVarint(rec, 0)  // offset delta
		rec = kbin.AppendVarintBytes(rec, nil)
		rec = kbin.AppendVarintBytes(rec, []byte("v"))
		rec = kbin.AppendVarint(rec, 0) // headers
		batch := kmsg.RecordBatch{Magic: 2, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1,
			Records: append(kbin.AppendVarint(nil, int32(len(rec))), rec...)}
		raw := batch.AppendTo(nil)
		binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
		prod.Topics = []kmsg.ProduceRequestTopic{{Topic: "t1", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: raw}}}}
		send(int16(kmsg.Produce), 7, corr, prod.AppendTo(nil))
		av := kmsg.NewPtrApiVersionsRequest()
		av.SetVersion(2)
		send(int16(kmsg.ApiVersions), 2, corr+1, av.AppendTo(nil))
		// The next frame on the wire must answer the ApiVersions request.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			t.Fatalf("after acks=0 produce %d: %v", corr, err)
		}
		resp := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, resp); err != nil {
			t.Fatal(err)
		}
		if got := int32(binary.BigEndian.Uint32(resp)); got != corr+1 {
			t.Fatalf("response correlation id %d, want %d", got, corr+1)
		}
	}
}

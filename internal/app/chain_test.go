package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/frame"
	"github.com/kseal/kseal/internal/kms/local"
)

// cannedEnv is the whole app (real encrypt filter, DEK manager, local KMS
// with KEK-orders) in front of a cannedBroker.
type cannedEnv struct {
	app        *App
	broker     *cannedBroker
	bootstrap  string
	brokerPort int // the proxy port of the broker's node
	reg        *prometheus.Registry
	logs       *lockedBuffer
}

// startCanned builds and starts it; limits is the virtual cluster's limits
// section (a flow map), unresolved its unresolvedKeyPolicy. log gets what
// kseal logs (nil: discarded).
func startCanned(tb testing.TB, limits, unresolved string, log io.Writer) *cannedEnv {
	tb.Helper()
	b := startCannedBroker(tb)
	dir := tb.TempDir()
	kcfg := local.NewConfig()
	kcfg.KeyStore = filepath.Join(dir, "keys.json")
	kcfg.MasterKeyFile = filepath.Join(dir, "master.key")
	ctx := context.Background()
	if _, err := local.Init(ctx, kcfg); err != nil {
		tb.Fatal(err)
	}
	k, err := local.New(ctx, kcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	_, err = k.Create(ctx, "KEK-orders")
	k.Close()
	if err != nil {
		tb.Fatal(err)
	}
	base := cannedPorts(tb)
	doc := fmt.Sprintf(`
virtualClusters:
  - name: canned
    upstream: {bootstrapServers: [%s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 2}
    limits: %s
    encryption:
      kms:
        type: local
        config: {keyStore: %q, masterKeyFile: %q}
      policy:
        rules:
          - topics: [plain]
            passthrough: true
          - topicRegex: '.*'
            kek: 'KEK-$(topicName)'
            # The canned broker does not serve kseal's key topic, where the
            # first encrypted offsets are read from.
            requireEncrypted: false
        unresolvedKeyPolicy: %s
`, b.addr(), base, base+1, limits, kcfg.KeyStore, kcfg.MasterKeyFile, unresolved)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	if err := Validate(cfg); err != nil {
		tb.Fatal(err)
	}
	logs := &lockedBuffer{}
	w := io.Writer(logs)
	if log != nil {
		w = io.MultiWriter(logs, log)
	}
	reg := prometheus.NewRegistry()
	a, err := Build(ctx, cfg, slog.New(slog.NewTextHandler(w, nil)), reg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Server.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Server.Shutdown(sctx)
		a.Close()
	})
	e := &cannedEnv{app: a, broker: b, bootstrap: a.Server.BootstrapAddr("canned"), brokerPort: base + 1 + cannedNode, reg: reg, logs: logs}
	// Discovery binds the broker's port; wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(e.brokerPort))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("broker port never bound: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return e
}

// cannedPorts finds three consecutive free ports.
func cannedPorts(tb testing.TB) int {
	tb.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := base+3 < 65000
		for p := base; p < base+3 && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	tb.Fatal("no free ports")
	return 0
}

// exchange sends one request frame on a new connection and returns the
// response body (after the response header).
func (e *cannedEnv) exchange(tb testing.TB, req kmsg.Request, v int16) []byte {
	tb.Helper()
	c, err := net.DialTimeout("tcp", e.bootstrap, 2*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(appendTestRequest(nil, req, v, 7)); err != nil {
		tb.Fatal(err)
	}
	resp, err := frame.ReadResponse(c, nil, 16<<20)
	if err != nil {
		tb.Fatalf("%s v%d: no response: %v", kmsg.NameForKey(req.Key()), v, err)
	}
	h, err := frame.ParseResponseHeader(resp[frame.SizeLen:], req.Key(), v)
	if err != nil {
		tb.Fatal(err)
	}
	return resp[frame.SizeLen+h.Len:]
}

// produceEncrypted sends values to orders/0 through kseal and makes the
// broker serve the (encrypted) records it received on fetches.
func (e *cannedEnv) produceEncrypted(tb testing.TB, values ...string) {
	tb.Helper()
	e.broker.captureNext()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 1000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "orders", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch(values...)}}}}
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(9)
	if err := resp.ReadFrom(e.exchange(tb, req, 9)); err != nil {
		tb.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		tb.Fatalf("produce through kseal: error %d", code)
	}
	stored := e.broker.stored()
	if len(stored) == 0 {
		tb.Fatal("the broker captured no records")
	}
	for _, v := range values {
		if bytes.Contains(stored, []byte(v)) {
			tb.Fatalf("the broker received %q in plaintext", v)
		}
	}
}

const chainCanary = "CANARY-chain-5d2a"

// Fetch, ShareFetch and Produce responses carrying encrypted records keep
// their KIP-951 node endpoints, rewritten once to kseal's address by the
// plumbing after the response filters (for Fetch and ShareFetch, mapped in
// the same scan whose partitions the encrypt filter edits). Issue 12 item 3:
// the encrypt filter's own walkers once dropped them.
func TestEncryptedResponsesKeepRewrittenEndpoints(t *testing.T) {
	e := startCanned(t, "{}", "REJECT", testWriter{t})
	e.produceEncrypted(t, chainCanary+"-0", chainCanary+"-1")
	wantHost, wantPort := "127.0.0.1", int32(e.brokerPort)

	type endpoint struct {
		node int32
		host string
		port int32
	}
	check := func(what string, records []byte, eps []endpoint) {
		t.Helper()
		for i := 0; i < 2; i++ {
			if v := chainCanary + "-" + strconv.Itoa(i); !bytes.Contains(records, []byte(v)) {
				t.Errorf("%s: record %q not decrypted", what, v)
			}
		}
		if len(eps) != 1 {
			t.Fatalf("%s: node endpoints %v, want one (node %d at %s:%d)", what, eps, cannedNode, wantHost, wantPort)
		}
		if ep := eps[0]; ep.node != cannedNode || ep.host != wantHost || ep.port != wantPort {
			t.Errorf("%s: node endpoint %+v, want node %d at %s:%d", what, ep, cannedNode, wantHost, wantPort)
		}
	}

	for _, v := range []int16{0, 1} {
		req := kmsg.NewPtrShareFetchRequest()
		req.GroupID = kmsg.StringPtr("g")
		req.MemberID = kmsg.StringPtr("m")
		rt := kmsg.NewShareFetchRequestTopic()
		rt.TopicID = cannedOrdersID
		rt.Partitions = append(rt.Partitions, kmsg.NewShareFetchRequestTopicPartition())
		req.Topics = append(req.Topics, rt)
		resp := kmsg.NewPtrShareFetchResponse()
		resp.SetVersion(v)
		if err := resp.ReadFrom(e.exchange(t, req, v)); err != nil {
			t.Fatalf("share fetch v%d response: %v", v, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("share fetch v%d: %+v", v, resp)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 {
			t.Fatalf("share fetch v%d: error %d", v, p.ErrorCode)
		}
		var eps []endpoint
		for _, ep := range resp.NodeEndpoints {
			eps = append(eps, endpoint{ep.NodeID, ep.Host, ep.Port})
		}
		check(fmt.Sprintf("share fetch v%d", v), p.Records, eps)
	}

	for _, v := range []int16{12, 16, 17} {
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes, req.MaxWaitMillis = 1<<20, 10
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "orders", cannedOrdersID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(v)
		if err := resp.ReadFrom(e.exchange(t, req, v)); err != nil {
			t.Fatalf("fetch v%d response: %v", v, err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 {
			t.Fatalf("fetch v%d: error %d", v, p.ErrorCode)
		}
		if v < 16 {
			// No endpoints in the protocol before v16: only decryption.
			if !bytes.Contains(p.RecordBatches, []byte(chainCanary)) {
				t.Errorf("fetch v%d: records not decrypted", v)
			}
			continue
		}
		var eps []endpoint
		for _, ep := range resp.Brokers {
			eps = append(eps, endpoint{ep.NodeID, ep.Host, ep.Port})
		}
		check(fmt.Sprintf("fetch v%d", v), p.RecordBatches, eps)
	}

	// Produce v10+: the response's endpoints, after an encrypted produce.
	e.broker.captureNext()
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 1000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "orders", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch(chainCanary+"-0", chainCanary+"-1")}}}}
	resp := kmsg.NewPtrProduceResponse()
	resp.SetVersion(11)
	if err := resp.ReadFrom(e.exchange(t, req, 11)); err != nil {
		t.Fatal(err)
	}
	var eps []endpoint
	for _, ep := range resp.Brokers {
		eps = append(eps, endpoint{ep.NodeID, ep.Host, ep.Port})
	}
	if len(eps) != 1 || eps[0] != (endpoint{cannedNode, wantHost, wantPort}) {
		t.Errorf("produce v11: node endpoints %v, want node %d at %s:%d", eps, cannedNode, wantHost, wantPort)
	}
}

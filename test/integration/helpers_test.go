//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/testenv"
)

const (
	partitions  = 6
	replication = 3
)

// direct reports whether KSEAL_IT_DIRECT=1 asks to bypass the proxy.
func direct() bool { return os.Getenv("KSEAL_IT_DIRECT") == "1" }

// target is where a test's clients connect.
type target struct {
	Bootstrap string           // the only address clients are given
	Gateway   *testenv.Gateway // nil when KSEAL_IT_DIRECT=1
}

// startProxy starts a kseal in front of the shared cluster for this test
// (stopped, and checked for a clean exit, at cleanup) and returns its
// bootstrap address.
func startProxy(t *testing.T) target {
	t.Helper()
	if direct() {
		return target{Bootstrap: cluster.BootstrapString()}
	}
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	k := testenv.StartKseal(t, testenv.KsealConfig(cluster.Bootstrap, gw, ""))
	return target{Bootstrap: k.Bootstrap, Gateway: &gw}
}

// uniq makes a name unique to this run and test.
func uniq(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// directAdmin is an admin client straight to the brokers, for test setup
// that must not depend on the proxy under test.
func directAdmin(t *testing.T) *kadm.Client {
	t.Helper()
	return kadm.NewClient(testenv.Kgo(t, cluster.Bootstrap))
}

// newTopic creates a 6-partition, replication factor 3 topic directly on the
// cluster and waits until every partition has a leader and a full ISR, with
// leaders on all three brokers.
func newTopic(t *testing.T, prefix string, configs map[string]*string) string {
	t.Helper()
	name := uniq("it-" + prefix)
	adm := directAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, replication, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	for {
		md, err := adm.Metadata(ctx, name)
		if err == nil {
			td := md.Topics[name]
			leaders := map[int32]bool{}
			ready := td.Err == nil && len(td.Partitions) == partitions
			for _, p := range td.Partitions {
				ready = ready && p.Err == nil && p.Leader >= 0 && len(p.ISR) == replication
				leaders[p.Leader] = true
			}
			if ready {
				if len(leaders) != len(cluster.Brokers) {
					t.Fatalf("topic %s: leaders on %d brokers, want all %d", name, len(leaders), len(cluster.Brokers))
				}
				// One broker knowing the topic is not all of them knowing
				// it: a transaction coordinator or a group coordinator on a
				// broker whose metadata cache lags answers
				// UNKNOWN_TOPIC_OR_PARTITION (seen on a loaded machine).
				if everyBrokerKnows(ctx, name) {
					return name
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s not ready after 60s (last error %v)", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// everyBrokerKnows reports whether each broker's own metadata cache lists
// every partition of topic with a leader.
func everyBrokerKnows(ctx context.Context, topic string) bool {
	for id, addr := range cluster.Brokers {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			return false
		}
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(int(id)))
		cl.Close()
		if err != nil || len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) != partitions {
			return false
		}
		for _, p := range resp.Topics[0].Partitions {
			if p.ErrorCode != 0 || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}

// makeRecords builds n records from src with distinct keys and values.
// partition(i) and headers(i) may be nil (partition -1, no headers).
func makeRecords(topic, src string, n int, partition func(i int) int32, headers func(i int) []testenv.Header) []testenv.Record {
	nonce := uniq("")
	out := make([]testenv.Record, n)
	for i := range out {
		r := testenv.Record{Topic: topic, Partition: -1,
			Key:   fmt.Sprintf("%s-key-%02d", src, i),
			Value: fmt.Sprintf("%s value %02d%s zażółć", src, i, nonce)}
		if partition != nil {
			r.Partition = partition(i)
		}
		if headers != nil {
			r.Headers = headers(i)
		}
		out[i] = r
	}
	return out
}

func roundRobin(i int) int32 { return int32(i % partitions) }

// assertSameRecords checks that got holds exactly the records of want (by
// key, value and headers, in any order, no duplicates).
func assertSameRecords(t *testing.T, who string, got, want []testenv.Record) {
	t.Helper()
	wantSet := map[string]int{}
	for _, r := range want {
		wantSet[r.Content()]++
	}
	seen := map[string]int{}
	for _, r := range got {
		seen[r.Content()]++
		switch {
		case wantSet[r.Content()] == 0:
			t.Errorf("%s: unexpected record %v", who, r)
		case seen[r.Content()] > wantSet[r.Content()]:
			t.Errorf("%s: duplicate record %v", who, r)
		}
	}
	for _, r := range want {
		if seen[r.Content()] == 0 {
			t.Errorf("%s: missing record %v", who, r)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: got %d records, want %d", who, len(got), len(want))
	}
}

// assertProxyAddr fails the test unless host:port is one of the gateway's
// addresses and is not a real broker's.
func assertProxyAddr(t *testing.T, gw *testenv.Gateway, what, host string, port int) {
	t.Helper()
	if cluster.IsBrokerPort(port) {
		t.Errorf("%s: client was given a REAL broker address %s:%d", what, host, port)
		return
	}
	if !gw.Owns(host, port) {
		t.Errorf("%s: address %s:%d is not a kseal address (want %s:%d or %s:%d..%d)", what, host, port,
			gw.Host, gw.BootstrapPort, gw.Host, gw.BrokerPortStart, gw.BrokerPortStart+gw.BrokerPortCount-1)
	}
}

// assertProxyHostPort parses "host:port" (kcat appends "/id" to some) and
// checks it with assertProxyAddr.
func assertProxyHostPort(t *testing.T, gw *testenv.Gateway, what, hostport string) {
	t.Helper()
	hostport, _, _ = strings.Cut(hostport, "/")
	h, p, err := net.SplitHostPort(hostport)
	port, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Errorf("%s: %q is not host:port", what, hostport)
		return
	}
	assertProxyAddr(t, gw, what, h, port)
}

// assertNoRealBrokerPort fails if any real broker's host:port appears in a
// client's raw output.
func assertNoRealBrokerPort(t *testing.T, what, out string) {
	t.Helper()
	for id, addr := range cluster.Brokers {
		if strings.Contains(out, addr) {
			t.Errorf("%s: output names real broker %d at %s:\n%s", what, id, addr, out)
		}
	}
}

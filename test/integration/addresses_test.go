//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/kseal/kseal/internal/testenv"
)

// TestBrokerAddressesAreProxy: every broker address any client is told
// (Metadata, FindCoordinator for a group and a transactional id,
// DescribeCluster; old and new message versions; franz-go, kcat and the
// Java tools) is a kseal address, node N on brokerPortStart+N, and never
// a real broker's. Clients that were told a real address would still work,
// just around the proxy, so only this test catches it.
func TestBrokerAddressesAreProxy(t *testing.T) {
	t.Parallel()
	if direct() {
		t.Skip("KSEAL_IT_DIRECT=1: clients are meant to see the real brokers")
	}
	tg := startProxy(t)
	gw := tg.Gateway
	topic := newTopic(t, "addr", nil)
	group := uniq("it-addr-group")
	txnID := uniq("it-addr-txn")

	// A group with committed offsets and a finished transaction, so both
	// coordinators exist.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	txn := testenv.Kgo(t, []string{tg.Bootstrap}, kgo.TransactionalID(txnID))
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	testenv.KgoProduce(t, txn, makeRecords(topic, "addr", 6, nil, nil))
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1, LeaderEpoch: -1})
	if err := kadm.NewClient(txn).CommitAllOffsets(ctx, group, offs); err != nil {
		t.Fatalf("commit offsets for %s: %v", group, err)
	}

	// The exact address kseal must hand out for a node id.
	assertNode := func(t *testing.T, what string, id int32, host string, port int32) {
		t.Helper()
		assertProxyAddr(t, gw, what, host, int(port))
		if _, ok := cluster.Brokers[id]; !ok {
			t.Errorf("%s: node id %d is not a broker of the cluster", what, id)
		}
		if want := gw.BrokerAddr(id); fmt.Sprintf("%s:%d", host, port) != want {
			t.Errorf("%s: node %d at %s:%d, want %s", what, id, host, port, want)
		}
	}

	legacy := kversion.Stable()
	legacy.SetMaxKeyVersion(3, 8)  // Metadata v8: the last before flexible versions
	legacy.SetMaxKeyVersion(10, 2) // FindCoordinator v2: one key, not flexible
	legacy.SetMaxKeyVersion(60, 0) // DescribeCluster v0
	for _, v := range []struct {
		name string
		opts []kgo.Opt
	}{
		{"franz-go newest versions", nil},
		{"franz-go old versions", []kgo.Opt{kgo.MaxVersions(legacy)}},
	} {
		t.Run(v.name, func(t *testing.T) {
			dials := &dialLog{}
			cl := testenv.Kgo(t, []string{tg.Bootstrap}, append(v.opts, kgo.WithHooks(dials))...)
			adm := kadm.NewClient(cl)

			md, err := adm.BrokerMetadata(ctx)
			if err != nil {
				t.Fatalf("Metadata: %v", err)
			}
			if len(md.Brokers) != len(cluster.Brokers) {
				t.Errorf("Metadata lists %d brokers, want %d", len(md.Brokers), len(cluster.Brokers))
			}
			for _, b := range md.Brokers {
				assertNode(t, "Metadata broker", b.NodeID, b.Host, b.Port)
			}
			if _, ok := cluster.Brokers[md.Controller]; !ok {
				t.Errorf("Metadata controller id %d is not a broker", md.Controller)
			}

			for what, resp := range map[string]kadm.FindCoordinatorResponses{
				"FindCoordinator(group)": findCoordinator(ctx, t, func() kadm.FindCoordinatorResponses {
					return adm.FindGroupCoordinators(ctx, group)
				}),
				"FindCoordinator(transaction)": findCoordinator(ctx, t, func() kadm.FindCoordinatorResponses {
					return adm.FindTxnCoordinators(ctx, txnID)
				}),
			} {
				if len(resp) != 1 {
					t.Errorf("%s: %d answers, want 1", what, len(resp))
				}
				for _, r := range resp {
					if r.Err != nil {
						t.Errorf("%s %s: %v", what, r.Name, r.Err)
						continue
					}
					assertNode(t, what, r.NodeID, r.Host, r.Port)
				}
			}

			dc, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, cl)
			if err == nil {
				err = kerr.ErrorForCode(dc.ErrorCode)
			}
			if err != nil {
				t.Fatalf("DescribeCluster: %v", err)
			}
			if len(dc.Brokers) != len(cluster.Brokers) {
				t.Errorf("DescribeCluster lists %d brokers, want %d", len(dc.Brokers), len(cluster.Brokers))
			}
			for _, b := range dc.Brokers {
				assertNode(t, "DescribeCluster broker", b.NodeID, b.Host, b.Port)
			}

			// Where the client itself connected: the bootstrap address
			// (seed brokers have negative ids) and kseal's broker ports.
			dials.mu.Lock()
			defer dials.mu.Unlock()
			if len(dials.metas) < 2 {
				t.Errorf("franz-go connected to %d addresses, want the bootstrap and brokers", len(dials.metas))
			}
			for _, m := range dials.metas {
				if m.NodeID < 0 {
					assertProxyAddr(t, gw, "franz-go seed connection", m.Host, int(m.Port))
				} else {
					assertNode(t, "franz-go broker connection", m.NodeID, m.Host, m.Port)
				}
			}
		})
	}

	t.Run("kcat", func(t *testing.T) {
		md := testenv.KcatList(t, tg.Bootstrap)
		if len(md.Brokers) != len(cluster.Brokers) {
			t.Errorf("kcat -L lists %d brokers, want %d", len(md.Brokers), len(cluster.Brokers))
		}
		for _, b := range md.Brokers {
			assertProxyHostPort(t, gw, fmt.Sprintf("kcat -L broker %d", b.ID), b.Name)
			if b.Name != gw.BrokerAddr(b.ID) {
				t.Errorf("kcat -L broker %d at %s, want %s", b.ID, b.Name, gw.BrokerAddr(b.ID))
			}
		}
		assertProxyHostPort(t, gw, "kcat -L originating broker", md.OriginatingBroker.Name)
		assertNoRealBrokerPort(t, "kcat -L -J", string(md.Raw))
	})

	hostPort := regexp.MustCompile(`(\d+\.\d+\.\d+\.\d+|localhost):(\d+)`)
	javaAddrs := func(t *testing.T, what, out string, want int) {
		t.Helper()
		assertNoRealBrokerPort(t, what, out)
		ms := hostPort.FindAllStringSubmatch(out, -1)
		if len(ms) < want {
			t.Errorf("%s: found %d addresses, want at least %d:\n%s", what, len(ms), want, out)
		}
		for _, m := range ms {
			port, _ := strconv.Atoi(m[2])
			assertProxyAddr(t, gw, what, m[1], port)
		}
	}
	t.Run("java broker-api-versions", func(t *testing.T) {
		out := testenv.Java(t, cluster, "", testenv.JavaBrokerVersions, "--bootstrap-server", tg.Bootstrap)
		javaAddrs(t, "BrokerApiVersionsCommand", out, len(cluster.Brokers))
	})
	t.Run("java consumer-groups coordinator", func(t *testing.T) {
		out := testenv.Java(t, cluster, "", testenv.JavaGroupCommand, "--bootstrap-server", tg.Bootstrap,
			"--describe", "--group", group, "--state")
		javaAddrs(t, "ConsumerGroupCommand --describe --state", out, 1)
	})
}

// dialLog records every broker franz-go connects to.
type dialLog struct {
	mu    sync.Mutex
	metas []kgo.BrokerMetadata
}

func (d *dialLog) OnBrokerConnect(m kgo.BrokerMetadata, _ time.Duration, _ net.Conn, _ error) {
	d.mu.Lock()
	d.metas = append(d.metas, m)
	d.mu.Unlock()
}

// findCoordinator retries while the coordinator is still loading.
func findCoordinator(ctx context.Context, t *testing.T, f func() kadm.FindCoordinatorResponses) kadm.FindCoordinatorResponses {
	t.Helper()
	for {
		resp := f()
		retry := false
		for _, r := range resp {
			if r.Err != nil && kerr.IsRetriable(r.Err) {
				retry = true
			}
		}
		if !retry || ctx.Err() != nil {
			return resp
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package proxy

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/filter"
)

// metadataSpy records the broker ports of the Metadata responses it sees.
type metadataSpy struct {
	filter.NopFilter
	mu    sync.Mutex
	ports map[int32]bool
}

func (*metadataSpy) APIKeys() []int16 { return []int16{int16(kmsg.Metadata)} }

func (s *metadataSpy) OnResponse(_ context.Context, x *filter.Exchange) error {
	resp := kmsg.NewPtrMetadataResponse()
	resp.SetVersion(x.APIVersion)
	if err := resp.ReadFrom(x.Response[x.RespHeaderLen:]); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range resp.Brokers {
		s.ports[b.Port] = true
	}
	return nil
}

// Extra filters see a response before the plumbing rewrites its broker
// addresses (they see the brokers' own), and the client gets what the
// plumbing makes of their output: every address is rewritten once, last.
func TestExtraFiltersSeeResponsesBeforeAddressRewriting(t *testing.T) {
	fake := newFake(t)
	spy := &metadataSpy{ports: map[int32]bool{}}
	p := startLimitsProxy(t, fake.ListenAddrs()[:1], "{}", spy)
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	upstream := map[int32]bool{}
	for _, a := range fake.ListenAddrs() {
		_, port, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(port)
		upstream[int32(n)] = true
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if len(spy.ports) == 0 {
		t.Fatal("the extra filter saw no brokers")
	}
	for port := range spy.ports {
		if !upstream[port] {
			t.Errorf("the extra filter saw broker port %d, not a broker's own: it ran after address rewriting", port)
		}
	}
	for _, b := range md.Brokers {
		if upstream[b.Port] {
			t.Errorf("the client got broker %d's own port %d", b.NodeID, b.Port)
		}
	}
}

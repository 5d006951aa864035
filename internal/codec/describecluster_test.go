package codec

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func describeClusterFixture(v int16, brokers []kmsg.DescribeClusterResponseBroker) []byte {
	resp := kmsg.NewPtrDescribeClusterResponse()
	resp.Version = v
	resp.ThrottleMillis = 3
	resp.ErrorMessage = rwStr("fine")
	resp.EndpointType = 1
	resp.ClusterID = "cluster-a"
	resp.ControllerID = 2
	resp.Brokers = brokers
	resp.ClusterAuthorizedOperations = 0x55
	resp.UnknownTags = rwTags(4, "top")
	return resp.AppendTo(nil)
}

func describeClusterBroker(v int16, id int32, host string, port int32) kmsg.DescribeClusterResponseBroker {
	b := kmsg.NewDescribeClusterResponseBroker()
	b.NodeID, b.Host, b.Port = id, host, port
	if id != 2 {
		b.Rack = rwStr(fmt.Sprintf("rack-%d", id))
	}
	b.IsFenced = v >= 2 && id == 1
	b.UnknownTags = rwTags(2, fmt.Sprintf("broker-%d", id))
	return b
}

func TestRewriteDescribeClusterResponseEveryVersion(t *testing.T) {
	if got := (&kmsg.DescribeClusterResponse{}).MaxVersion(); got != DescribeClusterMaxVersion {
		t.Fatalf("kmsg knows DescribeCluster v%d, rewriter v%d: check the new layout", got, DescribeClusterMaxVersion)
	}
	for v := int16(0); v <= DescribeClusterMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			upstream := []kmsg.DescribeClusterResponseBroker{
				describeClusterBroker(v, 1, "b1.internal", 9092),
				describeClusterBroker(v, 2, "b2.internal", 9093),
				describeClusterBroker(v, 3, "b3.internal", 9094),
			}
			body := describeClusterFixture(v, upstream)
			m := &rwMapper{drop: map[int32]bool{2: true}}
			out, changed, err := RewriteDescribeClusterResponse(rwDst(), body, v, m)
			if err != nil || !changed {
				t.Fatalf("changed=%v err=%v", changed, err)
			}
			wantCalls := []rwCall{{1, "b1.internal", 9092}, {2, "b2.internal", 9093}, {3, "b3.internal", 9094}}
			if !reflect.DeepEqual(m.calls, wantCalls) {
				t.Fatalf("mapper saw %v, want %v", m.calls, wantCalls)
			}
			mapped := []kmsg.DescribeClusterResponseBroker{upstream[0], upstream[2]}
			for i := range mapped {
				mapped[i].Host, mapped[i].Port = rwProxyHost(mapped[i].NodeID), rwProxyPort(mapped[i].NodeID)
			}
			rwCheckAppended(t, out, describeClusterFixture(v, mapped))

			out, changed, err = RewriteDescribeClusterResponse(rwDst(), body, v, rwIdentity)
			rwCheckUnchanged(t, out, changed, err)

			// Every cut before the brokers array ends is refused.
			brokersEnd := len(body) - 4 - 6 // cluster authorized operations, tags
			for i := 0; i < brokersEnd; i++ {
				out, _, err := RewriteDescribeClusterResponse(rwDst(), body[:i], v, rwIdentity)
				if !errors.Is(err, ErrMalformed) || string(out) != string(rwHdr) {
					t.Fatalf("cut at %d: err=%v out=%q", i, err, out)
				}
			}
		})
	}
	if _, _, err := RewriteDescribeClusterResponse(nil, nil, DescribeClusterMaxVersion+1, rwIdentity); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("err=%v, want ErrUnknownVersion", err)
	}
}

func TestDescribeClusterHugeTagCountRejectedFast(t *testing.T) {
	body := kbin.AppendInt32(nil, 0) // throttle
	body = kbin.AppendInt16(body, 0)
	body = kbin.AppendCompactNullableString(body, nil)
	body = kbin.AppendCompactString(body, "c")
	body = kbin.AppendInt32(body, 1)
	body = kbin.AppendCompactArrayLen(body, 1)
	body = kbin.AppendInt32(body, 1)
	body = kbin.AppendCompactString(body, "h")
	body = kbin.AppendInt32(body, 9092)
	body = kbin.AppendCompactNullableString(body, nil)
	body = append(body, rwHugeTagCount...)
	body = append(body, make([]byte, 64)...)
	rwFastReject(t, body, func(b []byte) error {
		_, _, err := RewriteDescribeClusterResponse(nil, b, 0, rwIdentity)
		return err
	})
}

func describeClusterSeeds() rwSeeds {
	seeds := rwSeeds{}
	for v := int16(0); v <= DescribeClusterMaxVersion; v++ {
		brokers := []kmsg.DescribeClusterResponseBroker{describeClusterBroker(v, 1, "b1", 9092), describeClusterBroker(v, 3, "b3", 9094)}
		seeds[fmt.Sprintf("v%d", v)] = struct {
			version int16
			body    []byte
		}{v, describeClusterFixture(v, brokers)}
	}
	return seeds
}

func TestWriteDescribeClusterSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzDescribeClusterResponse", describeClusterSeeds())
}

func FuzzDescribeClusterResponse(f *testing.F) {
	for _, s := range describeClusterSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (DescribeClusterMaxVersion + 1)
		out, changed, err := RewriteDescribeClusterResponse(nil, body, v, rwFuzzMapper)
		if err != nil || !changed {
			return
		}
		again, changed, err := RewriteDescribeClusterResponse(nil, out, v, rwFuzzMapper)
		if err != nil || changed {
			t.Fatalf("rewritten body: changed=%v err=%v (%x)", changed, err, again)
		}
	})
}

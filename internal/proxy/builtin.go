package proxy

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
)

// builtinFilters are the filters every virtual cluster runs: broker address
// rewriting, ApiVersions intersection, and the observation of clients' SASL
// logins (identity.go).
func builtinFilters(vc *virtualCluster, caps map[int16]int16) []filter.Filter {
	return []filter.Filter{apiVersionsFilter{caps: caps}, acksFilter{}, &addressFilter{vc: vc}, identityFilter{vc: vc}}
}

// acksFilter marks Produce requests with acks=0, which the broker never
// answers, so the plumbing does not wait for (and mismatch) a response.
type acksFilter struct{ filter.NopFilter }

func (acksFilter) APIKeys() []int16 { return []int16{int16(kmsg.Produce)} }

func (acksFilter) OnRequest(_ context.Context, x *filter.Exchange) error {
	acks, err := codec.ProduceAcks(x.Request[x.HeaderLen:], x.APIVersion)
	if err != nil {
		return err
	}
	x.NoResponse = acks == 0
	return nil
}

// refusedAPIs are known APIs kseal neither advertises nor forwards, because
// their responses carry addresses kseal cannot stand in for:
// DescribeQuorum (KIP-853) lists the KRaft controllers' endpoints, which
// clients could then reach around the proxy. Operators query the quorum at
// the controllers directly (kafka-metadata-quorum --bootstrap-controller).
var refusedAPIs = map[int16]bool{
	int16(kmsg.DescribeQuorum): true,
}

// apiVersionsFilter intersects what the broker offers with what kseal can
// decode (see codec.LimitVersions), so clients only pick versions kseal
// understands.
type apiVersionsFilter struct {
	caps map[int16]int16
}

func (f apiVersionsFilter) limit(key, minV, maxV int16) (int16, bool) {
	if refusedAPIs[key] {
		return 0, false
	}
	newMax, keep := codec.LimitVersions(key, minV, maxV)
	if c, ok := f.caps[key]; ok && keep {
		newMax = min(newMax, c)
		keep = newMax >= minV
	}
	return newMax, keep
}

func (apiVersionsFilter) APIKeys() []int16 { return []int16{int16(kmsg.ApiVersions)} }

func (apiVersionsFilter) OnRequest(_ context.Context, x *filter.Exchange) error {
	if x.APIVersion <= codec.ApiVersionsMaxVersion {
		return nil
	}
	// A version kseal cannot read the answer of: answer as a broker does,
	// with UNSUPPORTED_VERSION and the versions to retry with.
	// (Answer writes the header ApiVersions always has: v0, no tags.)
	return x.Answer(func(dst []byte) []byte {
		return codec.AppendApiVersionsUnsupported(dst, codec.ApiVersionsMaxVersion)
	})
}

func (f apiVersionsFilter) OnResponse(_ context.Context, x *filter.Exchange) error {
	return x.RewriteResponse(func(dst, body []byte) ([]byte, bool, error) {
		return codec.RewriteApiVersionsResponse(dst, body, x.APIVersion, f.limit)
	})
}

// addressFilter rewrites every broker address in responses to the proxy's,
// so clients never learn (or use) a real broker address.
type addressFilter struct {
	filter.NopFilter
	vc *virtualCluster
}

func (f *addressFilter) APIKeys() []int16 {
	return []int16{
		int16(kmsg.Produce), int16(kmsg.Metadata), int16(kmsg.FindCoordinator), int16(kmsg.DescribeCluster),
		int16(kmsg.Fetch), int16(kmsg.ShareFetch), int16(kmsg.ShareAcknowledge),
	}
}

type rewriteFunc func(dst, body []byte, version int16, m codec.AddressMapper) ([]byte, bool, error)

var fetchWalkerKey, shareFetchWalkerKey = new(int), new(int)

func (f *addressFilter) OnResponse(_ context.Context, x *filter.Exchange) error {
	var rewrite rewriteFunc
	switch kmsg.Key(x.APIKey) {
	case kmsg.Metadata:
		// Learn topic ids on the way: ShareFetch names topics only by id.
		if err := codec.WalkMetadataTopics(x.Response[x.RespHeaderLen:], x.APIVersion, f.vc.topics.learn); err != nil {
			return err
		}
		rewrite = codec.RewriteMetadataResponse
	case kmsg.FindCoordinator:
		rewrite = codec.RewriteFindCoordinatorResponse
	case kmsg.DescribeCluster:
		rewrite = codec.RewriteDescribeClusterResponse
	case kmsg.Produce:
		rewrite = func(dst, body []byte, v int16, m codec.AddressMapper) ([]byte, bool, error) {
			return codec.RewriteProduceResponse(dst, body, v, m)
		}
	case kmsg.ShareAcknowledge:
		rewrite = codec.RewriteShareAcknowledgeResponse
	case kmsg.Fetch:
		w := x.ConnState(fetchWalkerKey, func() any { return &codec.FetchWalker{Mapper: f.vc} }).(*codec.FetchWalker)
		rewrite = func(dst, body []byte, v int16, _ codec.AddressMapper) ([]byte, bool, error) {
			return w.Walk(dst, body, v, nil)
		}
	case kmsg.ShareFetch:
		w := x.ConnState(shareFetchWalkerKey, func() any { return &codec.ShareFetchWalker{Mapper: f.vc} }).(*codec.ShareFetchWalker)
		rewrite = func(dst, body []byte, v int16, _ codec.AddressMapper) ([]byte, bool, error) {
			return w.Walk(dst, body, v, nil)
		}
	default:
		return nil
	}
	return x.RewriteResponse(func(dst, body []byte) ([]byte, bool, error) {
		return rewrite(dst, body, x.APIVersion, f.vc)
	})
}

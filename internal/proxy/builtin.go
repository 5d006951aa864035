package proxy

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
)

// builtinFilters are the filters every virtual cluster runs: ApiVersions
// intersection and the observation of clients' SASL logins (identity.go).
// Broker addresses and Produce acks are not filters' business: the
// plumbing handles them itself (addresses.go, conn.go).
func builtinFilters(vc *virtualCluster, caps map[int16]int16) []filter.Filter {
	return []filter.Filter{apiVersionsFilter{caps: caps}, identityFilter{vc: vc}}
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

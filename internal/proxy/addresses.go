package proxy

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/filter"
)

// carriesAddresses reports whether responses of key carry broker endpoints,
// which the plumbing rewrites to the proxy's (rewriteAddresses) so clients
// never learn, or use, a real broker address.
func carriesAddresses(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.Metadata, kmsg.FindCoordinator, kmsg.DescribeCluster,
		kmsg.Produce, kmsg.ShareAcknowledge, // KIP-951 leader endpoints
		kmsg.Fetch, kmsg.ShareFetch:
		return true
	}
	return false
}

// rewriteAddresses maps every broker endpoint of x's response to the
// proxy's (vc.MapBroker, which learns the brokers on the way), once the
// response filters have run: filters never see or walk addresses. It is one
// walk per response: a Metadata response's topic ids are learned in the
// same walk, and a Fetch or ShareFetch response's endpoints are mapped in
// the scan that also records its partitions for the filters
// (filter.Exchange.Partitions; scanned here when no filter did), which is
// then spliced once with the filters' edits.
func (c *conn) rewriteAddresses(x *filter.Exchange) error {
	vc := c.vc
	switch kmsg.Key(x.APIKey) {
	case kmsg.Fetch, kmsg.ShareFetch:
		if _, err := x.Partitions(); err != nil {
			return err
		}
		return x.FinishResponse()
	}
	body := x.Response[x.RespHeaderLen:]
	out := append(x.Scratch(), x.Response[:x.RespHeaderLen]...)
	var changed bool
	var err error
	switch kmsg.Key(x.APIKey) {
	case kmsg.Metadata:
		// ShareFetch (and Fetch v13+) name topics only by id: learn them.
		out, changed, err = codec.RewriteMetadata(out, body, x.APIVersion, vc, vc.topics.learn)
	case kmsg.FindCoordinator:
		out, changed, err = codec.RewriteFindCoordinatorResponse(out, body, x.APIVersion, vc)
	case kmsg.DescribeCluster:
		out, changed, err = codec.RewriteDescribeClusterResponse(out, body, x.APIVersion, vc)
	case kmsg.Produce:
		out, changed, err = codec.RewriteProduceResponse(out, body, x.APIVersion, vc)
	case kmsg.ShareAcknowledge:
		out, changed, err = codec.RewriteShareAcknowledgeResponse(out, body, x.APIVersion, vc)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	if changed {
		x.Response = out
	}
	return nil
}

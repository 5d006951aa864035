package codec

// AddressMapper decides what broker address clients see. It is called for
// every broker endpoint found in a response (Metadata, FindCoordinator,
// DescribeCluster and the KIP-951 node endpoints). It returns the proxy's
// host and port for that node, or ok=false when the node cannot be mapped;
// the rewriter then drops the entry (arrays) or turns it into a retriable
// error (single coordinators), so a real broker address never reaches a
// client.
type AddressMapper interface {
	MapBroker(nodeID int32, host string, port int32) (proxyHost string, proxyPort int32, ok bool)
}

// MapperFunc adapts a function to AddressMapper.
type MapperFunc func(nodeID int32, host string, port int32) (string, int32, bool)

// MapBroker calls f.
func (f MapperFunc) MapBroker(nodeID int32, host string, port int32) (string, int32, bool) {
	return f(nodeID, host, port)
}

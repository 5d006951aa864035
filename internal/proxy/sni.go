package proxy

import (
	"strconv"
	"strings"

	"github.com/kseal/kseal/internal/config"
)

// sniRouter maps TLS server names to brokers: the bootstrap host to the
// bootstrap servers, prefix<N>suffix to node N.
type sniRouter struct {
	bootstrap      string
	prefix, suffix string
}

func newSNIRouter(c *config.SNI) *sniRouter {
	pre, suf, _ := strings.Cut(c.BrokerHostPattern, config.NodeIDPlaceholder)
	return &sniRouter{bootstrap: strings.ToLower(c.BootstrapHost), prefix: strings.ToLower(pre), suffix: strings.ToLower(suf)}
}

// route returns -1 for the bootstrap host, the node id for a broker host.
func (r *sniRouter) route(serverName string) (int32, bool) {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if name == r.bootstrap {
		return -1, true
	}
	if len(name) <= len(r.prefix)+len(r.suffix) || !strings.HasPrefix(name, r.prefix) || !strings.HasSuffix(name, r.suffix) {
		return 0, false
	}
	digits := name[len(r.prefix) : len(name)-len(r.suffix)]
	n, err := strconv.ParseInt(digits, 10, 32)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != digits {
		return 0, false
	}
	return int32(n), true
}

func (r *sniRouter) host(node int32) string {
	return r.prefix + strconv.Itoa(int(node)) + r.suffix
}

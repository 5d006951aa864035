package proxy

import "context"

// builtinFilters are the filters every virtual cluster runs: broker address
// rewriting and ApiVersions intersection.
func builtinFilters(vc *virtualCluster) []Filter {
	return nil
}

// refreshMetadata asks the upstream cluster for its brokers and records them.
func (vc *virtualCluster) refreshMetadata(ctx context.Context) error {
	return nil
}

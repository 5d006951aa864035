package azure

import "github.com/kseal/kseal/internal/kms"

// The offline describer lets `kseal inspect` and `kseal audit` name the key
// and version of an Azure EDEK without credentials.
func init() { kms.RegisterDescriber("azure", DescribeEDEK) }

// DescribeEDEK parses an EDEK offline: key name and version.
func DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	p, err := parseEDEK(edek)
	if err != nil {
		return kms.EDEKInfo{}, err
	}
	return kms.EDEKInfo{KEK: p.name, Version: p.version}, nil
}

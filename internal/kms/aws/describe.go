package aws

import "github.com/kseal/kseal/internal/kms"

// The offline describer lets `kseal inspect` and `kseal audit` name the key
// of an AWS EDEK without credentials.
func init() { kms.RegisterDescriber("aws", DescribeEDEK) }

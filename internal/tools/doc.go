// Package tools implements the operator's tools: inspect (what is stored at
// the brokers, record by record), audit (per-topic evidence that what is
// stored matches the encryption policy) and reencrypt (copy a topic through
// a kseal proxy so every record is sealed again under the current KEK
// version, exactly once and resumable).
//
// inspect and audit read the brokers directly and never decrypt: they need
// no KMS access and learn a record's KEK only from what its EDEK says
// (kms.LookupDescriber). reencrypt never handles keys itself; the proxy
// decrypts and encrypts. No tool prints record keys, values or EDEKs: only
// sizes, format fields and DEK ids (docs/format.md, "DEK identity").
package tools

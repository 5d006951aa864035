// Package dek manages data encryption keys (DEKs) between the record format
// (internal/recordcrypt) and a KMS (internal/kms).
//
// Encrypt side: one active DEK per KEK per Manager, shared by every
// connection. It is refreshed asynchronously after RefreshAfterWrite (the old
// DEK keeps serving until the new one is ready), stops serving after
// ExpireAfterWrite, and hands out at most MaxEncryptionsPerDEK nonce counters.
// Concurrent misses collapse into one KMS call per KEK, and a caller never
// waits longer than its context allows, so a slow KMS stalls only the
// requests that need a key it has not produced yet.
//
// Decrypt side: a bounded LRU of unwrapped DEKs keyed by EDEK (size, a TTL
// after last access, and an absolute DecryptCacheMaxAge after the unwrap,
// so a revoked KEK stops decryption within a known bound; a DEK in use is
// unwrapped again in the background before it reaches that age), one KMS
// call per EDEK however many callers miss at once, and a short memory of
// EDEKs the KMS refused (a deleted KEK does not get hammered).
//
// KEK names: a small cache from the names policy selects to kms.KEKRef.
//
// This package never logs, returns or retains plaintext key bytes: a KMS's
// key slice is wiped as soon as the AES-GCM cipher is built (Go's AES keeps
// its own expanded key schedule, which only the garbage collector reclaims;
// see docs/threat-model.md). A DEK produced to decrypt is never used to seal.
package dek

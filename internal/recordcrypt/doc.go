// Package recordcrypt implements kseal's encrypted record format, specified
// in docs/format.md: it seals one record value into a self-describing
// envelope (format version, flags, EDEK, nonce counter, AES-256-GCM
// ciphertext) and opens it again, binding the ciphertext to its topic and,
// by default, its record key through associated data.
//
// The package knows nothing about KMSs, caches or Kafka batches: callers hand
// it a ready AEAD (for opening) or a Key that also hands out nonce counters
// (for sealing). Parse reads an envelope without any key, for inspection
// tools.
//
// It must never log or retain key material or plaintext, never allocate per
// record in steady state, and never accept an envelope that does not follow
// the spec byte for byte (every field is canonical and authenticated).
package recordcrypt

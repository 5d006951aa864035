// Package recordcrypt implements kseal's encrypted record format, specified
// in docs/format.md.
//
// Version 1 (Seal, Parse, Open) seals one record value into a
// self-describing envelope (format version, flags, EDEK, nonce counter,
// AES-256-GCM ciphertext) and opens it again, binding the ciphertext to its
// topic and, by default, its record key through associated data.
//
// Version 2 (Sealer.SealV2, ParseRecord, Opener.OpenV2) works on whole
// records: it can also seal the record key deterministically (AES-SIV under
// a DetKey, so compaction keeps working) and move headers into the envelope,
// and it writes a marker header that says which parts are encrypted.
// ParseRecord and OpenV2 read version 1 records too.
//
// The package knows nothing about KMSs, key stores, caches or Kafka batches:
// callers hand it a ready AEAD and DetKey (for opening) or a Key that also
// hands out nonce counters (for sealing). Parse and ParseRecord read without
// any key, for inspection tools and to find the keys to fetch.
//
// It must never log or retain key material or plaintext, never allocate per
// record in steady state, and never accept an envelope that does not follow
// the spec byte for byte (every field is canonical and authenticated).
package recordcrypt

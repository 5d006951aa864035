// Package records reads and rewrites Kafka record sets: RecordBatch v2 framing,
// the records inside a batch, CRC-32C and the four compression codecs.
//
// It is the batch layer under the Produce (encrypt) and Fetch (decrypt) paths:
//
//   - [BatchIter] splits a partition's record set into batches without copying,
//     reporting old magic 0/1 messages and a trailing partial batch for the
//     caller to reject or forward.
//   - [Processor] decompresses one batch (bounded), iterates its records as
//     views into its own buffers, answers "does any record carry header K"
//     cheaply, and rebuilds the batch with edited values and headers, the same
//     codec, and a fresh length and CRC.
//
// Input bytes are untrusted. Nothing here panics on any input, every loop is
// bounded by the bytes left, and decompression stops at a caller-chosen size
// with [ErrTooLarge]. This package knows nothing about encryption, topics or
// keys, and it never logs record contents.
//
// Hot path: a Processor and a BatchIter are reusable and allocate nothing per
// record once their buffers have grown; a Processor is not safe for concurrent
// use, so keep one per goroutine (or in a sync.Pool).
package records

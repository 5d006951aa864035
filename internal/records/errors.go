package records

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt reports bytes that do not form a valid batch, record or
	// compressed payload. Every other error here except ErrTooLarge and
	// ErrLegacyMagic wraps it.
	ErrCorrupt = errors.New("records: corrupt record data")

	// ErrTooLarge reports a batch whose records decompress past the
	// Processor's limit, or a rewritten batch longer than a batch can be.
	ErrTooLarge = errors.New("records: batch too large")

	// ErrCRCMismatch reports a batch whose stored CRC-32C does not match its
	// bytes. Only checked when asked to (WithVerifyCRC, VerifyCRC).
	ErrCRCMismatch = fmt.Errorf("%w: CRC-32C mismatch", ErrCorrupt)

	// ErrUnknownCodec reports compression codec bits 5, 6 or 7.
	ErrUnknownCodec = fmt.Errorf("%w: unknown compression codec", ErrCorrupt)

	// ErrLegacyMagic reports a magic 0/1 message where a v2 batch is needed.
	// Such messages are valid Kafka; this package only does not open them.
	ErrLegacyMagic = errors.New("records: magic 0/1 message set, not a RecordBatch v2")

	// ErrPartial reports a trailing batch cut short (normal at the end of a
	// Fetch response) where a complete batch is needed.
	ErrPartial = fmt.Errorf("%w: partial batch", ErrCorrupt)
)

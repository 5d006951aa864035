// Package frame reads and writes Kafka's size-prefixed frames and parses the
// request and response headers inside them.
//
// A frame on the wire is a 4-byte big-endian size followed by that many bytes
// (the message: header then body). ReadFrame returns the whole frame, size
// prefix included, so a proxy that does not change a message can write the
// exact bytes it read with a single Write. A proxy that rewrites a message
// starts a new frame with StartFrame, appends the header bytes it keeps and the
// new body, then patches the size with FinishFrame: the body is written once,
// straight into the outgoing buffer.
//
// Everything here treats the bytes as untrusted: sizes are checked against
// limits before any allocation, buffers grow only as fast as bytes arrive, and
// no loop runs more times than there are bytes left. This package never
// decodes message bodies and never hands bytes to kmsg's decoders.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// SizeLen is the length of the size prefix of every frame.
const SizeLen = 4

// Smallest legal message sizes (the size prefix excluded). A request carries
// at least api key, api version and correlation id (header v0); a response at
// least a correlation id.
const (
	MinRequestSize  = 8
	MinResponseSize = 4
)

// growStep is the first growth of a buffer too small for a frame. Later growth
// doubles what has arrived, so a peer that announces a huge frame and then
// stalls cannot make us allocate the announced size.
const growStep = 64 << 10

var (
	// ErrFrameTooLarge reports a frame whose announced size exceeds the limit.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrFrameTooSmall reports a frame whose announced size is below the
	// minimum (negative sizes included).
	ErrFrameTooSmall = errors.New("frame too small")
)

// SizeError is returned for a frame whose announced size is out of bounds.
// It matches ErrFrameTooLarge or ErrFrameTooSmall with errors.Is.
type SizeError struct {
	Size     int64 // the announced size
	Min, Max int   // the bounds it was checked against
}

func (e *SizeError) Error() string {
	if e.Size > int64(e.Max) {
		return fmt.Sprintf("frame size %d exceeds limit %d", e.Size, e.Max)
	}
	return fmt.Sprintf("frame size %d below minimum %d", e.Size, e.Min)
}

// Is makes errors.Is match the sentinel for the side the size fell off.
func (e *SizeError) Is(target error) bool {
	if e.Size > int64(e.Max) {
		return target == ErrFrameTooLarge
	}
	return target == ErrFrameTooSmall
}

// ReadFrame reads one frame from r into buf's storage and returns it, size
// prefix included (the message is frame[SizeLen:]). The announced size must be
// within [minSize, maxSize], otherwise a *SizeError is returned and nothing
// beyond the prefix is read (the stream is then out of sync: close it).
//
// A stream that ends cleanly before the first byte returns io.EOF; one that
// ends inside a frame returns io.ErrUnexpectedEOF. On error the returned slice
// is empty but keeps buf's storage, so callers can always write
// buf, err = ReadFrame(r, buf, ...).
//
// When buf is too small it grows by doubling as bytes arrive (starting at
// growStep), so memory follows what the peer really sends, not what it
// announces.
func ReadFrame(r io.Reader, buf []byte, minSize, maxSize int) ([]byte, error) {
	if maxSize > math.MaxInt32 {
		maxSize = math.MaxInt32
	}
	if cap(buf) < SizeLen {
		buf = make([]byte, 0, 512)
	}
	buf = buf[:SizeLen]
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf[:0], err
	}
	size := int64(int32(binary.BigEndian.Uint32(buf)))
	if size < int64(minSize) || size > int64(maxSize) {
		return buf[:0], &SizeError{Size: size, Min: minSize, Max: maxSize}
	}
	need := SizeLen + int(size)
	for len(buf) < need {
		if len(buf) == cap(buf) {
			// Double what we hold (at least growStep), capped at the
			// frame: memory stays within twice the bytes received.
			nb := make([]byte, len(buf), min(max(2*len(buf), growStep), need))
			copy(nb, buf)
			buf = nb
		}
		end := min(cap(buf), need)
		n, err := io.ReadFull(r, buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf[:0], fmt.Errorf("read frame of %d bytes after %d: %w", size, len(buf)-SizeLen, err)
		}
	}
	return buf, nil
}

// ReadRequest reads a request frame (see ReadFrame).
func ReadRequest(r io.Reader, buf []byte, maxSize int) ([]byte, error) {
	return ReadFrame(r, buf, MinRequestSize, maxSize)
}

// ReadResponse reads a response frame (see ReadFrame).
func ReadResponse(r io.Reader, buf []byte, maxSize int) ([]byte, error) {
	return ReadFrame(r, buf, MinResponseSize, maxSize)
}

// StartFrame appends a placeholder size prefix to dst and returns the new
// slice and the offset of the prefix, to be passed to FinishFrame once the
// message has been appended.
func StartFrame(dst []byte) ([]byte, int) {
	return append(dst, 0, 0, 0, 0), len(dst)
}

// FinishFrame writes the size of the frame that starts at start (as returned
// by StartFrame) and runs to the end of buf.
func FinishFrame(buf []byte, start int) error {
	if start < 0 || len(buf)-start < SizeLen {
		return fmt.Errorf("finish frame: no size prefix at offset %d of %d bytes", start, len(buf))
	}
	size := len(buf) - start - SizeLen
	if size > math.MaxInt32 {
		return fmt.Errorf("finish frame: message of %d bytes: %w", size, ErrFrameTooLarge)
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(size))
	return nil
}

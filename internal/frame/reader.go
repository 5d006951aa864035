package frame

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Reader reads frames from a stream into one buffer that it reuses. Each
// read asks the stream for as much as the buffer has room for, so a frame
// (often with the start of the next one) usually arrives in one system call
// and is never copied out of a separate read buffer, as it would be with a
// bufio.Reader in front of ReadFrame.
//
// Like ReadFrame it treats the stream as untrusted: sizes are checked before
// anything grows, and the buffer grows only as bytes arrive (doubling what
// it holds, capped at the frame), never to an announced size up front.
type Reader struct {
	r                io.Reader
	buf              []byte // buf[off:] holds bytes read but not yet returned
	off              int
	minSize, maxSize int
	initial, retain  int
}

// NewReader reads frames of [minSize, maxSize] bytes (the size prefix
// excluded) from r. The buffer starts at initial bytes and, between frames,
// shrinks back to initial when it grew past retain.
func NewReader(r io.Reader, initial, retain, minSize, maxSize int) *Reader {
	if maxSize > math.MaxInt32 {
		maxSize = math.MaxInt32
	}
	initial = max(initial, 2*SizeLen)
	return &Reader{r: r, minSize: minSize, maxSize: maxSize, initial: initial, retain: max(retain, initial)}
}

// Next returns the next frame's message (what follows its size prefix). It
// is valid until the next call to Next, which may overwrite it. A stream
// that ends cleanly between frames returns io.EOF; one that ends inside a
// frame io.ErrUnexpectedEOF; a size out of bounds a *SizeError (the stream
// is then out of sync: close it).
func (fr *Reader) Next() ([]byte, error) {
	fr.release()
	if err := fr.fill(SizeLen, nil); err != nil {
		return nil, err
	}
	size := int64(int32(binary.BigEndian.Uint32(fr.buf[fr.off:])))
	if size < int64(fr.minSize) || size > int64(fr.maxSize) {
		return nil, &SizeError{Size: size, Min: fr.minSize, Max: fr.maxSize}
	}
	need := SizeLen + int(size)
	if err := fr.fill(need, func(err error) error {
		return fmt.Errorf("read frame of %d bytes after %d: %w", size, len(fr.buf)-fr.off-SizeLen, err)
	}); err != nil {
		return nil, err
	}
	msg := fr.buf[fr.off+SizeLen : fr.off+need : fr.off+need]
	fr.off += need
	return msg, nil
}

// Complete reports whether a whole frame is already buffered, so that the
// next call to Next returns without reading from the stream (the frame may
// still be refused for its size).
func (fr *Reader) Complete() bool {
	n := len(fr.buf) - fr.off
	if n < SizeLen {
		return false
	}
	size := int64(int32(binary.BigEndian.Uint32(fr.buf[fr.off:])))
	return size < 0 || int64(n) >= SizeLen+size
}

// Storage is the reader's buffer: every message Next returns aliases it.
func (fr *Reader) Storage() []byte { return fr.buf[:cap(fr.buf)] }

// release drops the frame returned last: the unread bytes move to the front
// (few, usually: the start of the next frame), and a buffer grown past
// retain is given up.
func (fr *Reader) release() {
	rest := len(fr.buf) - fr.off
	if cap(fr.buf) > fr.retain && rest <= fr.initial {
		nb := make([]byte, rest, fr.initial)
		copy(nb, fr.buf[fr.off:])
		fr.buf, fr.off = nb, 0
		return
	}
	if fr.off > 0 && rest == 0 {
		fr.buf, fr.off = fr.buf[:0], 0
	}
}

// fill reads until buf[off:] holds at least n bytes. wrap, if not nil,
// describes errors after the first byte of a frame.
func (fr *Reader) fill(n int, wrap func(error) error) error {
	for len(fr.buf)-fr.off < n {
		if fr.buf == nil {
			fr.buf = make([]byte, 0, fr.initial)
		}
		if cap(fr.buf)-fr.off < n && (fr.off > 0 || len(fr.buf) == cap(fr.buf)) {
			fr.makeRoom(n)
		}
		m, err := fr.r.Read(fr.buf[len(fr.buf):cap(fr.buf)])
		fr.buf = fr.buf[:len(fr.buf)+m]
		if err != nil {
			if len(fr.buf)-fr.off >= n {
				// Enough arrived with the error; report it on the next read.
				return nil
			}
			if err == io.EOF && len(fr.buf) > fr.off {
				err = io.ErrUnexpectedEOF
			}
			if wrap != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				err = wrap(err)
			}
			return err
		}
	}
	return nil
}

// makeRoom makes room toward a frame of n bytes that does not fit after
// off: it moves the unread bytes to the front when the buffer can hold the
// frame (or may not grow yet), and otherwise grows it, doubling what is held
// (at least growStep, at most the frame), so that memory follows the bytes
// that arrived, never an announced size.
func (fr *Reader) makeRoom(n int) {
	held := len(fr.buf) - fr.off
	newCap := min(max(2*held, growStep), n)
	if newCap <= cap(fr.buf) {
		copy(fr.buf, fr.buf[fr.off:])
		fr.buf, fr.off = fr.buf[:held], 0
		return
	}
	nb := make([]byte, held, newCap)
	copy(nb, fr.buf[fr.off:])
	fr.buf, fr.off = nb, 0
}

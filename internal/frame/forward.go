package frame

import (
	"bufio"
	"errors"
	"io"
)

// Forward copies the next n bytes of a frame from src to dst through src's
// buffer, in chunks of at most its size, so nothing more is held in memory.
// It returns io.ErrUnexpectedEOF when src ends first, and a *WriteError when
// dst fails. A dst that is a Forwarder may move the bytes itself.
func Forward(dst io.Writer, src *bufio.Reader, n int) error {
	if f, ok := dst.(Forwarder); ok && n > 0 {
		if handled, err := f.ForwardFrom(src, n); handled {
			return err
		}
	}
	for n > 0 {
		k := min(n, src.Size())
		b, err := src.Peek(k)
		if err != nil {
			return NoEOF(err)
		}
		if _, err := dst.Write(b); err != nil {
			return &WriteError{Err: err}
		}
		src.Discard(k)
		n -= k
	}
	return nil
}

// Forwarder is a destination that can move bytes from a source's stream
// itself, e.g. socket to socket with splice(2), without copying them
// through memory.
type Forwarder interface {
	// ForwardFrom forwards the next n bytes of src's stream: those src has
	// buffered first, then the rest from src's underlying reader. It
	// returns handled false, having done nothing, to leave the bytes to
	// Forward's copy; otherwise the errors are Forward's.
	ForwardFrom(src *bufio.Reader, n int) (handled bool, err error)
}

// WriteError is a failure to write a frame to its destination, as opposed
// to bad or missing input.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// NoEOF turns the end of a stream inside a frame into io.ErrUnexpectedEOF.
func NoEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

package frame

import (
	"bufio"
	"errors"
	"io"
)

// Forward copies the next n bytes of a frame from src to dst through src's
// buffer, in chunks of at most its size, so nothing more is held in memory.
// It returns io.ErrUnexpectedEOF when src ends first, and a *WriteError when
// dst fails.
func Forward(dst io.Writer, src *bufio.Reader, n int) error {
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

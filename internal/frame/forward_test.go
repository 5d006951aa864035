package frame

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

func TestForward(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	src := bufio.NewReaderSize(bytes.NewReader(data), 16) // many chunks
	var dst bytes.Buffer
	if err := Forward(&dst, src, 9000); err != nil || !bytes.Equal(dst.Bytes(), data[:9000]) {
		t.Fatalf("forwarded %d bytes, err %v", dst.Len(), err)
	}
	// The rest stays in src for the next frame.
	if rest, _ := io.ReadAll(src); !bytes.Equal(rest, data[9000:]) {
		t.Fatalf("left %d bytes, want 1000", len(rest))
	}
	// A stream that ends inside the frame.
	err := Forward(io.Discard, bufio.NewReader(strings.NewReader("abc")), 10)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short stream: %v", err)
	}
	// A destination that fails.
	var we *WriteError
	if err := Forward(failWriter{}, bufio.NewReader(strings.NewReader("abc")), 3); !errors.As(err, &we) || we.Err.Error() != "client gone" {
		t.Fatalf("failing writer: %v", err)
	}
}

// fwd is a Forwarder that takes runs of at least min bytes itself.
type fwd struct {
	bytes.Buffer
	min, took int
}

func (f *fwd) ForwardFrom(src *bufio.Reader, n int) (bool, error) {
	if n < f.min {
		return false, nil
	}
	f.took += n
	_, err := io.CopyN(&f.Buffer, src, int64(n))
	return true, NoEOF(err)
}

// A Forwarder moves the runs it takes itself; the others are copied.
func TestForwardToForwarder(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	src := bufio.NewReaderSize(bytes.NewReader(data), 16)
	dst := &fwd{min: 100}
	if err := Forward(dst, src, 50); err != nil || dst.took != 0 {
		t.Fatalf("short run: err %v, forwarder took %d bytes", err, dst.took)
	}
	if err := Forward(dst, src, 950); err != nil || dst.took != 950 {
		t.Fatalf("long run: err %v, forwarder took %d bytes", err, dst.took)
	}
	if !bytes.Equal(dst.Bytes(), data) {
		t.Fatal("bytes differ")
	}
	if err := Forward(&fwd{min: 1}, bufio.NewReader(strings.NewReader("abc")), 10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("forwarder's error: %v", err)
	}
}

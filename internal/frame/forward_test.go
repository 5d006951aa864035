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

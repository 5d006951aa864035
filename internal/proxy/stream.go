package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/frame"
)

// streamMode is how a response is forwarded.
type streamMode uint8

const (
	// buffered: read whole, filtered, broker addresses rewritten, then
	// written.
	buffered streamMode = iota
	// streamRaw: nothing in the response needs a hook; it is written while
	// it arrives.
	streamRaw
	// streamFetch: a Fetch response no filter edits: codec.FetchStream
	// forwards it while it arrives, rewriting the node endpoints in place.
	streamFetch
)

// responseMode tells how responses to key are forwarded, by the hooks they
// need: the plumbing's endpoint rewrite (carriesAddresses) and the response
// filters registered for key, which may edit anything (a Fetch response's
// records, say) and so see it whole. Streaming saves a consumer the time
// kseal would take to read a whole fetch before sending its first byte, and
// keeps large responses out of kseal's buffers.
func (vc *virtualCluster) responseMode(key int16) streamMode {
	switch {
	case len(vc.respFilters[key]) > 0:
		return buffered
	case key == int16(kmsg.Fetch):
		return streamFetch // endpoints rewritten while streaming
	case carriesAddresses(key):
		return buffered
	}
	return streamRaw
}

// stream forwards x's response from r to w while it arrives. It returns
// false, having read nothing, when the response should take the buffered
// path instead (a Fetch response header with tagged fields, which no broker
// sends today); it returns the frame's size otherwise.
func (c *conn) stream(r *bufio.Reader, w *streamWriter, x *exchange, mode streamMode) (size int, ok bool, err error) {
	b, err := r.Peek(frame.SizeLen)
	if err != nil {
		return 0, false, err
	}
	n := int64(int32(binary.BigEndian.Uint32(b)))
	if max := c.vc.cfg.Limits.MaxFrameBytes; n < frame.MinResponseSize || n > int64(max) {
		return 0, false, &frame.SizeError{Size: n, Min: frame.MinResponseSize, Max: max}
	}
	size = int(n)
	head := frame.SizeLen + 4 // size and correlation id
	flexFetch := mode == streamFetch && x.APIVersion >= 12
	if flexFetch {
		if size < 5 {
			return 0, false, nil // malformed: the buffered path says so
		}
		head++ // the header's tagged fields: one 0 byte when there are none
	}
	if b, err = r.Peek(head); err != nil {
		return 0, false, fmt.Errorf("read response: %w", frame.NoEOF(err))
	}
	if got := int32(binary.BigEndian.Uint32(b[frame.SizeLen:])); got != x.CorrelationID {
		return 0, false, fmt.Errorf("broker answered correlation id %d, expected %d (%s)", got, x.CorrelationID, apiName(x.APIKey))
	}
	if flexFetch && b[head-1] != 0 {
		return 0, false, nil
	}
	if _, err := w.Write(b); err != nil {
		return 0, false, fmt.Errorf("write to client: %w", err)
	}
	r.Discard(head)
	rest := size + frame.SizeLen - head
	switch mode {
	case streamFetch:
		err = c.fetchStream.Forward(w, r, rest, x.APIVersion)
	default:
		err = frame.Forward(w, r, rest)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		var we *frame.WriteError
		if errors.As(err, &we) {
			return 0, false, fmt.Errorf("write to client: %w", we.Err)
		}
		return 0, false, fmt.Errorf("%s v%d response (correlation id %d), forwarded in part: %w", apiName(x.APIKey), x.APIVersion, x.CorrelationID, frame.NoEOF(err))
	}
	return size, true, nil
}

// spliceMin is the shortest run of bytes a streamWriter splices: below it,
// a copy through the buffers costs less than the pipe's two system calls.
const spliceMin = 64 << 10

// streamWriter is the buffered writer of streamed responses. When the
// client and broker connections are both plaintext TCP it is also a
// frame.Forwarder: long runs of bytes (a partition's records) then go from
// the broker's socket to the client's with splice(2) through a pipe, never
// copied through kseal's memory. Everything else is buffered and copied as
// by a bufio.Writer.
type streamWriter struct {
	*bufio.Writer
	sp      *splicer           // nil: copy only
	spliced prometheus.Counter // bytes spliced to the client; may be nil
}

// newStreamWriter writes to client; it splices from upstream to client when
// both are plaintext TCP (socketIO), counting the bytes spliced in spliced
// (nil: not counted).
func newStreamWriter(client, upstream net.Conn, size int, spliced prometheus.Counter) *streamWriter {
	return &streamWriter{Writer: bufio.NewWriterSize(client, size), sp: newSplicer(upstream, client), spliced: spliced}
}

// ForwardFrom implements frame.Forwarder: the bytes src has buffered are
// copied, the buffered output is written, and the rest is spliced.
func (w *streamWriter) ForwardFrom(src *bufio.Reader, n int) (bool, error) {
	if w.sp == nil || n < spliceMin {
		return false, nil
	}
	if err := w.sp.open(); err != nil {
		// No pipe (e.g. out of file descriptors): copy, on this
		// connection from now on.
		w.sp = nil
		return false, nil
	}
	if k := min(src.Buffered(), n); k > 0 {
		b, _ := src.Peek(k)
		if _, err := w.Write(b); err != nil {
			return true, &frame.WriteError{Err: err}
		}
		src.Discard(k)
		n -= k
	}
	if err := w.Flush(); err != nil {
		return true, &frame.WriteError{Err: err}
	}
	moved, err := w.sp.splice(n)
	if w.spliced != nil && moved > 0 {
		w.spliced.Add(float64(moved))
	}
	return true, err
}

// Close releases the splicing pipe, if any.
func (w *streamWriter) Close() {
	if w.sp != nil {
		w.sp.Close()
	}
}

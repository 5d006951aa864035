//go:build integration

package integration

// The raw side of TestHostileClients: a Kafka connection with no client
// library behind it, that writes frames exactly as a hostile client would
// (kmsg encodes the well-formed parts, the rest is built byte by byte), and
// hand-built RecordBatch v2 bytes (records, compression bombs, control
// batches, forged markers). Every name starts with hw so it cannot collide
// with the helpers of the other integration tests.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// hwConn is one raw TCP connection to kseal.
type hwConn struct {
	c    net.Conn
	corr int32
}

// hwDial connects to addr; the caller closes the connection.
func hwDial(addr string) (*hwConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &hwConn{c: c}, nil
}

func (h *hwConn) Close() { h.c.Close() }

// hwOutcome is what one hostile request got back.
type hwOutcome struct {
	Closed  bool          // kseal closed the connection (EOF or reset)
	Hung    bool          // neither an answer nor a close within the wait
	Err     error         // anything else that went wrong on our side
	Elapsed time.Duration // from the first byte written to the answer or close
	Body    []byte        // the response body after the header, when answered
}

func (o hwOutcome) String() string {
	switch {
	case o.Closed:
		return fmt.Sprintf("connection closed after %v", o.Elapsed.Round(time.Millisecond))
	case o.Hung:
		return fmt.Sprintf("no answer and no close within %v", o.Elapsed.Round(time.Millisecond))
	case o.Err != nil:
		return fmt.Sprintf("error %v after %v", o.Err, o.Elapsed.Round(time.Millisecond))
	}
	return fmt.Sprintf("answered after %v (%d bytes)", o.Elapsed.Round(time.Millisecond), len(o.Body))
}

// hwIsClosed reports whether err means the peer closed the connection.
func hwIsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// exchange writes frame (size prefix included) and waits up to wait for one
// response frame with the given header version flexibility, or a close.
func (h *hwConn) exchange(frame []byte, flexHeader bool, wait time.Duration) hwOutcome {
	start := time.Now()
	deadline := start.Add(wait)
	_ = h.c.SetDeadline(deadline)
	out := func(o hwOutcome) hwOutcome { o.Elapsed = time.Since(start); return o }
	classify := func(err error) hwOutcome {
		var ne net.Error
		switch {
		case hwIsClosed(err):
			return out(hwOutcome{Closed: true})
		case errors.As(err, &ne) && ne.Timeout():
			return out(hwOutcome{Hung: true})
		}
		return out(hwOutcome{Err: err})
	}
	if _, err := h.c.Write(frame); err != nil {
		// kseal may close while a large request is still being written:
		// then the close is the answer.
		return classify(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(h.c, size[:]); err != nil {
		return classify(err)
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > 64<<20 {
		return out(hwOutcome{Err: fmt.Errorf("response frame of %d bytes", n)})
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(h.c, body); err != nil {
		return classify(err)
	}
	body = body[4:] // correlation id
	if flexHeader {
		var err error
		if body, err = hwSkipTags(body); err != nil {
			return out(hwOutcome{Err: fmt.Errorf("response header: %w", err)})
		}
	}
	return out(hwOutcome{Body: body})
}

// hwSkipTags skips a tagged-field section.
func hwSkipTags(b []byte) ([]byte, error) {
	n, l := binary.Uvarint(b)
	if l <= 0 || n > uint64(len(b)) {
		return nil, errors.New("bad tag count")
	}
	b = b[l:]
	for i := uint64(0); i < n; i++ {
		_, l := binary.Uvarint(b)
		if l <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[l:]
		sz, l := binary.Uvarint(b)
		if l <= 0 || sz > uint64(len(b)-l) {
			return nil, errors.New("bad tag size")
		}
		b = b[l+int(sz):]
	}
	return b, nil
}

// request sends a kmsg request and decodes the response into resp (which
// must be of the same key; its version is set to the request's).
func (h *hwConn) request(req kmsg.Request, resp kmsg.Response, wait time.Duration) hwOutcome {
	h.corr++
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kseal-hostile")).AppendRequest(nil, req, h.corr)
	resp.SetVersion(req.GetVersion())
	o := h.exchange(frame, resp.IsFlexible() && req.Key() != int16(kmsg.ApiVersions), wait)
	if o.Body != nil {
		if err := resp.ReadFrom(o.Body); err != nil {
			o.Err = fmt.Errorf("decode %s response: %w", kmsg.NameForKey(req.Key()), err)
		}
	}
	return o
}

// hwPart is one partition entry of a hand-made Produce request.
type hwPart struct {
	Topic     string
	Partition int32
	Records   []byte
}

// hwProduceVersion is the Produce version the raw requests use: flexible,
// names topics (not ids), and within what kseal advertises.
const hwProduceVersion = 9

// hwProduce builds an acks=all Produce request. Entries of the same topic
// that follow each other share a topic entry; a topic that comes again later
// gets a second topic entry (so both ways of repeating a partition can be
// sent).
func hwProduce(parts ...hwPart) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = hwProduceVersion
	req.Acks = -1
	req.TimeoutMillis = 10000
	for _, p := range parts {
		n := len(req.Topics)
		if n == 0 || req.Topics[n-1].Topic != p.Topic {
			t := kmsg.NewProduceRequestTopic()
			t.Topic = p.Topic
			req.Topics = append(req.Topics, t)
			n++
		}
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition = p.Partition
		pp.Records = p.Records
		req.Topics[n-1].Partitions = append(req.Topics[n-1].Partitions, pp)
	}
	return req
}

// hwCode is one partition's answer.
type hwCode struct {
	Topic     string
	Partition int32
	Code      int16
}

func (c hwCode) String() string {
	name := "OK"
	if e := kerr.TypedErrorForCode(c.Code); e != nil {
		name = e.Message
	}
	return fmt.Sprintf("%.40q[%d]=%d %s", c.Topic, c.Partition, c.Code, name)
}

// hwSendProduce sends req on a fresh connection to addr and returns the
// outcome and, when answered, every partition's error code.
func hwSendProduce(addr string, req *kmsg.ProduceRequest, wait time.Duration) (hwOutcome, []hwCode) {
	h, err := hwDial(addr)
	if err != nil {
		return hwOutcome{Err: err}, nil
	}
	defer h.Close()
	resp := kmsg.NewPtrProduceResponse()
	o := h.request(req, resp, wait)
	if o.Body == nil || o.Err != nil {
		return o, nil
	}
	var codes []hwCode
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			codes = append(codes, hwCode{t.Topic, p.Partition, p.ErrorCode})
		}
	}
	return o, codes
}

// hwCodesIn reports whether every code is one of allowed (and there is at
// least one).
func hwCodesIn(codes []hwCode, allowed ...int16) bool {
	if len(codes) == 0 {
		return false
	}
	for _, c := range codes {
		ok := false
		for _, a := range allowed {
			ok = ok || c.Code == a
		}
		if !ok {
			return false
		}
	}
	return true
}

// hwDescribe is an outcome with its codes, for failure messages.
func hwDescribe(o hwOutcome, codes []hwCode) string {
	if len(codes) == 0 {
		return o.String()
	}
	s := make([]string, len(codes))
	for i, c := range codes {
		s[i] = c.String()
	}
	if len(s) > 8 {
		s = append(s[:8], fmt.Sprintf("... (%d partitions)", len(codes)))
	}
	return o.String() + ": " + strings.Join(s, ", ")
}

// hwApiVersions sends ApiVersions v3 on h and reports whether kseal answered
// it without error.
func (h *hwConn) apiVersions(wait time.Duration) hwOutcome {
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName = "kseal-hostile"
	req.ClientSoftwareVersion = "1"
	resp := kmsg.NewPtrApiVersionsResponse()
	o := h.request(req, resp, wait)
	if o.Body != nil && o.Err == nil && resp.ErrorCode != 0 {
		o.Err = fmt.Errorf("ApiVersions error %d", resp.ErrorCode)
	}
	return o
}

// hwRecord is one record to encode; a nil Key or Value is null.
type hwRecord struct {
	Key, Value []byte
	Headers    [][2][]byte
}

func hwAppendVarint(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

func hwAppendBytes(dst, b []byte) []byte {
	if b == nil {
		return hwAppendVarint(dst, -1)
	}
	return append(hwAppendVarint(dst, int64(len(b))), b...)
}

// hwAppendRecord appends one record (length-prefixed, as in a batch).
func hwAppendRecord(dst []byte, offsetDelta int, r hwRecord) []byte {
	body := []byte{0}              // attributes
	body = hwAppendVarint(body, 0) // timestamp delta
	body = hwAppendVarint(body, int64(offsetDelta))
	body = hwAppendBytes(body, r.Key)
	body = hwAppendBytes(body, r.Value)
	body = hwAppendVarint(body, int64(len(r.Headers)))
	for _, h := range r.Headers {
		body = hwAppendBytes(body, h[0])
		body = hwAppendBytes(body, h[1])
	}
	dst = hwAppendVarint(dst, int64(len(body)))
	return append(dst, body...)
}

// hwRecords encodes recs as a batch's records section.
func hwRecords(recs ...hwRecord) []byte {
	var b []byte
	for i, r := range recs {
		b = hwAppendRecord(b, i, r)
	}
	return b
}

// Batch attribute bits.
const (
	hwAttrZstd    int16 = 4
	hwAttrTxn     int16 = 1 << 4
	hwAttrControl int16 = 1 << 5
)

// hwBatch builds a RecordBatch v2 of count records whose records section
// (already compressed as attrs says) is body: no producer id, no sequence,
// CRC-32C computed.
func hwBatch(attrs int16, count int32, body []byte) []byte {
	b := make([]byte, 61, 61+len(body))
	now := time.Now().UnixMilli()
	binary.BigEndian.PutUint64(b[0:], 0)                        // base offset
	binary.BigEndian.PutUint32(b[8:], uint32(61-12+len(body)))  // batch length
	binary.BigEndian.PutUint32(b[12:], 0xffffffff)              // partition leader epoch -1
	b[16] = 2                                                   // magic
	binary.BigEndian.PutUint16(b[21:], uint16(attrs))           // attributes
	binary.BigEndian.PutUint32(b[23:], uint32(max(count-1, 0))) // last offset delta
	binary.BigEndian.PutUint64(b[27:], uint64(now))             // base timestamp
	binary.BigEndian.PutUint64(b[35:], uint64(now))             // max timestamp
	binary.BigEndian.PutUint64(b[43:], 0xffffffffffffffff)      // producer id -1
	binary.BigEndian.PutUint16(b[51:], 0xffff)                  // producer epoch -1
	binary.BigEndian.PutUint32(b[53:], 0xffffffff)              // base sequence -1
	binary.BigEndian.PutUint32(b[57:], uint32(count))           // records count
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// hwBomb returns a zstd-compressed batch holding one record whose value is
// valueLen zero bytes: a few KB that decompress to about valueLen. The
// frame is written as a stream, so its header does not announce the
// decompressed size: a decoder only learns it by decompressing.
func hwBomb(t *testing.T, valueLen int) []byte {
	t.Helper()
	var prefix []byte
	prefix = append(prefix, 0)          // attributes
	prefix = hwAppendVarint(prefix, 0)  // timestamp delta
	prefix = hwAppendVarint(prefix, 0)  // offset delta
	prefix = hwAppendVarint(prefix, -1) // null key
	prefix = hwAppendVarint(prefix, int64(valueLen))
	bodyLen := len(prefix) + valueLen + 1 // + header count 0
	rec := hwAppendVarint(nil, int64(bodyLen))
	rec = append(rec, prefix...)

	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(rec); err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for left := valueLen + 1; left > 0; left -= len(zeros) { // value, then the header count 0
		if _, err := zw.Write(zeros[:min(left, len(zeros))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return hwBatch(hwAttrZstd, 1, buf.Bytes())
}

// hwMarker is kseal's marker header with the current format version.
func hwMarker() [2][]byte {
	return [2][]byte{[]byte(recordcrypt.HeaderKey), {recordcrypt.Version1}}
}

// hwHugeTags returns raw frames whose tagged-field count is 2^32-1 with
// nothing after it: kmsg's decoder (v1.15.0) loops on such counts for
// minutes (anchors.md). One per place a tag section can be: the request
// header of a flexible Produce, the body of a Produce, of a Metadata, of an
// ApiVersions request.
func hwHugeTags() map[string][]byte {
	huge := binary.AppendUvarint(nil, 0xffffffff)
	header := func(key, version int16, corr int32) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(version))
		b = binary.BigEndian.AppendUint32(b, uint32(corr))
		b = binary.BigEndian.AppendUint16(b, 1) // client id "h"
		return append(b, 'h')
	}
	frame := func(b []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	out := map[string][]byte{}
	// Produce v9, header tag count huge.
	out["Produce v9 request header"] = frame(append(header(0, 9, 1), huge...))
	// Produce v9: header fine; null transactional id, acks -1, timeout,
	// no topics, then the body's tag count.
	b := append(header(0, 9, 2), 0)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, 0xffff)
	b = binary.BigEndian.AppendUint32(b, 10000)
	b = append(b, 1) // compact array of 0 topics
	out["Produce v9 body"] = frame(append(b, huge...))
	// Produce v9 with one topic whose tag section is huge.
	b = append(header(0, 9, 3), 0)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, 0xffff)
	b = binary.BigEndian.AppendUint32(b, 10000)
	b = append(b, 2)         // one topic
	b = append(b, 2, 'x', 1) // name "x", zero partitions
	out["Produce v9 topic"] = frame(append(b, huge...))
	// Metadata v12: null topics, two booleans, then the body's tags.
	b = append(header(3, 12, 4), 0)
	b = append(b, 0, 0, 0)
	out["Metadata v12 body"] = frame(append(b, huge...))
	// ApiVersions v3: header tags fine, software name and version, tags.
	b = append(header(18, 3, 5), 0)
	b = append(b, 2, 'h', 2, '1')
	out["ApiVersions v3 body"] = frame(append(b, huge...))
	return out
}

// hwSortedKeys returns m's keys in order.
func hwSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hwProcStatus reads fields (in kB) of /proc/<pid>/status, e.g. VmRSS and
// VmHWM (the peak resident set since the process started).
func hwProcStatus(pid int, fields ...string) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, f := range fields {
			if rest, ok := strings.CutPrefix(line, f+":"); ok {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
					out[f] = kb << 10
				}
			}
		}
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("/proc/%d/status has no %s line", pid, f)
		}
	}
	return out, nil
}

// hwValidTopic is Kafka's rule for topic names: 1-249 bytes of
// [a-zA-Z0-9._-], and not "." or "..".
func hwValidTopic(s string) bool {
	if len(s) == 0 || len(s) > 249 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// TestHostileWire checks the hand-made bytes themselves (no cluster
// needed): the batches parse and pass kseal's own CRC check, records decode,
// the bomb decompresses to what it claims, the tag-count frames are
// complete frames.
func TestHostileWire(t *testing.T) {
	recs := hwRecords(hwRecord{Key: []byte("k"), Value: []byte("v"), Headers: [][2][]byte{hwMarker()}}, hwRecord{Value: nil})
	for _, c := range []struct {
		name  string
		batch []byte
		count int32
	}{
		{"plain", hwBatch(0, 2, recs), 2},
		{"control", hwBatch(hwAttrControl|hwAttrTxn, 1, hwRecords(hwRecord{Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0}})), 1},
		{"bomb", hwBomb(t, 3<<20), 1},
	} {
		b, err := records.ParseBatch(c.batch)
		if err != nil || b.Kind != records.KindBatch || len(b.Raw) != len(c.batch) {
			t.Fatalf("%s: ParseBatch: kind %v, %d of %d bytes, %v", c.name, b.Kind, len(b.Raw), len(c.batch), err)
		}
		if err := b.VerifyCRC(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		p := records.NewProcessor(records.WithVerifyCRC(true))
		if err := p.Reset(&b); err != nil {
			t.Fatalf("%s: processor: %v", c.name, err)
		}
		n := int32(0)
		for p.Next() {
			n++
		}
		if err := p.Err(); err != nil || n != c.count {
			t.Errorf("%s: %d records decoded, want %d (%v)", c.name, n, c.count, err)
		}
		p.Close()
	}
	bomb := hwBomb(t, 70<<20)
	c := records.NewCodecs(128 << 20)
	plain, err := c.Decompress(nil, bomb[61:], records.CodecZstd)
	if err != nil || len(plain) < 70<<20 {
		t.Errorf("a 70 MiB bomb decompresses to %d bytes (%v)", len(plain), err)
	}
	t.Logf("a bomb of 70 MiB is %d bytes compressed", len(bomb))
	for name, f := range hwHugeTags() {
		if int(binary.BigEndian.Uint32(f)) != len(f)-4 {
			t.Errorf("%s: frame size field wrong", name)
		}
	}
	for name, ok := range map[string]bool{"a": true, "a.b-c_D9": true, strings.Repeat("a", 249): true,
		strings.Repeat("a", 250): false, "..": false, ".": false, "": false, "\xff": false, "a b": false} {
		if hwValidTopic(name) != ok {
			t.Errorf("hwValidTopic(%.20q) = %v", name, !ok)
		}
	}
}

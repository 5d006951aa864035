package frame

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

// ErrMalformedHeader reports a message too short for, or inconsistent with,
// the header it must start with.
var ErrMalformedHeader = errors.New("malformed kafka header")

// ErrUnknownHeader reports a header whose layout depends on an API key or
// version kmsg does not know; only the fixed-offset fields could be read.
var ErrUnknownHeader = errors.New("unknown kafka header version")

// RequestHeader is the parsed header of a request message.
type RequestHeader struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	// ClientID aliases the message (copy it to keep it past the frame's
	// lifetime). It is nil when the client id is null, absent (header v0)
	// or not parsed (Version is HeaderUnknown).
	ClientID []byte
	// Version is the header version (0, 1 or 2), or HeaderUnknown when kmsg
	// does not know the API key or version: then only APIKey, APIVersion and
	// CorrelationID are set and the message should pass through untouched.
	Version int8
	// Len is the header's length: the body is msg[Len:]. Zero when Version
	// is HeaderUnknown.
	Len int
}

// Known reports whether the header's layout (and so the body offset) is known.
func (h *RequestHeader) Known() bool { return h.Version != HeaderUnknown }

// ParseRequestHeader parses the header at the start of a request message (a
// frame without its size prefix). For API keys or versions kmsg does not
// know it returns the fixed fields with Version HeaderUnknown and a nil error.
// ClientID aliases msg.
func ParseRequestHeader(msg []byte) (RequestHeader, error) {
	var h RequestHeader
	if len(msg) < 8 {
		return h, fmt.Errorf("request header: %d bytes, need 8: %w", len(msg), ErrMalformedHeader)
	}
	h.APIKey = int16(binary.BigEndian.Uint16(msg))
	h.APIVersion = int16(binary.BigEndian.Uint16(msg[2:]))
	h.CorrelationID = int32(binary.BigEndian.Uint32(msg[4:]))
	hv, ok := RequestHeaderVersion(h.APIKey, h.APIVersion)
	h.Version = hv
	if !ok {
		return h, nil
	}
	off := 8
	if hv == 0 {
		h.Len = off
		return h, nil
	}
	if len(msg)-off < 2 {
		return h, h.malformed("client id length truncated")
	}
	n := int(int16(binary.BigEndian.Uint16(msg[off:])))
	off += 2
	switch {
	case n < -1:
		return h, h.malformed(fmt.Sprintf("client id length %d", n))
	case n >= 0:
		if len(msg)-off < n {
			return h, h.malformed(fmt.Sprintf("client id of %d bytes, %d left", n, len(msg)-off))
		}
		h.ClientID = msg[off : off+n : off+n]
		off += n
	}
	if hv == 2 {
		end, ok := skipTags(msg, off)
		if !ok {
			return h, h.malformed("tagged fields")
		}
		off = end
	}
	h.Len = off
	return h, nil
}

func (h *RequestHeader) malformed(what string) error {
	return fmt.Errorf("request header v%d of api %d v%d: %s: %w", h.Version, h.APIKey, h.APIVersion, what, ErrMalformedHeader)
}

// ResponseHeader is the parsed header of a response message.
type ResponseHeader struct {
	CorrelationID int32
	// Len is the header's length: the body is msg[Len:].
	Len int
}

// CorrelationID returns the correlation id at the start of a response
// message; it sits at the same offset in every response header version, so a
// proxy can match a response to its request before knowing anything else.
func CorrelationID(msg []byte) (int32, error) {
	if len(msg) < 4 {
		return 0, fmt.Errorf("response header: %d bytes, need 4: %w", len(msg), ErrMalformedHeader)
	}
	return int32(binary.BigEndian.Uint32(msg)), nil
}

// ParseResponseHeader parses the header of a response message for a request
// of the given API key and version (the response carries neither). It returns
// ErrUnknownHeader (with the correlation id set) when the header version cannot
// be told.
func ParseResponseHeader(msg []byte, apiKey, apiVersion int16) (ResponseHeader, error) {
	var h ResponseHeader
	id, err := CorrelationID(msg)
	if err != nil {
		return h, err
	}
	h.CorrelationID = id
	hv, ok := ResponseHeaderVersion(apiKey, apiVersion)
	if !ok {
		return h, fmt.Errorf("response header of api %d v%d: %w", apiKey, apiVersion, ErrUnknownHeader)
	}
	h.Len = 4
	if hv == 1 {
		end, ok := skipTags(msg, 4)
		if !ok {
			return h, fmt.Errorf("response header v1 of api %d v%d: tagged fields: %w", apiKey, apiVersion, ErrMalformedHeader)
		}
		h.Len = end
	}
	return h, nil
}

// skipTags skips the tagged-field section starting at msg[off:] and returns
// the offset after it. Every tag takes at least two bytes (key and size), so a
// count above half the bytes left is rejected before looping. It is the one
// tag skipper outside internal/codec (codec's skipTagSection serves every
// message body): frame cannot import codec, which imports frame.
func skipTags(msg []byte, off int) (int, bool) {
	n, ok := uvarint(msg, &off)
	if !ok || uint64(n) > uint64(len(msg)-off)/2 {
		return 0, false
	}
	for ; n > 0; n-- {
		if _, ok := uvarint(msg, &off); !ok {
			return 0, false
		}
		size, ok := uvarint(msg, &off)
		if !ok || uint64(size) > uint64(len(msg)-off) {
			return 0, false
		}
		off += int(size)
	}
	return off, true
}

// uvarint reads a Kafka unsigned varint at *off and advances *off.
func uvarint(msg []byte, off *int) (uint32, bool) {
	v, n := kbin.Uvarint(msg[*off:])
	if n <= 0 {
		return 0, false
	}
	*off += n
	return v, true
}

// AppendResponse appends a complete response frame: size, correlation id,
// an empty tagged-field section when headerVersion is 1, and body.
func AppendResponse(dst []byte, correlationID int32, headerVersion int8, body []byte) ([]byte, error) {
	dst, start := StartResponse(dst, correlationID, headerVersion)
	dst = append(dst, body...)
	return dst, FinishFrame(dst, start)
}

// StartResponse starts a response frame in dst: a placeholder size, the
// correlation id and, for header version 1, an empty tagged-field section.
// Append the body, then call FinishFrame(dst, start).
func StartResponse(dst []byte, correlationID int32, headerVersion int8) ([]byte, int) {
	dst, start := StartFrame(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if headerVersion >= 1 {
		dst = append(dst, 0)
	}
	return dst, start
}

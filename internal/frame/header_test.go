package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// appendRequestHeader encodes a request header the way Kafka clients do.
func appendRequestHeader(dst []byte, key, version int16, corr int32, clientID *string, hv int8, tags ...[]byte) []byte {
	dst = kbin.AppendInt16(dst, key)
	dst = kbin.AppendInt16(dst, version)
	dst = kbin.AppendInt32(dst, corr)
	if hv >= 1 {
		dst = kbin.AppendNullableString(dst, clientID)
	}
	if hv >= 2 {
		dst = kbin.AppendUvarint(dst, uint32(len(tags)))
		for i, tag := range tags {
			dst = kbin.AppendUvarint(dst, uint32(i))
			dst = kbin.AppendUvarint(dst, uint32(len(tag)))
			dst = append(dst, tag...)
		}
	}
	return dst
}

func TestHeaderVersionTable(t *testing.T) {
	tests := []struct {
		key, version int16
		req, resp    int8
	}{
		{0, 3, 1, 0},   // Produce v3
		{0, 8, 1, 0},   // last non-flexible Produce
		{0, 9, 2, 1},   // Produce flexible
		{0, 14, 2, 1},  // beyond kmsg: flexibility never turns off
		{1, 11, 1, 0},  // Fetch
		{1, 12, 2, 1},  // Fetch flexible
		{7, 0, 0, 0},   // ControlledShutdown v0: request header v0
		{7, 1, 1, 0},   // ControlledShutdown v1
		{7, 3, 2, 1},   // ControlledShutdown flexible
		{18, 0, 1, 0},  // ApiVersions
		{18, 3, 2, 0},  // ApiVersions flexible request, response header stays v0
		{18, 99, 2, 0}, // ApiVersions beyond kmsg
		{17, 1, 1, 0},  // SASLHandshake, never flexible
		{17, 2, HeaderUnknown, HeaderUnknown},
		{3, -1, HeaderUnknown, HeaderUnknown},
		{-1, 0, HeaderUnknown, HeaderUnknown},
		{32000, 0, HeaderUnknown, HeaderUnknown},
	}
	for _, tt := range tests {
		req, reqOK := RequestHeaderVersion(tt.key, tt.version)
		resp, respOK := ResponseHeaderVersion(tt.key, tt.version)
		if req != tt.req || resp != tt.resp || reqOK != (tt.req != HeaderUnknown) || respOK != (tt.resp != HeaderUnknown) {
			t.Errorf("key %d v%d: request header %d %v, response header %d %v; want %d, %d",
				tt.key, tt.version, req, reqOK, resp, respOK, tt.req, tt.resp)
		}
	}
}

// TestParseRequestHeaderEveryAPI encodes a header for every key and version
// kmsg knows and checks the parser finds the body where it starts.
func TestParseRequestHeaderEveryAPI(t *testing.T) {
	body := []byte{0xde, 0xad, 0xbe, 0xef}
	cid := "client-1"
	count := 0
	for k := int16(0); k < 200; k++ {
		req := kmsg.RequestForKey(k)
		if req == nil {
			continue
		}
		for v := int16(0); v <= req.MaxVersion(); v++ {
			req.SetVersion(v)
			hv := int8(1)
			if req.IsFlexible() {
				hv = 2
			}
			if k == 7 && v == 0 {
				hv = 0
			}
			for _, id := range []*string{&cid, nil} {
				msg := appendRequestHeader(nil, k, v, 12345, id, hv, []byte("x"), nil)
				hdrLen := len(msg)
				msg = append(msg, body...)
				h, err := ParseRequestHeader(msg)
				if err != nil {
					t.Fatalf("key %d v%d: %v", k, v, err)
				}
				if h.APIKey != k || h.APIVersion != v || h.CorrelationID != 12345 || h.Version != hv || h.Len != hdrLen {
					t.Fatalf("key %d v%d: got %+v, want header v%d len %d", k, v, h, hv, hdrLen)
				}
				switch {
				case hv == 0 || id == nil:
					if h.ClientID != nil {
						t.Fatalf("key %d v%d: client id %q, want nil", k, v, h.ClientID)
					}
				case string(h.ClientID) != cid:
					t.Fatalf("key %d v%d: client id %q", k, v, h.ClientID)
				}
				if !bytes.Equal(msg[h.Len:], body) {
					t.Fatalf("key %d v%d: body %x", k, v, msg[h.Len:])
				}
				count++
			}
		}
	}
	if count < 500 {
		t.Fatalf("only %d headers checked", count)
	}
}

func TestParseRequestHeaderSpecialCases(t *testing.T) {
	empty := ""
	tests := []struct {
		name    string
		msg     []byte
		want    RequestHeader
		wantErr error
	}{
		{
			name: "unknown key passes fixed fields",
			msg:  appendRequestHeader(nil, 4000, 3, 77, &empty, 1),
			want: RequestHeader{APIKey: 4000, APIVersion: 3, CorrelationID: 77, Version: HeaderUnknown},
		},
		{
			name: "unknown version of never-flexible api",
			msg:  appendRequestHeader(nil, 17, 5, 78, &empty, 1),
			want: RequestHeader{APIKey: 17, APIVersion: 5, CorrelationID: 78, Version: HeaderUnknown},
		},
		{
			name: "empty client id is not null",
			msg:  appendRequestHeader(nil, 3, 1, 1, &empty, 1),
			want: RequestHeader{APIKey: 3, APIVersion: 1, CorrelationID: 1, ClientID: []byte{}, Version: 1, Len: 10},
		},
		{name: "short", msg: []byte{0, 0, 0, 3, 0, 0, 0}, wantErr: ErrMalformedHeader},
		{name: "no client id length", msg: []byte{0, 3, 0, 1, 0, 0, 0, 1, 0}, wantErr: ErrMalformedHeader},
		{name: "client id past end", msg: []byte{0, 3, 0, 1, 0, 0, 0, 1, 0, 5, 'a'}, wantErr: ErrMalformedHeader},
		{name: "client id length -2", msg: []byte{0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xfe}, wantErr: ErrMalformedHeader},
		{name: "flexible without tags", msg: []byte{0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff}, wantErr: ErrMalformedHeader},
		{name: "tag size past end", msg: []byte{0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 1, 0, 9, 1}, wantErr: ErrMalformedHeader},
		{name: "overlong uvarint", msg: []byte{0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, wantErr: ErrMalformedHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseRequestHeader(tt.msg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.APIKey != tt.want.APIKey || h.APIVersion != tt.want.APIVersion || h.CorrelationID != tt.want.CorrelationID ||
				h.Version != tt.want.Version || h.Len != tt.want.Len || !bytes.Equal(h.ClientID, tt.want.ClientID) ||
				(h.ClientID == nil) != (tt.want.ClientID == nil) || h.Known() != (tt.want.Version != HeaderUnknown) {
				t.Fatalf("got %+v, want %+v", h, tt.want)
			}
		})
	}
}

// TestHugeTagCountRejectedFast is the regression test for kmsg's unbounded
// tag loops: a header v2 announcing 2^32-1 tagged fields with nothing after
// must be rejected at once.
func TestHugeTagCountRejectedFast(t *testing.T) {
	msg := appendRequestHeader(nil, 3, 12, 1, nil, 1) // Metadata v12: header v2
	msg = kbin.AppendUvarint(msg, 0xffffffff)
	const tries = 100
	start := time.Now()
	for i := 0; i < tries; i++ {
		if _, err := ParseRequestHeader(msg); !errors.Is(err, ErrMalformedHeader) {
			t.Fatalf("err = %v", err)
		}
	}
	if avg := time.Since(start) / tries; avg > time.Millisecond {
		t.Fatalf("rejecting took %v per try", avg)
	}
	resp := kbin.AppendUvarint(binary.BigEndian.AppendUint32(nil, 9), 0xffffffff)
	if _, err := ParseResponseHeader(resp, 3, 12); !errors.Is(err, ErrMalformedHeader) {
		t.Fatalf("response: err = %v", err)
	}
}

func TestParseResponseHeader(t *testing.T) {
	tests := []struct {
		name         string
		key, version int16
		msg          []byte
		wantLen      int
		wantErr      error
	}{
		{"v0", 0, 8, []byte{0, 0, 0, 42, 9, 9}, 4, nil},
		{"v1 empty tags", 0, 9, []byte{0, 0, 0, 42, 0, 9}, 5, nil},
		{"v1 one tag", 3, 12, []byte{0, 0, 0, 42, 1, 0, 2, 7, 7, 9}, 9, nil},
		{"apiversions flexible stays v0", 18, 4, []byte{0, 0, 0, 42, 0, 35}, 4, nil},
		{"unknown key", 4000, 0, []byte{0, 0, 0, 42}, 0, ErrUnknownHeader},
		{"short", 0, 9, []byte{0, 0, 42}, 0, ErrMalformedHeader},
		{"v1 missing tags", 0, 9, []byte{0, 0, 0, 42}, 0, ErrMalformedHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseResponseHeader(tt.msg, tt.key, tt.version)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if errors.Is(err, ErrUnknownHeader) && h.CorrelationID != 42 {
					t.Fatalf("correlation id %d on unknown header", h.CorrelationID)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.CorrelationID != 42 || h.Len != tt.wantLen {
				t.Fatalf("got %+v, want len %d", h, tt.wantLen)
			}
		})
	}
}

func TestAppendResponseRoundTrip(t *testing.T) {
	body := []byte("body bytes")
	for _, hv := range []int8{0, 1} {
		key, version := int16(0), int16(8)
		if hv == 1 {
			version = 9
		}
		f, err := AppendResponse(nil, -7, hv, body)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadResponse(bytes.NewReader(f), nil, 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		msg := got[SizeLen:]
		h, err := ParseResponseHeader(msg, key, version)
		if err != nil {
			t.Fatal(err)
		}
		if h.CorrelationID != -7 || !bytes.Equal(msg[h.Len:], body) {
			t.Fatalf("header v%d: %+v body %q", hv, h, msg[h.Len:])
		}
	}
}

func FuzzRequestHeader(f *testing.F) {
	cid := "c"
	f.Add(appendRequestHeader(nil, 0, 9, 1, &cid, 2, []byte("t")))
	f.Add(appendRequestHeader(nil, 7, 0, 1, nil, 0))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := ParseRequestHeader(msg)
		if err != nil {
			return
		}
		if h.Known() {
			if h.Len < 8 || h.Len > len(msg) {
				t.Fatalf("header length %d of %d bytes", h.Len, len(msg))
			}
			if want, _ := RequestHeaderVersion(h.APIKey, h.APIVersion); want != h.Version {
				t.Fatalf("header version %d, table says %d", h.Version, want)
			}
			// The header re-encoded must give back the same bytes, up to
			// the tagged fields, which are kept as they were.
			enc := appendRequestHeader(nil, h.APIKey, h.APIVersion, h.CorrelationID, nullable(h.ClientID), min(h.Version, 1))
			if !bytes.HasPrefix(msg, enc) {
				t.Fatalf("re-encoded %x is not a prefix of %x", enc, msg)
			}
		} else if h.Len != 0 || h.ClientID != nil {
			t.Fatalf("unknown header with fields: %+v", h)
		}
	})
}

func nullable(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

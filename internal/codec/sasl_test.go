package codec

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kmsg encodes the fixtures (encoding is the one use kseal makes of it).
func saslHandshakeFixture(v int16, code int16, mechs []string) []byte {
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.Version = v
	resp.ErrorCode = code
	resp.SupportedMechanisms = mechs
	return resp.AppendTo(nil)
}

func saslAuthenticateFixture(v int16, code int16, msg *string, auth []byte, lifetime int64) []byte {
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	resp.Version = v
	resp.ErrorCode = code
	resp.ErrorMessage = msg
	resp.SASLAuthBytes = auth
	resp.SessionLifetimeMillis = lifetime
	return resp.AppendTo(nil)
}

func TestReadSaslHandshakeResponse(t *testing.T) {
	for v := range SaslHandshakeMaxVersion + 1 {
		for _, tc := range []SaslHandshakeResponse{
			{ErrorCode: 0, Mechanisms: []string{"SCRAM-SHA-512", "PLAIN"}},
			{ErrorCode: 33, Mechanisms: []string{"GSSAPI"}},
			{ErrorCode: 34},
		} {
			body := saslHandshakeFixture(v, tc.ErrorCode, tc.Mechanisms)
			got, err := ReadSaslHandshakeResponse(body, v)
			if err != nil {
				t.Fatalf("v%d %+v: %v", v, tc, err)
			}
			if !reflect.DeepEqual(got, tc) {
				t.Errorf("v%d: got %+v, want %+v", v, got, tc)
			}
			for cut := range len(body) {
				if _, err := ReadSaslHandshakeResponse(body[:cut], v); !errors.Is(err, ErrMalformed) {
					t.Errorf("v%d cut at %d/%d: %v, want ErrMalformed", v, cut, len(body), err)
				}
			}
		}
	}
	if _, err := ReadSaslHandshakeResponse(nil, 2); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("v2: %v, want ErrUnknownVersion", err)
	}
	// A count of 2^31-1 mechanisms in 6 bytes is refused before any loop.
	huge := append(kbin.AppendInt16(nil, 0), kbin.AppendInt32(nil, 1<<31-1)...)
	rwFastReject(t, huge, func(b []byte) error { _, err := ReadSaslHandshakeResponse(b, 1); return err })
}

func TestReadSaslAuthenticateResponse(t *testing.T) {
	msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
	for v := range SaslAuthenticateMaxVersion + 1 {
		for _, tc := range []SaslAuthenticateResponse{
			{AuthBytes: []byte("r=abc,s=c2FsdA==,i=4096"), SessionLifetimeMillis: 3600_000},
			{ErrorCode: 58, ErrorMessage: msg, AuthBytes: []byte{}},
		} {
			var m *string
			if tc.ErrorMessage != "" {
				m = &tc.ErrorMessage
			}
			body := saslAuthenticateFixture(v, tc.ErrorCode, m, tc.AuthBytes, tc.SessionLifetimeMillis)
			got, err := ReadSaslAuthenticateResponse(body, v)
			if err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			want := tc
			if v < saslAuthenticateFirstLifetime {
				want.SessionLifetimeMillis = 0
			}
			if got.ErrorCode != want.ErrorCode || got.ErrorMessage != want.ErrorMessage ||
				!bytes.Equal(got.AuthBytes, want.AuthBytes) || got.SessionLifetimeMillis != want.SessionLifetimeMillis {
				t.Errorf("v%d: got %+v, want %+v", v, got, want)
			}
			for cut := range len(body) {
				if _, err := ReadSaslAuthenticateResponse(body[:cut], v); !errors.Is(err, ErrMalformed) {
					t.Errorf("v%d cut at %d/%d: %v, want ErrMalformed", v, cut, len(body), err)
				}
			}
		}
	}
	if _, err := ReadSaslAuthenticateResponse(nil, 3); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("v3: %v, want ErrUnknownVersion", err)
	}
	// v2 with a tagged-field count of 2^32-1 after the fields: refused at once.
	body := saslAuthenticateFixture(2, 0, nil, []byte("x"), 0)
	body = append(body[:len(body)-1], rwHugeTagCount...)
	rwFastReject(t, body, func(b []byte) error { _, err := ReadSaslAuthenticateResponse(b, 2); return err })
	// Auth bytes longer than the body.
	long := append(kbin.AppendInt16(nil, 0), 0, 0xff, 0xff, 0xff, 0x0f) // null message, length 2^32-2
	if _, err := ReadSaslAuthenticateResponse(long, 2); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized auth bytes: %v", err)
	}
}

func saslSeeds() (hs, auth rwSeeds) {
	msg := "Authentication failed: Invalid username or password"
	hs, auth = rwSeeds{}, rwSeeds{}
	for v := range SaslHandshakeMaxVersion + 1 {
		hs["v"+string(rune('0'+v))] = struct {
			version int16
			body    []byte
		}{v, saslHandshakeFixture(v, 0, []string{"SCRAM-SHA-512", "PLAIN"})}
	}
	for v := range SaslAuthenticateMaxVersion + 1 {
		auth["ok_v"+string(rune('0'+v))] = struct {
			version int16
			body    []byte
		}{v, saslAuthenticateFixture(v, 0, nil, []byte("r=nonce,s=c2FsdA==,i=4096"), 1000)}
		auth["failed_v"+string(rune('0'+v))] = struct {
			version int16
			body    []byte
		}{v, saslAuthenticateFixture(v, 58, &msg, nil, 0)}
	}
	return hs, auth
}

func TestWriteSaslSeeds(t *testing.T) {
	hs, auth := saslSeeds()
	rwWriteSeeds(t, "FuzzSaslHandshakeResponse", hs)
	rwWriteSeeds(t, "FuzzSaslAuthenticateResponse", auth)
}

// The fuzz targets re-encode what was read with kmsg and read it again: the
// readers must agree with the real encoding of whatever they accept.
func FuzzSaslHandshakeResponse(f *testing.F) {
	hs, _ := saslSeeds()
	for _, s := range hs {
		f.Add(uint8(s.version), s.body)
	}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (SaslHandshakeMaxVersion + 1)
		got, err := ReadSaslHandshakeResponse(body, v)
		if err != nil {
			return
		}
		again, err := ReadSaslHandshakeResponse(saslHandshakeFixture(v, got.ErrorCode, got.Mechanisms), v)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoded: %+v, %v; first read %+v", again, err, got)
		}
	})
}

func FuzzSaslAuthenticateResponse(f *testing.F) {
	_, auth := saslSeeds()
	for _, s := range auth {
		f.Add(uint8(s.version), s.body)
	}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (SaslAuthenticateMaxVersion + 1)
		got, err := ReadSaslAuthenticateResponse(body, v)
		if err != nil {
			return
		}
		var m *string
		if got.ErrorMessage != "" {
			m = &got.ErrorMessage
		}
		again, err := ReadSaslAuthenticateResponse(saslAuthenticateFixture(v, got.ErrorCode, m, got.AuthBytes, got.SessionLifetimeMillis), v)
		if err != nil || again.ErrorCode != got.ErrorCode || again.ErrorMessage != got.ErrorMessage ||
			!bytes.Equal(again.AuthBytes, got.AuthBytes) || again.SessionLifetimeMillis != got.SessionLifetimeMillis {
			t.Fatalf("re-encoded: %+v, %v; first read %+v", again, err, got)
		}
	})
}

package codec

import "fmt"

// The readers in this file decode the broker's answers to kseal's own SASL
// login (SaslHandshake, SaslAuthenticate) on its upstream connections. The
// bytes come from the network, so they get the same bounded treatment as
// client bytes: no kmsg decoder, every count checked against what is left.

// Versions of the SASL messages kseal reads.
const (
	SaslHandshakeMaxVersion    int16 = 1
	SaslAuthenticateMaxVersion int16 = 2

	saslAuthenticateFirstFlex     int16 = 2
	saslAuthenticateFirstLifetime int16 = 1
)

// SaslHandshakeResponse is a SaslHandshake response (api key 17).
type SaslHandshakeResponse struct {
	ErrorCode int16
	// Mechanisms are the mechanisms the broker's listener enables.
	Mechanisms []string
}

// ReadSaslHandshakeResponse decodes a SaslHandshake response body, versions
// 0 and 1 (the same layout, never flexible).
func ReadSaslHandshakeResponse(body []byte, version int16) (SaslHandshakeResponse, error) {
	var resp SaslHandshakeResponse
	if version < 0 || version > SaslHandshakeMaxVersion {
		return resp, fmt.Errorf("sasl handshake response v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, false)
	resp.ErrorCode = r.Int16()
	n, _ := r.arrayLen() // each entry takes at least 2 bytes: n is bounded by the body
	for i := 0; i < n && r.Ok(); i++ {
		m := r.str()
		if r.Ok() {
			resp.Mechanisms = append(resp.Mechanisms, string(m))
		}
	}
	if !r.Ok() {
		return SaslHandshakeResponse{}, fmt.Errorf("sasl handshake response v%d: %w", version, ErrMalformed)
	}
	return resp, nil
}

// SaslAuthenticateResponse is a SaslAuthenticate response (api key 36).
type SaslAuthenticateResponse struct {
	ErrorCode int16
	// ErrorMessage is the broker's message ("" when null), as sent: callers
	// sanitise it before logging.
	ErrorMessage string
	// AuthBytes is the mechanism's server message; it aliases the body.
	AuthBytes []byte
	// SessionLifetimeMillis is how long the session may live (v1+; 0 for
	// no limit).
	SessionLifetimeMillis int64
}

// ReadSaslAuthenticateResponse decodes a SaslAuthenticate response body,
// versions 0 to 2 (v2 is flexible).
func ReadSaslAuthenticateResponse(body []byte, version int16) (SaslAuthenticateResponse, error) {
	var resp SaslAuthenticateResponse
	if version < 0 || version > SaslAuthenticateMaxVersion {
		return resp, fmt.Errorf("sasl authenticate response v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, version >= saslAuthenticateFirstFlex)
	resp.ErrorCode = r.Int16()
	msg, _ := r.nullableStr()
	resp.ErrorMessage = string(msg)
	if r.flex {
		resp.AuthBytes = r.Span(int(r.Uvarint()) - 1) // 0 (null) gives -1 and fails
	} else {
		resp.AuthBytes = r.Span(int(r.Int32()))
	}
	if version >= saslAuthenticateFirstLifetime {
		resp.SessionLifetimeMillis = r.Int64()
	}
	r.skipTags()
	if !r.Ok() {
		return SaslAuthenticateResponse{}, fmt.Errorf("sasl authenticate response v%d: %w", version, ErrMalformed)
	}
	return resp, nil
}

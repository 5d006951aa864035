package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The readers in this file decode what a client sends in its own SASL
// login, which kseal forwards unchanged and only observes (to learn the
// name the broker is asked to verify, docs/authorization.md): the
// SaslHandshake and SaslAuthenticate requests, and inside them the PLAIN,
// SCRAM and OAUTHBEARER client messages. Every byte is hostile: each
// reader is bounded, never allocates more than the name it returns, and
// returns an error (never a partial name) for anything it does not fully
// understand. They never return, log or keep a password or a token.

// Versions of the SASL requests kseal reads.
const (
	SaslHandshakeRequestMaxVersion    int16 = 1
	SaslAuthenticateRequestMaxVersion int16 = 2
)

// MaxSASLName bounds a name a client may claim (bytes); a longer one is
// not taken as an identity.
const MaxSASLName = 1024

// maxOAuthPayload bounds the decoded JWT payload kseal reads a claim from.
const maxOAuthPayload = 16 << 10

// ErrSASLName is a client message kseal cannot take a name from.
var ErrSASLName = errors.New("no usable name in the SASL message")

// ReadSaslHandshakeRequest returns the mechanism a SaslHandshake request
// body (v0 or v1) names.
func ReadSaslHandshakeRequest(body []byte, version int16) (string, error) {
	if version < 0 || version > SaslHandshakeRequestMaxVersion {
		return "", fmt.Errorf("sasl handshake request v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, false)
	m := r.str()
	if !r.Ok() || len(m) == 0 || len(m) > 64 {
		return "", fmt.Errorf("sasl handshake request v%d: %w", version, ErrMalformed)
	}
	return string(m), nil
}

// ReadSaslAuthenticateRequest returns the mechanism message of a
// SaslAuthenticate request body (v0 to v2); it aliases body.
func ReadSaslAuthenticateRequest(body []byte, version int16) ([]byte, error) {
	if version < 0 || version > SaslAuthenticateRequestMaxVersion {
		return nil, fmt.Errorf("sasl authenticate request v%d: %w", version, ErrUnknownVersion)
	}
	r := newBodyReader(body, version >= saslAuthenticateFirstFlex)
	var b []byte
	if r.flex {
		b = r.Span(int(r.Uvarint()) - 1)
	} else {
		b = r.Span(int(r.Int32()))
	}
	r.skipTags()
	if !r.Ok() {
		return nil, fmt.Errorf("sasl authenticate request v%d: %w", version, ErrMalformed)
	}
	return b, nil
}

// checkName accepts a claimed name kseal may show and match: 1 to
// MaxSASLName bytes of UTF-8 without control characters.
func checkName(b []byte) error {
	if len(b) == 0 || len(b) > MaxSASLName || !utf8.Valid(b) {
		return ErrSASLName
	}
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ErrSASLName
		}
	}
	return nil
}

// ParsePlain returns the authentication identity of a SASL PLAIN message
// (RFC 4616: [authzid] NUL authcid NUL passwd). An authorization identity
// other than empty or the authcid is refused, as Kafka's PLAIN server
// refuses it: the name kseal reports is always the one the broker checks.
func ParsePlain(msg []byte) (string, error) {
	authzid, rest, ok := bytes.Cut(msg, []byte{0})
	if !ok {
		return "", ErrSASLName
	}
	authcid, passwd, ok := bytes.Cut(rest, []byte{0})
	if !ok || len(passwd) == 0 || bytes.IndexByte(passwd, 0) >= 0 {
		return "", ErrSASLName
	}
	if err := checkName(authcid); err != nil {
		return "", err
	}
	if len(authzid) > 0 && !bytes.Equal(authzid, authcid) {
		return "", ErrSASLName
	}
	return string(authcid), nil
}

// ParseScramClientFirst returns the user name of a SCRAM client-first
// message (RFC 5802: gs2-header then n=name,r=nonce[,extensions]), with
// =2C and =3D unescaped as Kafka's SCRAM server does (Kafka applies no
// SASLprep). An authzid other than the name, and a message with the
// tokenauth extension (a delegation token: the broker's principal is the
// token's owner, which the message does not show), are refused.
func ParseScramClientFirst(msg []byte) (string, error) {
	if len(msg) > 4*MaxSASLName {
		return "", ErrSASLName
	}
	// gs2-header: cbind-flag "," [authzid] ","
	flag, rest, ok := bytes.Cut(msg, []byte{','})
	if !ok || !(bytes.Equal(flag, []byte("n")) || bytes.Equal(flag, []byte("y"))) {
		return "", ErrSASLName // "p=" asks for channel binding, which Kafka refuses
	}
	authz, bare, ok := bytes.Cut(rest, []byte{','})
	if !ok {
		return "", ErrSASLName
	}
	var authzid []byte
	if len(authz) > 0 {
		if !bytes.HasPrefix(authz, []byte("a=")) {
			return "", ErrSASLName
		}
		var err error
		if authzid, err = scramUnescape(authz[2:]); err != nil {
			return "", err
		}
	}
	// client-first-message-bare: n=name,r=nonce[,ext...]
	attrs := bytes.Split(bare, []byte{','})
	if len(attrs) < 2 || !bytes.HasPrefix(attrs[0], []byte("n=")) || !bytes.HasPrefix(attrs[1], []byte("r=")) || len(attrs[1]) == 2 {
		return "", ErrSASLName
	}
	for _, a := range attrs[2:] {
		k, v, _ := bytes.Cut(a, []byte{'='})
		if bytes.Equal(k, []byte("tokenauth")) && !bytes.EqualFold(v, []byte("false")) {
			return "", ErrSASLName
		}
	}
	name, err := scramUnescape(attrs[0][2:])
	if err != nil {
		return "", err
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	if len(authzid) > 0 && !bytes.Equal(authzid, name) {
		return "", ErrSASLName
	}
	return string(name), nil
}

// scramUnescape undoes RFC 5802's saslname escaping: =2C is ',' and =3D
// is '='; any other '=' is an error.
func scramUnescape(b []byte) ([]byte, error) {
	if bytes.IndexByte(b, '=') < 0 {
		return b, nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '=' {
			out = append(out, b[i])
			continue
		}
		if i+3 > len(b) {
			return nil, ErrSASLName
		}
		switch string(b[i+1 : i+3]) {
		case "2C":
			out = append(out, ',')
		case "3D":
			out = append(out, '=')
		default:
			return nil, ErrSASLName
		}
		i += 2
	}
	return out, nil
}

// IsScramClientFinal reports whether msg looks like a SCRAM client-final
// message (c=channel-binding,r=nonce,...,p=proof).
func IsScramClientFinal(msg []byte) bool {
	return bytes.HasPrefix(msg, []byte("c=")) && bytes.Contains(msg, []byte(",p="))
}

// ScramServerFinalOK reports whether msg is a SCRAM server-final message
// carrying the server's signature (v=...), not an error (e=...).
func ScramServerFinalOK(msg []byte) bool {
	return bytes.HasPrefix(msg, []byte("v=")) && len(msg) > 2
}

// ParseOAuthBearer returns the value of claim (e.g. "sub") in the JWT of
// an OAUTHBEARER client initial response (RFC 7628: gs2-header, then
// 0x01-separated key=value pairs with auth=Bearer <token>, ending 0x01
// 0x01). The token's signature is the broker's to check; kseal adopts the
// name only once the broker accepted the login. An authzid other than the
// claim's value is refused, as Kafka refuses it.
func ParseOAuthBearer(msg []byte, claim string) (string, error) {
	if len(msg) > 4*maxOAuthPayload {
		return "", ErrSASLName
	}
	gs2, rest, ok := bytes.Cut(msg, []byte{0x01})
	if !ok || !bytes.HasSuffix(rest, []byte{0x01, 0x01}) {
		return "", ErrSASLName
	}
	if !bytes.HasPrefix(gs2, []byte("n,")) && !bytes.HasPrefix(gs2, []byte("y,")) {
		return "", ErrSASLName
	}
	authz, tail, ok := bytes.Cut(gs2[2:], []byte{','})
	if !ok || len(tail) != 0 {
		return "", ErrSASLName
	}
	var authzid []byte
	if len(authz) > 0 {
		if !bytes.HasPrefix(authz, []byte("a=")) {
			return "", ErrSASLName
		}
		authzid = authz[2:]
	}
	var token []byte
	for _, kv := range bytes.Split(rest[:len(rest)-2], []byte{0x01}) {
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok {
			return "", ErrSASLName
		}
		if string(k) == "auth" {
			if token != nil {
				return "", ErrSASLName
			}
			scheme, t, ok := bytes.Cut(v, []byte{' '})
			if !ok || !bytes.EqualFold(scheme, []byte("Bearer")) || len(t) == 0 {
				return "", ErrSASLName
			}
			token = t
		}
	}
	if token == nil {
		return "", ErrSASLName
	}
	parts := bytes.Split(token, []byte{'.'})
	if len(parts) != 3 {
		return "", ErrSASLName
	}
	p := bytes.TrimRight(parts[1], "=")
	if base64.RawURLEncoding.DecodedLen(len(p)) > maxOAuthPayload {
		return "", ErrSASLName
	}
	payload := make([]byte, base64.RawURLEncoding.DecodedLen(len(p)))
	n, err := base64.RawURLEncoding.Decode(payload, p)
	if err != nil {
		return "", ErrSASLName
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload[:n], &claims); err != nil {
		return "", ErrSASLName
	}
	raw, ok := claims[claim]
	if !ok {
		return "", ErrSASLName
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		return "", ErrSASLName
	}
	if err := checkName([]byte(name)); err != nil {
		return "", err
	}
	if len(authzid) > 0 && string(authzid) != name {
		return "", ErrSASLName
	}
	return name, nil
}

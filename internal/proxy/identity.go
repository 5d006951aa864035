package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/filter"
)

// noIdentity stands for a connection kseal knows nothing of the client of.
var noIdentity = filter.NewIdentity(nil, "", "")

// ClientIdentity implements filter.Conn: what kseal knows of the client
// (nil: nothing), set from the TLS handshake and replaced by the response
// side when a SASL login succeeds.
func (c *conn) ClientIdentity() *filter.Identity { return c.identity.Load() }

// adopt makes principal the SASL identity of x's connection (after the
// broker accepted the login): a proxy connection's, or a Standalone's in
// tests.
func adopt(x *filter.Exchange, principal, mechanism string) *filter.Identity {
	switch c := x.Conn().(type) {
	case *conn:
		id := c.identity.Load().WithPrincipal(principal, mechanism)
		c.identity.Store(id)
		return id
	case *filter.Standalone:
		c.Identity = c.Identity.WithPrincipal(principal, mechanism)
		return c.Identity
	}
	return noIdentity
}

// Bounds on what a certificate contributes to an identity.
const (
	maxCertNames = 64
	maxCertName  = 1024
)

// certIdentity returns the names of the client certificate of a TLS
// connection, if the handshake verified one against gateway.tls's client
// CA (clientAuth request or require): its subject DN in RFC 4514 form as
// written in the certificate ("CN=alice,O=Example"), then its SANs as
// "SAN:DNS:<name>", "SAN:URI:<uri>", "SAN:EMAIL:<address>",
// "SAN:IP:<address>". An unverified certificate gives nothing.
func certIdentity(cs tls.ConnectionState) []string {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return certNames(cs.PeerCertificates[0])
}

func certNames(c *x509.Certificate) []string {
	var out []string
	add := func(s string) {
		if len(out) < maxCertNames && len(s) <= maxCertName && printableName(s) {
			out = append(out, s)
		}
	}
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(c.RawSubject, &rdn); err == nil && len(rest) == 0 && len(rdn) > 0 {
		add(rdn.String())
	}
	for _, d := range c.DNSNames {
		add("SAN:DNS:" + d)
	}
	for _, u := range c.URIs {
		add("SAN:URI:" + u.String())
	}
	for _, e := range c.EmailAddresses {
		add("SAN:EMAIL:" + e)
	}
	for _, ip := range c.IPAddresses {
		add("SAN:IP:" + ip.String())
	}
	return out
}

// printableName: UTF-8 without control characters (names reach log lines).
func printableName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// SASL mechanisms whose client messages kseal reads.
const (
	mechPlain       = "PLAIN"
	mechScram256    = "SCRAM-SHA-256"
	mechScram512    = "SCRAM-SHA-512"
	mechOAuthBearer = "OAUTHBEARER"
)

// identityFilter observes the client's own SASL login (SaslHandshake and
// SaslAuthenticate, which pass through unchanged) and adopts the name the
// client claimed once the broker's SaslAuthenticate response says the
// login succeeded: PLAIN's authcid, SCRAM's user name after the server's
// final message, OAUTHBEARER's gateway.oauthbearerSubClaim claim ("sub"). A re-authentication (KIP-368)
// replaces it the same way. It never fails a connection: anything it does
// not understand just leaves the identity as it was (and the broker
// decides the login).
type identityFilter struct {
	vc *virtualCluster
}

func (identityFilter) APIKeys() []int16 {
	return []int16{int16(kmsg.SASLHandshake), int16(kmsg.SASLAuthenticate)}
}

// saslStep is what the request side read, for the response side.
type saslStep struct {
	handshake bool
	mech      string
	kind      saslKind
	name      string // the claimed name, "" when none could be read
}

type saslKind uint8

const (
	kindUnknown saslKind = iota
	kindPlain
	kindScramFirst
	kindScramFinal
	kindOAuth
)

// saslRequestState is the request side's: the mechanism the client's last
// SaslHandshake named.
type saslRequestState struct{ mech string }

// saslResponseState is the response side's: the mechanism the broker
// accepted and, between SCRAM's two rounds, the name of the first.
type saslResponseState struct {
	mech      string
	scramName string
	scramStep int
}

var saslReqKey, saslRespKey = new(int), new(int)

func (f identityFilter) OnRequest(_ context.Context, x *filter.Exchange) error {
	rs := x.ConnState(saslReqKey, func() any { return &saslRequestState{} }).(*saslRequestState)
	body := x.Request[x.HeaderLen:]
	if x.APIKey == int16(kmsg.SASLHandshake) {
		mech, err := codec.ReadSaslHandshakeRequest(body, x.APIVersion)
		if err != nil || x.APIVersion == 0 {
			// v0 is followed by raw SASL frames without Kafka headers,
			// which kseal does not observe: no identity from it.
			mech = ""
		}
		rs.mech = mech
		x.State = &saslStep{handshake: true, mech: mech}
		return nil
	}
	step := &saslStep{mech: rs.mech}
	x.State = step
	msg, err := codec.ReadSaslAuthenticateRequest(body, x.APIVersion)
	if err != nil {
		return nil
	}
	switch rs.mech {
	case mechPlain:
		step.kind = kindPlain
		step.name, _ = codec.ParsePlain(msg)
	case mechScram256, mechScram512:
		if codec.IsScramClientFinal(msg) {
			step.kind = kindScramFinal
		} else {
			step.kind = kindScramFirst
			step.name, _ = codec.ParseScramClientFirst(msg)
		}
	case mechOAuthBearer:
		step.kind = kindOAuth
		claim := config.DefaultOAuthBearerSubClaim
		if f.vc != nil && f.vc.cfg.Gateway.OAuthBearerSubClaim != "" {
			claim = f.vc.cfg.Gateway.OAuthBearerSubClaim
		}
		step.name, _ = codec.ParseOAuthBearer(msg, claim)
	}
	return nil
}

func (f identityFilter) OnResponse(_ context.Context, x *filter.Exchange) error {
	step, _ := x.State.(*saslStep)
	if step == nil {
		return nil
	}
	rs := x.ConnState(saslRespKey, func() any { return &saslResponseState{} }).(*saslResponseState)
	body := x.Response[x.RespHeaderLen:]
	if step.handshake {
		resp, err := codec.ReadSaslHandshakeResponse(body, x.APIVersion)
		*rs = saslResponseState{}
		if err == nil && resp.ErrorCode == 0 {
			rs.mech = step.mech
		}
		return nil
	}
	resp, err := codec.ReadSaslAuthenticateResponse(body, x.APIVersion)
	if err != nil || resp.ErrorCode != 0 || rs.mech == "" || step.mech != rs.mech {
		*rs = saslResponseState{}
		return nil
	}
	name := ""
	switch step.kind {
	case kindPlain:
		name = step.name
	case kindOAuth:
		// Kafka answers a rejected token with an error challenge (JSON)
		// and error code 0; success has no server message.
		if len(resp.AuthBytes) == 0 {
			name = step.name
		}
	case kindScramFirst:
		rs.scramName, rs.scramStep = step.name, 1
		if step.name == "" {
			rs.scramStep = 0
		}
		return nil
	case kindScramFinal:
		if rs.scramStep == 1 && codec.ScramServerFinalOK(resp.AuthBytes) {
			name = rs.scramName
		}
	}
	mech := rs.mech
	*rs = saslResponseState{} // a login is over: the next needs a handshake
	if name == "" {
		return nil
	}
	id := adopt(x, "User:"+name, mech)
	if f.vc != nil {
		f.vc.srv.metrics.identities.WithLabelValues(f.vc.name, mech).Inc()
	}
	if c, ok := x.Conn().(*conn); ok {
		c.log.Debug("client authenticated by the broker", "identity", id.String(), "mechanism", mech)
	}
	return nil
}

// newIdentityMetric is kseal_client_identities_total.
func newIdentityMetric() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kseal_client_identities_total",
		Help: "Client identities kseal learned, by source: TLS (a verified client certificate) or the SASL mechanism of a login the broker accepted (re-authentications included).",
	}, []string{"virtual_cluster", "source"})
}

// identityLog is the identity attribute of connection log lines.
func (c *conn) identityLog() string {
	id := c.identity.Load()
	if id == nil {
		return noIdentity.String()
	}
	return strings.Clone(id.String())
}

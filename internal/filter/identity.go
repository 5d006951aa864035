package filter

// Identity is what kseal knows of who is at the other end of a client
// connection (docs/authorization.md): the names of the client certificate
// kseal verified in the TLS handshake, and the SASL principal the broker
// accepted in the client's own login, which kseal observes without taking
// part in it (internal/proxy: identity.go). An Identity is immutable; a
// connection swaps in a new one when a (re-)authentication succeeds.
type Identity struct {
	certificate []string
	principal   string
	mechanism   string
	names       []string
}

var noIdentity = &Identity{}

// NewIdentity builds an identity from certificate names (subject DN,
// "SAN:DNS:...") and a SASL principal ("User:alice", or "" for none), for
// the proxy, for tests and for filters run outside the proxy
// (Standalone.Identity).
func NewIdentity(certificate []string, principal, mechanism string) *Identity {
	id := &Identity{certificate: certificate, principal: principal, mechanism: mechanism}
	id.names = append(id.names, certificate...)
	if principal != "" {
		id.names = append(id.names, principal)
	}
	return id
}

// WithPrincipal returns a new identity with id's certificate names and the
// SASL principal and mechanism given (a login the broker accepted). id may
// be nil (no certificate).
func (id *Identity) WithPrincipal(principal, mechanism string) *Identity {
	var cert []string
	if id != nil {
		cert = id.certificate
	}
	return NewIdentity(cert, principal, mechanism)
}

// Names are every name of the identity, certificate names first; an access
// rule allows the connection when a pattern matches any of them. Callers
// must not modify the slice.
func (id *Identity) Names() []string { return id.names }

// Certificate returns the verified client certificate's names (nil without
// one).
func (id *Identity) Certificate() []string { return id.certificate }

// Principal is "User:<name>" from the last SASL login the broker accepted
// on this connection, "" if none.
func (id *Identity) Principal() string { return id.principal }

// Mechanism is the SASL mechanism of Principal.
func (id *Identity) Mechanism() string { return id.mechanism }

// String is the identity for log lines and audit events: the principal,
// else the certificate's subject, else "anonymous". It never holds a
// secret.
func (id *Identity) String() string {
	switch {
	case id.principal != "":
		return id.principal
	case len(id.certificate) > 0:
		return id.certificate[0]
	}
	return "anonymous"
}

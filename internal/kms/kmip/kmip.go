// Package kmip is kseal's KMS provider for servers speaking OASIS KMIP 1.2
// or later over mutual TLS (Thales CipherTrust, Fortanix DSM, Entrust
// KeyControl, IBM, Vault Enterprise's KMIP engine, PyKMIP), registered as
// KMS type "kmip". A KEK is an AES symmetric key on the server found by its
// Name attribute; it never leaves the server: kseal makes each DEK with
// crypto/rand and has the server wrap it with the KMIP Encrypt operation
// and unwrap it with Decrypt. The TTLV codec is in the ttlv sub-package.
//
// Each method classifies its outcome (kms.ErrKeyNotFound,
// kms.ErrKeyUnusable, kms.ErrUnavailable, or a plain error retrying cannot
// fix); caching, retries and backoff belong to the caller (internal/dek).
// The only retry here is a request sent again on a new connection when a
// pooled one turns out to be closed.
//
// This package must never log, print or put into an error a DEK or a TLS key.
package kmip

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmip/ttlv"
	"github.com/kseal/kseal/internal/kms/kmsutil"
)

// maxCandidates bounds the keys one name may locate: each costs a Get
// Attributes call on every resolve.
const maxCandidates = 16

// KMS talks to one KMIP server. It is safe for concurrent use.
type KMS struct {
	logger *slog.Logger
	c      *client
	mode   byte
}

var _ kms.KMS = (*KMS)(nil)
var _ kms.Closer = (*KMS)(nil)
var _ kms.Prober = (*KMS)(nil)
var _ kms.ConnPool = (*KMS)(nil)

// New reads the TLS files cfg names and builds the client. It makes no
// request: the proxy may start before the server is reachable.
func New(_ context.Context, cfg *Config, logger *slog.Logger) (*KMS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kmip kms config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addr, _ := endpointAddr(cfg.Endpoint)
	host, _, _ := net.SplitHostPort(addr)
	files := kmsutil.TLSFiles{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, ServerName: cfg.ServerName}
	tc, err := files.ClientConfig(host)
	if err != nil {
		return nil, fmt.Errorf("kmip kms: %w", err)
	}
	major, minor, _ := parseVersion(cfg.ProtocolVersion)
	mode, _ := parseMode(cfg.CipherMode)
	return &KMS{
		logger: logger,
		c:      newClient(addr, tc, cfg.Timeout, major, minor, cfg.MaxConnections, cfg.MaxResponseBytes),
		mode:   mode,
	}, nil
}

// ConnStats reports the connection pool's state and counters.
func (k *KMS) ConnStats() kms.ConnStats { return k.c.stats() }

// Close closes the idle connections.
func (k *KMS) Close() error {
	k.c.close()
	return nil
}

// ResolveKEK locates the symmetric keys named name and returns the Active
// one. When several are Active (a rotation: a new key was created under the
// same name and activated), the most recently activated wins (by Activation
// Date, or Initial Date on servers that keep no Activation Date), so rotating
// is "create and activate a new key with the name"; the old key stays
// usable for Decrypt while it exists. No key: kms.ErrKeyNotFound. Keys but
// none Active (Pre-Active, Deactivated, Compromised, Destroyed):
// kms.ErrKeyUnusable.
func (k *KMS) ResolveKEK(ctx context.Context, name string) (kms.KEKRef, error) {
	if !printable(name) {
		return kms.KEKRef{}, fmt.Errorf("kmip kms: key name %q: want 1 to 255 printable ASCII characters", name)
	}
	ids, err := k.locate(ctx, name)
	if err != nil {
		return kms.KEKRef{}, err
	}
	if len(ids) == 0 {
		return kms.KEKRef{}, fmt.Errorf("%w: kmip: no symmetric key named %q", kms.ErrKeyNotFound, name)
	}
	var best string
	var bestAt int64
	tie := false
	var states []string
	for _, id := range ids {
		st, at, err := k.state(ctx, id)
		if errors.Is(err, kms.ErrKeyNotFound) {
			continue // destroyed between Locate and Get Attributes
		}
		if err != nil {
			return kms.KEKRef{}, err
		}
		if st != stateActive {
			states = append(states, id+" "+stateName(st))
			continue
		}
		switch {
		case best == "" || at > bestAt:
			best, bestAt, tie = id, at, false
		case at == bestAt:
			tie = true
		}
	}
	if best == "" {
		if len(states) == 0 {
			return kms.KEKRef{}, fmt.Errorf("%w: kmip: no symmetric key named %q", kms.ErrKeyNotFound, name)
		}
		return kms.KEKRef{}, fmt.Errorf("%w: kmip: no Active key named %q (%s)", kms.ErrKeyUnusable, name, strings.Join(states, ", "))
	}
	if tie {
		return kms.KEKRef{}, fmt.Errorf("kmip kms: several Active keys named %q were activated (or created) in the same second; deactivate all but one", name)
	}
	return kms.KEKRef{Name: name, ID: best}, nil
}

// locate returns the Unique Identifiers of the symmetric keys named name.
func (k *KMS) locate(ctx context.Context, name string) ([]string, error) {
	p, err := k.c.do(ctx, opLocate, ttlv.Struct(0,
		ttlv.Int(tagMaximumItems, maxCandidates+1),
		attr("Object Type", ttlv.Enum(0, objectSymmetricKey)),
		nameAttr(name)))
	if err != nil {
		return nil, err
	}
	var ids []string
	if p == nil {
		return nil, nil
	}
	for i := range p.Items {
		it := &p.Items[i]
		if it.Tag != tagUniqueIdentifier {
			continue
		}
		if it.Type != ttlv.TextString || !printable(it.Bytes) {
			return nil, fmt.Errorf("%w: Locate returned a bad Unique Identifier", errBadResponse)
		}
		ids = append(ids, it.Text())
	}
	if len(ids) > maxCandidates {
		return nil, fmt.Errorf("kmip kms: more than %d symmetric keys are named %q; remove old ones", maxCandidates, name)
	}
	return ids, nil
}

// state returns a key's State and Activation Date (Unix seconds), or its
// Initial Date (creation) when the server keeps no Activation Date, or 0.
func (k *KMS) state(ctx context.Context, id string) (int64, int64, error) {
	p, err := k.c.do(ctx, opGetAttributes, ttlv.Struct(0,
		ttlv.Text(tagUniqueIdentifier, id),
		ttlv.Text(tagAttributeName, "State"),
		ttlv.Text(tagAttributeName, "Activation Date"),
		ttlv.Text(tagAttributeName, "Initial Date")))
	if err != nil {
		return 0, 0, err
	}
	st, at, initial := int64(-1), int64(0), int64(0)
	if p != nil {
		for i := range p.Items {
			a := &p.Items[i]
			if a.Tag != tagAttribute {
				continue
			}
			n, v := a.Find(tagAttributeName), a.Find(tagAttributeValue)
			if n == nil || v == nil {
				continue
			}
			switch {
			case n.Text() == "State" && v.Type == ttlv.Enumeration:
				st = v.Int
			case n.Text() == "Activation Date" && v.Type == ttlv.DateTime:
				at = v.Int
			case n.Text() == "Initial Date" && v.Type == ttlv.DateTime:
				initial = v.Int
			}
		}
	}
	if st < 0 {
		return 0, 0, fmt.Errorf("%w: Get Attributes of key %s has no State", errBadResponse, id)
	}
	if at == 0 {
		at = initial // PyKMIP keeps no Activation Date
	}
	return st, at, nil
}

// cryptoParams are the Cryptographic Parameters of Encrypt and Decrypt, in
// the order the specification gives (servers such as PyKMIP insist).
func (k *KMS) cryptoParams() ttlv.Item {
	if k.mode == edekModeCBC {
		return ttlv.Struct(tagCryptographicParameters,
			ttlv.Enum(tagBlockCipherMode, modeCBC),
			ttlv.Enum(tagPaddingMethod, paddingPKCS5),
			ttlv.Enum(tagCryptographicAlgorithm, algAES),
			ttlv.Bool(tagRandomIV, true))
	}
	return ttlv.Struct(tagCryptographicParameters,
		ttlv.Enum(tagBlockCipherMode, modeGCM),
		ttlv.Enum(tagCryptographicAlgorithm, algAES),
		ttlv.Bool(tagRandomIV, true),
		ttlv.Int(tagTagLength, gcmTagLen))
}

// GenerateDEK makes a DEK with crypto/rand and has the server encrypt it
// under kek (the IV is the server's).
func (k *KMS) GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error) {
	if !printable(kek.ID) || !printable(kek.Name) {
		return kms.DEK{}, fmt.Errorf("kmip kms: bad KEK reference %q/%q", kek.Name, kek.ID)
	}
	key := make([]byte, dekSize)
	if _, err := rand.Read(key); err != nil {
		return kms.DEK{}, err
	}
	p, err := k.c.do(ctx, opEncrypt, ttlv.Struct(0,
		ttlv.Text(tagUniqueIdentifier, kek.ID),
		k.cryptoParams(),
		ttlv.Bytes(tagData, key)))
	if err != nil {
		clear(key)
		return kms.DEK{}, k.keyError(ctx, kek.ID, err)
	}
	e := edek{mode: k.mode, uid: []byte(kek.ID), name: []byte(kek.Name)}
	if p != nil {
		if d := p.Find(tagData); d != nil && d.Type == ttlv.ByteString {
			e.ct = d.Bytes
		}
		if iv := p.Find(tagIVCounterNonce); iv != nil && iv.Type == ttlv.ByteString {
			e.iv = iv.Bytes
		}
		if t := p.Find(tagAuthenticatedEncryptionTag); t != nil && t.Type == ttlv.ByteString {
			e.tag = t.Bytes
		}
	}
	out := appendEDEK(nil, &e)
	if _, err := parseEDEK(out); err != nil {
		clear(key)
		return kms.DEK{}, fmt.Errorf("%w: Encrypt answered something kseal cannot store (data %d bytes, IV %d, tag %d): %v",
			errBadResponse, len(e.ct), len(e.iv), len(e.tag), err)
	}
	return kms.DEK{Key: key, EDEK: out}, nil
}

// DecryptDEK has the server decrypt an EDEK with the key that wrapped it.
func (k *KMS) DecryptDEK(ctx context.Context, b []byte) ([]byte, error) {
	e, err := parseEDEK(b)
	if err != nil {
		return nil, err
	}
	params := k.cryptoParams()
	if e.mode != k.mode { // written under the other cipherMode setting
		params = (&KMS{mode: e.mode}).cryptoParams()
	}
	req := ttlv.Struct(0,
		ttlv.Text(tagUniqueIdentifier, string(e.uid)),
		params,
		ttlv.Bytes(tagData, e.ct),
		ttlv.Bytes(tagIVCounterNonce, e.iv))
	if e.mode == edekModeGCM {
		req.Items = append(req.Items, ttlv.Bytes(tagAuthenticatedEncryptionTag, e.tag))
	}
	p, err := k.c.do(ctx, opDecrypt, req)
	if err != nil {
		return nil, k.keyError(ctx, string(e.uid), err)
	}
	var d *ttlv.Item
	if p != nil {
		d = p.Find(tagData)
	}
	if d == nil || d.Type != ttlv.ByteString || len(d.Bytes) != dekSize {
		return nil, fmt.Errorf("%w: Decrypt of key %s did not return a %d-byte key", errBadResponse, e.uid, dekSize)
	}
	return append([]byte(nil), d.Bytes...), nil
}

// keyError reclassifies a refused Encrypt or Decrypt: servers answer
// Permission Denied or Illegal Operation (not Item Not Found) for a key
// that exists but is not Active, so the key's State decides whether it is
// kms.ErrKeyUnusable.
func (k *KMS) keyError(ctx context.Context, id string, err error) error {
	var se *ServerError
	if !errors.As(err, &se) || se.Reason == reasonItemNotFound || se.Reason == reasonGeneralFailure {
		return err
	}
	st, _, serr := k.state(ctx, id)
	switch {
	case errors.Is(serr, kms.ErrKeyNotFound):
		return serr
	case serr == nil && st != stateActive:
		return fmt.Errorf("%w: kmip: key %s is %s: %w", kms.ErrKeyUnusable, id, stateName(st), se)
	}
	return err
}

// Probe asks the server to Locate kms.ProbeKEK: any answer but a refused
// client certificate means the server is up.
func (k *KMS) Probe(ctx context.Context) error {
	_, err := k.locate(ctx, kms.ProbeKEK)
	var se *ServerError
	switch {
	case err == nil, errors.Is(err, kms.ErrKeyNotFound):
		return nil
	case errors.As(err, &se) && se.Reason != reasonAuthentication && se.Reason != reasonPermissionDenied:
		return nil
	}
	return err
}

// DescribeEDEK reads an EDEK offline; see the package function.
func (k *KMS) DescribeEDEK(b []byte) (kms.EDEKInfo, error) { return DescribeEDEK(b) }

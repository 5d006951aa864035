package tools

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// State is what a record at the broker is, as far as kseal is concerned.
type State string

const (
	// Plaintext: no marker header and a value (the value is readable at
	// the broker).
	Plaintext State = "plaintext"
	// Encrypted: a marker header and a well-formed envelope.
	Encrypted State = "encrypted"
	// Tombstone: a null value. kseal never encrypts those (compaction needs
	// them), so they are neither encrypted nor a policy problem.
	Tombstone State = "tombstone"
	// Malformed: a marker header, but the value is not an envelope the
	// marker agrees with (tampering, or a writer that is not kseal).
	Malformed State = "malformed"
)

// RecordInfo describes one stored record without its key or value bytes.
type RecordInfo struct {
	Topic         string    `json:"topic"`
	Partition     int32     `json:"partition"`
	Offset        int64     `json:"offset"`
	Timestamp     time.Time `json:"timestamp"`
	Transactional bool      `json:"transactional,omitempty"`
	State         State     `json:"state"`
	KeySize       int       `json:"keySize"`   // -1: null key
	ValueSize     int       `json:"valueSize"` // stored size; -1: null value
	Headers       int       `json:"headers"`   // marker included
	// Format is the record format version of an encrypted record (1 or 2).
	Format int `json:"format,omitempty"`
	// Parts says which parts of an encrypted record are encrypted.
	Parts *PartsInfo `json:"encryptedParts,omitempty"`
	// KeyID names the deterministic key of a sealed record key (format 2),
	// hex.
	KeyID string `json:"keyId,omitempty"`
	// Envelope is set for encrypted records with an envelope (every
	// version 1 record; version 2 ones encrypting a value or headers).
	Envelope *EnvelopeInfo `json:"envelope,omitempty"`
	// Problem says why a record is malformed.
	Problem string `json:"problem,omitempty"`
}

// PartsInfo is which parts of a record are stored encrypted.
type PartsInfo struct {
	Value   bool `json:"value"`
	Key     bool `json:"key"`
	Headers bool `json:"headers"`
}

func (p *PartsInfo) String() string {
	if p == nil {
		return "none"
	}
	var s []string
	if p.Value {
		s = append(s, "value")
	}
	if p.Key {
		s = append(s, "key")
	}
	if p.Headers {
		s = append(s, "headers")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "+")
}

// EnvelopeInfo is what an envelope and its EDEK tell without a key.
type EnvelopeInfo struct {
	Format   int  `json:"format"`   // the format version (docs/format.md)
	KeyBound bool `json:"keyBound"` // the record key is authenticated
	// KEK and KEKVersion come from the KMS provider's offline describer;
	// empty when there is none or the EDEK is not one it knows.
	KEK        string `json:"kek,omitempty"`
	KEKVersion string `json:"kekVersion,omitempty"`
	DEK        string `json:"dek"` // DEK id: 8 bytes of SHA-256 of the EDEK, hex
	EDEKSize   int    `json:"edekSize"`
	// Cipher is the AEAD the format version uses (docs/format.md).
	Cipher  string `json:"cipher"`
	Counter uint64 `json:"counter"`
	// PlaintextSize is the size of what the envelope encrypts: in version
	// 1 the value a consumer through kseal reads; in version 2 the value
	// and the sealed headers, with their framing (docs/format.md).
	PlaintextSize int `json:"plaintextSize"`

	id recordcrypt.DEKID
}

// KEKLabel is "KEK v2", "KEK" without a version, or "" when unknown.
func (e *EnvelopeInfo) KEKLabel() string {
	switch {
	case e.KEK == "":
		return ""
	case e.KEKVersion == "":
		return e.KEK
	}
	return e.KEK + " v" + e.KEKVersion
}

// maxDescribed bounds the classifier's cache of EDEK descriptions.
const maxDescribed = 4096

// Classifier tells what stored records are. It remembers EDEK descriptions
// by DEK id, since thousands of records share one DEK. Not safe for
// concurrent use.
type Classifier struct {
	describe kms.DescribeFunc
	cache    map[recordcrypt.DEKID]kms.EDEKInfo
}

// NewClassifier returns a classifier naming KEKs with describe (nil: DEK
// ids only).
func NewClassifier(describe kms.DescribeFunc) *Classifier {
	return &Classifier{describe: describe, cache: map[recordcrypt.DEKID]kms.EDEKInfo{}}
}

func size(b []byte) int {
	if b == nil {
		return -1
	}
	return len(b)
}

// Classify describes r. It parses the value only when r has a marker
// header; its work is bounded by the record's size.
func (c *Classifier) Classify(r *kgo.Record) RecordInfo {
	info := RecordInfo{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
		Transactional: r.Attrs.IsTransactional(),
		KeySize:       size(r.Key), ValueSize: size(r.Value), Headers: len(r.Headers),
	}
	var marker []byte
	markers := 0
	for i := range r.Headers {
		if r.Headers[i].Key == recordcrypt.HeaderKey {
			markers++
			marker = r.Headers[i].Value
		}
	}
	switch {
	case markers == 0 && r.Value == nil:
		info.State = Tombstone
		return info
	case markers == 0:
		info.State = Plaintext
		return info
	case markers > 1:
		return malformed(info, fmt.Sprintf("%d %q headers", markers, recordcrypt.HeaderKey))
	case len(marker) > 0 && marker[0] == recordcrypt.Version2:
		return c.classifyV2(info, r)
	case r.Value == nil:
		return malformed(info, "marker header on a null value")
	}
	env, err := recordcrypt.Parse(r.Value)
	if err == nil {
		err = recordcrypt.CheckMarker(marker, env)
	}
	if err != nil {
		return malformed(info, err.Error())
	}
	info.State = Encrypted
	info.Format = int(env.Version)
	info.Parts = &PartsInfo{Value: true}
	info.Envelope = c.envelope(env, env.KeyBound())
	return info
}

// classifyV2 describes a record with a version 2 marker.
func (c *Classifier) classifyV2(info RecordInfo, r *kgo.Record) RecordInfo {
	rr := records.Record{Key: r.Key, Value: r.Value, Headers: make([]records.RecordHeader, len(r.Headers))}
	for i, h := range r.Headers {
		rr.Headers[i] = records.RecordHeader{Key: []byte(h.Key), Value: h.Value}
	}
	rec, version, err := recordcrypt.ParseRecord(&rr)
	if err == nil && version != recordcrypt.Version2 {
		err = fmt.Errorf("marker of version %d", version)
	}
	if err != nil {
		return malformed(info, err.Error())
	}
	info.State = Encrypted
	info.Format = int(recordcrypt.Version2)
	info.Parts = &PartsInfo{Value: rec.Parts&recordcrypt.PartValue != 0, Key: rec.Parts&recordcrypt.PartKey != 0,
		Headers: rec.Parts&recordcrypt.PartHeaders != 0}
	if info.Parts.Key {
		info.KeyID = hex.EncodeToString(rec.KeyID[:])
	}
	if rec.HasEnvelope() {
		info.Envelope = c.envelope(rec.Env, true) // v2 always binds the key
	}
	return info
}

// envelope describes env, naming its KEK through the describer.
func (c *Classifier) envelope(env recordcrypt.Envelope, keyBound bool) *EnvelopeInfo {
	id := env.DEKID()
	e := &EnvelopeInfo{Format: int(env.Version), KeyBound: keyBound, DEK: id.String(),
		EDEKSize: len(env.EDEK), Cipher: cipherOf(env.Version), Counter: env.Counter, PlaintextSize: env.PlaintextLen(), id: id}
	if c.describe != nil {
		d, ok := c.cache[id]
		if !ok {
			d, _ = c.describe(env.EDEK) // not the provider's EDEK: DEK id only
			if len(c.cache) >= maxDescribed {
				clear(c.cache)
			}
			c.cache[id] = d
		}
		e.KEK, e.KEKVersion = d.KEK, d.Version
	}
	return e
}

func malformed(info RecordInfo, why string) RecordInfo {
	info.State = Malformed
	info.Problem = why
	return info
}

// cipherOf names the AEAD of a format version's envelope: versions 1 and 2
// seal with AES-256-GCM (docs/format.md); version 2 record keys with
// AES-SIV.
func cipherOf(version byte) string {
	if version == recordcrypt.Version1 || version == recordcrypt.Version2 {
		return "AES-256-GCM"
	}
	return "unknown"
}

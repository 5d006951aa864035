package tools

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
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
	// Envelope is set for encrypted records.
	Envelope *EnvelopeInfo `json:"envelope,omitempty"`
	// Problem says why a record is malformed.
	Problem string `json:"problem,omitempty"`
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
	// PlaintextSize is the size of the value a consumer through kseal reads.
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
	id := env.DEKID()
	e := &EnvelopeInfo{Format: int(env.Version), KeyBound: env.KeyBound(), DEK: id.String(),
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
	info.State = Encrypted
	info.Envelope = e
	return info
}

func malformed(info RecordInfo, why string) RecordInfo {
	info.State = Malformed
	info.Problem = why
	return info
}

// cipherOf names the AEAD of a format version: version 1 seals with
// AES-256-GCM (docs/format.md). Parse accepts no other version.
func cipherOf(version byte) string {
	if version == recordcrypt.Version1 {
		return "AES-256-GCM"
	}
	return "unknown"
}

package recordcrypt

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/kseal/kseal/internal/records"
	"github.com/kseal/kseal/internal/siv"
)

// fuzzRecord builds a record from fuzz inputs: nulls bit 0 makes the key
// null, bit 1 the value, bit 2 adds a second marker, bit 3 puts the marker
// first; one clear header "c" is always there.
func fuzzRecord(key, value, marker []byte, nulls uint8) *records.Record {
	r := &records.Record{Key: key, Value: value}
	if nulls&1 != 0 {
		r.Key = nil
	} else if r.Key == nil {
		r.Key = []byte{}
	}
	if nulls&2 != 0 {
		r.Value = nil
	} else if r.Value == nil {
		r.Value = []byte{}
	}
	m := records.RecordHeader{Key: []byte(HeaderKey), Value: marker}
	c := records.RecordHeader{Key: []byte("c"), Value: []byte("3")}
	if nulls&8 != 0 {
		r.Headers = []records.RecordHeader{m, c}
	} else {
		r.Headers = []records.RecordHeader{c, m}
	}
	if nulls&4 != 0 {
		r.Headers = append(r.Headers, m)
	}
	return r
}

// fuzzSeeds are the published version 2 vectors as fuzz inputs.
type fuzzSeed struct {
	key, value, marker []byte
	nulls              uint8
}

func fuzzSeeds() []fuzzSeed {
	var out []fuzzSeed
	for _, v := range vectorV2Inputs() {
		specComputeV2(&v)
		var nulls uint8
		if v.storedKey == nil {
			nulls |= 1
		}
		if v.storedValue == nil {
			nulls |= 2
		}
		out = append(out, fuzzSeed{v.storedKey, v.storedValue, v.marker, nulls})
	}
	return out
}

func envelopeBytes(env Envelope) []byte {
	return append(slices.Clone(env.prefix), env.Ciphertext...)
}

// FuzzParseRecord: ParseRecord never panics, and what it accepts is
// consistent: a known version, valid parts, the envelope where the parts
// say and canonical (re-encoding its fields gives the stored bytes back),
// and a well-formed sealed key.
func FuzzParseRecord(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.key, s.value, s.marker, s.nulls)
	}
	v1 := vectorInputs()[0]
	f.Add(v1.recordKey, specSeal(v1), []byte{1}, uint8(0))
	f.Add([]byte("k"), []byte("v"), []byte{2, 2}, uint8(0))
	f.Fuzz(func(t *testing.T, key, value, marker []byte, nulls uint8) {
		r := fuzzRecord(key, value, marker, nulls)
		rec, version, err := ParseRecord(r)
		if err != nil {
			return
		}
		if version != rec.Version || (version != Version1 && version != Version2) {
			t.Fatalf("accepted version %d (rec %d)", version, rec.Version)
		}
		if nulls&4 != 0 {
			t.Fatal("accepted two markers")
		}
		if rec.Parts == 0 || rec.Parts&^knownParts != 0 {
			t.Fatalf("accepted parts %#x", uint8(rec.Parts))
		}
		var stored []byte
		switch {
		case rec.Parts&PartValue != 0:
			stored = r.Value
			if version == Version2 && len(marker) != 2 {
				t.Fatalf("accepted a %d-byte marker with VALUE", len(marker))
			}
		case rec.Parts&PartHeaders != 0:
			stored = marker[2:]
		default:
			if rec.HasEnvelope() || len(marker) != 2 {
				t.Fatalf("key-only record with an envelope or a %d-byte marker", len(marker))
			}
		}
		if stored != nil {
			env := rec.Env
			re := []byte{env.Version, byte(env.Flags)}
			re = binary.AppendUvarint(re, uint64(len(env.EDEK)))
			re = append(re, env.EDEK...)
			re = binary.AppendUvarint(re, env.Counter)
			re = append(re, env.Ciphertext...)
			if !bytes.Equal(re, stored) || env.Version != version {
				t.Fatalf("accepted a non-canonical envelope:\n in %x\nout %x", stored, re)
			}
			if len(env.EDEK) == 0 || len(env.EDEK) > MaxEDEKLen || env.Counter > MaxCounter || env.PlaintextLen() < 0 {
				t.Fatalf("accepted out-of-range fields: %+v", env)
			}
		}
		if rec.Parts&PartKey != 0 {
			if len(r.Key) < SealedKeyOverhead || r.Key[0] != Version2 || !bytes.Equal(rec.KeyID[:], r.Key[1:9]) {
				t.Fatalf("accepted sealed key %x", r.Key)
			}
		}
	})
}

// FuzzOpenV2: whatever the bytes, OpenV2 never panics, and it opens nothing
// it should not: any envelope it opens is the original's byte for byte, any
// key it unseals is the original's.
func FuzzOpenV2(f *testing.F) {
	seeds := fuzzSeeds()
	for _, s := range seeds[:2] {
		f.Add(s.key, s.value, s.marker, s.nulls)
		if m := s.marker; len(m) > 2 {
			f.Add(s.key, s.value, append(slices.Clone(m[:len(m)-1]), m[len(m)-1]^1), s.nulls)
		}
	}
	vs := vectorV2Inputs()[:2]
	k := newTestKey(f, vs[0].dek, vs[0].edek, 0)
	a, err := siv.New(vs[0].detKey)
	if err != nil {
		f.Fatal(err)
	}
	dk := &DetKey{AEAD: a}
	copy(dk.ID[:], vs[0].keyID)
	var envs [][]byte
	for _, v := range vs {
		specComputeV2(&v)
		if v.parts&PartValue != 0 {
			envs = append(envs, v.storedValue)
		} else {
			envs = append(envs, v.marker[2:])
		}
	}
	topic := vs[0].topic
	var o Opener
	f.Fuzz(func(t *testing.T, key, value, marker []byte, nulls uint8) {
		r := fuzzRecord(key, value, marker, nulls)
		rec, _, err := ParseRecord(r)
		if err != nil || rec.Version != Version2 {
			return
		}
		env := envelopeBytes(rec.Env)
		if err := o.OpenV2(k.aead, dk, topic, rec, r); err != nil {
			return
		}
		if rec.HasEnvelope() && !slices.ContainsFunc(envs, func(e []byte) bool { return bytes.Equal(e, env) }) {
			t.Fatalf("a forged envelope opened: %x", env)
		}
		if rec.Parts&PartKey != 0 && !bytes.Equal(r.Key, vs[0].key) && !bytes.Equal(r.Key, vs[1].key) {
			t.Fatalf("a forged sealed key opened to %x", r.Key)
		}
	})
}

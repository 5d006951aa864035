package recordcrypt

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts is canonical:
// re-encoding the parsed fields gives back the input byte for byte.
func FuzzParse(f *testing.F) {
	for _, v := range vectorInputs() {
		f.Add(specSeal(v))
	}
	f.Add([]byte{1, 1, 1, 0xee, 0x00})
	f.Fuzz(func(t *testing.T, value []byte) {
		env, err := Parse(value)
		if err != nil {
			return
		}
		re := []byte{env.Version, byte(env.Flags)}
		re = binary.AppendUvarint(re, uint64(len(env.EDEK)))
		re = append(re, env.EDEK...)
		re = binary.AppendUvarint(re, env.Counter)
		re = append(re, env.Ciphertext...)
		if !bytes.Equal(re, value) {
			t.Fatalf("accepted a non-canonical envelope:\n in %x\nout %x", value, re)
		}
		if env.PlaintextLen() < 0 || len(env.EDEK) == 0 || len(env.EDEK) > MaxEDEKLen || env.Counter > MaxCounter {
			t.Fatalf("accepted out-of-range fields: %+v", env)
		}
	})
}

// FuzzOpen: no input other than the sealed original opens under the key,
// topic and record key it was sealed with.
func FuzzOpen(f *testing.F) {
	v := vectorInputs()[0]
	sealed := specSeal(v)
	f.Add(sealed)
	f.Add(append(bytes.Clone(sealed[:len(sealed)-1]), sealed[len(sealed)-1]^1))
	k := newTestKey(f, v.dek, v.edek, 0)
	b := Binding{Topic: v.topic, Key: v.recordKey}
	f.Fuzz(func(t *testing.T, value []byte) {
		env, err := Parse(value)
		if err != nil {
			return
		}
		plain, err := Open(nil, k.aead, env, b)
		if err == nil && !bytes.Equal(value, sealed) {
			t.Fatalf("a different envelope opened to %x", plain)
		}
	})
}

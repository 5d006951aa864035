package recordcrypt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/kseal/kseal/internal/records"
	"github.com/kseal/kseal/internal/siv"
)

func testDetKey(tb testing.TB, seed byte) *DetKey {
	tb.Helper()
	a, err := siv.New(seq(seed, siv.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	dk := &DetKey{AEAD: a}
	copy(dk.ID[:], seq(seed+0x40, 8))
	return dk
}

// cloneRecord deep-copies r, keeping nil and empty apart.
func cloneRecord(r *records.Record) *records.Record {
	c := *r
	c.Key = cloneNil(r.Key)
	c.Value = cloneNil(r.Value)
	c.Headers = nil
	for _, h := range r.Headers {
		c.Headers = append(c.Headers, records.RecordHeader{Key: cloneNil(h.Key), Value: cloneNil(h.Value)})
	}
	return &c
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func sameRecord(a, b *records.Record) error {
	if !sameBytes(a.Key, b.Key) {
		return fmt.Errorf("key %s, want %s", hexOrWord(a.Key), hexOrWord(b.Key))
	}
	if !sameBytes(a.Value, b.Value) {
		return fmt.Errorf("value %s, want %s", hexOrWord(a.Value), hexOrWord(b.Value))
	}
	if len(a.Headers) != len(b.Headers) {
		return fmt.Errorf("%d headers, want %d", len(a.Headers), len(b.Headers))
	}
	for i := range a.Headers {
		x, y := a.Headers[i], b.Headers[i]
		if !bytes.Equal(x.Key, y.Key) || !sameBytes(x.Value, y.Value) {
			return fmt.Errorf("header %d = %q:%s, want %q:%s", i, x.Key, hexOrWord(x.Value), y.Key, hexOrWord(y.Value))
		}
	}
	return nil
}

func hdrs(kv ...string) []records.RecordHeader {
	var out []records.RecordHeader
	for i := 0; i < len(kv); i += 2 {
		var v []byte
		if kv[i+1] != "<null>" {
			v = []byte(kv[i+1])
		}
		out = append(out, records.RecordHeader{Key: []byte(kv[i]), Value: v})
	}
	return out
}

func selectNames(names ...string) func([]byte) bool {
	return func(n []byte) bool { return slices.Contains(names, string(n)) }
}

// openRecord parses and opens r in place.
func openRecord(o *Opener, k *testKey, dk *DetKey, topic string, r *records.Record) (RecordV2, error) {
	rec, _, err := ParseRecord(r)
	if err != nil {
		return rec, err
	}
	var aead = k.aead
	if !rec.HasEnvelope() {
		aead = nil
	}
	if rec.Parts&PartKey == 0 {
		dk = nil
	}
	return rec, o.OpenV2(aead, dk, topic, rec, r)
}

func TestV2RoundTrip(t *testing.T) {
	k := randomKey(t, 70)
	dk := testDetKey(t, 1)
	keys := map[string][]byte{"null": nil, "empty": {}, "text": []byte("customer-42"), "binary": {0x00, 0xff, 0x02, 0x00}}
	values := map[string][]byte{"null": nil, "empty": {}, "text": []byte(`{"amount":100}`)}
	headerSets := map[string][]records.RecordHeader{
		"none":       nil,
		"one":        hdrs("trace", "abc"),
		"duplicates": hdrs("a", "1", "trace", "x", "a", "2", "b", "<null>", "", "empty-name", "a", ""),
	}
	sels := map[string]func([]byte) bool{"all": nil, "a only": selectNames("a"), "trace and empty": selectNames("trace", "")}
	var s Sealer
	var o Opener
	for parts := Parts(0); parts <= knownParts; parts++ {
		for kn, key := range keys {
			for vn, value := range values {
				for hn, hs := range headerSets {
					for sn, sel := range sels {
						name := fmt.Sprintf("%v/key %s/value %s/headers %s/sel %s", parts, kn, vn, hn, sn)
						orig := &records.Record{Key: key, Value: value, Headers: hs, OffsetDelta: 3}
						orig = cloneRecord(orig)
						r := cloneRecord(orig)
						sealed, err := s.SealV2(k, dk, "orders", parts, sel, r)
						if err != nil {
							t.Fatalf("%s: SealV2: %v", name, err)
						}
						var want Parts
						if parts&PartValue != 0 && value != nil {
							want |= PartValue
						}
						if parts&PartKey != 0 && key != nil {
							want |= PartKey
						}
						if parts&PartHeaders != 0 && slices.ContainsFunc(hs, func(h records.RecordHeader) bool { return sel == nil || sel(h.Key) }) {
							want |= PartHeaders
						}
						if sealed != (want != 0) {
							t.Fatalf("%s: sealed = %v, want parts %v", name, sealed, want)
						}
						if !sealed {
							if err := sameRecord(r, orig); err != nil {
								t.Fatalf("%s: unsealed record changed: %v", name, err)
							}
							continue
						}
						if want&PartKey != 0 && len(r.Key) != len(key)+SealedKeyOverhead {
							t.Fatalf("%s: sealed key of %d bytes", name, len(r.Key))
						}
						if want&PartValue == 0 && !sameBytes(r.Value, value) {
							t.Fatalf("%s: value changed without PartValue", name)
						}
						if want&PartHeaders != 0 {
							for _, h := range r.Headers[:len(r.Headers)-1] {
								if sel == nil || sel(h.Key) {
									t.Fatalf("%s: selected header %q still in clear", name, h.Key)
								}
							}
						}
						stored := cloneRecord(r)
						rec, err := openRecord(&o, k, dk, "orders", r)
						if err != nil {
							t.Fatalf("%s: open: %v", name, err)
						}
						if rec.Version != Version2 || rec.Parts != want {
							t.Fatalf("%s: parsed v%d parts %v, want parts %v", name, rec.Version, rec.Parts, want)
						}
						if err := sameRecord(r, orig); err != nil {
							t.Fatalf("%s: opened record: %v\nstored %+v", name, err, stored)
						}
					}
				}
			}
		}
	}
}

func TestV2Determinism(t *testing.T) {
	dk := testDetKey(t, 1)
	var s1, s2 Sealer
	k1, k2 := randomKey(t, 70), randomKey(t, 184)
	seal := func(s *Sealer, k Key, dk *DetKey, topic string, key []byte) []byte {
		r := &records.Record{Key: key, Value: []byte("v")}
		if _, err := s.SealV2(k, dk, topic, PartValue|PartKey, nil, r); err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(r.Key)
	}
	a := seal(&s1, k1, dk, "orders", []byte("customer-42"))
	b := seal(&s2, k2, dk, "orders", []byte("customer-42"))
	if !bytes.Equal(a, b) {
		t.Fatalf("same key, same DetKey, different DEKs and Sealers: %x != %x", a, b)
	}
	if bytes.Equal(a, seal(&s1, k1, dk, "orders", []byte("customer-43"))) {
		t.Fatal("different keys sealed alike")
	}
	if bytes.Equal(a, seal(&s1, k1, dk, "payments", []byte("customer-42"))) {
		t.Fatal("same key in another topic sealed alike")
	}
	if bytes.Equal(a, seal(&s1, k1, testDetKey(t, 2), "orders", []byte("customer-42"))) {
		t.Fatal("same key under another DetKey sealed alike")
	}
	if !bytes.Equal(a[1:9], dk.ID[:]) || a[0] != Version2 {
		t.Fatalf("sealed key %x does not start with 0x02 || key ID", a)
	}
}

// sealPair seals two records with keys and values; their stored forms.
func sealPair(t *testing.T, k Key, dk *DetKey, parts Parts) (*records.Record, *records.Record) {
	t.Helper()
	var s Sealer
	out := make([]*records.Record, 2)
	for i := range out {
		r := &records.Record{Key: fmt.Appendf(nil, "key-%d", i), Value: fmt.Appendf(nil, "value-%d", i), Headers: hdrs("h", fmt.Sprint(i))}
		if _, err := s.SealV2(k, dk, "orders", parts, nil, r); err != nil {
			t.Fatal(err)
		}
		out[i] = cloneRecord(r)
	}
	return out[0], out[1]
}

func TestV2Tampering(t *testing.T) {
	k := randomKey(t, 70)
	dk := testDetKey(t, 1)
	var o Opener
	open := func(r *records.Record, topic string) error {
		_, err := openRecord(&o, k, dk, topic, cloneRecord(r))
		return err
	}
	all := PartValue | PartKey | PartHeaders

	t.Run("swap sealed keys", func(t *testing.T) {
		a, b := sealPair(t, k, dk, all)
		a.Key, b.Key = b.Key, a.Key
		for _, r := range []*records.Record{a, b} {
			if err := open(r, "orders"); !errors.Is(err, ErrAuth) {
				t.Fatalf("opened with a swapped key: %v", err)
			}
		}
	})
	t.Run("swap values", func(t *testing.T) {
		a, b := sealPair(t, k, dk, PartValue|PartKey)
		a.Value, b.Value = b.Value, a.Value
		if err := open(a, "orders"); !errors.Is(err, ErrAuth) {
			t.Fatalf("opened a swapped value: %v", err)
		}
	})
	t.Run("another topic", func(t *testing.T) {
		for _, parts := range []Parts{all, PartKey, PartValue, PartHeaders, PartKey | PartHeaders} {
			a, _ := sealPair(t, k, dk, parts)
			if err := open(a, "orders"); err != nil {
				t.Fatalf("%v: %v", parts, err)
			}
			if err := open(a, "orders2"); !errors.Is(err, ErrAuth) {
				t.Fatalf("%v: opened in another topic: %v", parts, err)
			}
		}
	})
	t.Run("key moved to another topic opens nowhere else", func(t *testing.T) {
		a, _ := sealPair(t, k, dk, PartKey)
		rec, _, err := ParseRecord(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.OpenV2(nil, dk, "payments", rec, cloneRecord(a)); !errors.Is(err, ErrAuth) {
			t.Fatalf("key opened under another topic: %v", err)
		}
	})
	t.Run("flip parts bits", func(t *testing.T) {
		for _, parts := range []Parts{all, PartValue | PartKey, PartValue | PartHeaders, PartKey | PartHeaders} {
			for i := range 8 {
				bit := Parts(1) << i
				a, _ := sealPair(t, k, dk, parts)
				m := &a.Headers[len(a.Headers)-1]
				m.Value = bytes.Clone(m.Value)
				m.Value[1] ^= byte(bit)
				r := cloneRecord(a)
				_, err := openRecord(&o, k, dk, "orders", r)
				if err == nil {
					// The one downgrade the parts byte cannot stop: clearing
					// VALUE of a record whose headers are clear makes the
					// envelope a clear value, the same as stripping a v1
					// marker (docs/threat-model.md, "Plaintext injection"):
					// the consumer gets the envelope bytes, never plaintext.
					if bit != PartValue || parts&PartHeaders != 0 || !bytes.Equal(r.Value, a.Value) {
						t.Fatalf("%v with bit %#x flipped opened", parts, uint8(bit))
					}
					continue
				}
				if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("%v with bit %#x flipped: %v", parts, uint8(bit), err)
				}
			}
		}
	})
	t.Run("clear key bit and restore the plaintext key", func(t *testing.T) {
		// An attacker who knows the plaintext key puts it back and clears KEY:
		// the envelope's associated data (parts, stored key) no longer matches.
		a, _ := sealPair(t, k, dk, PartValue|PartKey)
		a.Key = []byte("key-0")
		m := &a.Headers[len(a.Headers)-1]
		m.Value = []byte{Version2, byte(PartValue)}
		if err := open(a, "orders"); !errors.Is(err, ErrAuth) {
			t.Fatalf("opened: %v", err)
		}
	})
	t.Run("every byte of a sealed key", func(t *testing.T) {
		a, _ := sealPair(t, k, dk, PartKey)
		for i := range len(a.Key) * 8 {
			b := cloneRecord(a)
			b.Key[i/8] ^= 1 << (i % 8)
			if err := open(b, "orders"); err == nil {
				t.Fatalf("key bit %d flipped: opened", i)
			}
		}
	})
	t.Run("every byte of a header envelope", func(t *testing.T) {
		r := &records.Record{Key: nil, Value: nil, Headers: hdrs("a", "1", "b", "2")}
		var s Sealer
		if _, err := s.SealV2(k, dk, "orders", all, selectNames("b"), r); err != nil {
			t.Fatal(err)
		}
		a := cloneRecord(r)
		m := len(a.Headers) - 1
		for i := range len(a.Headers[m].Value) * 8 {
			b := cloneRecord(a)
			b.Headers[m].Value[i/8] ^= 1 << (i % 8)
			if err := open(b, "orders"); err == nil {
				t.Fatalf("marker bit %d flipped: opened", i)
			}
		}
	})
	t.Run("reorder sealed headers", func(t *testing.T) {
		// Sealed headers cannot be reordered without the DEK; with it, a
		// writer that puts them out of order is refused.
		for name, entries := range map[string][]hdrEntry{
			"out of order": {{idx: 1, name: "b", value: []byte("2")}, {idx: 0, name: "a", value: []byte("1")}},
			"duplicate":    {{idx: 0, name: "a", value: []byte("1")}, {idx: 0, name: "b", value: []byte("2")}},
			"past the end": {{idx: 0, name: "a", value: []byte("1")}, {idx: 3, name: "b", value: []byte("2")}},
		} {
			r := specRecordV2(t, k.aead, k.edek, 5, "orders", PartHeaders, nil, nil, entries, hdrs("c", "3"))
			if err := open(r, "orders"); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: %v", name, err)
			}
		}
	})
}

// hdrEntry is one sealed header of specRecordV2's plaintext.
type hdrEntry struct {
	idx   uint64
	name  string
	value []byte
}

// specRecordV2 builds a version 2 record from docs/format.md alone, with any
// plaintext header section the test wants (sealKey: the record key as
// stored; value: the plaintext value, sealed when parts has PartValue).
func specRecordV2(t testing.TB, aead interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
}, edek []byte, counter uint64, topic string, parts Parts, storedKey, value []byte, entries []hdrEntry, clearHdrs []records.RecordHeader) *records.Record {
	var plain []byte
	if parts&PartValue != 0 {
		plain = binary.AppendUvarint(plain, uint64(len(value)))
		plain = append(plain, value...)
	}
	if parts&PartHeaders != 0 {
		plain = binary.AppendUvarint(plain, uint64(len(entries)))
		for _, e := range entries {
			plain = binary.AppendUvarint(plain, e.idx)
			plain = binary.AppendUvarint(plain, uint64(len(e.name)))
			plain = append(plain, e.name...)
			if e.value == nil {
				plain = binary.AppendVarint(plain, -1)
			} else {
				plain = binary.AppendVarint(plain, int64(len(e.value)))
				plain = append(plain, e.value...)
			}
		}
	}
	prefix := []byte{0x02, 0x00}
	prefix = binary.AppendUvarint(prefix, uint64(len(edek)))
	prefix = append(prefix, edek...)
	prefix = binary.AppendUvarint(prefix, counter)
	aad := append([]byte{}, prefix...)
	aad = binary.AppendUvarint(aad, uint64(len(topic)))
	aad = append(aad, topic...)
	aad = append(aad, byte(parts))
	if storedKey == nil {
		aad = append(aad, 0)
	} else {
		aad = append(aad, 1)
		aad = binary.AppendUvarint(aad, uint64(len(storedKey)))
		aad = append(aad, storedKey...)
	}
	nonce := make([]byte, 12)
	binary.BigEndian.PutUint64(nonce[4:], counter)
	env := aead.Seal(prefix, nonce, plain, aad)
	r := &records.Record{Key: storedKey, Headers: slices.Clone(clearHdrs)}
	marker := []byte{0x02, byte(parts)}
	if parts&PartValue != 0 {
		r.Value = env
	} else {
		marker = append(marker, env...)
		r.Value = value
	}
	r.Headers = append(r.Headers, records.RecordHeader{Key: []byte("kseal"), Value: marker})
	return r
}

func TestV2PlaintextRejects(t *testing.T) {
	k := randomKey(t, 70)
	var o Opener
	e := func(idx uint64, name string, v []byte) hdrEntry { return hdrEntry{idx, name, v} }
	good := []hdrEntry{e(0, "a", []byte("1")), e(2, "", nil)}
	r := specRecordV2(t, k.aead, k.edek, 1, "t", PartValue|PartHeaders, nil, []byte("v"), good, hdrs("c", "3"))
	if _, err := openRecord(&o, k, nil, "t", r); err != nil {
		t.Fatalf("the spec's own record: %v", err)
	}
	if err := sameRecord(r, &records.Record{Value: []byte("v"), Headers: hdrs("a", "1", "c", "3", "", "<null>")}); err != nil {
		t.Fatal(err)
	}
	// Plaintexts that authenticate but break the layout.
	raw := func(plain []byte, parts Parts) *records.Record {
		prefix := []byte{0x02, 0x00}
		prefix = binary.AppendUvarint(prefix, uint64(len(k.edek)))
		prefix = append(prefix, k.edek...)
		prefix = append(prefix, 9)
		aad := append(bytes.Clone(prefix), 1, 't', byte(parts), 0)
		nonce := make([]byte, 12)
		nonce[11] = 9
		env := k.aead.Seal(prefix, nonce, plain, aad)
		if parts&PartValue != 0 {
			return &records.Record{Value: env, Headers: hdrs("kseal", "\x02"+string(rune(parts)))}
		}
		return &records.Record{Headers: []records.RecordHeader{{Key: []byte("kseal"), Value: append([]byte{2, byte(parts)}, env...)}}}
	}
	for name, c := range map[string]struct {
		plain []byte
		parts Parts
	}{
		"value length past the end":       {[]byte{5, 'a'}, PartValue},
		"trailing bytes after the value":  {[]byte{1, 'a', 0}, PartValue},
		"non-minimal value length":        {[]byte{0x81, 0x00, 'a'}, PartValue},
		"empty plaintext":                 {[]byte{}, PartValue},
		"zero headers":                    {[]byte{0}, PartHeaders},
		"count above entries":             {[]byte{2, 0, 1, 'a', 0}, PartHeaders},
		"non-minimal index":               {[]byte{1, 0x80, 0x00, 1, 'a', 0}, PartHeaders},
		"non-minimal name length":         {[]byte{1, 0, 0x81, 0x00, 'a', 0}, PartHeaders},
		"non-minimal value length (hdr)":  {[]byte{1, 0, 1, 'a', 0x80, 0x00}, PartHeaders},
		"value length -2":                 {[]byte{1, 0, 1, 'a', 3}, PartHeaders},
		"name past the end":               {[]byte{1, 0, 9, 'a', 0}, PartHeaders},
		"header value past the end":       {[]byte{1, 0, 1, 'a', 8, 'x'}, PartHeaders},
		"index past the end":              {[]byte{1, 1, 1, 'a', 0}, PartHeaders},
		"trailing bytes after headers":    {[]byte{1, 0, 1, 'a', 0, 0}, PartHeaders},
		"headers missing after the value": {[]byte{1, 'v'}, PartValue | PartHeaders},
	} {
		r := raw(c.plain, c.parts)
		if _, err := openRecord(&o, k, nil, "t", r); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// And the control: a well-formed raw plaintext opens.
	if _, err := openRecord(&o, k, nil, "t", raw([]byte{1, 0, 1, 'a', 2, 'x'}, PartHeaders)); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func TestParseRecordRejects(t *testing.T) {
	k := randomKey(t, 70)
	dk := testDetKey(t, 1)
	var s Sealer
	base := &records.Record{Key: []byte("k"), Value: []byte("v"), Headers: hdrs("h", "1")}
	sealedAs := func(parts Parts) *records.Record {
		r := cloneRecord(base)
		if _, err := s.SealV2(k, dk, "t", parts, nil, r); err != nil {
			t.Fatal(err)
		}
		return cloneRecord(r)
	}
	marker := func(r *records.Record) *records.RecordHeader { return &r.Headers[len(r.Headers)-1] }
	v1 := func() *records.Record {
		r := cloneRecord(base)
		r.Value = mustSeal(t, k, Binding{Topic: "t", Key: r.Key}, r.Value)
		r.Headers = append(r.Headers, records.RecordHeader{Key: []byte("kseal"), Value: []byte{1}})
		return r
	}
	cases := map[string]struct {
		r    func() *records.Record
		want error
	}{
		"two markers": {func() *records.Record {
			r := sealedAs(PartValue)
			r.Headers = append(r.Headers, *marker(r))
			return r
		}, ErrMalformed},
		"two markers v1": {func() *records.Record {
			r := v1()
			r.Headers = append([]records.RecordHeader{{Key: []byte("kseal"), Value: []byte{1}}}, r.Headers...)
			return r
		}, ErrMalformed},
		"empty marker":          {func() *records.Record { r := sealedAs(PartValue); marker(r).Value = []byte{}; return r }, ErrMalformed},
		"null marker":           {func() *records.Record { r := sealedAs(PartValue); marker(r).Value = nil; return r }, ErrMalformed},
		"version 3":             {func() *records.Record { r := sealedAs(PartValue); marker(r).Value[0] = 3; return r }, ErrUnsupportedVersion},
		"version 0":             {func() *records.Record { r := sealedAs(PartValue); marker(r).Value[0] = 0; return r }, ErrUnsupportedVersion},
		"no parts byte":         {func() *records.Record { r := sealedAs(PartValue); marker(r).Value = []byte{2}; return r }, ErrMalformed},
		"parts 0":               {func() *records.Record { r := sealedAs(PartValue); marker(r).Value[1] = 0; return r }, ErrMalformed},
		"reserved bit 3":        {func() *records.Record { r := sealedAs(PartValue); marker(r).Value[1] |= 1 << 3; return r }, ErrMalformed},
		"reserved bit 7":        {func() *records.Record { r := sealedAs(PartKey); marker(r).Value[1] |= 1 << 7; return r }, ErrMalformed},
		"value set, value null": {func() *records.Record { r := sealedAs(PartValue); r.Value = nil; return r }, ErrMalformed},
		"envelope in marker while value set": {func() *records.Record {
			r := sealedAs(PartValue)
			marker(r).Value = append(marker(r).Value, r.Value...)
			return r
		}, ErrMalformed},
		"headers without envelope": {func() *records.Record {
			r := sealedAs(PartHeaders)
			marker(r).Value = marker(r).Value[:2]
			return r
		}, ErrMalformed},
		"key-only marker with trailing bytes": {func() *records.Record {
			r := sealedAs(PartKey)
			marker(r).Value = append(marker(r).Value, 0)
			return r
		}, ErrMalformed},
		"v1 envelope in v2 value": {func() *records.Record {
			r := sealedAs(PartValue)
			r.Value = v1().Value
			return r
		}, ErrMalformed},
		"v2 envelope in v1 value": {func() *records.Record {
			r := v1()
			r.Value = sealedAs(PartValue).Value
			return r
		}, ErrMalformed},
		"v2 envelope flags": {func() *records.Record { r := sealedAs(PartValue); r.Value[1] = 1; return r }, ErrMalformed},
		"non-minimal EDEK length": {func() *records.Record {
			r := sealedAs(PartValue)
			r.Value = append([]byte{2, 0, 70 | 0x80, 0}, r.Value[3:]...)
			return r
		}, ErrMalformed},
		"truncated envelope": {func() *records.Record { r := sealedAs(PartValue); r.Value = r.Value[:20]; return r }, ErrMalformed},
		"v1 marker too long": {func() *records.Record { r := v1(); marker(r).Value = []byte{1, 1}; return r }, ErrMalformed},
		"v1 null value":      {func() *records.Record { r := v1(); r.Value = nil; return r }, ErrMalformed},
		"sealed key null":    {func() *records.Record { r := sealedAs(PartValue | PartKey); r.Key = nil; return r }, ErrMalformed},
		"sealed key too short": {func() *records.Record {
			r := sealedAs(PartValue | PartKey)
			r.Key = r.Key[:SealedKeyOverhead-1]
			return r
		}, ErrMalformed},
		"sealed key of version 1": {func() *records.Record { r := sealedAs(PartKey); r.Key[0] = 1; return r }, ErrMalformed},
	}
	for name, c := range cases {
		r := c.r()
		if _, _, err := ParseRecord(r); !errors.Is(err, c.want) {
			t.Errorf("%s: ParseRecord = %v, want %v", name, err, c.want)
		}
	}
	// The controls parse.
	for _, parts := range []Parts{PartValue, PartKey, PartHeaders, PartValue | PartKey | PartHeaders} {
		if rec, v, err := ParseRecord(sealedAs(parts)); err != nil || v != Version2 || rec.Parts != parts {
			t.Errorf("%v: %+v %d %v", parts, rec, v, err)
		}
	}
	if rec, v, err := ParseRecord(v1()); err != nil || v != Version1 || rec.Parts != PartValue || !rec.HasEnvelope() {
		t.Errorf("v1: %+v %d %v", rec, v, err)
	}
	if rec, v, err := ParseRecord(cloneRecord(base)); err != nil || v != 0 || rec.Version != 0 {
		t.Errorf("plaintext: %+v %d %v", rec, v, err)
	}
	// A sealed key of exactly the minimum length (an empty plaintext key) parses.
	r := &records.Record{Key: []byte{}}
	if _, err := s.SealV2(nil, dk, "t", PartKey, nil, r); err != nil || len(r.Key) != SealedKeyOverhead {
		t.Fatalf("empty key: %d bytes, %v", len(r.Key), err)
	}
	if _, _, err := ParseRecord(r); err != nil {
		t.Fatal(err)
	}
}

func TestV1StillOpens(t *testing.T) {
	k := randomKey(t, 70)
	for _, key := range [][]byte{nil, {}, []byte("order-42")} {
		orig := &records.Record{Key: key, Value: []byte("hello"), Headers: hdrs("a", "1")}
		r := cloneRecord(orig)
		r.Value = mustSeal(t, k, Binding{Topic: "orders", Key: key}, r.Value)
		r.Headers = append([]records.RecordHeader{{Key: []byte("kseal"), Value: []byte{1}}}, r.Headers...)
		var o Opener
		rec, err := openRecord(&o, k, nil, "orders", r)
		if err != nil || rec.Version != Version1 {
			t.Fatalf("v1: %v", err)
		}
		if err := sameRecord(r, orig); err != nil {
			t.Fatal(err)
		}
	}
	// And the v1 spec vectors open through ParseRecord/OpenV2 too.
	for _, v := range vectorInputs() {
		if !v.bindKey {
			continue
		}
		r := &records.Record{Key: v.recordKey, Value: specSeal(v), Headers: hdrs("kseal", "\x01")}
		var o Opener
		if _, err := openRecord(&o, newTestKey(t, v.dek, v.edek, 0), nil, v.topic, r); err != nil || !bytes.Equal(r.Value, v.plaintext) || len(r.Headers) != 0 {
			t.Fatalf("%s: %x %v", v.name, r.Value, err)
		}
	}
}

func TestV2Errors(t *testing.T) {
	k := randomKey(t, 70)
	dk := testDetKey(t, 1)
	var s Sealer
	r := &records.Record{Key: []byte("k"), Value: []byte("v"), Headers: hdrs("kseal", "\x01")}
	if _, err := s.SealV2(k, dk, "t", PartValue, nil, r); !errors.Is(err, ErrMarkerPresent) {
		t.Fatalf("forged marker: %v", err)
	}
	r = &records.Record{Key: []byte("k"), Value: []byte("v")}
	if _, err := s.SealV2(k, nil, "t", PartKey, nil, r); err == nil {
		t.Fatal("PartKey without a DetKey")
	}
	if _, err := s.SealV2(nil, dk, "t", PartValue, nil, r); err == nil || !sameBytes(r.Value, []byte("v")) {
		t.Fatalf("PartValue without a DEK: %v", err)
	}
	if _, err := s.SealV2(k, dk, "t", 1<<4, nil, r); err == nil {
		t.Fatal("unknown parts")
	}
	exhausted := newTestKey(t, seq(0, 32), seq(1, 10), 0)
	exhausted.limit = 0
	orig := &records.Record{Key: []byte("k"), Value: []byte("v"), Headers: hdrs("a", "1")}
	r = cloneRecord(orig)
	if _, err := s.SealV2(exhausted, dk, "t", PartValue|PartKey|PartHeaders, nil, r); err == nil {
		t.Fatal("exhausted DEK")
	}
	if err := sameRecord(r, orig); err != nil {
		t.Fatalf("failed SealV2 changed the record: %v", err)
	}

	// Opening with the wrong DetKey, or without the needed keys.
	if _, err := s.SealV2(k, dk, "t", PartValue|PartKey, nil, r); err != nil {
		t.Fatal(err)
	}
	stored := cloneRecord(r)
	rec, _, err := ParseRecord(stored)
	if err != nil {
		t.Fatal(err)
	}
	var o Opener
	if err := o.OpenV2(k.aead, testDetKey(t, 2), "t", rec, cloneRecord(stored)); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong DetKey: %v", err)
	}
	if err := o.OpenV2(k.aead, nil, "t", rec, cloneRecord(stored)); err == nil {
		t.Fatal("no DetKey")
	}
	if err := o.OpenV2(nil, dk, "t", rec, cloneRecord(stored)); err == nil {
		t.Fatal("no AEAD")
	}
	if err := o.OpenV2(randomKey(t, 70).aead, dk, "t", rec, cloneRecord(stored)); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong DEK: %v", err)
	}
	other := cloneRecord(stored)
	other.Headers = other.Headers[:0]
	if err := o.OpenV2(k.aead, dk, "t", rec, other); err == nil {
		t.Fatal("RecordV2 of another record")
	}
	// A failed open leaves the record as it was.
	r = cloneRecord(stored)
	if err := o.OpenV2(k.aead, dk, "u", rec, r); err == nil {
		t.Fatal("opened under another topic")
	}
	if err := sameRecord(r, stored); err != nil {
		t.Fatalf("failed OpenV2 changed the record: %v", err)
	}
}

func TestV2ZeroAllocs(t *testing.T) {
	k := randomKey(t, 70)
	dk := testDetKey(t, 1)
	var s Sealer
	var o Opener
	key, value := []byte("customer-0000042"), bytes.Repeat([]byte{'v'}, 1024)
	tmpl := hdrs("trace", "abc", "pii", "secret", "content-type", "json")
	backing := make([]records.RecordHeader, 0, 8)
	sel := selectNames("pii")
	var r records.Record
	reset := func() {
		r = records.Record{Key: key, Value: value, Headers: append(backing[:0], tmpl...)}
	}
	var stored records.Record
	storedHdrs := make([]records.RecordHeader, 0, 8)
	seal := func() {
		reset()
		if _, err := s.SealV2(k, dk, "orders", PartValue|PartKey|PartHeaders, sel, &r); err != nil {
			t.Fatal(err)
		}
	}
	seal()
	stored = records.Record{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)}
	stored.Headers = append(storedHdrs[:0], r.Headers...)
	stored.Headers[len(stored.Headers)-1].Value = bytes.Clone(r.Headers[len(r.Headers)-1].Value)
	cp := make([]records.RecordHeader, 0, 8)
	open := func() {
		x := stored
		x.Headers = append(cp[:0], stored.Headers...)
		rec, _, err := ParseRecord(&x)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.OpenV2(k.aead, dk, "orders", rec, &x); err != nil {
			t.Fatal(err)
		}
	}
	open()
	if n := testing.AllocsPerRun(100, seal); n != 0 {
		t.Errorf("SealV2: %v allocs per record", n)
	}
	if n := testing.AllocsPerRun(100, open); n != 0 {
		t.Errorf("ParseRecord+OpenV2: %v allocs per record", n)
	}
	// Version 1 records through ParseRecord and OpenV2.
	v1 := records.Record{Key: key, Value: mustSeal(t, k, Binding{Topic: "orders", Key: key}, value)}
	v1hdrs := append(hdrs("trace", "abc"), records.RecordHeader{Key: []byte(HeaderKey), Value: []byte{Version1}})
	openV1 := func() {
		x := v1
		x.Headers = append(cp[:0], v1hdrs...)
		rec, _, err := ParseRecord(&x)
		if err != nil {
			t.Fatal(err)
		}
		if err := o.OpenV2(k.aead, nil, "orders", rec, &x); err != nil {
			t.Fatal(err)
		}
	}
	openV1()
	if n := testing.AllocsPerRun(100, openV1); n != 0 {
		t.Errorf("ParseRecord+OpenV2 of a version 1 record: %v allocs per record", n)
	}
	// Key only and headers only, too.
	for _, parts := range []Parts{PartKey, PartHeaders, PartValue} {
		if n := testing.AllocsPerRun(100, func() {
			reset()
			if _, err := s.SealV2(k, dk, "orders", parts, nil, &r); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("SealV2 %v: %v allocs per record", parts, n)
		}
	}
}

// BenchmarkV2 seals and opens a 1 KiB value with a 16-byte key and 3
// headers (all encrypted), the record BENCHMARKS.md quotes.
func BenchmarkV2(b *testing.B) {
	k := randomKey(b, 184)
	k.limit = 1 << 62
	dk := testDetKey(b, 1)
	key, value := []byte("customer-0000042"), bytes.Repeat([]byte{'v'}, 1024)
	tmpl := hdrs("trace-id", "0af7651916cd43dd8448eb211c80319c", "content-type", "application/json", "tenant", "acme")
	for _, c := range []struct {
		name  string
		parts Parts
	}{{"value", PartValue}, {"value+key", PartValue | PartKey}, {"value+key+headers", PartValue | PartKey | PartHeaders}} {
		var s Sealer
		var o Opener
		backing := make([]records.RecordHeader, 0, 8)
		var r records.Record
		b.Run("SealV2/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			for b.Loop() {
				r = records.Record{Key: key, Value: value, Headers: append(backing[:0], tmpl...)}
				if _, err := s.SealV2(k, dk, "orders", c.parts, nil, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
		r = records.Record{Key: key, Value: value, Headers: append(backing[:0], tmpl...)}
		if _, err := s.SealV2(k, dk, "orders", c.parts, nil, &r); err != nil {
			b.Fatal(err)
		}
		stored := *cloneRecord(&r)
		cp := make([]records.RecordHeader, 0, 8)
		b.Run("OpenV2/"+c.name, func(b *testing.B) {
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			for b.Loop() {
				x := stored
				x.Headers = append(cp[:0], stored.Headers...)
				rec, _, err := ParseRecord(&x)
				if err != nil {
					b.Fatal(err)
				}
				if err := o.OpenV2(k.aead, dk, "orders", rec, &x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestV2EnvelopeIsKeyBound(t *testing.T) {
	a, _ := sealPair(t, randomKey(t, 70), testDetKey(t, 1), PartValue)
	rec, _, err := ParseRecord(a)
	if err != nil || !rec.Env.KeyBound() || rec.Env.Flags != 0 {
		t.Fatalf("v2 envelope: flags %#x, KeyBound %v, %v", rec.Env.Flags, rec.Env.KeyBound(), err)
	}
}

func TestMaxGrowthV2(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	bytesOf := func(n int) []byte {
		if n < 0 {
			return nil
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	sizes := []int{-1, 0, 1, 60, 127, 128, 300, 16383, 16384, 70000}
	var s Sealer
	for _, edekLen := range []int{1, 70, 201, MaxEDEKLen} {
		k := randomKey(t, edekLen)
		k.next.Store(MaxCounter - 1000)
		dk := testDetKey(t, 1)
		for range 300 {
			r := &records.Record{Key: bytesOf(sizes[rng.IntN(len(sizes))]), Value: bytesOf(sizes[rng.IntN(len(sizes))])}
			n := rng.IntN(200)
			if rng.IntN(4) == 0 {
				n = 0
			}
			var hs [][2][]byte
			for range n {
				h := records.RecordHeader{Key: bytesOf(rng.IntN(200)), Value: bytesOf(sizes[rng.IntN(len(sizes)-2)])}
				r.Headers = append(r.Headers, h)
				hs = append(hs, [2][]byte{h.Key, h.Value})
			}
			before := len(encodeRecord(r.Key, r.Value, hs))
			parts := Parts(1 + rng.IntN(7))
			if _, err := s.SealV2(k, dk, "orders", parts, nil, r); err != nil {
				t.Fatal(err)
			}
			hs = hs[:0]
			for _, h := range r.Headers {
				hs = append(hs, [2][]byte{h.Key, h.Value})
			}
			if grew, bound := len(encodeRecord(r.Key, r.Value, hs))-before, MaxGrowthV2(edekLen, n); grew > bound {
				t.Fatalf("EDEK %d B, %v, %d headers: record grew by %d, bound %d", edekLen, parts, n, grew, bound)
			}
		}
	}
}

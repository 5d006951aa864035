package aws

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestEDEKRoundTripAndSize(t *testing.T) {
	blob := bytes.Repeat([]byte{0xAB}, 184) // AWS's size for a 256-bit data key
	arn := "arn:aws:kms:eu-west-1:111122223333:key/" + testKeyID
	for _, tc := range []struct {
		keyID string
		form  byte
		size  int
	}{
		{testKeyID, formUUID, 201},
		{"mrk-1234abcd12ab34cd56ef1234567890ab", formMRK, 201},
		{arn, formString, 1 + 1 + len(arn) + 184},
		{"1234ABCD-12AB-34CD-56EF-1234567890AB", formString, 1 + 1 + 36 + 184}, // not AWS's canonical form: kept as text
		{"mrk-1234ABCD12AB34CD56EF1234567890AB", formString, 1 + 1 + 36 + 184},
		{strings.Repeat("k", maxKeyIDLen), formString, 1 + 2 + maxKeyIDLen + 184},
	} {
		edek, err := appendKeyID(nil, tc.keyID)
		if err != nil {
			t.Fatalf("%.40s: %v", tc.keyID, err)
		}
		edek = append(edek, blob...)
		if edek[0] != tc.form || len(edek) != tc.size {
			t.Errorf("%.40s: form %d size %d, want %d, %d", tc.keyID, edek[0], len(edek), tc.form, tc.size)
		}
		id, b, err := parseEDEK(edek)
		if err != nil || id != tc.keyID || !bytes.Equal(b, blob) {
			t.Errorf("%.40s: parse = %q, %d-byte blob, %v", tc.keyID, id, len(b), err)
		}
		info, err := DescribeEDEK(edek)
		if err != nil || info.KEK != tc.keyID || info.Version != "" {
			t.Errorf("DescribeEDEK = %+v, %v", info, err)
		}
	}
	for _, bad := range []string{"", "key id", "key\x00", strings.Repeat("k", maxKeyIDLen+1), "ключ"} {
		if _, err := appendKeyID(nil, bad); err == nil {
			t.Errorf("appendKeyID(%.20q) accepted", bad)
		}
	}
}

func TestParseEDEKMalformed(t *testing.T) {
	uuidHead, _ := appendKeyID(nil, testKeyID)
	for _, tc := range []struct {
		name string
		edek []byte
	}{
		{"empty", nil},
		{"unknown form 0", append([]byte{0}, make([]byte, 40)...)},
		{"unknown form 4", append([]byte{4}, make([]byte, 40)...)},
		{"UUID without blob", uuidHead},
		{"truncated UUID", uuidHead[:10]},
		{"truncated MRK", []byte{formMRK, 1, 2, 3}},
		{"blob too long", append(bytes.Clone(uuidHead), make([]byte, maxBlobLen+1)...)},
		{"zero id length", []byte{formString, 0, 1}},
		{"id longer than input", []byte{formString, 10, 'a', 'b', 1}},
		{"id longer than 2048", append([]byte{formString, 0x81, 0x10}, bytes.Repeat([]byte{'k'}, 2049+1)...)},
		{"huge id length varint", []byte{formString, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"non-minimal id length", []byte{formString, 0x81, 0x00, 'a', 1}},
		{"truncated id length", []byte{formString, 0x80}},
		{"id without blob", []byte{formString, 1, 'a'}},
		{"space in id", []byte{formString, 2, 'a', ' ', 1}},
		{"control byte in id", []byte{formString, 2, 'a', '\n', 1}},
		{"UUID as text", append(append([]byte{formString, 36}, testKeyID...), 1)},
		{"MRK as text", append(append([]byte{formString, 36}, "mrk-1234abcd12ab34cd56ef1234567890ab"...), 1)},
	} {
		if _, _, err := parseEDEK(tc.edek); !errors.Is(err, errMalformedEDEK) {
			t.Errorf("%s: err = %v, want errMalformedEDEK", tc.name, err)
		}
	}
	if _, _, err := parseEDEK(append(bytes.Clone(uuidHead), make([]byte, maxBlobLen)...)); err != nil {
		t.Fatalf("largest blob: %v", err)
	}
}

func TestUUIDForm(t *testing.T) {
	for _, s := range []string{testKeyID, "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"} {
		b, ok := parseUUID(s)
		if !ok || formatUUID(b) != s {
			t.Errorf("%s: parse ok=%v, format %s", s, ok, formatUUID(b))
		}
	}
	for _, s := range []string{"", "1234abcd12ab34cd56ef1234567890ab", "1234abcd-12ab-34cd-56ef-1234567890a", "1234abcd-12ab-34cd-56ef-1234567890ag",
		"1234abcd-12ab-34cd-56ef_1234567890ab", "1234ABCD-12ab-34cd-56ef-1234567890ab", "+234abcd-12ab-34cd-56ef-1234567890ab"} {
		if _, ok := parseUUID(s); ok {
			t.Errorf("parseUUID(%q) accepted", s)
		}
	}
}

// FuzzParseEDEK checks that parsing arbitrary bytes never panics, that
// whatever parses re-encodes to the same bytes (one EDEK, one byte form),
// and that the key check DecryptDEK makes next accepts only key ids and key
// ARNs of the allowed region and accounts.
func FuzzParseEDEK(f *testing.F) {
	k := &KMS{region: "eu-west-1", accounts: map[string]bool{"111122223333": true}}
	for _, id := range []string{testKeyID, "mrk-1234abcd12ab34cd56ef1234567890ab", "arn:aws:kms:eu-west-1:111122223333:key/" + testKeyID} {
		head, _ := appendKeyID(nil, id)
		f.Add(append(head, bytes.Repeat([]byte{0xAB}, 96)...))
	}
	f.Add([]byte{formString, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, edek []byte) {
		id, blob, err := parseEDEK(edek)
		if err != nil {
			return
		}
		again, err := appendKeyID(nil, id)
		if err != nil {
			t.Fatalf("parsed key id %q does not encode: %v", id, err)
		}
		again = append(again, blob...)
		if !bytes.Equal(again, edek) {
			t.Fatalf("re-encoded %X, parsed from %X", again, edek)
		}
		if _, err := k.checkKey(id); err == nil && !isCompact(id) && !strings.HasPrefix(id, "arn:aws:kms:eu-west-1:111122223333:key/") &&
			!(strings.HasPrefix(id, "arn:") && strings.Contains(id, ":kms:eu-west-1:111122223333:key/")) {
			t.Fatalf("key %q passes the check", id)
		}
	})
}

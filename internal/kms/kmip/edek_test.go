package kmip

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func sampleEDEK(mode byte) []byte {
	e := edek{mode: mode, uid: []byte("42"), name: []byte("KEK-orders"), iv: make([]byte, 16), ct: make([]byte, 32)}
	if mode == edekModeGCM {
		e.tag = make([]byte, 16)
	} else {
		e.ct = make([]byte, 48)
	}
	return appendEDEK(nil, &e)
}

func TestEDEKRoundTrip(t *testing.T) {
	for _, mode := range []byte{edekModeGCM, edekModeCBC} {
		b := sampleEDEK(mode)
		e, err := parseEDEK(b)
		if err != nil {
			t.Fatalf("mode %d: %v", mode, err)
		}
		if !bytes.Equal(appendEDEK(nil, &e), b) {
			t.Fatalf("mode %d: does not round-trip", mode)
		}
		info, err := DescribeEDEK(b)
		if err != nil || info.KEK != "KEK-orders" || info.Version != "42" {
			t.Fatalf("DescribeEDEK = %+v, %v", info, err)
		}
	}
	// GCM with a 16-byte IV: 1+1 + 1+2 + 1+10 + 1+16 + 1+16 + 32 = 82.
	if n := len(sampleEDEK(edekModeGCM)); n != 82 {
		t.Fatalf("GCM EDEK is %d bytes, want 82", n)
	}
}

func TestParseEDEKRejects(t *testing.T) {
	good := sampleEDEK(edekModeGCM)
	cases := map[string][]byte{
		"empty":           nil,
		"other format":    append([]byte{2}, good[1:]...),
		"unknown mode":    append([]byte{1, 9}, good[2:]...),
		"truncated":       good[:len(good)-1],
		"trailing byte":   append(bytes.Clone(good), 0),
		"non-minimal len": append([]byte{1, 1, 0x82, 0x00}, good[3:]...),
		"huge uid length": append([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}, good[3:]...),
		"space in name":   bytes.Replace(bytes.Clone(good), []byte("KEK-orders"), []byte("KEK orders"), 1),
		"CBC with a tag":  append([]byte{1, 2}, good[2:]...),
		"GCM short tag":   appendEDEK(nil, &edek{mode: edekModeGCM, uid: []byte("1"), name: []byte("n"), iv: []byte{1}, tag: make([]byte, 4), ct: make([]byte, 32)}),
		"no IV":           appendEDEK(nil, &edek{mode: edekModeGCM, uid: []byte("1"), name: []byte("n"), tag: make([]byte, 16), ct: make([]byte, 32)}),
		"long uid":        appendEDEK(nil, &edek{mode: edekModeGCM, uid: []byte(strings.Repeat("a", 256)), name: []byte("n"), iv: []byte{1}, tag: make([]byte, 16), ct: make([]byte, 32)}),
	}
	for name, b := range cases {
		if _, err := parseEDEK(b); !errors.Is(err, errMalformedEDEK) {
			t.Errorf("%s: got %v, want errMalformedEDEK", name, err)
		}
	}
}

// FuzzParseEDEK checks that parsing never panics and that what parses
// encodes back to the same bytes (one EDEK, one byte form).
func FuzzParseEDEK(f *testing.F) {
	f.Add(sampleEDEK(edekModeGCM))
	f.Add(sampleEDEK(edekModeCBC))
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEDEK(b)
		if err != nil {
			return
		}
		if again := appendEDEK(nil, &e); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %X from %X", again, b)
		}
		if _, err := DescribeEDEK(b); err != nil {
			t.Fatal(err)
		}
	})
}

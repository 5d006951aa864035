package config

import (
	"strings"
	"testing"
)

func TestAuditSection(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit != (Audit{}) {
		t.Fatalf("audit on by default: %+v", c.Audit)
	}
	c, err = Parse([]byte("audit: {path: stdout, bufferEvents: 100}\n" + good))
	if err != nil || c.Audit.Path != "stdout" || c.Audit.BufferEvents != 100 {
		t.Fatalf("%+v, %v", c, err)
	}
	for doc, want := range map[string]string{
		"audit: {path: x, bufferEvents: -1}\n":       "audit.bufferEvents: -1 is out of range",
		"audit: {path: x, bufferEvents: 99999999}\n": "audit.bufferEvents: 99999999 is out of range",
		"audit: {path: x, nope: 1}\n":                "audit.nope: unknown key",
	} {
		if _, err := Parse([]byte(doc + good)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
	}
}

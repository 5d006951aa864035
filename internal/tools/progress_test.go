package tools

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(0, 0)
	p := newProgress(&b, "audit", "offsets", func() time.Time { return now })
	p.SetTotal(2000)
	now = now.Add(time.Second)
	p.Add(500)
	if got := b.String(); !strings.Contains(got, "[#######.......................]  25% 500/2,000 offsets 500/s") {
		t.Fatalf("bar = %q", got)
	}
	p.Add(10) // within 200ms: not redrawn
	if strings.Count(b.String(), "\r") != 1 {
		t.Fatalf("redrawn too often: %q", b.String())
	}
	p.Finish()
	if got := b.String(); !strings.HasSuffix(got, "26% 510/2,000 offsets 510/s\n") {
		t.Fatalf("final = %q", got)
	}
	var nilP *Progress
	nilP.SetTotal(1)
	nilP.Add(1)
	nilP.Finish()
}

func TestProgressOnlyOnTerminals(t *testing.T) {
	if NewProgress(&bytes.Buffer{}, "x", "y") != nil {
		t.Error("progress bar on a buffer")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if NewProgress(f, "x", "y") != nil {
		t.Error("progress bar on a regular file")
	}
}

func TestCount(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := count(in); got != want {
			t.Errorf("count(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestClampRange(t *testing.T) {
	r := Range{Topic: "t", Start: 10, End: 100}
	tests := []struct {
		from, to   int64
		start, end int64
	}{
		{0, -1, 10, 100},
		{0, 0, 10, 100},
		{50, -1, 50, 100},
		{-5, -1, 95, 100},
		{-500, -1, 10, 100},
		{20, 30, 20, 30},
		{200, -1, 200, 200},
		{50, 40, 50, 50},
	}
	for _, tt := range tests {
		got := clampRange(r, tt.from, tt.to)
		if got.Start != tt.start || got.End != tt.end {
			t.Errorf("clampRange(from %d, to %d) = %d..%d, want %d..%d", tt.from, tt.to, got.Start, got.End, tt.start, tt.end)
		}
	}
}

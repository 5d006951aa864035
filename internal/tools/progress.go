package tools

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress draws a one-line progress bar on a terminal. A nil *Progress
// draws nothing, so callers need not check.
type Progress struct {
	w     io.Writer
	label string
	start time.Time
	now   func() time.Time

	mu    sync.Mutex
	total int64
	done  int64
	unit  string
	last  time.Time
	width int // of the last line drawn, to clear it
}

// IsTerminal reports whether w is a character device (a terminal): progress
// bars go only there, never into files or pipes a script reads.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// NewProgress returns a bar drawing on w when w is a terminal, else nil.
// unit names what is counted ("offsets", "records").
func NewProgress(w io.Writer, label, unit string) *Progress {
	if !IsTerminal(w) {
		return nil
	}
	return newProgress(w, label, unit, time.Now)
}

func newProgress(w io.Writer, label, unit string, now func() time.Time) *Progress {
	return &Progress{w: w, label: label, unit: unit, start: now(), now: now}
}

// SetTotal sets what 100% is.
func (p *Progress) SetTotal(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.total = n
	p.mu.Unlock()
}

// Add counts n more done, redrawing at most five times a second.
func (p *Progress) Add(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if t := p.now(); t.Sub(p.last) >= 200*time.Millisecond {
		p.last = t
		p.draw(t)
	}
}

// Finish draws the final state and ends the line.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(p.now())
	fmt.Fprintln(p.w)
}

const barWidth = 30

func (p *Progress) draw(t time.Time) {
	var b strings.Builder
	b.WriteString("\r")
	b.WriteString(p.label)
	b.WriteString(" ")
	if p.total > 0 {
		frac := float64(p.done) / float64(p.total)
		frac = min(max(frac, 0), 1)
		fill := int(frac * barWidth)
		b.WriteString("[" + strings.Repeat("#", fill) + strings.Repeat(".", barWidth-fill) + "]")
		fmt.Fprintf(&b, " %3.0f%% %s/%s %s", frac*100, count(p.done), count(p.total), p.unit)
	} else {
		fmt.Fprintf(&b, "%s %s", count(p.done), p.unit)
	}
	if secs := t.Sub(p.start).Seconds(); secs >= 1 {
		fmt.Fprintf(&b, " %s/s", count(int64(float64(p.done)/secs)))
	}
	line := b.String()
	if pad := p.width - len(line); pad > 0 {
		line += strings.Repeat(" ", pad)
	}
	p.width = len(b.String())
	io.WriteString(p.w, line)
}

// count writes n with thousands separators: 1,234,567.
func count(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

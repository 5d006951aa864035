package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
)

// InspectOptions says what to inspect.
type InspectOptions struct {
	Conn  Conn
	Topic string
	// Partitions to read; nil or empty for all.
	Partitions []int32
	// From is the first offset; a negative From counts back from the end
	// (-10: the last ten offsets). Offsets below the log start are clamped.
	From int64
	// To is the offset to stop before; 0 or negative for the end when the
	// inspection starts.
	To int64
	// Count is the most records shown per partition; 0 for no limit.
	Count int
	// Committed reads what read_committed consumers see instead of every
	// record stored.
	Committed bool
	Describe  kms.DescribeFunc
	Idle      time.Duration
}

// InspectSummary counts what Inspect saw.
type InspectSummary struct {
	Records int64           `json:"records"`
	States  map[State]int64 `json:"states"`
	// Ranges are the offset ranges read, per partition.
	Ranges []Range `json:"ranges"`
}

// Inspect reads the records of one topic straight from the brokers and
// calls emit for each, partition by partition in offset order.
func Inspect(ctx context.Context, o InspectOptions, emit func(RecordInfo) error) (*InspectSummary, error) {
	rd, err := newReader(o.Conn, o.Committed, o.Idle)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	all, err := rd.ranges(ctx, o.Topic)
	if err != nil {
		return nil, err
	}
	var ranges []Range
	for _, p := range o.Partitions {
		if !slices.ContainsFunc(all, func(r Range) bool { return r.Partition == p }) {
			return nil, fmt.Errorf("topic %q has no partition %d (it has %d)", o.Topic, p, len(all))
		}
	}
	for _, r := range all {
		if len(o.Partitions) > 0 && !slices.Contains(o.Partitions, r.Partition) {
			continue
		}
		ranges = append(ranges, clampRange(r, o.From, o.To))
	}
	sum := &InspectSummary{States: map[State]int64{}, Ranges: ranges}
	cls := NewClassifier(o.Describe)
	for _, r := range ranges {
		n := 0
		err := rd.scan(ctx, []Range{r}, func(rec *kgo.Record) error {
			info := cls.Classify(rec)
			sum.Records++
			sum.States[info.State]++
			if err := emit(info); err != nil {
				return err
			}
			if n++; o.Count > 0 && n >= o.Count {
				return errSkipPartition
			}
			return nil
		}, nil)
		if err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// clampRange narrows a partition's stored range to [from, to), from < 0
// counting back from the end, to <= 0 meaning the end.
func clampRange(r Range, from, to int64) Range {
	out := r
	start := from
	if from < 0 {
		start = r.End + from
	}
	out.Start = max(start, r.Start)
	if to > 0 && to < out.End {
		out.End = to
	}
	if out.End < out.Start {
		out.End = out.Start
	}
	return out
}

// InspectText writes records as aligned text lines, one per record.
type InspectText struct {
	w      io.Writer
	header bool
}

// NewInspectText returns a writer of inspect's human-readable output.
func NewInspectText(w io.Writer) *InspectText { return &InspectText{w: w} }

const inspectFormat = "%-9s %-10s %-24s %-10s %5s %7s %4s %-6s %-17s %-20s %-16s %s\n"

// Write prints one record.
func (t *InspectText) Write(r RecordInfo) error {
	if !t.header {
		t.header = true
		if _, err := fmt.Fprintf(t.w, inspectFormat, "PARTITION", "OFFSET", "TIMESTAMP", "STATE", "KEY", "VALUE", "HDRS", "FORMAT", "ENCRYPTED", "KEK", "DEK", "NOTE"); err != nil {
			return err
		}
	}
	format, parts, kek, dek, note := "-", "-", "-", "-", ""
	if r.Format > 0 {
		format = fmt.Sprintf("v%d", r.Format)
	}
	if r.Parts != nil {
		parts = r.Parts.String()
	}
	if r.KeyID != "" {
		note = "key id " + r.KeyID
	}
	if e := r.Envelope; e != nil {
		format = fmt.Sprintf("v%d", e.Format)
		if kek = e.KEKLabel(); kek == "" {
			kek = "?"
		}
		dek = e.DEK
		note = joinNote(note, fmt.Sprintf("edek %dB, counter %d, plaintext %dB", e.EDEKSize, e.Counter, e.PlaintextSize))
		if !e.KeyBound {
			note += ", key not bound"
		}
	}
	if r.Problem != "" {
		note = r.Problem
	}
	if r.Transactional {
		note = joinNote(note, "transactional")
	}
	line := fmt.Sprintf(inspectFormat, fmt.Sprint(r.Partition), fmt.Sprint(r.Offset),
		r.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z"), r.State,
		sizeText(r.KeySize), sizeText(r.ValueSize), fmt.Sprint(r.Headers), format, parts, kek, dek, note)
	_, err := io.WriteString(t.w, strings.TrimRight(line, " \n")+"\n")
	return err
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func sizeText(n int) string {
	if n < 0 {
		return "null"
	}
	return fmt.Sprint(n)
}

// Summary prints the totals after the records.
func (t *InspectText) Summary(s *InspectSummary) error {
	_, err := fmt.Fprintf(t.w, "\n%s records: %d encrypted, %d plaintext, %d tombstones, %d malformed\n",
		count(s.Records), s.States[Encrypted], s.States[Plaintext], s.States[Tombstone], s.States[Malformed])
	return err
}

// NewInspectJSON returns an emit function writing one JSON object per line
// (JSON Lines), for scripts.
func NewInspectJSON(w io.Writer) func(RecordInfo) error {
	enc := json.NewEncoder(w)
	return func(r RecordInfo) error { return enc.Encode(r) }
}

package testenv

import (
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header is one record header.
type Header struct{ Key, Value string }

// Record is a client-neutral record, so what one client produced can be
// compared with what another consumed. Partition -1 means "let the
// producer choose".
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string
	Value     string
	Headers   []Header
}

// Content is the record's key, value and headers in one comparable string
// (not topic, partition or offset).
func (r Record) Content() string {
	var b strings.Builder
	fmt.Fprintf(&b, "key=%q value=%q", r.Key, r.Value)
	for _, h := range r.Headers {
		fmt.Fprintf(&b, " %q:%q", h.Key, h.Value)
	}
	return b.String()
}

func (r Record) String() string {
	return fmt.Sprintf("%s[%d]@%d %s", r.Topic, r.Partition, r.Offset, r.Content())
}

// SortByContent orders records by Content, for set comparisons.
func SortByContent(rs []Record) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Content() < rs[j].Content() })
}

// FromKgo converts a franz-go record.
func FromKgo(r *kgo.Record) Record {
	out := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value)}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, Header{h.Key, string(h.Value)})
	}
	return out
}

// ToKgo converts to a franz-go record (the partition is only honoured by a
// client with kgo.RecordPartitioner(kgo.ManualPartitioner())).
func ToKgo(r Record) *kgo.Record {
	out := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Value: []byte(r.Value)}
	if r.Key != "" {
		out.Key = []byte(r.Key)
	}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
	}
	return out
}

// H is shorthand for a Header.
func H(key, value string) Header { return Header{Key: key, Value: value} }

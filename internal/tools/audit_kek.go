package tools

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/detkey"
)

// KEKTotal is one KEK's records across the topics audited (`kseal audit
// --by-kek`): the evidence that an entity's data is gone is its KEK's
// shred record together with the count of records that only that KEK opens.
type KEKTotal struct {
	KEK string `json:"kek"`
	// Entity is the entity the KEK name holds, when a topic's rule builds
	// it from records (tenant-acme under 'tenant-$(header:tenant)': acme).
	Entity  string     `json:"entity,omitempty"`
	Records int64      `json:"records"`
	Topics  []KEKTopic `json:"topics"`
	// Shredded is the KEK's shred record in the key topic, if any.
	Shredded *ShredInfo `json:"shredded,omitempty"`
}

// KEKTopic is one topic's records under a KEK.
type KEKTopic struct {
	Topic   string `json:"topic"`
	Records int64  `json:"records"`
}

// ShredInfo is a shred record as the audit found it.
type ShredInfo struct {
	Time   time.Time `json:"time"`
	Note   string    `json:"note"`
	Offset int64     `json:"offset"`
}

// kekEntity is the entity a topic's rule reads in kek, if any.
func kekEntity(t *TopicReport, kek string) string {
	if e, ok := t.Policy.sel.EntityOf(kek); ok {
		return e
	}
	return ""
}

// buildByKEK sums the topics' KEK usage per KEK name (versions together).
// Records under EDEKs the describer does not know count under "".
func (r *AuditReport) buildByKEK(shreds map[string]ShredInfo) {
	by := map[string]*KEKTotal{}
	for i := range r.Topics {
		t := &r.Topics[i]
		for _, u := range t.KEKs {
			k := by[u.KEK]
			if k == nil {
				k = &KEKTotal{KEK: u.KEK, Topics: []KEKTopic{}}
				by[u.KEK] = k
			}
			if e := kekEntity(t, u.KEK); e != "" {
				k.Entity = e
			}
			k.Records += u.Records
			if n := len(k.Topics); n > 0 && k.Topics[n-1].Topic == t.Topic {
				k.Topics[n-1].Records += u.Records
			} else {
				k.Topics = append(k.Topics, KEKTopic{Topic: t.Topic, Records: u.Records})
			}
		}
	}
	for name, s := range shreds {
		k := by[name]
		if k == nil {
			// Shredded and nothing stored under it (any more): the proof
			// that it is gone is that nothing is counted.
			k = &KEKTotal{KEK: name, Topics: []KEKTopic{}}
			by[name] = k
		}
		s := s
		k.Shredded = &s
	}
	r.ByKEK = make([]KEKTotal, 0, len(by))
	for _, k := range by {
		r.ByKEK = append(r.ByKEK, *k)
	}
	slices.SortFunc(r.ByKEK, func(a, b KEKTotal) int { return strings.Compare(a.KEK, b.KEK) })
}

// readShreds reads the shred records of the key topic (none if it does not
// exist), by KEK name and id.
func readShreds(ctx context.Context, rd *reader, topic string) (map[string]ShredInfo, error) {
	out := map[string]ShredInfo{}
	if topic == "" {
		return out, nil
	}
	details, err := rd.adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list key topic %s: %w", topic, err)
	}
	if _, ok := details[topic]; !ok || details[topic].Err != nil {
		return out, nil
	}
	ranges, err := rd.ranges(ctx, topic)
	if err != nil {
		return nil, err
	}
	err = rd.scan(ctx, ranges, func(rec *kgo.Record) error {
		if !detkey.IsShredKey(rec.Key) {
			return nil
		}
		s, err := detkey.ParseShredRecord(rec.Key, rec.Value)
		if err != nil {
			return nil // as kseal: a malformed record is skipped
		}
		info := ShredInfo{Time: s.Time, Note: s.Note, Offset: rec.Offset}
		for _, n := range []string{s.KEK, s.KEKID} {
			if _, ok := out[n]; n != "" && !ok {
				out[n] = info
			}
		}
		return nil
	}, func(int64) {})
	if err != nil {
		return nil, fmt.Errorf("reading key topic %s: %w", topic, err)
	}
	return out, nil
}

// WriteByKEKText writes the per-KEK totals for a person.
func (r *AuditReport) WriteByKEKText(w io.Writer) error {
	var b strings.Builder
	b.WriteString("\nRecords per KEK (all versions; --by-kek)\n")
	for _, k := range r.ByKEK {
		name := k.KEK
		if name == "" {
			name = "(KEK unknown: no describer for these EDEKs)"
		}
		if k.Entity != "" {
			name += "  entity " + k.Entity
		}
		fmt.Fprintf(&b, "  %-40s %s records", name, count(k.Records))
		if k.Shredded != nil {
			fmt.Fprintf(&b, "  SHREDDED %s (key topic offset %d, note %q): these records cannot be decrypted",
				k.Shredded.Time.UTC().Format(time.RFC3339), k.Shredded.Offset, k.Shredded.Note)
		}
		b.WriteString("\n")
		for _, t := range k.Topics {
			fmt.Fprintf(&b, "      %-36s %s\n", t.Topic, count(t.Records))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// AuditOptions says what to audit.
type AuditOptions struct {
	Conn    Conn
	Cluster string // shown in the report
	// Topics selects topics by a regular expression matching the whole
	// name; nil audits every topic except Kafka's internal ones.
	Topics *regexp.Regexp
	// Policy is the virtual cluster's encryption policy; nil when it does
	// not encrypt (then no topic must be encrypted).
	Policy    *policy.Policy
	Committed bool
	Describe  kms.DescribeFunc
	Idle      time.Duration
	Progress  *Progress
	// ByKEK also sums the records per KEK across topics, with the shred
	// records of KeyTopic (audit_kek.go).
	ByKEK bool
	// KeyTopic is kseal's own key topic, never audited (its records are
	// kseal's bookkeeping, not data); "" means detkey.DefaultTopic.
	KeyTopic string
}

// AuditReport is the audit's result, also its JSON output.
type AuditReport struct {
	Cluster   string        `json:"cluster"`
	Brokers   []string      `json:"brokers"`
	Started   time.Time     `json:"started"`
	Finished  time.Time     `json:"finished"`
	Isolation string        `json:"isolation"` // read_uncommitted (every record stored) or read_committed
	Topics    []TopicReport `json:"topics"`
	// Disagreements counts topics whose records the policy does not allow.
	Disagreements int `json:"disagreements"`
	// Totals sums the topics' counts.
	Totals AuditTotals `json:"totals"`
	// Incomplete counts topics that could not be read to the end.
	Incomplete int `json:"incomplete"`
	// ByKEK is the records per KEK (AuditOptions.ByKEK).
	ByKEK []KEKTotal `json:"byKek,omitempty"`
}

// OK reports whether every topic was read and agrees with the policy.
func (r *AuditReport) OK() bool { return r.Disagreements == 0 && r.Incomplete == 0 }

// TopicReport is one topic's part of the audit.
type TopicReport struct {
	Topic      string     `json:"topic"`
	Partitions int        `json:"partitions"`
	Policy     PolicyInfo `json:"policy"`
	Records    int64      `json:"records"`
	Encrypted  int64      `json:"encrypted"`
	Plaintext  int64      `json:"plaintext"`
	Tombstones int64      `json:"tombstones"`
	Malformed  int64      `json:"malformed"`
	// EncryptedShare is Encrypted over the records with a value (tombstones
	// are never encrypted); absent when there are none.
	EncryptedShare *float64   `json:"encryptedShare,omitempty"`
	KEKs           []KEKUsage `json:"keks"`
	Violations     []Finding  `json:"violations"`
	// Incomplete lists what could not be read.
	Incomplete []Range `json:"incomplete,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// PolicyInfo is what the policy says about a topic.
type PolicyInfo struct {
	Action string `json:"action"` // encrypt, passthrough, unresolved, none (no encryption configured)
	KEK    string `json:"kek,omitempty"`
	// MustEncrypt: plaintext records are a disagreement. True when a rule
	// names a KEK, and when no rule matches under REJECT (kseal would have
	// refused them, so they were written around it).
	MustEncrypt bool `json:"mustEncrypt"`
	// Encrypts is what the rule encrypts (a rule naming a KEK).
	Encrypts *PartsInfo `json:"encrypts,omitempty"`

	sel     policy.Selection
	require policy.Requirement // audit_integrity.go
}

// KEKUsage is one KEK version's share of a topic.
type KEKUsage struct {
	// KEK and Version are empty when the EDEKs are not ones the configured
	// KMS's describer knows; DEK ids still count.
	KEK     string `json:"kek"`
	Version string `json:"version"`
	Records int64  `json:"records"`
	DEKs    int    `json:"deks"`
	// DEKsCapped is set when more distinct DEKs were seen than counted.
	DEKsCapped bool `json:"deksCapped,omitempty"`
	// Oldest and Newest are the records with the lowest and highest
	// timestamps: a version can be retired once its Newest record has
	// expired (or been re-encrypted).
	Oldest RecordRef `json:"oldest"`
	Newest RecordRef `json:"newest"`
	// PolicyKEK reports whether this is the KEK the policy names now.
	PolicyKEK bool `json:"policyKek"`

	deks map[recordcrypt.DEKID]struct{}
}

// RecordRef points at one record.
type RecordRef struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp"`
}

// Finding is one kind of disagreement on a topic.
type Finding struct {
	Kind     string      `json:"kind"` // plaintext, clear_key, clear_headers, injected, malformed
	Count    int64       `json:"count"`
	Message  string      `json:"message"`
	Examples []RecordRef `json:"examples"` // the first few, in scan order
}

const (
	maxExamples   = 5
	maxDEKsPerKEK = 1 << 16
)

type kekKey struct{ kek, version string }

type topicAcc struct {
	rep      *TopicReport
	keks     map[kekKey]*KEKUsage
	findings map[string]*Finding
	// firstEnc is each partition's lowest offset holding an envelope
	// (audit_integrity.go).
	firstEnc map[int32]int64
}

// clearParts says which parts of a record the policy encrypts but the
// record holds in clear. Without a rule (REJECT) every value must be
// encrypted, as before format v2.
func clearParts(p *PolicyInfo, info *RecordInfo, rec *kgo.Record) (value, key, headers bool) {
	if !p.MustEncrypt {
		return false, false, false
	}
	enc := info.Parts
	if enc == nil {
		enc = &PartsInfo{}
	}
	want := p.Encrypts
	if want == nil {
		return rec.Value != nil && !enc.Value, false, false
	}
	value = want.Value && rec.Value != nil && !enc.Value
	key = want.Key && rec.Key != nil && !enc.Key
	if want.Headers {
		for i := range rec.Headers {
			h := &rec.Headers[i]
			if h.Key != recordcrypt.HeaderKey && p.sel.EncryptHeader([]byte(h.Key)) {
				headers = true
				break
			}
		}
	}
	return value, key, headers
}

func (a *topicAcc) add(info RecordInfo, rec *kgo.Record) {
	r := a.rep
	r.Records++
	ref := RecordRef{Partition: info.Partition, Offset: info.Offset, Timestamp: info.Timestamp}
	if info.State != Malformed {
		value, key, headers := clearParts(&r.Policy, &info, rec)
		if value {
			a.find("plaintext", ref, "plaintext records on a topic the policy encrypts")
		}
		if key {
			a.find("clear_key", ref, "records whose key is stored in clear on a topic whose rule encrypts keys (written before the rule did: kseal reencrypt --format 2)")
		}
		if headers {
			a.find("clear_headers", ref, "records with headers stored in clear that the rule encrypts (written before the rule did: kseal reencrypt --format 2)")
		}
		a.checkInjected(info, ref, value || key || headers)
	}
	switch info.State {
	case Tombstone:
		r.Tombstones++
	case Plaintext:
		r.Plaintext++
	case Malformed:
		r.Malformed++
		a.find("malformed", ref, "records with a kseal marker whose value is not a valid envelope (tampered, or not written by kseal)")
	case Encrypted:
		r.Encrypted++
		e := info.Envelope
		if e == nil {
			return // a version 2 record with its key sealed only: no DEK
		}
		k := kekKey{e.KEK, e.KEKVersion}
		u := a.keks[k]
		if u == nil {
			u = &KEKUsage{KEK: e.KEK, Version: e.KEKVersion, Oldest: ref, Newest: ref,
				PolicyKEK: e.KEK != "" && (e.KEK == r.Policy.KEK || kekEntity(r, e.KEK) != ""), deks: map[recordcrypt.DEKID]struct{}{}}
			a.keks[k] = u
		}
		u.Records++
		if ref.Timestamp.Before(u.Oldest.Timestamp) {
			u.Oldest = ref
		}
		if ref.Timestamp.After(u.Newest.Timestamp) {
			u.Newest = ref
		}
		if _, ok := u.deks[e.id]; !ok {
			if len(u.deks) < maxDEKsPerKEK {
				u.deks[e.id] = struct{}{}
			} else {
				u.DEKsCapped = true
			}
		}
	}
}

func (a *topicAcc) find(kind string, ref RecordRef, msg string) {
	f := a.findings[kind]
	if f == nil {
		f = &Finding{Kind: kind, Message: msg}
		a.findings[kind] = f
	}
	f.Count++
	if len(f.Examples) < maxExamples {
		f.Examples = append(f.Examples, ref)
	}
}

func (a *topicAcc) finish() {
	r := a.rep
	for _, u := range a.keks {
		u.DEKs = len(u.deks)
		r.KEKs = append(r.KEKs, *u)
	}
	slices.SortFunc(r.KEKs, func(x, y KEKUsage) int {
		if c := strings.Compare(x.KEK, y.KEK); c != 0 {
			return c
		}
		return compareVersions(x.Version, y.Version)
	})
	for _, kind := range []string{"plaintext", "clear_key", "clear_headers", "injected", "malformed"} {
		if f := a.findings[kind]; f != nil {
			r.Violations = append(r.Violations, *f)
		}
	}
	if withValue := r.Records - r.Tombstones; withValue > 0 {
		share := float64(r.Encrypted) / float64(withValue)
		r.EncryptedShare = &share
	}
}

// compareVersions orders numeric versions numerically ("2" < "10"), others
// as strings.
func compareVersions(a, b string) int {
	if len(a) != len(b) && isDigits(a) && isDigits(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func policyInfo(p *policy.Policy, topic string) PolicyInfo {
	if p == nil {
		return PolicyInfo{Action: "none"}
	}
	s := p.Select(topic)
	info := PolicyInfo{Action: s.Action.String(), KEK: s.KEK, sel: s, require: p.Require(s)}
	switch s.Action {
	case policy.Encrypt:
		info.MustEncrypt = true
		info.Encrypts = &PartsInfo{Value: s.Parts&policy.PartValue != 0, Key: s.Parts&policy.PartKey != 0, Headers: s.Parts&policy.PartHeaders != 0}
	case policy.Unresolved:
		info.MustEncrypt = p.UnresolvedKeyPolicy() == policy.Reject
	}
	return info
}

// Audit scans the selected topics straight from the brokers and reports,
// per topic, what is stored and where it disagrees with the policy. A
// topic that cannot be read to the end is reported as incomplete, not as
// an error; the error is for failures that stop the whole audit.
func Audit(ctx context.Context, o AuditOptions) (*AuditReport, error) {
	rep := &AuditReport{Cluster: o.Cluster, Brokers: o.Conn.Brokers, Started: time.Now().UTC(), Isolation: "read_uncommitted", Topics: []TopicReport{}}
	if o.Committed {
		rep.Isolation = "read_committed"
	}
	rd, err := newReader(o.Conn, o.Committed, o.Idle)
	if err != nil {
		return nil, err
	}
	defer rd.close()
	details, err := rd.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var topics []string
	keyTopic := o.KeyTopic
	if keyTopic == "" {
		keyTopic = detkey.DefaultTopic
	}
	for _, t := range details.Names() {
		if t == keyTopic {
			continue
		}
		if o.Topics == nil || o.Topics.MatchString(t) {
			topics = append(topics, t)
		}
	}
	accs := map[string]*topicAcc{}
	rep.Topics = make([]TopicReport, len(topics))
	var ranges []Range
	for i, t := range topics {
		rep.Topics[i] = TopicReport{Topic: t, Partitions: len(details[t].Partitions), Policy: policyInfo(o.Policy, t),
			KEKs: []KEKUsage{}, Violations: []Finding{}}
		accs[t] = &topicAcc{rep: &rep.Topics[i], keks: map[kekKey]*KEKUsage{}, findings: map[string]*Finding{}}
	}
	if len(topics) > 0 {
		if ranges, err = rd.ranges(ctx, topics...); err != nil {
			return nil, err
		}
	}
	var total int64
	for _, r := range ranges {
		total += r.End - r.Start
	}
	o.Progress.SetTotal(total)
	cls := NewClassifier(o.Describe)
	err = rd.scan(ctx, ranges, func(rec *kgo.Record) error {
		accs[rec.Topic].add(cls.Classify(rec), rec)
		return nil
	}, o.Progress.Add)
	o.Progress.Finish()
	var inc *IncompleteError
	switch {
	case errors.As(err, &inc):
		for _, r := range inc.Remaining {
			a := accs[r.Topic]
			a.rep.Incomplete = append(a.rep.Incomplete, r)
		}
	case err != nil:
		return nil, err
	}
	for _, t := range topics {
		a := accs[t]
		a.finish()
		if len(a.rep.Violations) > 0 {
			rep.Disagreements++
		}
		if len(a.rep.Incomplete) > 0 {
			rep.Incomplete++
		}
	}
	rep.Totals = totals(rep.Topics)
	if o.ByKEK {
		shreds, err := readShreds(ctx, rd, o.KeyTopic)
		if err != nil {
			return nil, err
		}
		rep.buildByKEK(shreds)
	}
	rep.Finished = time.Now().UTC()
	return rep, nil
}

// AuditTotals are the counts of every topic audited, together.
type AuditTotals struct {
	Topics     int   `json:"topics"`
	Records    int64 `json:"records"`
	Encrypted  int64 `json:"encrypted"`
	Plaintext  int64 `json:"plaintext"`
	Tombstones int64 `json:"tombstones"`
	Malformed  int64 `json:"malformed"`
	// Violations counts the records of every disagreement.
	Violations int64 `json:"violations"`
}

func totals(topics []TopicReport) AuditTotals {
	t := AuditTotals{Topics: len(topics)}
	for _, r := range topics {
		t.Records += r.Records
		t.Encrypted += r.Encrypted
		t.Plaintext += r.Plaintext
		t.Tombstones += r.Tombstones
		t.Malformed += r.Malformed
		for _, v := range r.Violations {
			t.Violations += v.Count
		}
	}
	return t
}

// WriteJSON writes the report as one indented JSON document.
func (r *AuditReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person.
func (r *AuditReport) WriteText(w io.Writer) error {
	var b strings.Builder
	records := totals(r.Topics).Records
	fmt.Fprintf(&b, "kseal audit of virtual cluster %q (%s), %s\n", r.Cluster, strings.Join(r.Brokers, ","), r.Started.Format(time.RFC3339))
	what := "every record stored, including aborted and open transactions"
	if r.Isolation == "read_committed" {
		what = "committed records only"
	}
	fmt.Fprintf(&b, "%d topics, %s records scanned (%s)\n", len(r.Topics), count(records), what)
	for _, t := range r.Topics {
		fmt.Fprintf(&b, "\n%s  (%d partitions)  policy: %s\n", t.Topic, t.Partitions, policyText(t.Policy))
		share := "-"
		if t.EncryptedShare != nil {
			share = fmt.Sprintf("%.1f%%", *t.EncryptedShare*100)
		}
		fmt.Fprintf(&b, "  records %s: encrypted %s (%s), plaintext %s, tombstones %s, malformed %s\n",
			count(t.Records), count(t.Encrypted), share, count(t.Plaintext), count(t.Tombstones), count(t.Malformed))
		for _, k := range t.KEKs {
			name := k.KEK
			switch {
			case name == "":
				name = "(KEK unknown: no describer for these EDEKs)"
			case k.Version != "":
				name += " v" + k.Version
			}
			deks := fmt.Sprint(k.DEKs)
			if k.DEKsCapped {
				deks += "+"
			}
			fmt.Fprintf(&b, "  %-28s %s records, %s DEKs, oldest %s (p%d@%d), newest %s\n", name, count(k.Records), deks,
				k.Oldest.Timestamp.UTC().Format(time.RFC3339), k.Oldest.Partition, k.Oldest.Offset,
				k.Newest.Timestamp.UTC().Format(time.RFC3339))
		}
		for _, v := range t.Violations {
			ex := make([]string, len(v.Examples))
			for i, e := range v.Examples {
				ex[i] = fmt.Sprintf("p%d@%d", e.Partition, e.Offset)
			}
			fmt.Fprintf(&b, "  DISAGREES: %s %s (e.g. %s)\n", count(v.Count), v.Message, strings.Join(ex, ", "))
		}
		for _, rg := range t.Incomplete {
			fmt.Fprintf(&b, "  INCOMPLETE: partition %d not read from offset %d to %d\n", rg.Partition, rg.Start, rg.End)
		}
	}
	if r.ByKEK != nil {
		var kb strings.Builder
		if err := r.WriteByKEKText(&kb); err != nil {
			return err
		}
		b.WriteString(kb.String())
	}
	b.WriteString("\n")
	switch {
	case r.OK():
		b.WriteString("OK: every record agrees with the encryption policy\n")
	default:
		if r.Disagreements > 0 {
			fmt.Fprintf(&b, "FAIL: policy and stored records disagree on %d topic(s)\n", r.Disagreements)
		}
		if r.Incomplete > 0 {
			fmt.Fprintf(&b, "INCOMPLETE: %d topic(s) could not be read to the end\n", r.Incomplete)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func policyText(p PolicyInfo) string {
	switch p.Action {
	case "encrypt":
		if p.Encrypts != nil && (p.Encrypts.Key || p.Encrypts.Headers || !p.Encrypts.Value) {
			return "encrypt " + p.Encrypts.String() + " under " + p.KEK
		}
		return "encrypt under " + p.KEK
	case "unresolved":
		if p.MustEncrypt {
			return "no rule (REJECT: nothing may be stored in plaintext)"
		}
		return "no rule (PASSTHROUGH_UNENCRYPTED)"
	case "none":
		return "none (this virtual cluster does not encrypt)"
	}
	return p.Action
}

package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/kms"
)

// ShredOptions say which KEKs `kseal shred` destroys (docs/shredding.md).
type ShredOptions struct {
	// Conn reaches the upstream cluster holding the key topic.
	Conn Conn
	// Cluster is the virtual cluster's name, for the report.
	Cluster string
	// KeyTopic is the key topic (Topic, ReplicationFactor).
	KeyTopic detkey.Options
	// KMS is the virtual cluster's KMS, KMSType its encryption.kms.type.
	KMS     kms.KMS
	KMSType string
	// KEKs are the KEK names to shred, as policy selects them (for an
	// entity rule, the rendered name: tenant-acme).
	KEKs []string
	// Note is the operator's note, kept in the shred record (a ticket).
	Note string
	// DryRun resolves the KEKs and lists what would be done, changing
	// nothing.
	DryRun bool
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// ShredReport is what `kseal shred` did (or, dry, would do); also its JSON.
type ShredReport struct {
	Cluster  string     `json:"cluster"`
	KeyTopic string     `json:"keyTopic"`
	KMS      string     `json:"kms"`
	DryRun   bool       `json:"dryRun"`
	KEKs     []ShredKEK `json:"keks"`
}

// ShredKEK is one KEK's part of a ShredReport.
type ShredKEK struct {
	KEK   string `json:"kek"`
	KEKID string `json:"kekId,omitempty"`
	// State is what the KMS said before: exists, not_found, unusable.
	State string `json:"state"`
	// Steps are what is (dry run: would be) done, in order.
	Steps []string `json:"steps"`
	// ShredRecordOffset is the shred record's offset in the key topic.
	ShredRecordOffset *int64 `json:"shredRecordOffset,omitempty"`
	// Destroyed: the KMS destroyed the key material; Pending: it is
	// scheduled (AWS); Manual: the KMS has no destroy call kseal makes,
	// the operator must destroy the KEK (docs/shredding.md).
	Destroyed bool   `json:"destroyed"`
	Pending   bool   `json:"pending"`
	Manual    bool   `json:"manual"`
	KMSResult string `json:"kmsResult,omitempty"`
	Error     string `json:"error,omitempty"`
}

// OK reports whether every KEK was shredded (or, dry, could be).
func (r *ShredReport) OK() bool {
	for _, k := range r.KEKs {
		if k.Error != "" {
			return false
		}
	}
	return true
}

// Shred shreds each KEK: it checks the KEK in the KMS, writes a shred
// record into the key topic (what lets kseal deliver the KEK's records as
// shredded rather than fail: onDestroyedKek NULL_VALUE), then destroys the
// KEK in the KMS (local: delete; Vault/OpenBao: allow deletion, delete; AWS:
// schedule deletion with the shortest window) or, for other KMSs, says to
// destroy it by hand. The record comes first: a KEK is never gone without
// it. A KMS that cannot be reached stops the KEK before anything is written.
func Shred(ctx context.Context, o ShredOptions) (*ShredReport, error) {
	if len(o.KEKs) == 0 {
		return nil, errors.New("no KEK to shred")
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	rep := &ShredReport{Cluster: o.Cluster, KeyTopic: o.KeyTopic.Topic, KMS: o.KMSType, DryRun: o.DryRun}
	destroyer, canDestroy := o.KMS.(kms.Destroyer)
	var cl *kgo.Client
	if !o.DryRun {
		var err error
		if cl, err = kgo.NewClient(append(o.Conn.opts(), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite(),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))...); err != nil {
			return nil, err
		}
		defer cl.Close()
	}
	created := false
	for _, name := range o.KEKs {
		k := ShredKEK{KEK: name}
		rec := detkey.ShredRecord{KEK: name, Time: now().UTC().Truncate(time.Millisecond), Note: o.Note}
		if err := rec.Check(); err != nil {
			k.Error = fmt.Sprintf("KEK name %q: %v", name, err)
			rep.KEKs = append(rep.KEKs, k)
			continue
		}
		ref, err := o.KMS.ResolveKEK(ctx, name)
		switch {
		case err == nil:
			k.State, k.KEKID = "exists", ref.ID
			if ref.ID != name {
				rec.KEKID = ref.ID
			}
		case errors.Is(err, kms.ErrKeyNotFound):
			k.State = "not_found"
		case errors.Is(err, kms.ErrKeyUnusable):
			k.State = "unusable"
		default:
			k.Error = fmt.Sprintf("the KMS cannot tell whether KEK %q exists: %v", name, err)
			rep.KEKs = append(rep.KEKs, k)
			continue
		}
		k.Steps = append(k.Steps, fmt.Sprintf("write a shred record for %s into key topic %s (note %q)", name, o.KeyTopic.Topic, o.Note))
		switch {
		case k.State != "exists":
			k.Steps = append(k.Steps, fmt.Sprintf("nothing to destroy: the KMS says the KEK is %s (an id it once had cannot be checked; make sure it is destroyed)", strings.ReplaceAll(k.State, "_", " ")))
		case canDestroy:
			k.Steps = append(k.Steps, destroyStep(o.KMSType, name))
		default:
			k.Manual = true
			k.Steps = append(k.Steps, fmt.Sprintf("destroy KEK %s in the %s KMS by hand (docs/shredding.md, %q)", name, o.KMSType, o.KMSType))
		}
		if o.DryRun {
			rep.KEKs = append(rep.KEKs, k)
			continue
		}
		if !created {
			if err := createKeyTopic(ctx, cl, o.KeyTopic); err != nil {
				k.Error = err.Error()
				rep.KEKs = append(rep.KEKs, k)
				return rep, nil
			}
			created = true
		}
		r := &kgo.Record{Topic: o.KeyTopic.Topic, Partition: 0, Key: detkey.AppendShredKey(nil, name), Value: rec.AppendValue(nil)}
		res := cl.ProduceSync(ctx, r)
		if err := res.FirstErr(); err != nil {
			k.Error = fmt.Sprintf("writing the shred record: %v (the KEK was not touched)", err)
			rep.KEKs = append(rep.KEKs, k)
			continue
		}
		off := res[0].Record.Offset
		k.ShredRecordOffset = &off
		if k.State == "exists" && canDestroy {
			d, err := destroyer.Destroy(ctx, ref)
			if err != nil {
				k.Error = fmt.Sprintf("the shred record is written (offset %d) but the KMS did not destroy the KEK: %v; run kseal shred again or destroy it by hand", off, err)
			} else {
				k.Destroyed, k.Pending, k.KMSResult = d.Done, !d.Done, d.What
			}
		}
		rep.KEKs = append(rep.KEKs, k)
	}
	return rep, nil
}

func destroyStep(kmsType, name string) string {
	switch kmsType {
	case "local":
		return fmt.Sprintf("delete KEK %s from the local key store (every version)", name)
	case "vault":
		return fmt.Sprintf("set deletion_allowed on Transit key %s, then delete it (every version)", name)
	case "aws":
		return fmt.Sprintf("schedule deletion of the key behind %s with the shortest window (%d days): unusable at once, deleted then", name, 7)
	}
	return fmt.Sprintf("destroy KEK %s in the KMS", name)
}

// createKeyTopic creates the key topic as kseal would (docs/key-topic.md),
// unless it exists.
func createKeyTopic(ctx context.Context, cl *kgo.Client, o detkey.Options) error {
	adm := kadm.NewClient(cl)
	rf := o.ReplicationFactor
	if rf == 0 {
		md, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return fmt.Errorf("key topic %s: %w", o.Topic, err)
		}
		rf = int16(min(3, len(md.Brokers)))
	}
	cfg := map[string]*string{}
	for k, v := range detkey.TopicConfigs {
		cfg[k] = &v
	}
	resp, err := adm.CreateTopic(ctx, 1, rf, cfg, o.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating key topic %s: %w", o.Topic, err)
	}
	return nil
}

// WriteJSON writes the report as one indented JSON document.
func (r *ShredReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person.
func (r *ShredReport) WriteText(w io.Writer) error {
	var b strings.Builder
	verb := "shred"
	if r.DryRun {
		verb = "shred (dry run: nothing changed; this is what kseal shred would do)"
	}
	fmt.Fprintf(&b, "kseal %s, virtual cluster %q, key topic %s, KMS %s\n", verb, r.Cluster, r.KeyTopic, r.KMS)
	for _, k := range r.KEKs {
		id := ""
		if k.KEKID != "" && k.KEKID != k.KEK {
			id = " (" + k.KEKID + ")"
		}
		fmt.Fprintf(&b, "\n%s%s: %s in the KMS\n", k.KEK, id, strings.ReplaceAll(k.State, "_", " "))
		for i, s := range k.Steps {
			fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
		}
		switch {
		case k.Error != "":
			fmt.Fprintf(&b, "  ERROR: %s\n", k.Error)
		case r.DryRun:
		case k.Destroyed:
			fmt.Fprintf(&b, "  done: shred record at offset %d; %s\n", *k.ShredRecordOffset, k.KMSResult)
		case k.Pending:
			fmt.Fprintf(&b, "  PENDING: shred record at offset %d; %s\n", *k.ShredRecordOffset, k.KMSResult)
		case k.Manual:
			fmt.Fprintf(&b, "  TO DO: shred record at offset %d; now destroy the KEK in the KMS (docs/shredding.md)\n", *k.ShredRecordOffset)
		default:
			fmt.Fprintf(&b, "  done: shred record at offset %d\n", *k.ShredRecordOffset)
		}
	}
	if !r.DryRun && r.OK() {
		b.WriteString("\nkseal processes take the KEK for shredded within encryption.dek.decryptCacheMaxAge; `kseal audit --by-kek` counts what is stored under it.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

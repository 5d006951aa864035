package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/tools"
)

const shredUsage = `Usage: kseal shred --kek NAME[,NAME...] [--note TEXT] [--dry-run] [--json]
       kseal shred --topic TOPIC --entity ID[,ID...] [--note TEXT] [--dry-run] [--json]

Crypto-shreds KEKs (docs/shredding.md): for each KEK it
  1. checks the KEK in the virtual cluster's KMS;
  2. writes a shred record (KEK name, KMS id, time, --note) into kseal's key
     topic, so every kseal process can tell the KEK was destroyed on purpose
     and, for rules with onDestroyedKek: NULL_VALUE, deliver its records with
     a null value and the header kseal.shredded instead of an error;
  3. destroys the KEK in the KMS: local: deletes it; vault (OpenBao, Vault):
     sets deletion_allowed, then deletes it; aws: schedules its deletion with
     the shortest window (7 days: unusable at once, PENDING until then).
     Other KMSs: destroy it by hand as docs/shredding.md says.
The shred record is written before the KEK is touched; a KMS that cannot be
reached stops before anything is written. There is no undo (AWS: until the
window ends, CancelKeyDeletion).

For an entity rule ('tenant-$(header:tenant)') give the KEK name
(--kek tenant-acme), or the topic and the entity (--topic orders --entity acme:
the topic's rule makes the KEK name). --dry-run lists what would be done and
changes nothing.
Afterwards 'kseal audit --by-kek' counts the records under each KEK.

Exit status: 0 done (or, dry, possible); 1 a KEK could not be shredded;
2 usage or configuration errors.
`

func cmdShred(args []string, stdout, stderr io.Writer) int {
	f := newToolFlags("shred", shredUsage, stdout, stderr)
	keks := f.fs.String("kek", "", "comma-separated KEK names to shred")
	topic := f.fs.String("topic", "", "with --entity: the topic whose rule makes the entities' KEK names")
	entities := f.fs.String("entity", "", "comma-separated entities (with --topic) whose KEKs to shred")
	note := f.fs.String("note", "", "a note kept in the shred record (who, why: a ticket number)")
	dry := f.fs.Bool("dry-run", false, "check the KEKs and list what would be done; change nothing")
	f.required = func() string {
		switch k, e, tp := strings.TrimSpace(*keks) != "", strings.TrimSpace(*entities) != "", *topic != ""; {
		case k && (e || tp):
			return "give either --kek or --topic with --entity"
		case !k && !(e && tp):
			return "--kek, or --topic with --entity, is required"
		}
		return ""
	}
	c, ok, err := f.parse(args)
	if !ok {
		return f.exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal shred: %v\n", err)
		return 2
	}
	if c.KMSConfig == nil {
		fmt.Fprintf(stderr, "kseal shred: virtual cluster %q does not encrypt (no encryption section)\n", c.Name)
		return 2
	}
	var names []string
	for _, n := range strings.Split(*keks, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	for _, e := range strings.Split(*entities, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		name, err := c.Policy.Select(*topic).KEKForEntity(e)
		if err != nil {
			fmt.Fprintf(stderr, "kseal shred: topic %s, entity %q: %v\n", *topic, e, err)
			return 2
		}
		names = append(names, name)
	}
	ctx, stop := interruptible()
	defer stop()
	k, err := c.KMSConfig.Open(ctx, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintf(stderr, "kseal shred: opening the KMS: %v\n", err)
		return 2
	}
	if cl, ok := k.(kms.Closer); ok {
		defer cl.Close()
	}
	rep, err := tools.Shred(ctx, tools.ShredOptions{Conn: c.Direct, Cluster: c.Name, KeyTopic: c.KeyTopic, KMS: k,
		KMSType: c.KMSType, KEKs: names, Note: *note, DryRun: *dry})
	if err != nil {
		fmt.Fprintf(stderr, "kseal shred: %v\n", err)
		return 2
	}
	if f.jsonOut {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal shred: %v\n", err)
		return 2
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

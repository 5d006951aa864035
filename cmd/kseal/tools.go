package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/tools"
)

// toolFlags are the flags inspect, audit and reencrypt share.
type toolFlags struct {
	fs          *flag.FlagSet
	config      string
	cluster     string
	brokers     string
	saslMech    string
	saslUser    string
	saslPassEnv string
	jsonOut     bool
	committed   bool
	idle        time.Duration
	// required, when set, says what required flag is missing ("" if none).
	required func() string
	// stdout receives --help; exit is the exit code when parse says !ok
	// with a nil error (0 after --help, 2 after a usage error).
	stdout io.Writer
	exit   int
}

func newToolFlags(name, text string, stdout, stderr io.Writer) *toolFlags {
	f := &toolFlags{fs: newFlagSet(name, summary(name), text, stderr), stdout: stdout, exit: 2}
	f.fs.StringVar(&f.config, "config", "kseal.yaml", "path to the YAML config file")
	f.fs.StringVar(&f.cluster, "cluster", "", "virtual cluster to use (default: the only one)")
	f.fs.StringVar(&f.brokers, "brokers", "", "comma-separated brokers to read from instead of the cluster's upstream.bootstrapServers")
	f.fs.StringVar(&f.saslMech, "sasl-mechanism", "", "SASL mechanism for the brokers (and the proxy, which passes SASL through): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
	f.fs.StringVar(&f.saslUser, "sasl-user", "", "SASL user name")
	f.fs.StringVar(&f.saslPassEnv, "sasl-password-env", "KSEAL_SASL_PASSWORD", "environment variable holding the SASL password")
	f.fs.BoolVar(&f.jsonOut, "json", false, "write JSON instead of text")
	f.fs.DurationVar(&f.idle, "idle", tools.DefaultIdle, "give up on a partition when nothing arrives for this long")
	return f
}

// parse parses args and loads the virtual cluster; a false ok means usage
// (exit 2) when err is nil.
func (f *toolFlags) parse(args []string) (*tools.Cluster, bool, error) {
	if code, done := parseFlags(f.fs, args, f.stdout); done {
		f.exit = code
		return nil, false, nil
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(f.fs.Output(), "%s: unexpected argument %q\n", f.fs.Name(), f.fs.Arg(0))
		return nil, false, nil
	}
	if f.required != nil {
		if msg := f.required(); msg != "" {
			fmt.Fprintf(f.fs.Output(), "%s: %s\n", f.fs.Name(), msg)
			return nil, false, nil
		}
	}
	cfg, err := app.Load(f.config)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", f.config, err)
	}
	c, err := tools.FromConfig(cfg, f.cluster)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %w", f.config, err)
	}
	if f.brokers != "" {
		c.Direct.Brokers = strings.Split(f.brokers, ",")
	}
	if c.Direct.SASL, err = f.mechanism(); err != nil {
		return nil, true, err
	}
	return c, true, nil
}

func (f *toolFlags) mechanism() (sasl.Mechanism, error) {
	if f.saslMech == "" {
		return nil, nil
	}
	if f.saslUser == "" {
		return nil, errors.New("--sasl-user is required with --sasl-mechanism")
	}
	pass, ok := os.LookupEnv(f.saslPassEnv)
	if !ok {
		return nil, fmt.Errorf("the SASL password is read from $%s, which is not set", f.saslPassEnv)
	}
	switch strings.ToUpper(f.saslMech) {
	case "PLAIN":
		return plain.Auth{User: f.saslUser, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: f.saslUser, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: f.saslUser, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", f.saslMech)
}

// interruptible returns a context cancelled by SIGINT or SIGTERM.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// int32List parses "0,2,5".
type int32List []int32

func (l *int32List) String() string { return fmt.Sprint([]int32(*l)) }

func (l *int32List) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 32)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a partition number", p)
		}
		*l = append(*l, int32(n))
	}
	return nil
}

const inspectUsage = `Usage: kseal inspect --topic TOPIC [--partition N,...] [--from OFFSET] [--to OFFSET] [--count N] [--json]

Reads records straight from the brokers (not through kseal; no KMS access)
and shows, per record: encrypted or not, format version, which parts are
encrypted (value, key, headers), the deterministic key id of a sealed key,
KEK and version, DEK id, sizes. Never shows keys or values.
`

func cmdInspect(args []string, stdout, stderr io.Writer) int {
	f := newToolFlags("inspect", inspectUsage, stdout, stderr)
	topic := f.fs.String("topic", "", "topic to inspect (required)")
	var parts int32List
	f.fs.Var(&parts, "partition", "partitions to read, comma-separated (default: all)")
	from := f.fs.Int64("from", 0, "first offset; negative counts back from the end (-10: the last ten)")
	to := f.fs.Int64("to", -1, "offset to stop before (default: the end when the command starts)")
	cnt := f.fs.Int("count", 0, "at most this many records per partition (0: no limit)")
	f.fs.BoolVar(&f.committed, "committed", false, "show only what read_committed consumers see (default: every record stored, aborted transactions included)")
	f.required = func() string {
		if *topic == "" {
			return "--topic is required"
		}
		return ""
	}
	c, ok, err := f.parse(args)
	if !ok {
		return f.exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal inspect: %v\n", err)
		return 1
	}
	ctx, stop := interruptible()
	defer stop()
	opts := tools.InspectOptions{Conn: c.Direct, Topic: *topic, Partitions: parts, From: *from, To: *to, Count: *cnt,
		Committed: f.committed, Describe: c.Describer(), Idle: f.idle}
	if f.jsonOut {
		_, err = tools.Inspect(ctx, opts, tools.NewInspectJSON(stdout))
	} else {
		tw := tools.NewInspectText(stdout)
		var sum *tools.InspectSummary
		if sum, err = tools.Inspect(ctx, opts, tw.Write); sum != nil {
			tw.Summary(sum)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal inspect: %v\n", err)
		return 1
	}
	return 0
}

const auditUsage = `Usage: kseal audit [--topics REGEX] [--json] [--committed] [--by-kek]

Scans topics straight from the brokers (not through kseal; no KMS access)
and reports per topic: records, share encrypted, KEKs and versions in use
with their oldest and newest record, and records the policy does not allow
(plaintext on a topic it encrypts, malformed envelopes). --by-kek adds the
records per KEK (and, for rules that take the KEK from each record, per
entity) across topics, marking the KEKs kseal shred shredded: the count of
records an entity's destroyed KEK sealed, and nothing else readable of it
(docs/shredding.md).

Exit status: 0 every record agrees with the policy; 1 they disagree;
2 usage or the audit could not run; 3 some partitions could not be read
to the end (and nothing disagreed in what was read).
`

func cmdAudit(args []string, stdout, stderr io.Writer) int {
	f := newToolFlags("audit", auditUsage, stdout, stderr)
	pattern := f.fs.String("topics", "", "audit the topics whose whole name matches this regular expression (default: all but Kafka's internal topics)")
	f.fs.BoolVar(&f.committed, "committed", false, "count only what read_committed consumers see (default: every record stored, aborted transactions included)")
	byKEK := f.fs.Bool("by-kek", false, "also count the records per KEK (and entity) across topics, with the KEKs kseal shred shredded (read from the key topic)")
	c, ok, err := f.parse(args)
	if !ok {
		return f.exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal audit: %v\n", err)
		return 2
	}
	var re *regexp.Regexp
	if *pattern != "" {
		if re, err = regexp.Compile(`^(?:` + *pattern + `)$`); err != nil {
			fmt.Fprintf(stderr, "kseal audit: --topics: %v\n", err)
			return 2
		}
	}
	ctx, stop := interruptible()
	defer stop()
	rep, err := tools.Audit(ctx, tools.AuditOptions{Conn: c.Direct, Cluster: c.Name, Topics: re, Policy: c.Policy,
		Committed: f.committed, Describe: c.Describer(), Idle: f.idle,
		Progress: tools.NewProgress(stderr, "kseal audit", "offsets"), ByKEK: *byKEK, KeyTopic: c.KeyTopic.Topic})
	if err != nil {
		fmt.Fprintf(stderr, "kseal audit: %v\n", err)
		if f.jsonOut {
			writeJSON(stdout, map[string]string{"error": err.Error()})
		}
		return 2
	}
	if f.jsonOut {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal audit: %v\n", err)
		return 2
	}
	switch {
	case rep.Disagreements > 0:
		return 1
	case rep.Incomplete > 0:
		return 3
	}
	return 0
}

const reencryptUsage = `Usage: kseal reencrypt --source TOPIC --dest TOPIC [--proxy HOST:PORT] [--from N] [--to N] [--limit N] [--format 1|2]

Copies a topic (or an offset range of every partition) to another topic
through kseal, so every record is decrypted and encrypted again: under the
current version of the KEK the policy names for the destination topic (a
different KEK if the policy says so). Keys, headers, timestamps and
partitions are kept. Each transaction also commits the source offsets in a
consumer group, so an interrupted run continues where it stopped, without
duplicates, when run again. Ends with a count check: records in = records out.

After 'kseal kms rotate', reload kseal (SIGHUP) before re-encrypting, so it
takes DEKs under the new version at once.

--format 2 moves a topic from record format 1 to 2 (encrypted keys and
headers, as the destination's rule says): kseal re-encrypts what goes
through it, so its config must say encryption.format.writeVersion: 2 (the
config given here is checked), and the count check then also checks that
every encrypted record of the destination is in format 2.
`

func cmdReencrypt(args []string, stdout, stderr io.Writer) int {
	f := newToolFlags("reencrypt", reencryptUsage, stdout, stderr)
	src := f.fs.String("source", "", "topic to copy (required)")
	dst := f.fs.String("dest", "", "topic to copy to (required; created with the source's partitions and configs if missing)")
	proxy := f.fs.String("proxy", "", "kseal's bootstrap address (default: the cluster's advertisedHost:bootstrapPort)")
	proxyCA := f.fs.String("proxy-ca", "", "CA file to verify kseal's TLS certificate (default: the system roots)")
	from := f.fs.Int64("from", 0, "first offset to copy in every partition")
	to := f.fs.Int64("to", -1, "offset to stop before in every partition (default: the end when the run starts)")
	group := f.fs.String("group", "", "consumer group storing progress (default: kseal-reencrypt.SOURCE.DEST, with .to-N appended for --to N)")
	txnID := f.fs.String("transactional-id", "", "transactional id (default: the group)")
	create := f.fs.Bool("create", true, "create the destination topic when it does not exist")
	limit := f.fs.Int64("limit", 0, "stop after about this many records (run again to continue)")
	perTxn := f.fs.Int("records-per-txn", 10000, "records per transaction")
	format := f.fs.Int("format", 0, "record format the destination must be in: 1 or 2 (default: whatever kseal writes)")
	f.required = func() string {
		if *src == "" || *dst == "" {
			return "--source and --dest are required"
		}
		return ""
	}
	c, ok, err := f.parse(args)
	if !ok {
		return f.exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal reencrypt: %v\n", err)
		return 1
	}
	pc := tools.Conn{Brokers: []string{c.Proxy}, SASL: c.Direct.SASL}
	if *proxy != "" {
		pc.Brokers = []string{*proxy}
	}
	if c.ProxyTLS {
		// ServerName stays empty: franz-go sets each address's host, which
		// SNI routing needs.
		pc.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if *proxyCA != "" {
			pem, err := os.ReadFile(*proxyCA)
			if err != nil {
				fmt.Fprintf(stderr, "kseal reencrypt: --proxy-ca: %v\n", err)
				return 1
			}
			pc.TLS.RootCAs = x509.NewCertPool()
			if !pc.TLS.RootCAs.AppendCertsFromPEM(pem) {
				fmt.Fprintf(stderr, "kseal reencrypt: --proxy-ca %s: no PEM certificate\n", *proxyCA)
				return 1
			}
		}
	}
	writeVersion := 0
	if c.Policy != nil {
		writeVersion = c.Policy.WriteVersion()
	}
	ctx, stop := interruptible()
	defer stop()
	res, err := tools.Reencrypt(ctx, tools.ReencryptOptions{Direct: c.Direct, Proxy: pc, Source: *src, Dest: *dst,
		From: *from, To: *to, Group: *group, TransactionalID: *txnID, CreateDest: *create, Limit: *limit,
		RecordsPerTxn: *perTxn, Idle: f.idle, Describe: c.Describer(), Format: *format, WriteVersion: writeVersion,
		Progress: tools.NewProgress(stderr, "kseal reencrypt", "offsets")})
	switch {
	case f.jsonOut:
		// One document, also when the run failed: scripts read the error
		// and what was copied before it from it.
		if res == nil {
			res = &tools.ReencryptResult{Source: *src, Dest: *dst}
		}
		if err != nil {
			res.Error = err.Error()
		}
		res.WriteJSON(stdout)
	case res != nil:
		res.WriteText(stdout)
	}
	switch {
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "kseal reencrypt: interrupted; the open transaction was aborted. Run the same command again to continue.")
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "kseal reencrypt: %v\n", err)
		return 1
	}
	return 0
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

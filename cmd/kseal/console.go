package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/recordcrypt"
)

const consoleUsage = `kseal console: a small Kafka client: produce lines, consume records (--raw: straight from a broker)

Usage:
  kseal console produce --topic T [--bootstrap HOST:PORT] [--key K] [--value V]
  kseal console consume --topic T [--bootstrap HOST:PORT] [--from-beginning] [--count N] [--end] [--raw]

produce sends each line of standard input (or --value) as one record.
consume prints each record's value on a line; values that are not
printable text are escaped. With --raw it reads a broker directly
(--bootstrap is then the broker's address, not kseal's) and shows what is
stored: kseal's envelope fields and the ciphertext in base64, never raw
bytes.

` + "`kseal console produce --help`" + ` and ` + "`kseal console consume --help`" + ` show the flags.
`

// defaultBootstrap is where `kseal dev` listens by default.
const defaultBootstrap = "localhost:19092"

func cmdConsole(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, consoleUsage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, consoleUsage)
		return 0
	case "produce":
		return consoleProduce(args[1:], stdin, stdout, stderr)
	case "consume":
		return consoleConsume(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "kseal console: unknown command %q\n\n%s", args[0], consoleUsage)
	return 2
}

// stdin is what `console produce` reads (tests replace it).
var stdin io.Reader = os.Stdin

func consoleProduce(args []string, in io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("console produce", "send each line of standard input (or --value) to a topic as one record",
		"Usage: kseal console produce --topic T [--bootstrap HOST:PORT] [--key K] [--value V]\n", stderr)
	bootstrap := fs.String("bootstrap", defaultBootstrap, "kseal's bootstrap address (comma-separated for several)")
	topic := fs.String("topic", "", "topic to produce to (required; created if the cluster allows it)")
	key := fs.String("key", "", "record key for every record (default: none)")
	value := fs.String("value", "", "produce this one value instead of reading standard input")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on a record not acknowledged in this time")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *topic == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "kseal console produce: --topic is required, and no arguments")
		return 2
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*bootstrap, ",")...), kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(*timeout), kgo.ProducerLinger(0))
	if err != nil {
		fmt.Fprintf(stderr, "kseal console produce: %v\n", err)
		return 1
	}
	defer cl.Close()
	ctx, stop := interruptible()
	defer stop()
	var k []byte
	if *key != "" {
		k = []byte(*key)
	}
	n := 0
	send := func(v []byte) error {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: *topic, Key: k, Value: v}).FirstErr(); err != nil {
			return err
		}
		n++
		return nil
	}
	if isSet(fs, "value") {
		err = send([]byte(*value))
	} else {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for err == nil && sc.Scan() {
			err = send(append([]byte(nil), sc.Bytes()...))
		}
		if err == nil {
			err = sc.Err()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal console produce: after %d records: %v\n", n, err)
		return 1
	}
	fmt.Fprintf(stderr, "produced %d records to %s\n", n, *topic)
	return 0
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func consoleConsume(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("console consume", "print the records of a topic, through kseal (plaintext) or straight from a broker (--raw)",
		"Usage: kseal console consume --topic T [--bootstrap HOST:PORT] [--from-beginning] [--count N] [--end] [--raw]\n", stderr)
	bootstrap := fs.String("bootstrap", defaultBootstrap, "bootstrap address: kseal's, or with --raw a broker's (comma-separated for several)")
	topic := fs.String("topic", "", "topic to read (required)")
	fromBeginning := fs.Bool("from-beginning", false, "start at the oldest record (default: only records produced from now on)")
	count := fs.Int("count", 0, "exit after this many records (0: no limit)")
	end := fs.Bool("end", false, "exit at the end of the topic as it was when the command started")
	raw := fs.Bool("raw", false, "read a broker directly, bypassing kseal: show what is stored (kseal's envelope fields, ciphertext in base64)")
	showKey := fs.Bool("show-key", false, "print each record's partition, offset and key before its value")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *topic == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "kseal console consume: --topic is required, and no arguments")
		return 2
	}
	seeds := strings.Split(*bootstrap, ",")
	ctx, stop := interruptible()
	defer stop()

	start := kgo.NewOffset().AtEnd()
	if *fromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(*topic), kgo.ConsumeResetOffset(start)}
	// ends holds, with --end, the offset each partition must reach.
	var ends map[int32]int64
	if *end {
		adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			fmt.Fprintf(stderr, "kseal console consume: %v\n", err)
			return 1
		}
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		lo, err := kadm.NewClient(adm).ListEndOffsets(lctx, *topic)
		cancel()
		adm.Close()
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			fmt.Fprintf(stderr, "kseal console consume: end offsets of %s: %v\n", *topic, err)
			return 1
		}
		ends = map[int32]int64{}
		parts := map[int32]kgo.Offset{}
		lo.Each(func(o kadm.ListedOffset) {
			parts[o.Partition] = start
			if *fromBeginning && o.Offset > 0 {
				ends[o.Partition] = o.Offset
			} else if !*fromBeginning {
				parts[o.Partition] = kgo.NewOffset().At(o.Offset)
			}
		})
		if len(ends) == 0 {
			return 0 // nothing to read
		}
		opts = []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{*topic: parts})}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintf(stderr, "kseal console consume: %v\n", err)
		return 1
	}
	defer cl.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	n := 0
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return 0
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("%s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			w.Flush()
			fmt.Fprintf(stderr, "kseal console consume: %v\n", ferr)
			return 1
		}
		for _, r := range fetches.Records() {
			if *showKey || *raw {
				fmt.Fprintf(w, "p%d @%d key=%s ", r.Partition, r.Offset, quote(r.Key))
			}
			if *raw {
				describeStored(w, r.Value)
			} else {
				w.WriteString(printable(r.Value))
			}
			w.WriteByte('\n')
			n++
			if ends != nil && r.Offset+1 >= ends[r.Partition] {
				delete(ends, r.Partition)
			}
			if (*count > 0 && n >= *count) || (ends != nil && len(ends) == 0) {
				return 0
			}
		}
		w.Flush()
	}
}

// describeStored shows a value as the broker stores it: kseal's envelope
// fields and the ciphertext in base64, or a value kseal did not encrypt,
// escaped.
func describeStored(w *bufio.Writer, v []byte) {
	env, err := recordcrypt.Parse(v)
	if err != nil {
		fmt.Fprintf(w, "not-encrypted value=%s", quote(v))
		return
	}
	kek, ver := "?", "?"
	if info, err := local.DescribeEDEK(env.EDEK); err == nil {
		kek, ver = info.KEK, info.Version
	}
	fmt.Fprintf(w, "encrypted format=v%d kek=%s version=%s dek=%s bytes=%d value(base64)=%s",
		env.Version, kek, ver, env.DEKID(), len(v), base64.StdEncoding.EncodeToString(v))
}

// printable returns v as it is when it is printable UTF-8 text, and Go-quoted
// (escaped, in double quotes) otherwise, so no control character or
// invalid byte reaches the terminal.
func printable(v []byte) string {
	if utf8.Valid(v) {
		ok := true
		for _, r := range string(v) {
			if !unicode.IsPrint(r) && r != '\t' {
				ok = false
				break
			}
		}
		if ok {
			return string(v)
		}
	}
	return strconv.Quote(string(v))
}

// quote is v Go-quoted, or "-" for none.
func quote(v []byte) string {
	if v == nil {
		return "-"
	}
	return strconv.Quote(string(v))
}

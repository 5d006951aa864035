package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// commands lists kseal's commands with their one-line descriptions, in the
// order `kseal --help` shows them (the README's command list is this list).
var commands = []struct{ name, synopsis, summary string }{
	{"dev", "kseal dev", "try kseal: in-memory broker + local KMS + proxy + admin endpoints, no setup"},
	{"run", "kseal run --config FILE", "start the proxy"},
	{"validate", "kseal validate --config FILE", "check a config file and report every problem"},
	{"kms", "kseal kms COMMAND", "manage the built-in local KMS (init, create, rotate, list, delete)"},
	{"console", "kseal console produce|consume", "a small Kafka client: produce lines, consume records (--raw: straight from a broker)"},
	{"inspect", "kseal inspect --topic T", "show what is stored at the brokers, record by record (no KMS access)"},
	{"audit", "kseal audit [--topics REGEX]", "per-topic evidence that stored records match the policy (exit 1 if not)"},
	{"reencrypt", "kseal reencrypt --source S --dest D", "copy a topic through kseal under the current KEK version"},
	{"shred", "kseal shred --kek NAME", "crypto-shred KEKs: record it in the key topic, then destroy them in the KMS"},
	{"version", "kseal version", "print version and build information"},
}

// summary is a command's one-line description ("" for an unknown name).
func summary(name string) string {
	for _, c := range commands {
		if c.name == name {
			return c.summary
		}
	}
	return ""
}

func usageText() string {
	var b strings.Builder
	b.WriteString("kseal: a Kafka proxy that encrypts record values at rest.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-36s %s\n", c.synopsis, c.summary)
	}
	b.WriteString("\n`kseal COMMAND --help` describes a command and its flags.\n")
	return b.String()
}

// newFlagSet makes the flag set of `kseal NAME`: parse errors go to stderr;
// its usage is the one-line description, then text (a synopsis and any
// explanation, may be empty), then the flags.
func newFlagSet(name, description, text string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kseal "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageFunc(fs, description, text)
	return fs
}

// usageFunc prints description, text and fs's flags to fs's output.
func usageFunc(fs *flag.FlagSet, description, text string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s: %s\n\n", fs.Name(), description)
		if text != "" {
			fmt.Fprint(w, strings.TrimLeft(text, "\n"))
			if !strings.HasSuffix(text, "\n\n") {
				fmt.Fprintln(w)
			}
		}
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
	}
}

// parseFlags parses args; flags may follow positional arguments (`kseal kms
// create KEK --config F`), and everything after "--" is positional. done
// says the command must end now with code: 0 after -h/--help (the usage
// went to stdout), 2 after a usage error (the error and the usage went to
// fs's output).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	usage := fs.Usage
	fs.Usage = func() {}
	err := parseInterspersed(fs, args)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) {
		out := fs.Output()
		fs.SetOutput(stdout)
		usage()
		fs.SetOutput(out)
		return 0, true
	}
	if err != nil {
		usage()
		return 2, true
	}
	return 0, false
}

// parseInterspersed parses the flags among args; fs.Args() is then the
// positional arguments, in order.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// version and commit are set at build time (the Makefile's build target):
// -ldflags "-X main.version=... -X main.commit=...". Without them the
// module version and VCS revision Go records in the binary stand in.
var (
	version = ""
	commit  = ""
)

// buildVersion is kseal's version and commit, from -ldflags or, failing
// that, the build information Go embeds ("dev" and "unknown" without either).
func buildVersion() (ver, rev string) {
	ver, rev = version, commit
	bi, ok := debug.ReadBuildInfo()
	if ok && ver == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version
	}
	if ok && rev == "" {
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" && modified {
			rev += "-dirty"
		}
	}
	if ver == "" {
		ver = "dev"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", summary("version"), "Usage: kseal version\n\nPrints `kseal VERSION (COMMIT, GO VERSION)`.\n", stderr)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kseal version: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	ver, rev := buildVersion()
	fmt.Fprintf(stdout, "kseal %s (%s, %s)\n", ver, rev, runtime.Version())
	return 0
}

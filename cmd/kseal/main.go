// Command kseal is a Kafka proxy that encrypts record values at rest.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kseal/kseal/internal/admin"
	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
)

const usage = `kseal: a Kafka proxy that encrypts record values at rest.

Usage:
  kseal dev [--demo=false]       try kseal: in-memory broker + local KMS + proxy, no setup
  kseal run --config FILE        start the proxy
  kseal validate --config FILE   check a config file and report every problem
  kseal kms COMMAND ...          manage the built-in local KMS (init, create, rotate, list, delete)
  kseal inspect --topic T        show what is stored at the brokers, record by record (no KMS access)
  kseal audit [--topics REGEX]   per-topic evidence that stored records match the policy (exit 1 if not)
  kseal reencrypt --source S --dest D   copy a topic through kseal under the current KEK version
  kseal version                  print version and build information
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "kms":
		return cmdKMS(args[1:], stdout, stderr)
	case "inspect":
		return cmdInspect(args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "reencrypt":
		return cmdReencrypt(args[1:], stdout, stderr)
	case "version":
		printVersion(stdout)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "kseal: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet("kseal "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "kseal.yaml", "path to the YAML config file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kseal %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	return *path, true
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("validate", args, stderr)
	if !ok {
		return 2
	}
	if _, err := app.Load(path); err != nil {
		printProblems(stderr, path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

// printProblems prints a config's problems one per line as FILE:LINE: KEY:
// WHAT (the form editors jump to), then how many there are.
func printProblems(w io.Writer, path string, err error) {
	var errs config.Errors
	if !errors.As(err, &errs) {
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return
	}
	for _, e := range errs {
		var p *config.Problem
		switch {
		case !errors.As(e, &p):
			fmt.Fprintf(w, "%s: %v\n", path, e)
		case p.Line > 0:
			fmt.Fprintf(w, "%s:%d: %s\n", path, p.Line, (&config.Problem{Path: p.Path, Msg: p.Msg}).Error())
		default:
			fmt.Fprintf(w, "%s: %v\n", path, p)
		}
	}
	plural := "s"
	if len(errs) == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "%s: %d problem%s\n", path, len(errs), plural)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(args []string, stderr io.Writer) int {
	path, ok := configFlag("run", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := app.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := app.Build(context.Background(), cfg, log, reg)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return 1
	}
	defer a.Close()
	srv := a.Server
	if err := srv.Start(); err != nil {
		log.Error("cannot start", "error", err.Error())
		return 1
	}
	if cfg.Admin.Listen != "" {
		adm, err := admin.Listen(cfg.Admin.Listen, reg, func(context.Context) error { return a.Ready() }, log, admin.Options{Profiling: cfg.Admin.Profiling})
		if err != nil {
			log.Error("cannot start", "error", err.Error())
			return 1
		}
		defer adm.Close(context.Background())
	}
	log.Info("kseal started", "version", version)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var s os.Signal
	for s == nil {
		select {
		case s = <-sig:
		case <-hup:
			reload(path, a, log)
		}
	}
	log.Info("shutting down: draining connections", "signal", s.String(), "drainTimeout", cfg.DrainTimeout.Std().String())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// A second signal skips the drain.
		<-sig
		cancel()
	}()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("shutdown was not clean", "error", err.Error())
		return 1
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return 0
}

// reload applies the config file's encryption policy and KMS settings; an
// invalid file leaves the running config in force.
func reload(path string, a *app.App, log *slog.Logger) {
	cfg, err := app.Load(path)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = a.Reload(ctx, cfg)
		cancel()
	}
	if err != nil {
		log.Error("reload refused: the running config stays in force", "config", path, "error", err.Error())
		return
	}
	log.Info("reloaded encryption policy and KMS settings", "config", path)
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "kseal %s\n", version)
	if bi, ok := debug.ReadBuildInfo(); ok {
		fmt.Fprintf(w, "go %s\n", bi.GoVersion)
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH":
				fmt.Fprintf(w, "%s %s\n", s.Key, s.Value)
			}
		}
	}
}

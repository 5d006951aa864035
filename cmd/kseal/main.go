// Command kseal is a Kafka proxy that encrypts record values at rest.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kseal/kseal/internal/admin"
	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
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
	case "shred":
		return cmdShred(args[1:], stdout, stderr)
	case "console":
		return cmdConsole(args[1:], stdout, stderr)
	case "version":
		return cmdVersion(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && summary(args[1]) != "" {
			// `kseal help CMD` is `kseal CMD --help`.
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usageText())
		return 0
	default:
		fmt.Fprintf(stderr, "kseal: unknown command %q\n\n%s", args[0], usageText())
		return 2
	}
}

// configFlag parses the flags of a command taking only --config; done
// says the command ends now with code (see parseFlags).
func configFlag(name, text string, args []string, stdout, stderr io.Writer) (path string, code int, done bool) {
	fs := newFlagSet(name, summary(name), text, stderr)
	p := fs.String("config", "kseal.yaml", "path to the YAML config file")
	if code, done := parseFlags(fs, args, stdout); done {
		return "", code, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kseal %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", 2, true
	}
	return *p, 0, false
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, code, done := configFlag("validate", "Usage: kseal validate --config FILE\n\nLoads the config file as `kseal run` would, without starting anything,\nand reports every problem found, each with its key path.\n", args, stdout, stderr)
	if done {
		return code
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

func cmdRun(args []string, stdout, stderr io.Writer) int {
	path, code, done := configFlag("run", "Usage: kseal run --config FILE\n\nServes the virtual clusters of the config file until SIGTERM or SIGINT\n(then drains connections for drainTimeout). SIGHUP reloads the encryption\npolicy and KMS settings from the file.\n", args, stdout, stderr)
	if done {
		return code
	}
	cfg, err := app.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	srv, err := startServer(cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return 1
	}
	defer srv.close()
	ver, rev := buildVersion()
	log.Info("kseal started", "version", ver, "commit", rev)
	return srv.serve(path)
}

// server is a running kseal: the proxy and, when cfg.Admin.Listen is set,
// the admin endpoints.
type server struct {
	app   *app.App
	admin *admin.Server
	cfg   *config.Config
	log   *slog.Logger
}

// startServer builds and starts what cfg describes.
func startServer(cfg *config.Config, log *slog.Logger) (*server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := app.Build(context.Background(), cfg, log, reg)
	if err != nil {
		return nil, err
	}
	if err := a.Server.Start(); err != nil {
		a.Close()
		return nil, err
	}
	s := &server{app: a, cfg: cfg, log: log}
	if cfg.Admin.Listen != "" {
		s.admin, err = admin.Listen(cfg.Admin.Listen, reg, func(context.Context) error { return a.Ready() }, log, admin.Options{Profiling: cfg.Admin.Profiling})
		if err != nil {
			s.shutdown(context.Background())
			a.Close()
			return nil, err
		}
	}
	return s, nil
}

// close releases what startServer opened (after serve or on an error).
func (s *server) close() {
	if s.admin != nil {
		s.admin.Close(context.Background())
	}
	s.app.Close()
}

// shutdown stops accepting and drains connections until ctx ends.
func (s *server) shutdown(ctx context.Context) error {
	return s.app.Server.Shutdown(ctx)
}

// serve runs until SIGTERM or SIGINT, reloading path on SIGHUP, then
// drains connections (a second signal skips the drain). It returns the
// exit code.
func (s *server) serve(path string) int {
	log := s.log
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	var got os.Signal
	for got == nil {
		select {
		case got = <-sig:
		case <-hup:
			reload(path, s.app, log)
		}
	}
	log.Info("shutting down: draining connections", "signal", got.String(), "drainTimeout", s.cfg.DrainTimeout.Std().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// A second signal skips the drain.
		select {
		case <-sig:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	if err := s.shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("shutdown was not clean", "error", err.Error())
		return 1
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return 0
}

// reload reopens the audit file (log rotation) and applies the config
// file's encryption policy and KMS settings; an invalid file leaves the
// running config in force.
func reload(path string, a *app.App, log *slog.Logger) {
	if err := a.ReopenAudit(); err != nil {
		log.Error("audit file not reopened: still writing the old one", "error", err.Error())
	}
	cfg, err := app.Load(path)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = a.Reload(ctx, cfg)
		cancel()
	} else {
		a.ReloadFailed(err) // Reload reports its own to the audit stream
	}
	if err != nil {
		log.Error("reload refused: the running config stays in force", "config", path, "error", err.Error())
		return
	}
	log.Info("reloaded encryption policy and KMS settings", "config", path)
}

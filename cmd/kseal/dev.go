package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/recordcrypt"
)

const devUsage = `Usage: kseal dev [--port N] [--admin-port N] [--dir DIR] [--demo=false] [--exit]

Starts, in one process and with no setup: an in-memory Kafka-compatible
broker (franz-go's kfake: NOT durable, for trying kseal only), the local
KMS with a KEK for the topic "demo", kseal in front of the broker, and the
admin endpoints (/metrics, /healthz, /readyz). It writes the config it runs
(kseal-dev.yaml in --dir) so that ` + "`kseal kms`" + `, inspect and audit can reach its
KMS and broker; a KEK created with ` + "`kseal kms create`" + ` is used at once (on
Linux; elsewhere within the key store's reloadInterval, 10s). The
policy encrypts topic T under the KEK "KEK-T" once that KEK exists and lets
other topics through in plaintext (PASSTHROUGH_UNENCRYPTED).
`

// devConfig is the config dev mode writes and runs.
const devConfig = `# Written by kseal dev: the config it runs. The broker is in-memory and goes
# away with kseal dev. Use it with kseal kms, inspect and audit (--config).
log: {level: warn}
admin: {listen: %q}
drainTimeout: 5s
virtualClusters:
  - name: dev
    upstream: {bootstrapServers: [%q]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: localhost, bootstrapPort: %d, brokerPortStart: %d, brokerPortCount: 4}
    encryption:
      kms: {type: local, config: {keyStore: %q, masterKeyFile: %q}}
      policy:
        rules: [{topicRegex: '.*', kek: 'KEK-$(topicName)'}]
        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED
`

// cmdDev runs the zero-setup demo: an in-process, in-memory Kafka-compatible
// broker, the local KMS with a generated KEK, the proxy encrypting the demo
// topic, and the admin endpoints, from a config file it writes.
func cmdDev(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dev", summary("dev"), devUsage, stderr)
	port := fs.Int("port", 19092, "bootstrap port of the proxy (brokers get the next 4 ports)")
	adminPort := fs.Int("admin-port", 0, "port of the admin endpoints /metrics, /healthz, /readyz (default: --port + 5)")
	demo := fs.Bool("demo", true, "produce a few records and show what consumers and the broker see")
	dir := fs.String("dir", "", "directory for the config file and the local KMS files, kept on exit (default: a temporary directory, removed on exit)")
	exit := fs.Bool("exit", false, "exit after the demo instead of serving until Ctrl-C")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kseal dev: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *adminPort == 0 {
		*adminPort = *port + 5
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()

	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "demo"), kfake.AllowAutoTopicCreation())
	if err != nil {
		fmt.Fprintf(stderr, "kseal dev: in-memory broker: %v\n", err)
		return 1
	}
	defer fake.Close()
	brokerAddr := fake.ListenAddrs()[0]

	workDir := *dir
	if workDir == "" {
		workDir, err = os.MkdirTemp("", "kseal-dev-")
		if err != nil {
			fmt.Fprintf(stderr, "kseal dev: %v\n", err)
			return 1
		}
		defer os.RemoveAll(workDir)
	} else if err := os.MkdirAll(workDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "kseal dev: %v\n", err)
		return 1
	}
	if workDir, err = filepath.Abs(workDir); err != nil {
		fmt.Fprintf(stderr, "kseal dev: %v\n", err)
		return 1
	}
	kcfg := local.NewConfig()
	kcfg.KeyStore = filepath.Join(workDir, "keys.json")
	kcfg.MasterKeyFile = filepath.Join(workDir, "master.key")
	if _, err := local.Init(ctx, kcfg); err != nil {
		fmt.Fprintf(stderr, "kseal dev: local KMS: %v\n", err)
		return 1
	}
	k, err := local.New(ctx, kcfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "kseal dev: local KMS: %v\n", err)
		return 1
	}
	if _, err := k.Create(ctx, "KEK-demo"); err != nil && err != local.ErrKeyExists {
		k.Close()
		fmt.Fprintf(stderr, "kseal dev: create KEK: %v\n", err)
		return 1
	}
	k.Close()

	adminAddr := fmt.Sprintf("127.0.0.1:%d", *adminPort)
	cfgPath := filepath.Join(workDir, "kseal-dev.yaml")
	doc := fmt.Sprintf(devConfig, adminAddr, brokerAddr, *port, *port+1, kcfg.KeyStore, kcfg.MasterKeyFile)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		fmt.Fprintf(stderr, "kseal dev: %v\n", err)
		return 1
	}
	// Loaded exactly as `kseal run --config` would load it.
	cfg, err := app.Load(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "kseal dev: %s: %v\n", cfgPath, err)
		return 1
	}
	srv, err := startServer(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "kseal dev: %v\n", err)
		return 1
	}
	defer srv.close()
	bootstrap := fmt.Sprintf("localhost:%d", *port)
	self := selfName()
	kept := "deleted when kseal dev stops"
	if *dir != "" {
		kept = "kept when kseal dev stops"
	}
	cq := shellQuote(cfgPath)
	fmt.Fprintf(stdout, `kseal dev mode
  proxy bootstrap:  %[1]s   (point clients here)
  broker:           in-memory franz-go kfake at %[2]s: NOT durable, for trying kseal only
  local KMS:        %[3]s (KEK-demo; topic T is encrypted under KEK-T once that KEK exists,
                    other topics pass in plaintext)
  config:           %[4]s (%[5]s)
  admin:            http://%[6]s/metrics  /healthz  /readyz

Try it (nothing but this binary needed):
  echo hello | %[7]s console produce --bootstrap %[1]s --topic demo
  %[7]s console consume --bootstrap %[1]s --topic demo --from-beginning --end   # through kseal: plaintext
  %[7]s console consume --bootstrap %[2]s --topic demo --from-beginning --end --raw   # straight from the broker: ciphertext
  %[7]s kms create --config %[8]s KEK-orders   # topic "orders" is encrypted from now on
  %[7]s inspect --config %[8]s --topic demo   # what the broker stores, record by record
  %[7]s audit --config %[8]s   # which topics are encrypted, and whether that matches the policy
`, bootstrap, brokerAddr, workDir, cfgPath, kept, adminAddr, self, cq)

	if *demo {
		if err := runDemo(ctx, stdout, bootstrap, brokerAddr); err != nil {
			fmt.Fprintf(stderr, "kseal dev: demo: %v\n", err)
			srv.shutdown(ctx)
			return 1
		}
	}
	if *exit {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		srv.shutdown(sctx)
		return 0
	}
	fmt.Fprintln(stdout, "\nServing; Ctrl-C stops everything. SIGHUP reloads the config file.")
	return srv.serve(cfgPath)
}

// selfName is how the banner names this binary: the path it was started
// by when that has a directory (./bin/kseal after make run), else "kseal".
func selfName() string {
	if len(os.Args) > 0 && strings.ContainsRune(os.Args[0], filepath.Separator) {
		return shellQuote(os.Args[0])
	}
	return "kseal"
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,=@", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runDemo produces records through kseal, then reads them back through
// kseal and straight from the broker, side by side.
func runDemo(ctx context.Context, w io.Writer, proxyAddr, brokerAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p, err := kgo.NewClient(kgo.SeedBrokers(proxyAddr))
	if err != nil {
		return err
	}
	defer p.Close()
	values := []string{"card=4111-1111-1111-1111", "ssn=078-05-1120", "hello, world"}
	var recs []*kgo.Record
	for i, v := range values {
		recs = append(recs, &kgo.Record{Topic: "demo", Key: []byte(fmt.Sprintf("customer-%d", i)), Value: []byte(v)})
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce through kseal: %w", err)
	}
	read := func(addr string) ([]*kgo.Record, error) {
		c, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("demo"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		var out []*kgo.Record
		for len(out) < len(values) {
			fs := c.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				return nil, err
			}
			out = append(out, fs.Records()...)
		}
		return out, nil
	}
	plain, err := read(proxyAddr)
	if err != nil {
		return fmt.Errorf("consume through kseal: %w", err)
	}
	stored, err := read(brokerAddr)
	if err != nil {
		return fmt.Errorf("read from the broker: %w", err)
	}
	fmt.Fprintf(w, "\nDemo: %d records produced to topic \"demo\" through kseal\n", len(values))
	for i := range plain {
		s := stored[i]
		fmt.Fprintf(w, "\noffset %d, key %q\n", s.Offset, s.Key)
		fmt.Fprintf(w, "  consumer via kseal sees:  %q\n", plain[i].Value)
		env, err := recordcrypt.Parse(s.Value)
		if err != nil {
			fmt.Fprintf(w, "  stored at the broker:     %q (not encrypted)\n", s.Value)
			continue
		}
		info, _ := local.DescribeEDEK(env.EDEK)
		shown := s.Value
		if len(shown) > 32 {
			shown = shown[:32]
		}
		fmt.Fprintf(w, "  stored at the broker:     %x... (%d bytes)\n", shown, len(s.Value))
		fmt.Fprintf(w, "                            format v%d, KEK %s v%s, DEK %s, header %s\n",
			env.Version, info.KEK, info.Version, env.DEKID(), recordcrypt.HeaderKey)
	}
	return nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms/local"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// cmdDev runs the zero-setup demo: an in-process, in-memory Kafka-compatible
// broker (franz-go's kfake: NOT durable, for trying kseal only), the local
// KMS with a generated KEK, and the proxy encrypting the demo topic.
func cmdDev(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kseal dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 19092, "bootstrap port of the proxy (brokers get the next ports)")
	demo := fs.Bool("demo", true, "produce a few records and show what consumers and the broker see")
	dir := fs.String("dir", "", "directory for the local KMS files (default: a temporary directory)")
	exit := fs.Bool("exit", false, "exit after the demo instead of serving until Ctrl-C")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()

	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "demo"), kfake.AllowAutoTopicCreation())
	if err != nil {
		fmt.Fprintf(stderr, "kseal dev: in-memory broker: %v\n", err)
		return 1
	}
	defer fake.Close()

	kmsDir := *dir
	if kmsDir == "" {
		kmsDir, err = os.MkdirTemp("", "kseal-dev-")
		if err != nil {
			fmt.Fprintf(stderr, "kseal dev: %v\n", err)
			return 1
		}
		defer os.RemoveAll(kmsDir)
	}
	kcfg := local.NewConfig()
	kcfg.KeyStore = filepath.Join(kmsDir, "keys.json")
	kcfg.MasterKeyFile = filepath.Join(kmsDir, "master.key")
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
		fmt.Fprintf(stderr, "kseal dev: create KEK: %v\n", err)
		return 1
	}
	k.Close()

	doc := fmt.Sprintf(`
log: {level: warn}
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
`, fake.ListenAddrs()[0], *port, *port+1, kcfg.KeyStore, kcfg.MasterKeyFile)
	cfg, err := config.Parse([]byte(doc))
	if err == nil {
		err = app.Validate(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kseal dev: %v\n", err)
		return 1
	}
	a, err := app.Build(ctx, cfg, log, nil)
	if err != nil {
		fmt.Fprintf(stderr, "kseal dev: %v\n", err)
		return 1
	}
	defer a.Close()
	if err := a.Server.Start(); err != nil {
		fmt.Fprintf(stderr, "kseal dev: %v\n", err)
		return 1
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Server.Shutdown(sctx)
	}()
	bootstrap := fmt.Sprintf("localhost:%d", *port)
	fmt.Fprintf(stdout, `kseal dev mode
  proxy bootstrap:  %s   (point clients here)
  broker:           in-memory franz-go kfake at %s: NOT durable, for trying kseal only
  local KMS:        %s (KEK-demo; topics are encrypted under KEK-<topic> when that KEK exists)

Try it:
  echo 'hello' | kcat -b %s -t demo -P
  kcat -b %s -t demo -C -e                  # through kseal: plaintext
  kcat -b %s -t demo -C -e -f '%%h %%s\n'    # straight from the broker: ciphertext
`, bootstrap, fake.ListenAddrs()[0], kmsDir, bootstrap, bootstrap, fake.ListenAddrs()[0])

	if *demo {
		if err := runDemo(ctx, stdout, bootstrap, fake.ListenAddrs()[0]); err != nil {
			fmt.Fprintf(stderr, "kseal dev: demo: %v\n", err)
			return 1
		}
	}
	if *exit {
		return 0
	}
	fmt.Fprintln(stdout, "\nServing; Ctrl-C stops everything.")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(stdout, "stopping")
	return 0
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

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/kms/local"
)

const kmsUsage = `kseal kms: manage the built-in local KMS (init, create, rotate, list, delete)

Usage: kseal kms COMMAND [--config FILE] [--cluster NAME] [KEK]

Manages the built-in local KMS named in a virtual cluster's encryption.kms
section (type: local).

  init            create the master key file (if configured and missing) and an empty key store
  create KEK      create a KEK (version 1)
  rotate KEK      add a new version; new DEKs use it within the DEK refresh period,
                  records under older versions keep decrypting
  list            list KEKs and their versions
  delete KEK      delete a KEK: records encrypted under it can no longer be read

A running kseal using the same key store picks a change up at once (within
reloadInterval where the system reports no file changes).
` + "`kseal kms COMMAND --help`" + ` shows a command's flags.
`

// kmsCommands are the one-line descriptions of the kms subcommands.
var kmsCommands = map[string]string{
	"init":   "create the master key file (if configured and missing) and an empty key store",
	"create": "create a KEK (version 1); a running kseal uses it at once",
	"rotate": "add a new version of a KEK; new DEKs use it within the DEK refresh period",
	"list":   "list KEKs and their versions",
	"delete": "delete a KEK: records encrypted under it can no longer be read",
}

func cmdKMS(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, kmsUsage)
		return 2
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, kmsUsage)
		return 0
	}
	desc, known := kmsCommands[sub]
	if !known {
		fmt.Fprintf(stderr, "kseal kms: unknown command %q\n\n%s", sub, kmsUsage)
		return 2
	}
	needName := sub == "create" || sub == "rotate" || sub == "delete"
	synopsis := "Usage: kseal kms " + sub + " [--config FILE] [--cluster NAME]"
	if needName {
		synopsis += " KEK"
	}
	fs := newFlagSet("kms "+sub, desc, synopsis+"\n", stderr)
	path := fs.String("config", "kseal.yaml", "path to the YAML config file")
	cluster := fs.String("cluster", "", "virtual cluster whose KMS to use (default: the first with a local KMS)")
	if code, done := parseFlags(fs, args[1:], stdout); done {
		return code
	}
	if needName != (fs.NArg() == 1) || fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	cfg, err := localKMSConfig(*path, *cluster)
	if err != nil {
		fmt.Fprintf(stderr, "kseal kms %s: %v\n", sub, err)
		return 1
	}
	ctx := context.Background()
	if sub == "init" {
		res, err := local.Init(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "kseal kms init: %v\n", err)
			return 1
		}
		if res.CreatedMasterKeyFile {
			fmt.Fprintf(stdout, "created master key file %s (mode 0600): back it up, without it no record can be decrypted\n", cfg.MasterKeyFile)
		}
		if res.CreatedKeyStore {
			fmt.Fprintf(stdout, "created key store %s\n", cfg.KeyStore)
		} else {
			fmt.Fprintf(stdout, "key store %s exists\n", cfg.KeyStore)
		}
		return 0
	}
	k, err := local.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintf(stderr, "kseal kms %s: %v\n", sub, err)
		return 1
	}
	defer k.Close()
	switch sub {
	case "create", "rotate":
		op := k.Create
		if sub == "rotate" {
			op = k.Rotate
		}
		info, err := op(ctx, fs.Arg(0))
		if err != nil {
			fmt.Fprintf(stderr, "kseal kms %s: %v\n", sub, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: version %d is now primary\n", info.Name, info.Primary)
	case "delete":
		if err := k.Delete(ctx, fs.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "kseal kms delete: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s deleted\n", fs.Arg(0))
	case "list":
		infos, err := k.List(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "kseal kms list: %v\n", err)
			return 1
		}
		for _, in := range infos {
			state := fmt.Sprintf("primary v%d", in.Primary)
			if !in.Deleted.IsZero() {
				state = "deleted " + in.Deleted.Format("2006-01-02T15:04:05Z07:00")
			}
			var vs []string
			for _, v := range in.Versions {
				s := fmt.Sprintf("v%d (%s)", v.Version, v.Created.Format("2006-01-02"))
				if v.Disabled {
					s += " disabled"
				}
				vs = append(vs, s)
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", in.Name, state, strings.Join(vs, ", "))
		}
	default:
		fmt.Fprintf(stderr, "kseal kms: unknown command %q\n\n%s", sub, kmsUsage)
		return 2
	}
	return 0
}

// localKMSConfig finds the local KMS section of the config file.
func localKMSConfig(path, cluster string) (*local.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	for i, vc := range cfg.VirtualClusters {
		if vc.Encryption == nil || vc.Encryption.KMS.Type != "local" || (cluster != "" && vc.Name != cluster) {
			continue
		}
		enc, err := app.Compile(i, vc.Encryption)
		if err != nil {
			return nil, err
		}
		return enc.KMSConfig.(*local.Config), nil
	}
	if cluster != "" {
		return nil, fmt.Errorf("%s: virtual cluster %q has no local KMS", path, cluster)
	}
	return nil, errors.New(path + ": no virtual cluster uses the local KMS")
}

package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

func init() {
	kms.Register("local", kms.ProviderFunc(func() kms.Config { return NewConfig() }))
}

// DefaultReloadInterval is how often a running proxy checks the key store
// for changes made by `kseal kms` commands.
const DefaultReloadInterval = 10 * time.Second

// Config is the `kms.config` section for `type: local`.
type Config struct {
	// KeyStore is the path of the key store file.
	KeyStore string `yaml:"keyStore"`
	// MasterKeyFile is the path of a file holding the master key (mode 0600).
	MasterKeyFile string `yaml:"masterKeyFile"`
	// MasterKeyEnv names an environment variable holding the master key.
	// Exactly one of MasterKeyFile and MasterKeyEnv is set.
	MasterKeyEnv string `yaml:"masterKeyEnv"`
	// ReloadInterval is how often the store file is checked for changes
	// (a stat; the file is read only when it changed).
	ReloadInterval time.Duration `yaml:"reloadInterval"`
}

// NewConfig returns a Config with defaults set.
func NewConfig() *Config {
	return &Config{ReloadInterval: DefaultReloadInterval}
}

// Validate checks the config without touching the file system.
func (c *Config) Validate() error {
	var errs []error
	if c.KeyStore == "" {
		errs = append(errs, errors.New("keyStore: required"))
	}
	switch {
	case c.MasterKeyFile == "" && c.MasterKeyEnv == "":
		errs = append(errs, errors.New("masterKeyFile: one of masterKeyFile or masterKeyEnv is required"))
	case c.MasterKeyFile != "" && c.MasterKeyEnv != "":
		errs = append(errs, errors.New("masterKeyEnv: set either masterKeyFile or masterKeyEnv, not both"))
	}
	if c.ReloadInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("reloadInterval: %v is too short (minimum 100ms)", c.ReloadInterval))
	}
	return errors.Join(errs...)
}

// Open opens the KMS; see New.
func (c *Config) Open(ctx context.Context, logger *slog.Logger) (kms.KMS, error) {
	return New(ctx, c, logger)
}

func (c *Config) masterKey() ([]byte, error) {
	if c.MasterKeyEnv != "" {
		return readMasterKeyEnv(c.MasterKeyEnv)
	}
	return readMasterKeyFile(c.MasterKeyFile)
}

// InitResult says what Init created.
type InitResult struct {
	CreatedMasterKeyFile bool
	CreatedKeyStore      bool
}

// Init prepares what cfg names, for `kseal kms init`: it writes a new master
// key file when cfg.MasterKeyFile does not exist, then creates an empty key
// store when cfg.KeyStore does not exist. Existing files are kept (and
// checked). With MasterKeyEnv the variable must already be set: Init cannot
// set it; GenerateMasterKey makes a value for it.
func Init(ctx context.Context, cfg *Config) (InitResult, error) {
	var res InitResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	if cfg.MasterKeyFile != "" {
		if _, err := os.Stat(cfg.MasterKeyFile); errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(cfg.KeyStore); err == nil {
				// A new master key could never open the existing store.
				return res, fmt.Errorf("master key file %s is missing but key store %s exists: restore the master key from its backup", cfg.MasterKeyFile, cfg.KeyStore)
			}
			if err := WriteMasterKeyFile(cfg.MasterKeyFile); err != nil {
				return res, err
			}
			res.CreatedMasterKeyFile = true
		}
	}
	master, err := cfg.masterKey()
	if err != nil {
		return res, err
	}
	mk, err := deriveKeys(master)
	clear(master)
	if err != nil {
		return res, err
	}
	unlock, err := lockFile(ctx, cfg.KeyStore+".lock")
	if err != nil {
		return res, err
	}
	defer unlock()
	if _, err := os.Stat(cfg.KeyStore); err == nil {
		// Existing store: make sure it is usable with this master key.
		_, _, err := readStore(mk, cfg.KeyStore)
		return res, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("key store: %w", err)
	}
	b, err := mk.encodeStore(nil)
	if err != nil {
		return res, err
	}
	if err := writeFileAtomic(cfg.KeyStore, b); err != nil {
		return res, err
	}
	res.CreatedKeyStore = true
	return res, nil
}

// maxStoreSize bounds the key store read into memory: about 64 thousand
// KEK versions, far more than a local KMS is for.
const maxStoreSize = 32 << 20

// readStore reads, checks and decodes the key store at path.
func readStore(mk *masterKeys, path string) ([]fileKey, os.FileInfo, error) {
	b, fi, err := readPrivate(path, "key store", maxStoreSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w (create it with `kseal kms init`)", err)
		}
		return nil, nil, err
	}
	keys, err := mk.decodeStore(b)
	if err != nil {
		return nil, nil, fmt.Errorf("key store %s: %w", path, err)
	}
	return keys, fi, nil
}

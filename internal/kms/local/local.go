// Package local is kseal's built-in KMS: KEKs live in a key store file on the
// proxy's host, each version's key material sealed under a master key taken
// from a file or an environment variable. KEKs have versions; rotating one
// adds a version that new DEKs use, while DEKs wrapped under older versions
// keep unwrapping until those versions are disabled or the KEK deleted.
//
// It registers itself as KMS type "local". A running proxy notices changes
// that `kseal kms` commands make to the store at once where the system tells
// it about file changes (inotify on Linux), and within ReloadInterval
// elsewhere; each change it loads moves its Changes counter (kms.Changes), so
// internal/dek forgets its remembered "not found" answers at once.
//
// This package must never log, print or put into an error any key material,
// the master key, or a DEK.
package local

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// missRecheck bounds how often a lookup of an unknown KEK or version makes
// the store be checked out of turn: another proxy may have rotated a KEK a
// moment ago, but an attacker writing EDEKs with made-up names must not turn
// into a stat per record.
const missRecheck = time.Second

// KMS is the local KMS. It is safe for concurrent use.
type KMS struct {
	path     string
	mk       *masterKeys
	logger   *slog.Logger
	interval time.Duration

	state     atomic.Pointer[state]
	mu        sync.Mutex    // serialises reloads and writes within the process
	lastCheck atomic.Int64  // unix nanoseconds of the last out-of-turn check
	changes   atomic.Uint64 // moves with every new state served (kms.Changes)

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// state is an immutable snapshot of the store, swapped whole on reload.
type state struct {
	keys    map[string]*kek     // live KEKs only
	deleted map[string]struct{} // KEKs deleted (and not created again)
	fi      os.FileInfo
}

type kek struct {
	name     string
	primary  *kekVersion
	versions map[uint64]*kekVersion
}

type kekVersion struct {
	version  uint64
	disabled bool
	block    cipher.Block
}

var _ kms.KMS = (*KMS)(nil)
var _ kms.Closer = (*KMS)(nil)
var _ kms.Prober = (*KMS)(nil)
var _ kms.Changes = (*KMS)(nil)

// Changes counts the changes of the key store this KMS has loaded (its own
// writes and other processes' `kseal kms` commands alike).
func (k *KMS) Changes() uint64 { return k.changes.Load() }

// setState serves st from now on. Call with k.mu held.
func (k *KMS) setState(st *state) {
	k.state.Store(st)
	k.changes.Add(1)
}

// New loads the key store cfg names and, when cfg.ReloadInterval > 0, starts
// watching it for changes. Close stops the watcher.
func New(ctx context.Context, cfg *Config, logger *slog.Logger) (*KMS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("local kms config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	master, err := cfg.masterKey()
	if err != nil {
		return nil, fmt.Errorf("local kms: %w", err)
	}
	mk, err := deriveKeys(master)
	clear(master)
	if err != nil {
		return nil, fmt.Errorf("local kms: %w", err)
	}
	k := &KMS{path: cfg.KeyStore, mk: mk, logger: logger, interval: cfg.ReloadInterval}
	keys, fi, err := readStore(mk, k.path)
	if err != nil {
		return nil, fmt.Errorf("local kms: %w", err)
	}
	st, err := mk.loadState(keys, fi)
	if err != nil {
		return nil, fmt.Errorf("local kms: key store %s: %w", k.path, err)
	}
	k.state.Store(st)
	if k.interval > 0 {
		k.stop, k.done = make(chan struct{}), make(chan struct{})
		go k.watch()
	}
	return k, nil
}

// Probe always answers: the local KMS is part of the process and keeps
// serving the keys it loaded even while its store cannot be re-read (a
// broken store must not take encryption down; the watcher logs it).
func (k *KMS) Probe(context.Context) error { return nil }

// Close stops watching the store. The KMS keeps serving the keys it holds.
func (k *KMS) Close() error {
	k.closeOnce.Do(func() {
		if k.stop != nil {
			close(k.stop)
			<-k.done
		}
	})
	return nil
}

func (k *KMS) watch() {
	defer close(k.done)
	t := time.NewTicker(k.interval)
	defer t.Stop()
	// Where the system reports file changes, a `kseal kms` command's write is
	// loaded as soon as it lands; the ticker stays as the fallback (and for
	// file systems that report nothing, such as some network mounts).
	events, stopEvents, err := watchStore(k.path)
	if err != nil {
		k.logger.Debug("local kms: no change notification for the key store; checking it every reloadInterval", "path", k.path, "err", err)
	} else {
		defer stopEvents()
	}
	failing := ""
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		case <-events:
		}
		// A failing reload keeps the keys already loaded: a half-copied or
		// broken store must not take encryption down. Log each new failure
		// once, and the recovery.
		if err := k.Reload(); err != nil {
			if err.Error() != failing {
				failing = err.Error()
				k.logger.Error("local kms: key store reload failed; keeping the keys loaded before", "path", k.path, "err", err)
			}
		} else if failing != "" {
			failing = ""
			k.logger.Info("local kms: key store reloads again", "path", k.path)
		}
	}
}

// Reload re-reads the key store if it changed since it was last read. On
// error the keys loaded before stay in use.
func (k *KMS) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.state.Load()
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("local kms: key store: %w", err)
	}
	if old.fi != nil && os.SameFile(old.fi, fi) && old.fi.ModTime().Equal(fi.ModTime()) && old.fi.Size() == fi.Size() {
		return nil
	}
	keys, fi, err := readStore(k.mk, k.path)
	if err != nil {
		return fmt.Errorf("local kms: %w", err)
	}
	st, err := k.mk.loadState(keys, fi)
	if err != nil {
		return fmt.Errorf("local kms: key store %s: %w", k.path, err)
	}
	k.setState(st)
	k.logger.Info("local kms: key store reloaded", "path", k.path, "keks", len(st.keys))
	return nil
}

// recheck reloads out of turn, at most once per missRecheck, after a lookup
// missed; it reports whether the state may have changed.
func (k *KMS) recheck() bool {
	now := time.Now().UnixNano()
	last := k.lastCheck.Load()
	if now-last < int64(missRecheck) || !k.lastCheck.CompareAndSwap(last, now) {
		return false
	}
	if err := k.Reload(); err != nil {
		k.logger.Warn("local kms: key store recheck failed", "path", k.path, "err", err)
		return false
	}
	return true
}

// loadState opens every live version's material. The store passed its MAC,
// so an inconsistency here means a bug or a store written by a newer kseal.
func (mk *masterKeys) loadState(keys []fileKey, fi os.FileInfo) (*state, error) {
	st := &state{keys: make(map[string]*kek, len(keys)), deleted: map[string]struct{}{}, fi: fi}
	for _, fk := range keys {
		if !validName(fk.Name) {
			return nil, fmt.Errorf("invalid KEK name %q", fk.Name)
		}
		if _, dup := st.keys[fk.Name]; dup {
			return nil, fmt.Errorf("KEK %q listed twice", fk.Name)
		}
		if fk.Deleted != nil {
			st.deleted[fk.Name] = struct{}{}
			continue
		}
		kk := &kek{name: fk.Name, versions: make(map[uint64]*kekVersion, len(fk.Versions))}
		for _, fv := range fk.Versions {
			if fv.Version == 0 || fv.Version > fk.LastVersion || kk.versions[fv.Version] != nil {
				return nil, fmt.Errorf("KEK %q: bad or repeated version %d", fk.Name, fv.Version)
			}
			key, err := mk.openMaterial(fk.Name, fv.Version, fv.Material)
			if err != nil {
				return nil, err
			}
			block, err := aes.NewCipher(key)
			clear(key)
			if err != nil {
				return nil, fmt.Errorf("KEK %q v%d: %w", fk.Name, fv.Version, err)
			}
			kk.versions[fv.Version] = &kekVersion{version: fv.Version, disabled: fv.Disabled, block: block}
		}
		kk.primary = kk.versions[fk.Primary]
		if kk.primary == nil || kk.primary.disabled {
			return nil, fmt.Errorf("KEK %q: primary version %d missing or disabled", fk.Name, fk.Primary)
		}
		st.keys[fk.Name] = kk
	}
	return st, nil
}

func (k *KMS) lookup(name string) *kek {
	if kk := k.state.Load().keys[name]; kk != nil {
		return kk
	}
	if k.recheck() {
		return k.state.Load().keys[name]
	}
	return nil
}

// ResolveKEK reports whether the KEK exists; ID is its name. A KEK the
// store records as deleted is kms.ErrKeyUnusable (its topics were
// encrypted: they must not fall back to the unresolvedKeyPolicy), one it
// never held kms.ErrKeyNotFound.
func (k *KMS) ResolveKEK(_ context.Context, name string) (kms.KEKRef, error) {
	if k.lookup(name) == nil {
		return kms.KEKRef{}, k.missing(name)
	}
	return kms.KEKRef{Name: name, ID: name}, nil
}

// missing is the error for a KEK that is not live: deleted or unknown.
func (k *KMS) missing(name string) error {
	if _, ok := k.state.Load().deleted[name]; ok {
		return fmt.Errorf("local kms: KEK %q was deleted: %w", name, kms.ErrKeyUnusable)
	}
	return fmt.Errorf("local kms: KEK %q: %w", name, kms.ErrKeyNotFound)
}

// GenerateDEK makes a random DEK and wraps it under the KEK's primary
// version as of this call.
func (k *KMS) GenerateDEK(_ context.Context, ref kms.KEKRef) (kms.DEK, error) {
	kk := k.lookup(ref.Name)
	if kk == nil {
		return kms.DEK{}, k.missing(ref.Name)
	}
	v := kk.primary
	key := make([]byte, dekSize)
	if _, err := rand.Read(key); err != nil {
		return kms.DEK{}, fmt.Errorf("local kms: generate DEK: %w", err)
	}
	edek := appendEDEK(make([]byte, 0, EDEKSize(kk.name, v.version)), kk.name, v.version)
	edek = wrapKey(v.block, edek, key)
	return kms.DEK{Key: key, EDEK: edek}, nil
}

// DecryptDEK unwraps an EDEK made by GenerateDEK under any enabled version of
// a live KEK. A deleted KEK, or a missing or disabled version, gives an
// error wrapping kms.ErrKeyNotFound.
func (k *KMS) DecryptDEK(_ context.Context, edek []byte) ([]byte, error) {
	name, version, wrapped, err := parseEDEK(edek)
	if err != nil {
		return nil, err
	}
	v := k.version(name, version)
	if v == nil && k.recheck() {
		v = k.version(name, version)
	}
	if v == nil || v.disabled {
		state := "does not exist"
		if v != nil {
			state = "is disabled"
		}
		return nil, fmt.Errorf("local kms: KEK %q version %d %s: %w", name, version, state, kms.ErrKeyNotFound)
	}
	key, err := unwrapKey(v.block, make([]byte, 0, dekSize), wrapped)
	if err != nil {
		// The name and version exist, so the EDEK was altered or made by
		// another key store holding a KEK of the same name.
		return nil, fmt.Errorf("local kms: EDEK for KEK %q version %d: %w", name, version, err)
	}
	return key, nil
}

func (k *KMS) version(name []byte, version uint64) *kekVersion {
	kk := k.state.Load().keys[string(name)]
	if kk == nil {
		return nil
	}
	return kk.versions[version]
}

// DescribeEDEK reads the KEK name and version from an EDEK.
func (k *KMS) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	return DescribeEDEK(edek)
}

// DescribeEDEK reads the KEK name and version from an EDEK without a key
// store, for inspection tools.
func DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	name, version, _, err := parseEDEK(edek)
	if err != nil {
		return kms.EDEKInfo{}, err
	}
	return kms.EDEKInfo{KEK: string(name), Version: strconv.FormatUint(version, 10)}, nil
}

// ErrKeyExists is returned by Create for a KEK that already exists.
var ErrKeyExists = errors.New("local kms: KEK already exists")

package local

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// KeyInfo describes a KEK, for `kseal kms list`. It holds no key material.
type KeyInfo struct {
	Name     string
	Created  time.Time
	Deleted  time.Time // zero unless the KEK was deleted
	Primary  uint64    // the version new DEKs use; 0 once deleted
	Versions []VersionInfo
}

// VersionInfo describes one version of a KEK.
type VersionInfo struct {
	Version  uint64
	Created  time.Time
	Disabled bool
}

// Create adds a KEK with a fresh version. A deleted KEK's name may be reused:
// numbering then continues after the deleted versions, so EDEKs made before
// the deletion stay unreadable (kms.ErrKeyNotFound) rather than failing
// their integrity check against new material.
func (k *KMS) Create(ctx context.Context, name string) (KeyInfo, error) {
	if !validName(name) {
		return KeyInfo{}, fmt.Errorf("local kms: invalid KEK name %q: want 1 to %d of A-Z a-z 0-9 . _ - / : + = @", name, maxNameLen)
	}
	var out KeyInfo
	err := k.modify(ctx, func(keys []fileKey, now time.Time) ([]fileKey, error) {
		i, found := findKey(keys, name)
		if found && keys[i].Deleted == nil {
			return nil, fmt.Errorf("KEK %q: %w", name, ErrKeyExists)
		}
		if !found {
			keys = slices.Insert(keys, i, fileKey{Name: name})
		}
		fk := &keys[i]
		fk.Created, fk.Deleted = now, nil
		if err := k.addVersion(fk, now); err != nil {
			return nil, err
		}
		out = fk.info()
		return keys, nil
	})
	return out, err
}

// Rotate adds a version to a KEK and makes it primary: DEKs generated from
// now on are wrapped under it (a running proxy starts using it once it has
// reloaded the store and refreshed its DEK); older versions keep unwrapping.
func (k *KMS) Rotate(ctx context.Context, name string) (KeyInfo, error) {
	var out KeyInfo
	err := k.modify(ctx, func(keys []fileKey, now time.Time) ([]fileKey, error) {
		fk, err := liveKey(keys, name)
		if err != nil {
			return nil, err
		}
		if err := k.addVersion(fk, now); err != nil {
			return nil, err
		}
		out = fk.info()
		return keys, nil
	})
	return out, err
}

// Delete destroys every version of a KEK. This is crypto-shredding: records
// whose DEKs it wrapped can never be decrypted again (once proxies have
// reloaded the store and dropped their cached DEKs). There is no undo.
func (k *KMS) Delete(ctx context.Context, name string) error {
	return k.modify(ctx, func(keys []fileKey, now time.Time) ([]fileKey, error) {
		fk, err := liveKey(keys, name)
		if err != nil {
			return nil, err
		}
		fk.Deleted, fk.Primary, fk.Versions = &now, 0, nil
		return keys, nil
	})
}

// DisableVersion stops a non-primary version from unwrapping DEKs (DecryptDEK
// then returns kms.ErrKeyNotFound); EnableVersion undoes it.
func (k *KMS) DisableVersion(ctx context.Context, name string, version uint64) error {
	return k.setDisabled(ctx, name, version, true)
}

// EnableVersion re-enables a disabled version.
func (k *KMS) EnableVersion(ctx context.Context, name string, version uint64) error {
	return k.setDisabled(ctx, name, version, false)
}

func (k *KMS) setDisabled(ctx context.Context, name string, version uint64, disabled bool) error {
	return k.modify(ctx, func(keys []fileKey, _ time.Time) ([]fileKey, error) {
		fk, err := liveKey(keys, name)
		if err != nil {
			return nil, err
		}
		if disabled && version == fk.Primary {
			return nil, fmt.Errorf("KEK %q version %d is primary: rotate first", name, version)
		}
		for i := range fk.Versions {
			if fk.Versions[i].Version == version {
				fk.Versions[i].Disabled = disabled
				return keys, nil
			}
		}
		return nil, fmt.Errorf("KEK %q version %d: %w", name, version, kms.ErrKeyNotFound)
	})
}

// List describes every KEK in the store as it is on disk now, deleted ones
// included (with Deleted set), sorted by name.
func (k *KMS) List(context.Context) ([]KeyInfo, error) {
	keys, _, err := readStore(k.mk, k.path)
	if err != nil {
		return nil, fmt.Errorf("local kms: %w", err)
	}
	out := make([]KeyInfo, len(keys))
	for i := range keys {
		out[i] = keys[i].info()
	}
	return out, nil
}

// modify runs one read-modify-write of the store under the process mutex
// and the store's file lock, then serves the new state at once.
func (k *KMS) modify(ctx context.Context, f func([]fileKey, time.Time) ([]fileKey, error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := lockFile(ctx, k.path+".lock")
	if err != nil {
		return fmt.Errorf("local kms: %w", err)
	}
	defer unlock()
	keys, _, err := readStore(k.mk, k.path)
	if err != nil {
		return fmt.Errorf("local kms: %w", err)
	}
	keys, err = f(keys, time.Now().UTC().Truncate(time.Second))
	if err != nil {
		return fmt.Errorf("local kms: %w", err)
	}
	b, err := k.mk.encodeStore(keys)
	if err != nil {
		return fmt.Errorf("local kms: %w", err)
	}
	if err := writeFileAtomic(k.path, b); err != nil {
		return fmt.Errorf("local kms: %w", err)
	}
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("local kms: key store: %w", err)
	}
	st, err := k.mk.loadState(keys, fi)
	if err != nil {
		return fmt.Errorf("local kms: key store %s: %w", k.path, err)
	}
	k.setState(st)
	return nil
}

// addVersion appends a fresh random version to fk and makes it primary.
func (k *KMS) addVersion(fk *fileKey, now time.Time) error {
	key := make([]byte, kekSize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate KEK: %w", err)
	}
	v := fk.LastVersion + 1
	sealed, err := k.mk.sealMaterial(fk.Name, v, key)
	if err != nil {
		return err
	}
	fk.Versions = append(fk.Versions, fileVersion{Version: v, Created: now, Material: sealed})
	fk.LastVersion, fk.Primary = v, v
	return nil
}

// findKey finds name in keys, which are kept sorted by name.
func findKey(keys []fileKey, name string) (int, bool) {
	return slices.BinarySearchFunc(keys, name, func(fk fileKey, n string) int { return strings.Compare(fk.Name, n) })
}

func liveKey(keys []fileKey, name string) (*fileKey, error) {
	i, found := findKey(keys, name)
	if !found || keys[i].Deleted != nil {
		return nil, fmt.Errorf("KEK %q: %w", name, kms.ErrKeyNotFound)
	}
	return &keys[i], nil
}

func (fk *fileKey) info() KeyInfo {
	ki := KeyInfo{Name: fk.Name, Created: fk.Created, Primary: fk.Primary}
	if fk.Deleted != nil {
		ki.Deleted = *fk.Deleted
	}
	for _, v := range fk.Versions {
		ki.Versions = append(ki.Versions, VersionInfo{Version: v.Version, Created: v.Created, Disabled: v.Disabled})
	}
	return ki
}

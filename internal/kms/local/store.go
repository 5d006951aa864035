package local

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
)

// The key store is a JSON file:
//
//	{"format":"kseal-local-kms/1","masterKey":"<fingerprint>","keys":[...],"mac":"<base64>"}
//
// keys lists every KEK (sorted by name) with its versions; each version's
// 256-bit key material is sealed with AES-256-GCM under a key derived from
// the master key, with the format, KEK name and version as additional data,
// so material cannot be moved between KEKs or versions. mac is HMAC-SHA256
// over the exact bytes of keys under another derived key, so that no
// metadata (which version is primary, which are disabled, which KEKs exist)
// can be changed without the master key. masterKey is a fingerprint of the
// master key, which lets a wrong master key be told apart from a tampered
// store.
const storeFormat = "kseal-local-kms/1"

// ErrWrongMasterKey means the key store was sealed under another master key.
var ErrWrongMasterKey = errors.New("the master key does not match the key store")

// ErrTampered means the key store failed its integrity check.
var ErrTampered = errors.New("key store failed its integrity check (modified or corrupt)")

type fileEnvelope struct {
	Format    string          `json:"format"`
	MasterKey string          `json:"masterKey"`
	Keys      json.RawMessage `json:"keys"`
	MAC       []byte          `json:"mac"`
}

type fileKey struct {
	Name        string        `json:"name"`
	Created     time.Time     `json:"created"`
	Deleted     *time.Time    `json:"deleted,omitempty"`
	Primary     uint64        `json:"primary"`
	LastVersion uint64        `json:"lastVersion"`
	Versions    []fileVersion `json:"versions"`
}

type fileVersion struct {
	Version  uint64    `json:"version"`
	Created  time.Time `json:"created"`
	Disabled bool      `json:"disabled,omitempty"`
	Material []byte    `json:"material"` // nonce | sealed key | tag
}

// materialAAD binds sealed key material to its KEK name and version. Names
// never contain NUL (validName), so the encoding is unambiguous.
func materialAAD(name string, version uint64) []byte {
	b := make([]byte, 0, len(storeFormat)+len(name)+24)
	b = append(b, storeFormat...)
	b = append(b, 0)
	b = append(b, name...)
	b = append(b, 0)
	return strconv.AppendUint(b, version, 10)
}

func (m *masterKeys) sealMaterial(name string, version uint64, key []byte) ([]byte, error) {
	nonce := make([]byte, m.seal.NonceSize(), m.seal.NonceSize()+len(key)+m.seal.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal KEK %q v%d: %w", name, version, err)
	}
	return m.seal.Seal(nonce, nonce, key, materialAAD(name, version)), nil
}

func (m *masterKeys) openMaterial(name string, version uint64, sealed []byte) ([]byte, error) {
	ns := m.seal.NonceSize()
	if len(sealed) != ns+kekSize+m.seal.Overhead() {
		return nil, fmt.Errorf("KEK %q v%d: sealed material is %d bytes: %w", name, version, len(sealed), ErrTampered)
	}
	key, err := m.seal.Open(nil, sealed[:ns], sealed[ns:], materialAAD(name, version))
	if err != nil {
		return nil, fmt.Errorf("KEK %q v%d: material does not open: %w", name, version, ErrTampered)
	}
	return key, nil
}

func (m *masterKeys) mac(keys []byte) []byte {
	h := hmac.New(sha256.New, m.macKey)
	h.Write([]byte(storeFormat))
	h.Write([]byte{0})
	h.Write([]byte(m.fingerprint))
	h.Write([]byte{0})
	h.Write(keys)
	return h.Sum(nil)
}

// decodeStore checks and decodes a key store file's bytes. It does not open
// the key material; loadState does.
func (m *masterKeys) decodeStore(b []byte) ([]fileKey, error) {
	var env fileEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("not a kseal key store: %w", err)
	}
	if env.Format != storeFormat {
		return nil, fmt.Errorf("key store format %q, want %q", env.Format, storeFormat)
	}
	if !hmac.Equal([]byte(env.MasterKey), []byte(m.fingerprint)) {
		return nil, fmt.Errorf("%w (store sealed under master key %.16s, this one is %s)", ErrWrongMasterKey, env.MasterKey, m.fingerprint)
	}
	if !hmac.Equal(env.MAC, m.mac(env.Keys)) {
		return nil, ErrTampered
	}
	var keys []fileKey
	if err := json.Unmarshal(env.Keys, &keys); err != nil {
		return nil, fmt.Errorf("key store keys: %w", err)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1].Name >= keys[i].Name {
			return nil, fmt.Errorf("key store keys: %q is out of order or repeated", keys[i].Name)
		}
	}
	return keys, nil
}

func (m *masterKeys) encodeStore(keys []fileKey) ([]byte, error) {
	if keys == nil {
		keys = []fileKey{}
	}
	kb, err := json.MarshalIndent(keys, "  ", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode key store: %w", err)
	}
	b, err := json.MarshalIndent(fileEnvelope{Format: storeFormat, MasterKey: m.fingerprint, Keys: kb, MAC: m.mac(kb)}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode key store: %w", err)
	}
	return append(b, '\n'), nil
}

// writeFileAtomic replaces path with b: a temporary file in the same
// directory (mode 0600) is written, synced, and renamed over path, and the
// directory is synced, so a crash leaves either the old or the new store,
// never a torn one.
func writeFileAtomic(path string, b []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write key store: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write key store %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write key store %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write key store %s: %w", path, err)
	}
	return syncDir(path)
}

// syncDir makes a rename or create in path's directory durable.
func syncDir(path string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be synced there; rename is still atomic
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("sync directory of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory of %s: %w", path, err)
	}
	return nil
}

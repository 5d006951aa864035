package local

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// MasterKeySize is the size of the master key in bytes (AES-256).
const MasterKeySize = 32

// GenerateMasterKey returns a new random master key, base64-encoded, suitable
// for a master key file or environment variable.
func GenerateMasterKey() (string, error) {
	var k [MasterKeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("generate master key: %w", err)
	}
	s := base64.StdEncoding.EncodeToString(k[:])
	clear(k[:])
	return s, nil
}

// WriteMasterKeyFile writes a new random master key to path with mode 0600.
// It refuses to overwrite an existing file: replacing the master key makes
// every KEK sealed under the old one unreadable.
func WriteMasterKeyFile(path string) error {
	s, err := GenerateMasterKey()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create master key file: %w", err)
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("write master key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync master key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close master key file %s: %w", path, err)
	}
	return syncDir(path)
}

// parseMasterKey decodes a master key written as 64 hex digits or as base64
// (standard or URL alphabet, padded or not). Surrounding whitespace is
// ignored. Errors never quote the input: it may be a mistyped secret.
func parseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*MasterKeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != MasterKeySize {
				clear(k)
				return nil, fmt.Errorf("master key is %d bytes, want %d", len(k), MasterKeySize)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("master key is neither %d hex digits nor base64 of %d bytes", 2*MasterKeySize, MasterKeySize)
}

// readMasterKeyFile reads the master key from path after checking that the
// file is a regular file readable by its owner only.
func readMasterKeyFile(path string) ([]byte, error) {
	b, _, err := readPrivate(path, "master key file", 4096)
	if err != nil {
		return nil, err
	}
	k, err := parseMasterKey(string(b))
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// readMasterKeyEnv reads the master key from the environment variable name.
func readMasterKeyEnv(name string) ([]byte, error) {
	s, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("master key environment variable %s is not set", name)
	}
	k, err := parseMasterKey(s)
	if err != nil {
		return nil, fmt.Errorf("master key environment variable %s: %w", name, err)
	}
	return k, nil
}

// readPrivate reads at most limit bytes from path after checking its mode
// (checkPrivateMode): a key file anyone on the host can read is no secret.
// Symbolic links are followed (Kubernetes mounts secrets that way) and the
// target's mode is checked, on the open file, so the file checked is the file
// read. Windows has no such mode bits.
func readPrivate(path, what string, limit int64) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s %s does not exist: %w", what, path, err)
		}
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s %s is not a regular file (mode %s)", what, path, fi.Mode())
	}
	if runtime.GOOS != "windows" {
		if err := checkPrivateMode(path, what, fi); err != nil {
			return nil, nil, err
		}
	}
	if fi.Size() > limit {
		return nil, nil, fmt.Errorf("%s %s is %d bytes, more than the %d a %s may have", what, path, fi.Size(), limit, what)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, nil, fmt.Errorf("%s %s grew past %d bytes while being read", what, path, limit)
	}
	return b, fi, nil
}

// checkPrivateMode accepts a key file that only its owner may read (0400,
// 0600), or that its group may also read (0440, 0640) when kseal's process
// is in that group: a Kubernetes Secret mounted with defaultMode 0440 and an
// fsGroup, owned by root and readable by a non-root kseal through the
// group, is such a file. It refuses anything others may read, write or
// execute, a group that may write (it could replace the key) or execute,
// and group read for a group kseal is not in (the file would then be
// shared with people, not given to kseal).
func checkPrivateMode(path, what string, fi os.FileInfo) error {
	perm := fi.Mode().Perm()
	switch {
	case perm&0o007 != 0:
		return fmt.Errorf("%s %s is accessible by others (mode %04o): run `chmod 600 %s` (or 0440/0640 to let a group kseal is in read it)", what, path, perm, path)
	case perm&0o030 != 0:
		return fmt.Errorf("%s %s is writable or executable by its group (mode %04o): run `chmod 600 %s` (or 0440/0640 to let a group kseal is in read it)", what, path, perm, path)
	case perm&0o040 != 0:
		if gid, ok := fileGroup(fi); ok && !inGroup(gid) {
			return fmt.Errorf("%s %s is readable by group %d, which kseal's process is not in (mode %04o): run `chmod 600 %s`, or give the file to a group kseal is in (e.g. Kubernetes fsGroup)", what, path, gid, perm, path)
		}
	}
	return nil
}

// masterKeys are the keys derived from the master key with HKDF-SHA256, one
// per purpose, so that sealing KEKs and authenticating the store never share
// a key. The master key itself is wiped once they are derived.
type masterKeys struct {
	seal        cipher.AEAD // AES-256-GCM sealing each KEK version's material
	macKey      []byte      // HMAC-SHA256 key over the store's contents
	fingerprint string      // identifies the master key without revealing it
}

func deriveKeys(master []byte) (*masterKeys, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(master), MasterKeySize)
	}
	derive := func(purpose string) ([]byte, error) {
		return hkdf.Key(sha256.New, master, nil, "kseal local kms v1 "+purpose, 32)
	}
	sealKey, err := derive("seal")
	if err != nil {
		return nil, fmt.Errorf("derive seal key: %w", err)
	}
	macKey, err := derive("mac")
	if err != nil {
		return nil, fmt.Errorf("derive mac key: %w", err)
	}
	fp, err := derive("fingerprint")
	if err != nil {
		return nil, fmt.Errorf("derive fingerprint: %w", err)
	}
	block, err := aes.NewCipher(sealKey)
	clear(sealKey)
	if err != nil {
		return nil, fmt.Errorf("seal cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal cipher: %w", err)
	}
	return &masterKeys{seal: aead, macKey: macKey, fingerprint: hex.EncodeToString(fp[:8])}, nil
}

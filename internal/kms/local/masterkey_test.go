package local

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMasterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xC3}, 32)
	std := base64.StdEncoding.EncodeToString(key)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"hex", hex.EncodeToString(key), true},
		{"HEX with newline", strings.ToUpper(hex.EncodeToString(key)) + "\n", true},
		{"base64", std, true},
		{"base64 unpadded, spaces", "  " + strings.TrimRight(std, "=") + " \n", true},
		{"base64url", base64.URLEncoding.EncodeToString(key), true},
		{"16 bytes", base64.StdEncoding.EncodeToString(key[:16]), false},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(key, 1)), false},
		{"garbage", "not a key at all!", false},
		{"empty", "", false},
	} {
		got, err := parseMasterKey(tc.in)
		if tc.ok != (err == nil) || (tc.ok && !bytes.Equal(got, key)) {
			t.Errorf("%s: parse = %X, %v; want ok=%v", tc.name, got, err, tc.ok)
		}
		if err != nil && tc.in != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
			t.Errorf("%s: error quotes the secret: %v", tc.name, err)
		}
	}
}

func TestWriteMasterKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := WriteMasterKeyFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", fi.Mode(), err)
	}
	k1, err := readMasterKeyFile(path)
	if err != nil || len(k1) != MasterKeySize {
		t.Fatalf("read back: %d bytes, %v", len(k1), err)
	}
	if err := WriteMasterKeyFile(path); err == nil {
		t.Fatal("WriteMasterKeyFile overwrote an existing master key")
	}
	k2, _ := readMasterKeyFile(path)
	if !bytes.Equal(k1, k2) {
		t.Fatal("master key changed")
	}
	a, _ := GenerateMasterKey()
	b, _ := GenerateMasterKey()
	if a == b {
		t.Fatal("GenerateMasterKey repeated itself")
	}
}

func TestMasterKeyFileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := WriteMasterKeyFile(path); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		want string // "" accepted, else part of the refusal
	}{
		{0o400, ""},
		{0o600, ""},
		{0o700, ""},
		// Group read for a group kseal is in (the file's group is the
		// test's own): a Secret mounted 0440 with fsGroup.
		{0o440, ""},
		{0o640, ""},
		{0o460, "writable or executable by its group"},
		{0o660, "writable or executable by its group"},
		{0o620, "writable or executable by its group"},
		{0o650, "writable or executable by its group"},
		{0o444, "accessible by others"},
		{0o604, "accessible by others"},
		{0o644, "accessible by others"},
		{0o602, "accessible by others"},
		{0o601, "accessible by others"},
		{0o440 | 0o004, "accessible by others"},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		k, err := readMasterKeyFile(path)
		switch {
		case tc.want == "" && (err != nil || len(k) != MasterKeySize):
			t.Errorf("mode %04o refused: %v", tc.mode, err)
		case tc.want != "" && err == nil:
			t.Errorf("mode %04o accepted", tc.mode)
		case tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chmod 600 "+path)):
			t.Errorf("mode %04o: err = %v; want %q and a chmod 600 hint", tc.mode, err, tc.want)
		}
	}
	if _, err := readMasterKeyFile(filepath.Dir(path)); err == nil {
		t.Error("a directory was accepted as a master key file")
	}
}

// Group read is for a group kseal is in: a file readable by some other
// group is shared with its members, not given to kseal.
func TestMasterKeyFileGroupReadForeignGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := WriteMasterKeyFile(path); err != nil {
		t.Fatal(err)
	}
	const foreign = 54321 // a group this process is not in
	if inGroup(foreign) {
		t.Skipf("the process is in group %d", foreign)
	}
	if err := os.Chown(path, -1, foreign); err != nil {
		t.Skipf("cannot give the file to group %d (needs root): %v", foreign, err)
	}
	os.Chmod(path, 0o440)
	_, err := readMasterKeyFile(path)
	if err == nil || !strings.Contains(err.Error(), "readable by group 54321, which kseal's process is not in") {
		t.Errorf("0440 owned by a foreign group: err = %v; want a refusal naming the group", err)
	}
	// Owner-only stays fine whatever the group.
	os.Chmod(path, 0o400)
	if _, err := readMasterKeyFile(path); err != nil {
		t.Errorf("0400 owned by a foreign group refused: %v", err)
	}
}

func TestMasterKeyEnv(t *testing.T) {
	s, _ := GenerateMasterKey()
	t.Setenv("KSEAL_TEST_MK", s)
	if k, err := readMasterKeyEnv("KSEAL_TEST_MK"); err != nil || len(k) != 32 {
		t.Fatalf("env key: %d bytes, %v", len(k), err)
	}
	t.Setenv("KSEAL_TEST_MK", "")
	if _, err := readMasterKeyEnv("KSEAL_TEST_MK"); err == nil || !strings.Contains(err.Error(), "KSEAL_TEST_MK is not set") {
		t.Fatalf("empty env: err = %v", err)
	}
}

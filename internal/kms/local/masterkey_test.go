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

func TestMasterKeyFileRefusedWhenShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if err := WriteMasterKeyFile(path); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o644} {
		os.Chmod(path, mode)
		_, err := readMasterKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: err = %v; want a refusal saying chmod 600", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := readMasterKeyFile(path); err != nil {
		t.Errorf("mode 0400 refused: %v", err)
	}
	if _, err := readMasterKeyFile(filepath.Dir(path)); err == nil {
		t.Error("a directory was accepted as a master key file")
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

package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"gopkg.in/yaml.v3"
)

// newStore initialises a master key file and an empty store in a temporary
// directory and returns their config.
func newStore(t *testing.T) *Config {
	t.Helper()
	dir := t.TempDir()
	cfg := NewConfig()
	cfg.KeyStore = filepath.Join(dir, "keys.json")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	res, err := Init(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	if !res.CreatedKeyStore || !res.CreatedMasterKeyFile {
		t.Fatalf("Init = %+v, want both created", res)
	}
	return cfg
}

func open(t *testing.T, cfg *Config) *KMS {
	t.Helper()
	k, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func mustCreate(t *testing.T, k *KMS, name string) {
	t.Helper()
	if _, err := k.Create(context.Background(), name); err != nil {
		t.Fatalf("Create %s: %v", name, err)
	}
}

func generate(t *testing.T, k *KMS, name string) kms.DEK {
	t.Helper()
	ref, err := k.ResolveKEK(context.Background(), name)
	if err != nil {
		t.Fatalf("ResolveKEK %s: %v", name, err)
	}
	dek, err := k.GenerateDEK(context.Background(), ref)
	if err != nil {
		t.Fatalf("GenerateDEK %s: %v", name, err)
	}
	return dek
}

func version(t *testing.T, edek []byte) string {
	t.Helper()
	info, err := DescribeEDEK(edek)
	if err != nil {
		t.Fatal(err)
	}
	return info.KEK + "/" + info.Version
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	k := open(t, newStore(t))

	if _, err := k.ResolveKEK(ctx, "KEK-orders"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("ResolveKEK before Create: %v, want ErrKeyNotFound", err)
	}
	mustCreate(t, k, "KEK-orders")
	mustCreate(t, k, "KEK-audit")
	if _, err := k.Create(ctx, "KEK-orders"); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second Create: %v, want ErrKeyExists", err)
	}
	if _, err := k.Create(ctx, "bad name"); err == nil {
		t.Fatal("Create accepted a name with a space")
	}

	d1 := generate(t, k, "KEK-orders")
	if len(d1.Key) != 32 || len(d1.EDEK) != 53 || version(t, d1.EDEK) != "KEK-orders/1" {
		t.Fatalf("DEK v1: key %d bytes, EDEK %d bytes (%s)", len(d1.Key), len(d1.EDEK), version(t, d1.EDEK))
	}

	info, err := k.Rotate(ctx, "KEK-orders")
	if err != nil || info.Primary != 2 || len(info.Versions) != 2 {
		t.Fatalf("Rotate = %+v, %v", info, err)
	}
	d2 := generate(t, k, "KEK-orders")
	if version(t, d2.EDEK) != "KEK-orders/2" {
		t.Fatalf("after rotation new DEKs use %s, want KEK-orders/2", version(t, d2.EDEK))
	}
	for _, d := range []kms.DEK{d1, d2} {
		got, err := k.DecryptDEK(ctx, d.EDEK)
		if err != nil || !bytes.Equal(got, d.Key) {
			t.Fatalf("DecryptDEK %s: %v", version(t, d.EDEK), err)
		}
	}

	list, err := k.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "KEK-audit" || list[1].Name != "KEK-orders" ||
		list[1].Primary != 2 || list[1].Versions[0].Version != 1 || list[1].Created.IsZero() {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// Disabling v1 makes its DEKs unreadable; enabling brings them back.
	if err := k.DisableVersion(ctx, "KEK-orders", 2); err == nil {
		t.Fatal("DisableVersion accepted the primary version")
	}
	if err := k.DisableVersion(ctx, "KEK-orders", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.DecryptDEK(ctx, d1.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("DecryptDEK under a disabled version: %v, want ErrKeyNotFound", err)
	}
	if err := k.EnableVersion(ctx, "KEK-orders", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.DecryptDEK(ctx, d1.EDEK); err != nil {
		t.Fatalf("DecryptDEK after EnableVersion: %v", err)
	}

	// Deleting is final, and reusing the name does not revive old DEKs.
	if err := k.Delete(ctx, "KEK-orders"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []kms.DEK{d1, d2} {
		if _, err := k.DecryptDEK(ctx, d.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("DecryptDEK after Delete: %v, want ErrKeyNotFound", err)
		}
	}
	// A deleted KEK is unusable, never "not found": its topics were
	// encrypted and must not fall back to the unresolvedKeyPolicy.
	if _, err := k.ResolveKEK(ctx, "KEK-orders"); !errors.Is(err, kms.ErrKeyUnusable) || errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("ResolveKEK after Delete: %v, want ErrKeyUnusable only", err)
	}
	if _, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-orders", ID: "KEK-orders"}); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("GenerateDEK after Delete: %v, want ErrKeyUnusable", err)
	}
	if _, err := k.Rotate(ctx, "KEK-orders"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("Rotate after Delete: %v", err)
	}
	info, err = k.Create(ctx, "KEK-orders")
	if err != nil || info.Primary != 3 {
		t.Fatalf("re-Create = %+v, %v; want primary version 3", info, err)
	}
	if _, err := k.DecryptDEK(ctx, d2.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("old DEK after re-Create: %v, want ErrKeyNotFound", err)
	}
	list, _ = k.List(ctx)
	if len(list) != 2 || !list[1].Deleted.IsZero() || len(list[1].Versions) != 1 {
		t.Fatalf("List after re-Create = %+v", list)
	}
}

// TestReload: a proxy sees what a second process (the CLI) changes.
func TestReload(t *testing.T) {
	ctx := context.Background()
	cfg := newStore(t)
	cfg.ReloadInterval = 100 * time.Millisecond
	proxy := open(t, cfg)
	cli := open(t, cfg)

	mustCreate(t, cli, "KEK-a")
	// The KEK is new to the proxy: a miss rechecks the store at once.
	d1 := generate(t, proxy, "KEK-a")

	if _, err := cli.Rotate(ctx, "KEK-a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for version(t, generate(t, proxy, "KEK-a").EDEK) != "KEK-a/2" {
		if time.Now().After(deadline) {
			t.Fatal("proxy still uses version 1 after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := proxy.DecryptDEK(ctx, d1.EDEK); err != nil {
		t.Fatalf("v1 DEK after rotation: %v", err)
	}

	if err := cli.Delete(ctx, "KEK-a"); err != nil {
		t.Fatal(err)
	}
	if err := proxy.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.DecryptDEK(ctx, d1.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("after delete and reload: %v, want ErrKeyNotFound", err)
	}
}

// TestReloadKeepsKeysOnBadStore: a broken store file does not take keys away.
func TestReloadKeepsKeysOnBadStore(t *testing.T) {
	cfg := newStore(t)
	k := open(t, cfg)
	mustCreate(t, k, "KEK-a")
	d := generate(t, k, "KEK-a")
	if err := os.WriteFile(cfg.KeyStore, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.Reload(); err == nil {
		t.Fatal("Reload accepted garbage")
	}
	if _, err := k.DecryptDEK(context.Background(), d.EDEK); err != nil {
		t.Fatalf("keys lost after a failed reload: %v", err)
	}
}

// A Kubernetes Secret mounted with defaultMode 0440 and an fsGroup gives
// kseal group read on both files: the local KMS opens them.
func TestOpenAcceptsGroupReadOnlyFiles(t *testing.T) {
	cfg := newStore(t)
	k := open(t, cfg)
	mustCreate(t, k, "KEK-a")
	d := generate(t, k, "KEK-a")
	for _, p := range []string{cfg.KeyStore, cfg.MasterKeyFile} {
		if err := os.Chmod(p, 0o440); err != nil {
			t.Fatal(err)
		}
	}
	k2, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New with 0440 files: %v", err)
	}
	defer k2.Close()
	if key, err := k2.DecryptDEK(context.Background(), d.EDEK); err != nil || !bytes.Equal(key, d.Key) {
		t.Fatalf("DecryptDEK with 0440 files: %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, cfg *Config)
		want  error  // errors.Is target, or nil
		text  string // substring of the error
	}{
		{"store readable by others", func(t *testing.T, cfg *Config) { os.Chmod(cfg.KeyStore, 0o644) }, nil, "chmod 600 "},
		{"master key writable by group", func(t *testing.T, cfg *Config) { os.Chmod(cfg.MasterKeyFile, 0o660) }, nil, "chmod 600 "},
		{"store group-readable and readable by others", func(t *testing.T, cfg *Config) { os.Chmod(cfg.KeyStore, 0o444) }, nil, "accessible by others"},
		{"missing store", func(t *testing.T, cfg *Config) { os.Remove(cfg.KeyStore) }, os.ErrNotExist, "kseal kms init"},
		{"wrong master key", func(t *testing.T, cfg *Config) {
			os.Remove(cfg.MasterKeyFile)
			if err := WriteMasterKeyFile(cfg.MasterKeyFile); err != nil {
				t.Fatal(err)
			}
		}, ErrWrongMasterKey, ""},
		{"primary version changed", func(t *testing.T, cfg *Config) {
			editStore(t, cfg, func(s string) string { return strings.Replace(s, `"primary": 2`, `"primary": 1`, 1) })
		}, ErrTampered, ""},
		{"version disabled by hand", func(t *testing.T, cfg *Config) {
			editStore(t, cfg, func(s string) string {
				return strings.Replace(s, `"version": 1,`, `"version": 1, "disabled": true,`, 1)
			})
		}, ErrTampered, ""},
		{"material swapped between KEKs", func(t *testing.T, cfg *Config) {
			swapMaterial(t, cfg)
		}, ErrTampered, ""},
		{"mac removed", func(t *testing.T, cfg *Config) {
			editStore(t, cfg, func(s string) string { return s[:strings.Index(s, `"mac"`)] + `"mac": ""}` })
		}, ErrTampered, ""},
		{"not json", func(t *testing.T, cfg *Config) { os.WriteFile(cfg.KeyStore, []byte("hello"), 0o600) }, nil, "not a kseal key store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newStore(t)
			k := open(t, cfg)
			mustCreate(t, k, "KEK-a")
			mustCreate(t, k, "KEK-b")
			k.Rotate(context.Background(), "KEK-a")
			tc.spoil(t, cfg)
			_, err := New(context.Background(), cfg, nil)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("New: %v; want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

func editStore(t *testing.T, cfg *Config, f func(string) string) {
	t.Helper()
	b, err := os.ReadFile(cfg.KeyStore)
	if err != nil {
		t.Fatal(err)
	}
	s := f(string(b))
	if s == string(b) {
		t.Fatal("edit changed nothing")
	}
	if err := os.WriteFile(cfg.KeyStore, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// swapMaterial moves KEK-b's sealed material into KEK-a's first version and
// recomputes the MAC (which takes the master key), so that only the AAD
// binding of material to name and version can catch it.
func swapMaterial(t *testing.T, cfg *Config) {
	t.Helper()
	master, err := readMasterKeyFile(cfg.MasterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := deriveKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := readStore(mk, cfg.KeyStore)
	if err != nil {
		t.Fatal(err)
	}
	keys[0].Versions[0].Material = keys[1].Versions[0].Material
	b, err := mk.encodeStore(keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.KeyStore, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestStoreFile(t *testing.T) {
	cfg := newStore(t)
	k := open(t, cfg)
	mustCreate(t, k, "KEK-a")
	fi, err := os.Stat(cfg.KeyStore)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store mode %v, %v; want 0600", fi.Mode(), err)
	}
	b, _ := os.ReadFile(cfg.KeyStore)
	var env map[string]any
	if err := json.Unmarshal(b, &env); err != nil || env["format"] != storeFormat {
		t.Fatalf("store is not the documented JSON: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(cfg.KeyStore))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
	// Init on an existing store keeps it.
	res, err := Init(context.Background(), cfg)
	if err != nil || res.CreatedKeyStore || res.CreatedMasterKeyFile {
		t.Fatalf("second Init = %+v, %v", res, err)
	}
	if l, _ := k.List(context.Background()); len(l) != 1 {
		t.Fatalf("second Init lost keys: %+v", l)
	}
	// Init never makes a master key for an existing store.
	os.Remove(cfg.MasterKeyFile)
	if _, err := Init(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "restore the master key") {
		t.Fatalf("Init with a lost master key: %v", err)
	}
	if _, err := os.Stat(cfg.MasterKeyFile); err == nil {
		t.Fatal("Init wrote a new master key for an existing store")
	}
}

func TestMasterKeyFromEnv(t *testing.T) {
	s, _ := GenerateMasterKey()
	t.Setenv("KSEAL_TEST_MASTER_KEY", s)
	cfg := NewConfig()
	cfg.KeyStore = filepath.Join(t.TempDir(), "keys.json")
	cfg.MasterKeyEnv = "KSEAL_TEST_MASTER_KEY"
	if _, err := Init(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	k := open(t, cfg)
	mustCreate(t, k, "KEK-env")
	d := generate(t, k, "KEK-env")
	if got, err := k.DecryptDEK(context.Background(), d.EDEK); err != nil || !bytes.Equal(got, d.Key) {
		t.Fatal(err)
	}
}

func TestDecryptRejectsForeignEDEK(t *testing.T) {
	a := open(t, newStore(t))
	b := open(t, newStore(t))
	mustCreate(t, a, "KEK-x")
	mustCreate(t, b, "KEK-x")
	d := generate(t, a, "KEK-x")
	_, err := b.DecryptDEK(context.Background(), d.EDEK)
	if err == nil || errors.Is(err, kms.ErrKeyNotFound) || !errors.Is(err, errUnwrap) {
		t.Fatalf("EDEK from another store: %v; want an unwrap failure", err)
	}
	if _, err := a.DecryptDEK(context.Background(), []byte{9, 9}); !errors.Is(err, errMalformedEDEK) {
		t.Fatalf("garbage EDEK: %v", err)
	}
}

func TestConcurrentUseDuringRotation(t *testing.T) {
	ctx := context.Background()
	k := open(t, newStore(t))
	mustCreate(t, k, "KEK-a")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				d, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-a", ID: "KEK-a"})
				if err == nil {
					var got []byte
					got, err = k.DecryptDEK(ctx, d.EDEK)
					if err == nil && !bytes.Equal(got, d.Key) {
						err = errors.New("DEK mismatch")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 5 {
		if _, err := k.Rotate(ctx, "KEK-a"); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"file", "keyStore: k.json\nmasterKeyFile: m.key\n", ""},
		{"env and interval", "keyStore: k.json\nmasterKeyEnv: KSEAL_MASTER_KEY\nreloadInterval: 2s\n", ""},
		{"no store", "masterKeyFile: m.key\n", "keyStore: required"},
		{"no master key", "keyStore: k.json\n", "masterKeyFile: one of masterKeyFile or masterKeyEnv is required"},
		{"both master keys", "keyStore: k.json\nmasterKeyFile: m\nmasterKeyEnv: M\n", "masterKeyEnv: set either"},
		{"tiny interval", "keyStore: k.json\nmasterKeyFile: m\nreloadInterval: 1ms\n", "reloadInterval:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := kms.Lookup("local")
			if !ok {
				t.Fatal(`provider "local" not registered`)
			}
			cfg := p.NewConfig()
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(cfg); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Validate = %v, want %q", err, tc.err)
			}
		})
	}
	c := NewConfig()
	yaml.Unmarshal([]byte("reloadInterval: 2s"), c)
	if c.ReloadInterval != 2*time.Second {
		t.Fatalf("reloadInterval decoded as %v", c.ReloadInterval)
	}
}

func BenchmarkGenerateDEK(b *testing.B) {
	k := benchKMS(b)
	ref := kms.KEKRef{Name: "KEK-orders", ID: "KEK-orders"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.GenerateDEK(context.Background(), ref); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptDEK(b *testing.B) {
	k := benchKMS(b)
	d, _ := k.GenerateDEK(context.Background(), kms.KEKRef{Name: "KEK-orders"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.DecryptDEK(context.Background(), d.EDEK); err != nil {
			b.Fatal(err)
		}
	}
}

func benchKMS(b *testing.B) *KMS {
	dir := b.TempDir()
	cfg := NewConfig()
	cfg.KeyStore, cfg.MasterKeyFile = filepath.Join(dir, "k.json"), filepath.Join(dir, "m.key")
	if _, err := Init(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	k, err := New(context.Background(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	if _, err := k.Create(context.Background(), "KEK-orders"); err != nil {
		b.Fatal(err)
	}
	return k
}

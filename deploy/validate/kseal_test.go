package validate

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The flags the Dockerfile's build stage uses (TestDockerfile checks that it
// still does), so the binary checked here is the one the image would hold.
const (
	buildVersion = "validate-test"
	buildCommit  = "c0ffee1"
	buildLDFlags = "-s -w -X main.version=" + buildVersion + " -X main.commit=" + buildCommit
)

var (
	tmpDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	var err error
	tmpDir, err = os.MkdirTemp("", "kseal-deploy-validate-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmpDir)
	os.Exit(code)
}

// ksealBinary builds ./cmd/kseal once per test run, static as in the image.
func ksealBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(tmpDir, "kseal")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", buildLDFlags, "-o", binPath, "./cmd/kseal")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/kseal: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestBinaryIsStatic: the image's base has no C library and no dynamic
// loader, so the binary must need neither.
func TestBinaryIsStatic(t *testing.T) {
	bin := ksealBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header: it is dynamically linked", bin, p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}

	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("kseal version: %v\n%s", err, out)
	}
	// kseal VERSION (COMMIT, GO VERSION)
	if first, _, _ := strings.Cut(string(out), "\n"); !strings.HasPrefix(first, "kseal "+buildVersion+" ("+buildCommit+",") {
		t.Errorf("kseal version printed %q, want it to start %q: -X main.version or main.commit no longer set", first, "kseal "+buildVersion+" ("+buildCommit+",")
	}
}

// validateConfig runs `kseal validate` on doc, as `kseal run` would load it.
func validateConfig(t *testing.T, name string, doc []byte) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(ksealBinary(t), "validate", "--config", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kseal validate: %w\n%s%s", err, stdout.Bytes(), stderr.Bytes())
	}
	if !strings.Contains(stdout.String(), ": ok") {
		return fmt.Errorf("kseal validate exited 0 without saying ok: %q", stdout.String())
	}
	return nil
}

// TestKsealValidateRejects shows that validateConfig can fail: a config
// with a misspelt key, which kseal decodes strictly.
func TestKsealValidateRejects(t *testing.T) {
	bad := []byte("admin: {listen: 0.0.0.0:9190}\nvirtualClusters:\n  - name: main\n    upstream: {bootstrapServers: [\"kafka:9092\"]}\n    gateway: {bootstrapPort: 9092, advertisedHots: x}\n")
	err := validateConfig(t, "bad.yaml", bad)
	if err == nil {
		t.Fatal("kseal validate accepted an unknown key")
	}
	if !strings.Contains(err.Error(), "advertisedHots") {
		t.Errorf("error does not name the bad key: %v", err)
	}
}

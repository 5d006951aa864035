package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var (
	validateBinOnce sync.Once
	validateBin     string
	validateBinErr  error
)

// ksealForValidate builds ./cmd/kseal once for the tests that run the
// binary as a user would.
func ksealForValidate(t *testing.T) string {
	t.Helper()
	validateBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kseal-validate-test-")
		if err != nil {
			validateBinErr = err
			return
		}
		validateBin = filepath.Join(dir, "kseal")
		out, err := exec.Command("go", "build", "-o", validateBin, ".").CombinedOutput()
		if err != nil {
			validateBinErr = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if validateBinErr != nil {
		t.Fatal(validateBinErr)
	}
	return validateBin
}

// `kseal validate` prints every problem of a file, one per line as
// FILE:LINE: KEY: WHAT in file order, then their count, and exits 1.
func TestValidateBinaryEveryProblem(t *testing.T) {
	bin := ksealForValidate(t)
	path := "testdata/many-problems.yaml"
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "validate", "--config", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\nstderr:\n%s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}
	want := []string{
		path + `:3: log.level: "loud" is not one of debug, info, warn, error`,
		path + `:4: drainTimeout: "soon" is not a duration like 30s, 5m or 1h30m`,
		path + `:11: virtualClusters[0].gateway.advertisedHots: unknown key (did you mean advertisedHost?)`,
		path + `:13: virtualClusters[0].limits.maxConnections: expected a whole number, got "many"`,
		path + `:17: virtualClusters[0].encryption.kms.config.address: required (e.g. https://vault.example.com:8200)`,
		path + `:18: virtualClusters[0].encryption.kms.config.vaultAddr: unknown key (this section has: address, namespace, mount, tokenFile, tokenEnv, renewToken, timeout, tls, auth)`,
		path + `:20: virtualClusters[0].encryption.kms.config.timeout: "5" is not a duration like 30s, 5m or 1h30m (a number needs a unit)`,
		path + `:25: virtualClusters[0].encryption.dek.kmsTimeout: "20" is not a duration like 30s, 5m or 1h30m (a number needs a unit)`,
		path + `: 8 problems`,
	}
	got := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
	goType := regexp.MustCompile(`\bconfig\.[A-Z]|time\.Duration|\[\]string|\bu?int(8|16|32|64)?\b|!!(str|int|bool|map|seq)|unmarshal|in a \w+ section`)
	if m := goType.FindString(stderr.String()); m != "" {
		t.Errorf("output names a Go type or yaml.v3 internals (%q):\n%s", m, stderr.String())
	}
}

// A valid file says ok on stdout and exits 0; every config shipped with
// kseal is one.
func TestValidateBinaryShippedConfigs(t *testing.T) {
	bin := ksealForValidate(t)
	for _, path := range []string{"../../kseal.example.yaml"} {
		out, err := exec.Command(bin, "validate", "--config", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), path+": ok") {
			t.Errorf("kseal validate %s: %v\n%s", path, err, out)
		}
	}
}

//go:build integration

package azure

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/testenv"
)

// lowkey drives a Lowkey Vault started by scripts/lowkey.sh.
type lowkey struct {
	script, dir string
	env         map[string]string
}

func (l *lowkey) run(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(l.script, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(l.script), strings.Join(args, " "), err, out)
	}
}

func (l *lowkey) load(t *testing.T) {
	t.Helper()
	f, err := os.Open(filepath.Join(l.dir, "lowkey.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l.env = map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			l.env[k] = v
		}
	}
}

func (l *lowkey) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	pid, err := strconv.Atoi(l.env["LOWKEY_PID"])
	if err != nil {
		t.Fatalf("LOWKEY_PID: %v", err)
	}
	if sig == syscall.SIGSTOP {
		err = testenv.Freeze(pid) // returns once every thread is stopped
	} else {
		err = syscall.Kill(pid, sig)
	}
	if err != nil {
		t.Fatalf("signal %v to Lowkey Vault (pid %d): %v", sig, pid, err)
	}
}

func (l *lowkey) start(t *testing.T) {
	args := []string{"start", "--dir", l.dir, "--owner-pid", strconv.Itoa(os.Getpid()), "--timeout", "45"}
	if l.env != nil { // a restart: same ports, so the configured URLs stay right
		args = append(args, "--port", l.env["LOWKEY_PORT"], "--token-port", l.env["LOWKEY_TOKEN_PORT"])
	}
	l.run(t, args...)
	l.load(t)
}

func (l *lowkey) stop(t *testing.T)   { l.run(t, "stop", "--dir", l.dir) }
func (l *lowkey) pause(t *testing.T)  { l.signal(t, syscall.SIGSTOP) }
func (l *lowkey) resume(t *testing.T) { l.signal(t, syscall.SIGCONT) }
func (l *lowkey) keepsKeys() bool     { return false }

// TestLowkeyVault runs the conformance scenario against a real Lowkey
// Vault: managed identity tokens from its token port, TLS verified against
// the certificate it serves, RSA keys created and rotated over its REST API.
func TestLowkeyVault(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_AZURE") == "1" {
		t.Skip("KSEAL_IT_NO_AZURE=1: skipping the Lowkey Vault (Azure Key Vault) integration test")
	}
	script, err := filepath.Abs("../../../scripts/lowkey.sh")
	if err != nil {
		t.Fatal(err)
	}
	l := &lowkey{script: script, dir: t.TempDir()}
	begin := time.Now()
	l.start(t)
	t.Cleanup(func() { l.stop(t) })
	t.Logf("Lowkey Vault %s up in %v", l.env["LOWKEY_VERSION"], time.Since(begin).Round(time.Millisecond))

	cfg := NewConfig()
	cfg.VaultURL = l.env["LOWKEY_VAULT_URL"]
	cfg.Timeout = 2 * time.Second
	cfg.Auth.Method = MethodManagedIdentity
	cfg.Auth.IdentityEndpoint = l.env["LOWKEY_IDENTITY_ENDPOINT"]
	cfg.TLS.CAFile = l.env["LOWKEY_CA_FILE"]
	k, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	runConformance(t, k, l, cfg.Timeout)
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

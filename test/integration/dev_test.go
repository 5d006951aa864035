//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/testenv"
)

// The README's run command: `kseal dev` starts with no external service and
// a kcat round trip works through it; what the broker stores is ciphertext.
func TestDevModeKcatRoundTrip(t *testing.T) {
	bin, err := testenv.BuildKseal()
	if err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePortRange(6) // bootstrap, 4 broker ports, admin
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "dev", "--demo=false", "--port", fmt.Sprint(port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			t.Errorf("kseal dev did not stop cleanly on Ctrl-C: %v", err)
		}
	}()
	// Read the banner up to "Serving", remembering the in-memory broker.
	var broker string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "broker:") {
			f := strings.Fields(line)
			for i, w := range f {
				if w == "at" && i+1 < len(f) {
					broker = strings.TrimSuffix(f[i+1], ":")
				}
			}
		}
		if strings.HasPrefix(line, "Serving") {
			break
		}
	}
	go func() { // keep draining stdout
		for sc.Scan() {
		}
	}()
	if broker == "" {
		t.Fatal("kseal dev printed no broker address")
	}
	bootstrap := fmt.Sprintf("127.0.0.1:%d", port)
	const canary = "KSEAL-CANARY-PLAINTEXT-dev-kcat"
	testenv.KcatProduce(t, bootstrap, "demo", []testenv.Record{{Key: "k1", Value: canary}})
	got := testenv.KcatConsume(t, bootstrap, "demo")
	if len(got) != 1 || got[0].Value != canary {
		t.Fatalf("through kseal dev: %v", got)
	}
	raw := testenv.KcatConsume(t, broker, "demo")
	if len(raw) != 1 || strings.Contains(raw[0].Value, canary) {
		t.Fatalf("stored at the in-memory broker: %v", raw)
	}
}

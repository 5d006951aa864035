package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/kseal/kseal/internal/testenv"
)

// freePorts returns the first of n consecutive free ports, below the
// kernel's ephemeral range (a port from bind(":0") could be taken by an
// outgoing connection before kseal binds it, and the ones after it were
// never checked).
func freePorts(t *testing.T, n int) int {
	t.Helper()
	base, err := testenv.FreePortRange(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// The README's run command: dev mode starts with no external service,
// round-trips plaintext through kseal and stores ciphertext at the broker.
func TestDevModeDemo(t *testing.T) {
	port := freePorts(t, 6) // dev mode: the bootstrap port, 4 broker ports, the admin port
	var out, errOut bytes.Buffer
	code := run([]string{"dev", "--exit", "--port", strconv.Itoa(port)}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []string{`consumer via kseal sees:  "card=4111-1111-1111-1111"`, "format v1, KEK KEK-demo v1"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `stored at the broker:     "card`) || strings.Contains(s, "not encrypted") {
		t.Errorf("plaintext at the broker:\n%s", s)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "--config", "testdata/bad.yaml"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"virtualClusters[0].gateway.bootstrapPort", "virtualClusters[0].encryption.policy", "virtualClusters[0].encryption.kms.type: unknown \"vualt\""} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut.String())
		}
	}
}

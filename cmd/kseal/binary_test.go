package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/testenv"
)

// These tests run the kseal binary, as a user does.

func ksealBinary(t *testing.T) string {
	t.Helper()
	bin, err := testenv.BuildKseal()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// runBinary runs kseal with args in dir and returns stdout, stderr and the
// exit code.
func runBinary(t *testing.T, bin, dir string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kseal %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// Every command and subcommand answers -h and --help with a one-line
// description and its flags on stdout, exit status 0, in a directory with
// no config file (kseal kms --help must not need one).
func TestBinaryHelpEveryCommand(t *testing.T) {
	bin := ksealBinary(t)
	dir := t.TempDir()
	cmds := [][]string{{}, {"help"}}
	for _, c := range commands {
		cmds = append(cmds, []string{c.name})
	}
	for sub := range kmsCommands {
		cmds = append(cmds, []string{"kms", sub})
	}
	cmds = append(cmds, []string{"console", "produce"}, []string{"console", "consume"})
	for _, c := range cmds {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string(nil), c...), h)
			name := strings.Join(args, " ")
			out, errOut, code := runBinary(t, bin, dir, args...)
			if code != 0 {
				t.Errorf("kseal %s: exit %d, want 0\nstderr: %s", name, code, errOut)
				continue
			}
			first, _, _ := strings.Cut(out, "\n")
			want := "kseal"
			if len(c) > 0 && c[0] != "help" {
				want = "kseal " + strings.Join(c, " ") + ": "
			}
			if !strings.HasPrefix(first, want) || len(first) < len(want)+10 {
				t.Errorf("kseal %s: first line %q, want a description starting %q", name, first, want)
			}
			if len(c) > 0 && c[0] != "help" && c[0] != "kms" && c[0] != "console" || len(c) > 1 {
				if !strings.Contains(out, "Flags:") {
					t.Errorf("kseal %s: no flags in\n%s", name, out)
				}
			}
		}
	}
	// `kseal help CMD` is `kseal CMD --help`.
	if out, _, code := runBinary(t, bin, dir, "help", "audit"); code != 0 || !strings.HasPrefix(out, "kseal audit: ") {
		t.Errorf("kseal help audit: exit %d\n%s", code, out)
	}
}

func TestBinaryVersion(t *testing.T) {
	out, errOut, code := runBinary(t, ksealBinary(t), t.TempDir(), "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !regexp.MustCompile(`^kseal \S+ \(\S+, go1\.\S+\)\n$`).MatchString(out) {
		t.Fatalf("kseal version printed %q, want \"kseal VERSION (COMMIT, GO VERSION)\"", out)
	}
}

// The README lists the commands `kseal --help` lists.
func TestREADMEListsEveryCommand(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(usageText(), "\n") {
		if strings.HasPrefix(line, "  kseal ") && !strings.Contains(string(b), line) {
			t.Errorf("README.md lacks the line of `kseal --help`:\n%s", line)
		}
	}
}

// devBanner starts `kseal dev` and reads its banner up to "Serving".
type devRun struct {
	cmd    *exec.Cmd
	banner string
	broker string // the in-memory broker's address
	config string // the config file it wrote
	admin  string // http://host:port
	errOut bytes.Buffer
}

func startDev(t *testing.T, bin, dir string) *devRun {
	t.Helper()
	port := freePorts(t, 6)
	d := &devRun{cmd: exec.Command(bin, "dev", "--demo=false", "--port", fmt.Sprint(port), "--dir", dir)}
	d.cmd.Dir = dir
	d.cmd.Stderr = &d.errOut
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGINT)
		if err := d.cmd.Wait(); err != nil {
			t.Errorf("kseal dev did not stop cleanly on Ctrl-C: %v\nstderr:\n%s", err, d.errOut.String())
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var b strings.Builder
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("kseal dev ended before serving:\n%s\nstderr:\n%s", b.String(), d.errOut.String())
			}
			b.WriteString(l + "\n")
			done = strings.HasPrefix(l, "Serving")
		case <-timeout:
			t.Fatalf("kseal dev is not serving after 30s:\n%s", b.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	d.banner = b.String()
	field := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(d.banner)
		if m == nil {
			t.Fatalf("banner lacks %s:\n%s", re, d.banner)
		}
		return m[1]
	}
	d.broker = field(`kfake at (\S+):`)
	d.config = field(`config: +(\S+)`)
	d.admin = field(`admin: +(http://\S+)/metrics`)
	return d
}

// `kseal dev` writes the config it runs where its banner says, serves the
// admin endpoints, and every command its banner prints works with nothing
// but the kseal binary (run here through sh, as a user pastes them).
func TestBinaryDevModeBanner(t *testing.T) {
	bin := ksealBinary(t)
	dir := t.TempDir()
	d := startDev(t, bin, dir)
	if d.config != filepath.Join(dir, "kseal-dev.yaml") {
		t.Errorf("config at %s, want %s", d.config, filepath.Join(dir, "kseal-dev.yaml"))
	}
	if _, out, code := runBinary(t, bin, dir, "validate", "--config", d.config); code != 0 {
		t.Errorf("the config dev mode wrote does not validate: %s", out)
	}
	for path, want := range map[string]string{"/metrics": "kseal_", "/healthz": "ok", "/readyz": "ready"} {
		resp, err := http.Get(d.admin + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}

	_, try, ok := strings.Cut(d.banner, "Try it")
	if !ok {
		t.Fatalf("no commands in the banner:\n%s", d.banner)
	}
	var ran int
	for line := range strings.SplitSeq(try, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "(") || strings.HasPrefix(line, "Serving") {
			continue
		}
		if strings.Contains(line, "kcat") || strings.Contains(line, "curl") {
			t.Errorf("the banner needs a tool other than kseal: %s", line)
		}
		ran++
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("banner command failed: %s\n%v\n%s", line, err, out)
			continue
		}
		switch {
		case strings.Contains(line, "--raw"):
			if !strings.Contains(string(out), "encrypted format=v1 kek=KEK-demo") || strings.Contains(string(out), "hello") {
				t.Errorf("%s: want ciphertext of the record produced:\n%s", line, out)
			}
		case strings.Contains(line, "consume"):
			if strings.TrimSpace(string(out)) != "hello" {
				t.Errorf("%s: want the record produced, through kseal:\n%s", line, out)
			}
		}
	}
	if ran < 5 {
		t.Errorf("ran %d banner commands, want at least 5 (produce, consume, raw consume, kms create, inspect):\n%s", ran, d.banner)
	}
}

// Records go through `kseal console` and dev mode and back; a KEK created
// with `kseal kms create` for a topic whose KEK was just found missing is
// used by the very next produce (no notFoundTtl wait): what the broker
// stores is ciphertext, checked with console's direct (--raw) mode.
func TestBinaryConsoleAndInstantKEK(t *testing.T) {
	bin := ksealBinary(t)
	dir := t.TempDir()
	d := startDev(t, bin, dir)
	proxy := regexp.MustCompile(`proxy bootstrap: +(\S+)`).FindStringSubmatch(d.banner)[1]
	sh := func(script string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Env = append(os.Environ(), "K="+bin, "P="+proxy, "B="+d.broker, "C="+d.config)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return string(out)
	}
	// Round trip with keys, and a value that is not printable text.
	sh(`printf 'one\ntwo\n' | "$K" console produce --bootstrap "$P" --topic demo --key k1`)
	sh(`"$K" console produce --bootstrap "$P" --topic demo --value "$(printf 'bell\a')"`)
	got := sh(`"$K" console consume --bootstrap "$P" --topic demo --from-beginning --count 3 --show-key 2>/dev/null`)
	for _, want := range []string{`key="k1" one`, `key="k1" two`, `"bell\a"`} {
		if !strings.Contains(got, want) {
			t.Errorf("consume through kseal lacks %q:\n%s", want, got)
		}
	}
	if strings.ContainsRune(got, '\a') {
		t.Errorf("a control character reached the terminal: %q", got)
	}

	// payments has no KEK: its first record passes in plaintext (the
	// policy is PASSTHROUGH_UNENCRYPTED), and kseal remembers "not found".
	sh(`"$K" console produce --bootstrap "$P" --topic payments --value PAYMENTS-BEFORE`)
	sh(`"$K" kms create --config "$C" KEK-payments`)
	sh(`"$K" console produce --bootstrap "$P" --topic payments --value PAYMENTS-CANARY-AFTER`)
	raw := sh(`"$K" console consume --bootstrap "$B" --topic payments --from-beginning --end --raw 2>/dev/null`)
	if strings.Contains(raw, "CANARY") {
		t.Fatalf("the record produced after kseal kms create reached the broker in plaintext:\n%s", raw)
	}
	if !strings.Contains(raw, "encrypted format=v1 kek=KEK-payments version=1") || !strings.Contains(raw, `not-encrypted value="PAYMENTS-BEFORE"`) {
		t.Fatalf("want the first record plaintext and the second encrypted under KEK-payments:\n%s", raw)
	}
	if n := strings.Count(raw, "value(base64)="); n != 1 {
		t.Errorf("%d encrypted records, want 1:\n%s", n, raw)
	}
	// Through kseal both read back.
	plain := sh(`"$K" console consume --bootstrap "$P" --topic payments --from-beginning --end 2>/dev/null`)
	if !strings.Contains(plain, "PAYMENTS-CANARY-AFTER") || !strings.Contains(plain, "PAYMENTS-BEFORE") {
		t.Errorf("through kseal:\n%s", plain)
	}
}

// kseal.example.yaml encrypts, validates, and its README steps work: copied
// to kseal.yaml (the --config default), kms init and kms create succeed.
func TestBinaryExampleConfig(t *testing.T) {
	b, err := os.ReadFile("../../kseal.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kseal.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := ksealBinary(t)
	for _, args := range [][]string{{"validate"}, {"kms", "init"}, {"kms", "create", "KEK-orders"}, {"kms", "list"}} {
		out, errOut, code := runBinary(t, bin, dir, args...)
		if code != 0 {
			t.Fatalf("kseal %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if !strings.Contains(string(b), "encryption:") {
		t.Error("kseal.example.yaml shows no encryption")
	}
	if _, err := os.Stat(filepath.Join(dir, "kseal-master.key")); err != nil {
		t.Error(err)
	}
}

// Flags may follow a command's positional argument.
func TestBinaryFlagsAfterArguments(t *testing.T) {
	b, err := os.ReadFile("../../kseal.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "my.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := ksealBinary(t)
	for _, args := range [][]string{{"kms", "init", "--config", "my.yaml"}, {"kms", "create", "KEK-a", "--config", "my.yaml"}, {"kms", "create", "--config", "my.yaml", "--", "KEK-b"}} {
		if out, errOut, code := runBinary(t, bin, dir, args...); code != 0 {
			t.Fatalf("kseal %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if out, errOut, code := runBinary(t, bin, dir, "kms", "create", "KEK-c", "--config", "my.yaml", "extra"); code != 2 {
		t.Errorf("two KEK names: exit %d, want 2\n%s%s", code, out, errOut)
	}
	if out, _, code := runBinary(t, bin, dir, "kms", "create", "KEK-d", "--help"); code != 0 || !strings.HasPrefix(out, "kseal kms create: ") {
		t.Errorf("help after an argument: exit %d\n%s", code, out)
	}
}

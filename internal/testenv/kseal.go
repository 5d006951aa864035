package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var buildKseal = sync.OnceValues(func() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(root, ".cache", "bin", "kseal")
	args := []string{"build", "-o", out}
	if os.Getenv("KSEAL_IT_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/kseal")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testenv: go build ./cmd/kseal: %w\n%s", err, b)
	}
	return out, nil
})

// BuildKseal builds ./cmd/kseal into .cache/bin/kseal once per test binary
// run and returns its path. KSEAL_IT_RACE=1 builds it with the race
// detector.
func BuildKseal() (string, error) { return buildKseal() }

// Gateway is the client-facing side of one kseal virtual cluster: where
// clients bootstrap and the port range that serves one broker each.
type Gateway struct {
	Host            string // bind address and advertised host
	BootstrapPort   int
	BrokerPortStart int // node id N is served on BrokerPortStart+N
	BrokerPortCount int
}

// NewGateway picks free ports for a gateway on 127.0.0.1 with 16 broker
// ports (node ids 0..15).
func NewGateway() (Gateway, error) {
	g := Gateway{Host: "127.0.0.1", BrokerPortCount: 16}
	var err error
	if g.BrokerPortStart, err = FreePortRange(g.BrokerPortCount); err != nil {
		return g, err
	}
	for {
		if g.BootstrapPort, err = FreePort(); err != nil {
			return g, err
		}
		if !g.isBrokerPort(g.BootstrapPort) {
			return g, nil
		}
	}
}

// Bootstrap is the address clients are given.
func (g Gateway) Bootstrap() string {
	return net.JoinHostPort(g.Host, strconv.Itoa(g.BootstrapPort))
}

func (g Gateway) isBrokerPort(port int) bool {
	return port >= g.BrokerPortStart && port < g.BrokerPortStart+g.BrokerPortCount
}

// Owns reports whether host:port is one of this gateway's addresses: the
// advertised host with the bootstrap port or a port of the broker range.
func (g Gateway) Owns(host string, port int) bool {
	return host == g.Host && (port == g.BootstrapPort || g.isBrokerPort(port))
}

// BrokerAddr is where the gateway serves broker node id.
func (g Gateway) BrokerAddr(id int32) string {
	return net.JoinHostPort(g.Host, strconv.Itoa(g.BrokerPortStart+int(id)))
}

// KsealConfig renders the YAML for one virtual cluster named "it" in front
// of upstream through g. extra is appended under the virtual cluster (for
// later features such as encryption) and must be indented by 4 spaces.
func KsealConfig(upstream []string, g Gateway, extra string) string {
	var b strings.Builder
	b.WriteString("log: {level: info, format: text}\n")
	// Tests stop kseal while clients may still hold idle connections; a
	// short drain keeps teardown fast and still exercises it.
	b.WriteString("drainTimeout: 5s\n")
	b.WriteString("virtualClusters:\n  - name: it\n    upstream:\n      bootstrapServers: [")
	for i, u := range upstream {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(u))
	}
	b.WriteString("]\n")
	fmt.Fprintf(&b, "    gateway:\n      bindAddress: %s\n      advertisedHost: %s\n", g.Host, g.Host)
	fmt.Fprintf(&b, "      bootstrapPort: %d\n      brokerPortStart: %d\n      brokerPortCount: %d\n",
		g.BootstrapPort, g.BrokerPortStart, g.BrokerPortCount)
	b.WriteString(extra)
	return b.String()
}

// Kseal is a running `kseal run` subprocess.
type Kseal struct {
	Bootstrap string // first virtual cluster's bootstrap address
	LogPath   string // kseal's stdout and stderr
	cmd       *exec.Cmd
	done      chan struct{}
	waitErr   error
	logFile   *os.File
	stopOnce  sync.Once
	stopErr   error
}

// StartKseal writes cfgYAML to a file, runs `kseal run --config <file>`, and
// waits until every virtual cluster's bootstrap port accepts connections.
// At cleanup it sends SIGTERM and fails the test unless kseal exits 0
// within 15s: graceful shutdown is a requirement. kseal's output goes to a
// file under test/.work and into the test log when the test failed (or
// always with KSEAL_IT_LOGS=1).
func StartKseal(t testing.TB, cfgYAML string) *Kseal {
	t.Helper()
	bin, err := BuildKseal()
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := bootstrapAddrs(cfgYAML)
	if err != nil {
		t.Fatal(err)
	}
	work, err := WorkDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(work, "kseal-"+sanitize(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "kseal.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "kseal.log"))
	if err != nil {
		t.Fatal(err)
	}
	k := &Kseal{Bootstrap: addrs[0], LogPath: logf.Name(), logFile: logf, done: make(chan struct{})}
	k.cmd = exec.Command(bin, "run", "--config", cfgPath)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("testenv: start kseal: %v", err)
	}
	go func() {
		k.waitErr = k.cmd.Wait()
		close(k.done)
	}()
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Errorf("kseal did not shut down gracefully: %v", err)
		}
		if t.Failed() || os.Getenv("KSEAL_IT_LOGS") == "1" {
			t.Logf("kseal log (%s):\n%s", k.LogPath, tail(k.Logs(), 64<<10))
		} else {
			os.RemoveAll(dir)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-k.done:
				t.Fatalf("kseal exited during startup (%v); log:\n%s", k.waitErr, tail(k.Logs(), 16<<10))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("kseal not listening on %s after 20s: %v; log:\n%s", a, err, tail(k.Logs(), 16<<10))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return k
}

// Stop sends SIGTERM and waits up to 15s; an exit status other than 0, or
// having to SIGKILL it, is an error. Later calls return the first result.
func (k *Kseal) Stop() error {
	k.stopOnce.Do(func() {
		defer k.logFile.Close()
		select {
		case <-k.done:
			k.stopErr = fmt.Errorf("kseal had already exited: %v", k.waitErr)
			return
		default:
		}
		if err := k.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			k.stopErr = fmt.Errorf("SIGTERM: %w", err)
		}
		start := time.Now()
		select {
		case <-k.done:
			if k.waitErr != nil {
				k.stopErr = fmt.Errorf("kseal exited after SIGTERM: %w", k.waitErr)
			} else if d := time.Since(start); d > 10*time.Second {
				k.stopErr = fmt.Errorf("kseal took %v to stop", d)
			}
		case <-time.After(15 * time.Second):
			_ = k.cmd.Process.Kill()
			<-k.done
			k.stopErr = errors.New("kseal still running 15s after SIGTERM; killed")
		}
	})
	return k.stopErr
}

// Logs returns what kseal has written so far.
func (k *Kseal) Logs() string {
	b, _ := os.ReadFile(k.LogPath)
	return string(b)
}

// bootstrapAddrs reads the bootstrap address of every virtual cluster of a
// kseal config (only the keys it needs; kseal validates the rest).
func bootstrapAddrs(cfgYAML string) ([]string, error) {
	var c struct {
		VirtualClusters []struct {
			Gateway struct {
				BindAddress   string `yaml:"bindAddress"`
				BootstrapPort int    `yaml:"bootstrapPort"`
			} `yaml:"gateway"`
		} `yaml:"virtualClusters"`
	}
	if err := yaml.Unmarshal([]byte(cfgYAML), &c); err != nil {
		return nil, fmt.Errorf("testenv: kseal config: %w", err)
	}
	var out []string
	for _, vc := range c.VirtualClusters {
		host := vc.Gateway.BindAddress
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		out = append(out, net.JoinHostPort(host, strconv.Itoa(vc.Gateway.BootstrapPort)))
	}
	if len(out) == 0 {
		return nil, errors.New("testenv: kseal config has no virtualClusters")
	}
	return out, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// tail returns the last max bytes of s, cut at a line start.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "...\n" + s
}

// runLogged runs cmd and returns stdout; on failure the error carries
// stderr.
func runLogged(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	err := cmd.Run()
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w\nstderr:\n%s", strings.Join(cmd.Args, " "), err, tail(stderr.String(), 8<<10))
	}
	return stdout.Bytes(), nil
}

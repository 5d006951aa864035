//go:build integration

package integration

// Fault tests: a broker killed and restarted, kseal restarted, the KMS
// unreachable, slow consumers, records that encryption pushes over the
// topic's size limit. None runs in parallel: they break the shared cluster
// (or measure kseal's memory) and must have it to themselves; go test runs
// every sequential test before any parallel one resumes. Each leaves the
// cluster healthy. KSEAL_FAULT_ROUNDS (default 1) repeats the broker and
// proxy faults within one stream (scripts/soak.sh raises it).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/testenv"
)

// ---- (a) a broker killed mid-stream ----

// TestFaultBrokerRestart: kill -9 the leader of a partition while
// producers and a consumer group stream through kseal; clients follow the
// moved leaders through the proxy while it is down; it is restarted with
// its own command line and rejoins; every record arrives exactly once.
func TestFaultBrokerRestart(t *testing.T) {
	rounds := envInt(t, "KSEAL_FAULT_ROUNDS", 1)
	kek := uniq("KEK-fault")
	p := startEncProxy(t, newLocalKMS(t, kek), "it-fault", kek, "")
	topic := newTopic(t, "fault-broker", nil)
	canary := newCanary(t, topic)
	// Registered before the stream, so it runs after the clients are
	// closed: whatever happens, the cluster is whole again for the next
	// test.
	t.Cleanup(func() {
		if err := healBrokers(90 * time.Second); err != nil {
			t.Errorf("cluster not healthy after the test: %v", err)
		}
	})

	s := startStream(t, streamOpts{Bootstrap: p.Bootstrap, Topic: topic, Canary: canary,
		Producers: 3, Consumers: 2, Rate: 300})
	s.waitAcks(500, 30*time.Second, "before the fault")
	for r := 0; r < rounds; r++ {
		victim := leaderOf(t, topic, int32(r%partitions))
		start := time.Now()
		b := killBroker(t, victim)
		moved := waitLeadersMoved(t, topic, victim, 60*time.Second)
		t.Logf("round %d: killed broker %d; leaders moved after %v", r, victim, moved.Round(100*time.Millisecond))
		s.waitAcks(300, 30*time.Second, fmt.Sprintf("round %d: while broker %d is down", r, victim))
		b.restart(t)
		if err := waitHealthy(120 * time.Second); err != nil {
			t.Fatalf("round %d: broker %d did not rejoin: %v", r, victim, err)
		}
		t.Logf("round %d: broker %d back in every ISR %v after the kill", r, victim, time.Since(start).Round(100*time.Millisecond))
		s.waitAcks(300, 30*time.Second, fmt.Sprintf("round %d: after broker %d rejoined", r, victim))
	}
	s.finish(90 * time.Second)
	assertNoCanaryOnDisk(t, canary)
}

// brokerProc is one broker node's process.
type brokerProc struct {
	id   int32
	pid  int
	argv []string
	dir  string // working directory
}

// clusterEnvPath is the shared cluster's cluster.env: its PIDS line is
// what scripts/kafka.sh stop (and the cluster's watcher) signal, so a
// restarted broker's pid is written there.
func clusterEnvPath() string { return filepath.Join(cluster.Dir, "cluster.env") }

// brokerPIDs reads the node pids from cluster.env, by node id (kafka.sh
// lists them in node order from 1).
func brokerPIDs() (map[int32]int, error) {
	b, err := os.ReadFile(clusterEnvPath())
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PIDS="); ok {
			out := map[int32]int{}
			for i, f := range strings.Split(v, ",") {
				pid, err := strconv.Atoi(f)
				if err != nil {
					return nil, fmt.Errorf("cluster.env: bad PIDS %q", v)
				}
				out[int32(i+1)] = pid
			}
			return out, nil
		}
	}
	return nil, errors.New("cluster.env has no PIDS line")
}

// setBrokerPID replaces node id's pid in cluster.env (atomically: the
// watcher polls for the file).
func setBrokerPID(id int32, pid int) error {
	path := clusterEnvPath()
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if v, ok := strings.CutPrefix(line, "PIDS="); ok {
			f := strings.Split(v, ",")
			if int(id) < 1 || int(id) > len(f) {
				return fmt.Errorf("cluster.env: no pid for node %d in %q", id, v)
			}
			f[id-1] = strconv.Itoa(pid)
			lines[i] = "PIDS=" + strings.Join(f, ",")
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// brokerCmdline reads a running broker's command line and working
// directory, checking that it is node id's kafka.Kafka.
func brokerCmdline(id int32, pid int) ([]string, string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, "", fmt.Errorf("broker %d (pid %d) is not running: %w", id, pid, err)
	}
	argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	want := fmt.Sprintf("node-%d/server.properties", id)
	if len(argv) < 3 || !strings.Contains(string(b), "kafka.Kafka") || !strings.HasSuffix(argv[len(argv)-1], want) {
		return nil, "", fmt.Errorf("pid %d is not broker %d: %q", pid, id, argv)
	}
	dir, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return nil, "", err
	}
	return argv, dir, nil
}

// killBroker sends SIGKILL to node id and waits until it is gone.
func killBroker(t *testing.T, id int32) *brokerProc {
	t.Helper()
	pids, err := brokerPIDs()
	if err != nil {
		t.Fatal(err)
	}
	argv, dir, err := brokerCmdline(id, pids[id])
	if err != nil {
		t.Fatal(err)
	}
	b := &brokerProc{id: id, pid: pids[id], argv: argv, dir: dir}
	if err := syscall.Kill(b.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 broker %d (pid %d): %v", id, b.pid, err)
	}
	if !waitGone(b.pid, 15*time.Second) {
		t.Fatalf("broker %d (pid %d) still running 15s after SIGKILL", id, b.pid)
	}
	return b
}

// waitGone waits until pid is no longer a live kafka.Kafka process (gone,
// reused by something else, or a zombie with an empty command line).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(b, []byte("kafka.Kafka")) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// restart starts the broker again with its original command line, output
// appended to its node log, and records the new pid in cluster.env. It is
// not tied to the test: the cluster's stop and watcher own it from now on.
func (b *brokerProc) restart(t *testing.T) {
	t.Helper()
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
}

func (b *brokerProc) start() error {
	logf, err := os.OpenFile(filepath.Join(cluster.Dir, fmt.Sprintf("node-%d.log", b.id)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(b.argv[0], b.argv[1:]...)
	cmd.Dir = b.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C to go test reaches it through the
	// cluster's stop, like its siblings, not directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restart broker %d: %w", b.id, err)
	}
	go cmd.Wait() // reap it whenever the cluster stops it
	b.pid = cmd.Process.Pid
	if err := setBrokerPID(b.id, b.pid); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("restart broker %d: record pid: %w", b.id, err)
	}
	return nil
}

// healBrokers restarts any broker whose process is gone (a test failed
// between kill and restart) and waits until the cluster is healthy.
func healBrokers(timeout time.Duration) error {
	pids, err := brokerPIDs()
	if err != nil {
		return err
	}
	for id, pid := range pids {
		if _, _, err := brokerCmdline(id, pid); err == nil {
			continue
		}
		// Any live node's command line, with its node number swapped.
		for other, opid := range pids {
			argv, dir, err := brokerCmdline(other, opid)
			if err != nil {
				continue
			}
			argv = append([]string(nil), argv...)
			last := len(argv) - 1
			argv[last] = strings.Replace(argv[last], fmt.Sprintf("node-%d/", other), fmt.Sprintf("node-%d/", id), 1)
			if err := (&brokerProc{id: id, argv: argv, dir: dir}).start(); err != nil {
				return err
			}
			break
		}
	}
	return waitHealthy(timeout)
}

// waitHealthy waits until metadata lists every broker and every partition
// of every topic has its full replica set in sync.
func waitHealthy(timeout time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.Bootstrap...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(timeout)
	last := errors.New("no answer")
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.Metadata(ctx)
		cancel()
		switch {
		case err != nil:
			last = err
		case len(md.Brokers) != len(cluster.Brokers):
			last = fmt.Errorf("metadata lists %d of %d brokers", len(md.Brokers), len(cluster.Brokers))
		default:
			last = nil
			for _, td := range md.Topics {
				for _, pd := range td.Partitions {
					if len(pd.ISR) < len(pd.Replicas) || pd.Leader < 0 {
						last = fmt.Errorf("%s[%d]: leader %d, ISR %v of replicas %v", td.Topic, pd.Partition, pd.Leader, pd.ISR, pd.Replicas)
					}
				}
			}
			if last == nil {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return last
}

// leaderOf returns the current leader of topic[partition].
func leaderOf(t *testing.T, topic string, partition int32) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := directAdmin(t).Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	pd, ok := md.Topics[topic].Partitions[partition]
	if !ok || pd.Leader < 0 {
		t.Fatalf("%s[%d] has no leader: %+v", topic, partition, pd)
	}
	return pd.Leader
}

// waitLeadersMoved waits until no partition of topic is led by id and
// returns how long that took.
func waitLeadersMoved(t *testing.T, topic string, id int32, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	adm := directAdmin(t)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.Metadata(ctx, topic)
		cancel()
		if err == nil {
			moved := true
			for _, pd := range md.Topics[topic].Partitions {
				moved = moved && pd.Leader != id && pd.Leader >= 0
			}
			if moved {
				return time.Since(start)
			}
		}
		if time.Since(start) > timeout {
			t.Fatalf("partitions of %s still led by the killed broker %d (or leaderless) after %v (last error %v)", topic, id, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- (b) kseal restarted mid-stream ----

// TestFaultProxyRestart: kseal is stopped (gracefully, within its drain
// timeout) and started again on the same ports while idempotent acks=all
// producers and a consumer group stream through it; they reconnect on
// their own and every record arrives exactly once.
func TestFaultProxyRestart(t *testing.T) {
	rounds := envInt(t, "KSEAL_FAULT_ROUNDS", 1)
	kek := uniq("KEK-fault")
	p := startEncProxy(t, newLocalKMS(t, kek), "it-fault", kek, "")
	topic := newTopic(t, "fault-proxy", nil)
	canary := newCanary(t, topic)
	// The broker holds a JoinGroup until every member rejoins, for up to
	// the rebalance timeout (franz-go's default: 60 s). A restart in the
	// middle of the consumers' first rebalance stops the other member's
	// rejoin at the draining kseal, and the held JoinGroup outlasted the
	// drain timeout (5 s): kseal then exits 1, as it should, and the test
	// failed. Keep the rebalance timeout under the drain timeout.
	s := startStream(t, streamOpts{Bootstrap: p.Bootstrap, Topic: topic, Canary: canary,
		Producers: 3, Consumers: 2, Rate: 300, ConsumerOpts: []kgo.Opt{kgo.RebalanceTimeout(3 * time.Second)}})
	s.waitAcks(500, 30*time.Second, "before the restart")
	for r := 0; r < rounds; r++ {
		start := time.Now()
		p.restart(t)
		t.Logf("round %d: kseal restarted in %v", r, time.Since(start).Round(100*time.Millisecond))
		s.waitAcks(500, 30*time.Second, fmt.Sprintf("round %d: after the kseal restart", r))
		t.Logf("round %d: clients producing again %v after the stop began", r, time.Since(start).Round(100*time.Millisecond))
	}
	s.finish(60 * time.Second)
	assertNoCanaryOnDisk(t, canary)
}

// ---- (c) KMS outage ----

// TestFaultKMSOutage: kseal's KMS (a real OpenBao Transit, reached
// through a relay the test can cut) becomes unreachable while producers
// stream, with DEK limits so small that kseal needs a new DEK within a
// second. Produce must stall with a retriable error (REQUEST_TIMED_OUT),
// no record reaches the broker in plaintext, and after the KMS returns
// every record arrives exactly once.
//
// The local KMS cannot be made unavailable: it holds its keys in memory
// and keeps them when its store becomes unreadable (docs/local-kms.md), so
// the outage needs a KMS behind a network.
func TestFaultKMSOutage(t *testing.T) {
	if os.Getenv("KSEAL_IT_NO_VAULT") == "1" {
		t.Skip("KSEAL_IT_NO_VAULT=1")
	}
	if direct() {
		t.Skip("needs kseal in front of the cluster (KSEAL_IT_DIRECT=1)")
	}
	bao := startBao(t)
	kek := uniq("KEK-outage")
	token := bao.leastPrivilegeToken(t, kek)
	relay := startRelay(t, strings.TrimPrefix(bao.addr, "http://"))
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	kmsYAML := fmt.Sprintf("      kms:\n        type: vault\n        config: {address: %q, tokenFile: %q, timeout: 1s}\n",
		"http://"+relay.addr(), tokenFile)
	// A DEK lives 2s and seals at most 2,000 records: within seconds of the
	// outage kseal must ask the KMS for a new one. (The cap stays above the
	// records of any one batch, which kgo keeps to 16 KiB here: kseal cannot
	// yet seal a batch with more records than a DEK's cap, see
	// TestFaultDEKCapBelowBatch.)
	dekYAML := "      dek: {maxEncryptionsPerDek: 2000, refreshAfterWrite: 1s, expireAfterWrite: 2s, kmsTimeout: 2s, kmsAttempts: 2}\n"
	p := startEncProxy(t, kmsYAML, "it-kmsout", kek, dekYAML)
	topic := newTopic(t, "kmsout", nil)
	canary := newCanary(t, topic)

	s := startStream(t, streamOpts{Bootstrap: p.Bootstrap, Topic: topic, Canary: canary,
		Producers: 2, Consumers: 1, Rate: 300,
		ProducerOpts: func(int) []kgo.Opt { return []kgo.Opt{kgo.ProducerBatchMaxBytes(16 << 10)} }})
	s.waitAcks(600, 30*time.Second, "before the outage")

	relay.setDown(true)
	t.Log("KMS unreachable")
	// The last DEK runs out within 2s; batches sealed before that may still
	// be acknowledged after it when the brokers are slow (a loaded CI
	// machine once took more than a second), so the window starts at 5s.
	time.Sleep(5 * time.Second)
	stalledAt := s.led.acks()
	time.Sleep(5 * time.Second)
	if n := s.led.acks() - stalledAt; n > 0 {
		t.Errorf("%d records were acknowledged 5-10s into the KMS outage: kseal kept encrypting without the KMS", n)
	}
	assertNoCanaryOnDisk(t, canary)
	if logs := p.k.Logs(); !strings.Contains(logs, "produce refused") || !strings.Contains(logs, "REQUEST_TIMED_OUT") {
		t.Errorf("kseal's log has no retriable produce refusal (REQUEST_TIMED_OUT) during the outage:\n%s", tailLines(logs, 20))
	}

	relay.setDown(false)
	t.Log("KMS back")
	s.waitAcks(600, 30*time.Second, "after the KMS came back")
	s.finish(60 * time.Second)
	assertNoCanaryOnDisk(t, canary)
}

// baoServer is an OpenBao started by scripts/openbao.sh for one test.
type baoServer struct {
	addr, root string
}

func startBao(t *testing.T) *baoServer {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	work, err := testenv.WorkDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(work, "bao-")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts", "openbao.sh")
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", "--dir", dir).CombinedOutput(); err != nil {
			t.Errorf("openbao.sh stop: %v\n%s", err, out)
		} else if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, "start", "--dir", dir, "--owner-pid", strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		t.Fatalf("openbao.sh start (KSEAL_IT_NO_VAULT=1 skips this test): %v\n%s", err, out)
	}
	env, err := os.ReadFile(filepath.Join(dir, "openbao.env"))
	if err != nil {
		t.Fatal(err)
	}
	s := &baoServer{}
	for _, line := range strings.Split(string(env), "\n") {
		if v, ok := strings.CutPrefix(line, "BAO_ADDR="); ok {
			s.addr = v
		}
		if v, ok := strings.CutPrefix(line, "BAO_TOKEN="); ok {
			s.root = v
		}
	}
	if !strings.HasPrefix(s.addr, "http://") || s.root == "" {
		t.Fatalf("openbao.env: address %q, root token set %v", s.addr, s.root != "")
	}
	return s
}

// call makes one API request with the root token and decodes the answer.
func (s *baoServer) call(t *testing.T, method, path string, body any, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, s.addr+"/v1/"+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", s.root)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("openbao %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("openbao %s %s: %s: %s", method, path, resp.Status, rb)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("openbao %s %s: %v", method, path, err)
		}
	}
}

// leastPrivilegeToken creates Transit key kek and a token that may only
// read it, generate data keys with it and decrypt with it.
func (s *baoServer) leastPrivilegeToken(t *testing.T, kek string) string {
	t.Helper()
	s.call(t, http.MethodPost, "transit/keys/"+kek, map[string]string{}, nil)
	policy := fmt.Sprintf(`path "transit/keys/%[1]s" { capabilities = ["read"] }
path "transit/datakey/plaintext/%[1]s" { capabilities = ["update"] }
path "transit/decrypt/%[1]s" { capabilities = ["update"] }
`, kek)
	s.call(t, http.MethodPut, "sys/policies/acl/"+kek, map[string]string{"policy": policy}, nil)
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	s.call(t, http.MethodPost, "auth/token/create",
		map[string]any{"policies": []string{kek}, "no_default_policy": true, "ttl": "1h"}, &tok)
	if tok.Auth.ClientToken == "" {
		t.Fatal("openbao returned no token")
	}
	return tok.Auth.ClientToken
}

// relay forwards TCP connections to a target; while down it drops every
// connection it has and closes new ones at once, as an unreachable
// service looks to a client.
type relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		r.setDown(true)
	})
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) serve(c net.Conn) {
	if !r.track(c) {
		c.Close()
		return
	}
	u, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil || !r.track(u) {
		c.Close()
		if u != nil {
			u.Close()
		}
		return
	}
	go func() { io.Copy(u, c); u.Close() }()
	io.Copy(c, u)
	c.Close()
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, u)
	r.mu.Unlock()
}

func (r *relay) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
	if down {
		for c := range r.conns {
			c.Close()
		}
		clear(r.conns)
	}
}

// ---- (d) slow consumers ----

// TestFaultSlowConsumer: consumers that do not keep up must not make kseal
// buffer: raw clients pipeline Fetch requests for megabytes each on every
// broker port and then stop reading, and a franz-go consumer reads through
// a 128 KiB/s connection, while producers keep writing and a normal
// consumer keeps reading. kseal's RSS may grow by at most
// slowConsumerBound over its level before (if it buffered every pipelined
// response it would grow by several hundred MiB), the other clients must
// not be held up, and afterwards the stalled clients get every response,
// intact and decrypted.
func TestFaultSlowConsumer(t *testing.T) {
	const (
		slowConsumerBound = 96 << 20
		pipelined         = 16      // Fetch requests per raw connection
		connsPerBroker    = 2       // raw connections per broker port
		partitionMax      = 1 << 20 // bytes per partition per response
	)
	kek := uniq("KEK-slow")
	p := startEncProxy(t, newLocalKMS(t, kek), "it-slow", kek, "")
	topic := newTopic(t, "slow", nil)
	canary := newCanary(t, topic)
	s := startStream(t, streamOpts{Bootstrap: p.Bootstrap, Topic: topic, Canary: canary,
		Producers: 2, Consumers: 1, Rate: 1000, MinLen: 1024, MaxLen: 1024,
		// 256 KiB batches: kgo's default (about 1 MB) of 1 KiB values grows
		// past the broker's 1 MiB limit once encrypted (see
		// TestFaultRecordTooLarge), which is not what this test is about.
		ProducerOpts: func(int) []kgo.Opt {
			return []kgo.Opt{kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(256 << 10)}
		}})
	// About 1.5 MiB per partition, so every response is at its size cap.
	s.waitAcks(9000, 60*time.Second, "filling the topic")

	pre := sampleRSS(p, 250*time.Millisecond)
	time.Sleep(2 * time.Second)
	baseline := maxRSS(pre.Stop())

	// The raw clients: every broker port, Fetch for the partitions that
	// broker leads, from offset 0, pipelined, none read.
	leaders := map[int32][]int32{}
	for part := int32(0); part < partitions; part++ {
		id := leaderOf(t, topic, part)
		leaders[id] = append(leaders[id], part)
	}
	var raws []*rawFetcher
	for id, parts := range leaders {
		for c := 0; c < connsPerBroker; c++ {
			rf := dialRawFetcher(t, p.Gateway.BrokerAddr(id), topic, parts, partitionMax)
			for i := 0; i < pipelined; i++ {
				rf.send(t)
			}
			raws = append(raws, rf)
		}
	}
	// The throttled franz-go consumer.
	slow := testenv.Kgo(t, []string{p.Bootstrap}, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(1<<20), kgo.FetchMaxPartitionBytes(256<<10),
		kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, host)
			if err != nil {
				return nil, err
			}
			return &throttledConn{Conn: c, rate: 128 << 10}, nil
		}))
	slowCtx, slowStop := context.WithCancel(context.Background())
	slowDone := make(chan int)
	go func() {
		n := 0
		for slowCtx.Err() == nil {
			n += len(slow.PollFetches(slowCtx).Records())
		}
		slowDone <- n
	}()

	during := sampleRSS(p, 250*time.Millisecond)
	acks0, got0 := s.led.acks(), s.led.consumed()
	time.Sleep(8 * time.Second)
	samples := during.Stop()
	// The stream runs at 2,000 records/s: others must not be held up.
	if n := s.led.acks() - acks0; n < 4000 {
		t.Errorf("only %d records acknowledged in the 8s the slow consumers stalled (2,000/s sent)", n)
	}
	if n := s.led.consumed() - got0; n < 4000 {
		t.Errorf("the normal consumer got only %d records in the 8s the slow consumers stalled (2,000/s sent)", n)
	}
	peak := maxRSS(samples)
	t.Logf("kseal RSS: %s before, peak %s with %d stalled connections x %d pipelined fetches (bound +%s)",
		mib(baseline), mib(peak), len(raws), pipelined, mib(slowConsumerBound))
	if race := p.raceBuild(); race != "" {
		t.Logf("memory bound not applied: %s", race)
	} else if peak-baseline > slowConsumerBound {
		t.Errorf("kseal RSS grew by %s with slow consumers, over the %s bound:\n%s",
			mib(peak-baseline), mib(slowConsumerBound), rssTrace(samples))
	}

	// Now read: every stalled response must arrive whole and decrypted.
	for _, rf := range raws {
		rf.drain(t, pipelined, canary)
	}
	slowStop()
	t.Logf("the throttled consumer read %d records meanwhile", <-slowDone)
	s.finish(60 * time.Second)
	assertNoCanaryOnDisk(t, canary)
}

// throttledConn reads at most rate bytes per second.
type throttledConn struct {
	net.Conn
	rate int
}

func (c *throttledConn) Read(b []byte) (int, error) {
	if len(b) > 4096 {
		b = b[:4096]
	}
	n, err := c.Conn.Read(b)
	time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
	return n, err
}

// rawFetcher is a hand-made Kafka client on one connection: it writes
// Fetch requests (encoded with kmsg: test fixtures) and reads the
// responses only when told to.
type rawFetcher struct {
	conn     net.Conn
	req      *kmsg.FetchRequest
	nextCorr int32
	fmt      *kmsg.RequestFormatter
}

func dialRawFetcher(t *testing.T, addr, topic string, parts []int32, partitionMax int32) *rawFetcher {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12 // flexible, topic names
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = int32(len(parts)) * partitionMax
	req.SessionEpoch = -1 // a full fetch, no session
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	for _, part := range parts {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = part
		rp.FetchOffset = 0
		rp.CurrentLeaderEpoch = -1
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = partitionMax
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return &rawFetcher{conn: c, req: req, fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID("kseal-it-slow"))}
}

func (rf *rawFetcher) send(t *testing.T) {
	t.Helper()
	b := rf.fmt.AppendRequest(nil, rf.req, rf.nextCorr)
	rf.nextCorr++
	rf.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := rf.conn.Write(b); err != nil {
		t.Fatalf("raw fetch: write: %v", err)
	}
}

// drain reads n responses and checks each: right correlation id, no error,
// records that contain the canary in plaintext (kseal decrypted them).
func (rf *rawFetcher) drain(t *testing.T, n int, canary string) {
	t.Helper()
	r := bufio.NewReaderSize(rf.conn, 64<<10)
	rf.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for i := 0; i < n; i++ {
		var size [4]byte
		if _, err := io.ReadFull(r, size[:]); err != nil {
			t.Fatalf("raw fetch: response %d of %d: %v", i, n, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("raw fetch: response %d of %d: %v", i, n, err)
		}
		// Response header v1: correlation id, then an empty tag buffer.
		if len(body) < 5 || int32(binary.BigEndian.Uint32(body)) != int32(i) || body[4] != 0 {
			t.Fatalf("raw fetch: response %d: bad header % x", i, body[:min(len(body), 8)])
		}
		resp := rf.req.ResponseKind().(*kmsg.FetchResponse)
		resp.Version = rf.req.Version
		if err := resp.ReadFrom(body[5:]); err != nil {
			t.Fatalf("raw fetch: response %d: %v", i, err)
		}
		if resp.ErrorCode != 0 {
			t.Fatalf("raw fetch: response %d: %v", i, kerr.ErrorForCode(resp.ErrorCode))
		}
		got := 0
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 {
					t.Errorf("raw fetch: response %d: %s[%d]: %v", i, rt.Topic, rp.Partition, kerr.ErrorForCode(rp.ErrorCode))
				}
				if len(rp.RecordBatches) > 0 && !bytes.Contains(rp.RecordBatches, []byte(canary)) {
					t.Errorf("raw fetch: response %d: %s[%d]: %d bytes of records without the plaintext canary", i, rt.Topic, rp.Partition, len(rp.RecordBatches))
				}
				got += len(rp.RecordBatches)
			}
		}
		if got == 0 {
			t.Errorf("raw fetch: response %d has no records", i)
		}
	}
}

// TestFaultDEKCapBelowBatch: one batch with more records than a DEK may
// seal (maxEncryptionsPerDek) must still be accepted: kseal has to move to
// a fresh DEK within the batch, as the DEK manager's contract describes
// (Current again after ErrExhausted). A filter that refused the whole
// request with a retriable error instead would have the batch retried
// forever.
func TestFaultDEKCapBelowBatch(t *testing.T) {
	const dekCap, n = 100, 300
	kek := uniq("KEK-cap")
	p := startEncProxy(t, newLocalKMS(t, kek), "it-cap", kek, fmt.Sprintf("      dek: {maxEncryptionsPerDek: %d}\n", dekCap))
	topic := newTopic(t, "cap", nil)
	canary := newCanary(t, topic)
	// Linger so that all n records travel in one batch.
	cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(time.Second))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: 0, Value: fmt.Appendf(nil, "%s-%d", canary, i)}
	}
	// Not ProduceSync: kgo keeps retrying a batch refused with a retriable
	// error past its context and delivery timeout.
	results := make(chan error, n)
	for _, r := range recs {
		cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) { results <- err })
	}
	timeout := time.After(30 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case err := <-results:
			if err != nil {
				t.Fatalf("produce one batch of %d records with maxEncryptionsPerDek %d: %v", n, dekCap, err)
			}
		case <-timeout:
			t.Fatalf("one batch of %d records with maxEncryptionsPerDek %d: %d acknowledged after 30s", n, dekCap, i)
		}
	}
	cons := testenv.Kgo(t, []string{p.Bootstrap}, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := testenv.KgoConsume(t, cons, n, 30*time.Second)
	for i, r := range got {
		if want := fmt.Sprintf("%s-%d", canary, i); r.Value != want {
			t.Fatalf("record %d: %q, want %q", i, r.Value, want)
		}
	}
	if len(got) != n {
		t.Errorf("consumed %d records, want %d", len(got), n)
	}
	assertNoCanaryOnDisk(t, canary)
}

// TestFaultPipelinedRefusals: Produce requests that kseal refuses itself
// (here: a topic no policy rule covers, unresolvedKeyPolicy REJECT) are
// answered from a buffer kseal builds; when the client pipelines them
// behind a Fetch the broker holds (long poll), each refusal must still
// reach the client whole, in order, with its own correlation id. A raw
// client on one connection: encrypted produces first (so the connection's
// buffers have grown), then one long-poll Fetch and several refused
// Produce requests without waiting.
//
// The bug this guards against: a refusal built in the connection's
// request-side scratch buffer and queued was overwritten when the next
// request reused that buffer, so the client received a later refusal
// (another correlation id) in its place.
func TestFaultPipelinedRefusals(t *testing.T) {
	kek := uniq("KEK-pipe")
	p := startEncProxyPolicy(t, newLocalKMS(t, kek), "", fmt.Sprintf(
		"      policy:\n        unresolvedKeyPolicy: REJECT\n        rules:\n          - topicPrefix: it-pipe-enc\n            kek: %s\n", kek))
	enc := newTopic(t, "pipe-enc", nil)
	rej := newTopic(t, "pipe-rej", nil)
	canary := newCanary(t, enc)
	leader := leaderOf(t, enc, 0)
	c, err := net.DialTimeout("tcp", p.Gateway.BrokerAddr(leader), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kseal-it-pipe"))
	r := bufio.NewReader(c)
	corr := int32(0)
	send := func(req kmsg.Request) int32 {
		corr++
		if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
			t.Fatalf("write request %d: %v", corr, err)
		}
		return corr
	}
	produce := func(topic string, value []byte) *kmsg.ProduceRequest {
		req := kmsg.NewPtrProduceRequest()
		req.Version = 9
		req.Acks = -1
		req.TimeoutMillis = 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = 0
		rp.Records = oneRecordBatch(value)
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	// Encrypted produces, one at a time: each must succeed.
	for i := 0; i < 4; i++ {
		req := produce(enc, append([]byte(canary+"-"), bytes.Repeat([]byte{'v'}, 2000+100*i)...))
		id := send(req)
		resp := readRawResponse(t, r, id, req).(*kmsg.ProduceResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("encrypted produce %d: %v", i, kerr.ErrorForCode(code))
		}
	}
	// The long poll: nothing new at the end of enc[0], so the broker waits
	// MaxWaitMillis before it answers.
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	fetch.ReplicaID = -1
	fetch.MaxWaitMillis = 1500
	fetch.MinBytes = 1 << 20
	fetch.MaxBytes = 1 << 20
	fetch.SessionEpoch = -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = enc
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition = 0
	fp.FetchOffset = endOffset(t, enc, 0)
	fp.CurrentLeaderEpoch = -1
	fp.LogStartOffset = -1
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	type pending struct {
		id  int32
		req kmsg.Request
	}
	queue := []pending{{send(fetch), fetch}}
	const refused = 4
	for i := 0; i < refused; i++ {
		req := produce(rej, []byte(fmt.Sprintf("refused %d", i)))
		queue = append(queue, pending{send(req), req})
	}
	for i, q := range queue {
		resp := readRawResponse(t, r, q.id, q.req)
		if pr, ok := resp.(*kmsg.ProduceResponse); ok {
			if len(pr.Topics) != 1 || pr.Topics[0].Topic != rej || len(pr.Topics[0].Partitions) != 1 {
				t.Fatalf("response %d: not the refusal of one partition of %s: %+v", i, rej, pr.Topics)
			}
			if code := pr.Topics[0].Partitions[0].ErrorCode; code != kerr.PolicyViolation.Code {
				t.Errorf("refused produce %d: %v, want POLICY_VIOLATION", i, kerr.ErrorForCode(code))
			}
		}
	}
	if n := endOffset(t, rej, 0); n != 0 {
		t.Errorf("%d records reached the REJECT topic", n)
	}
}

// oneRecordBatch encodes a RecordBatch v2 holding one record with value v
// (no key, no headers, no producer id).
func oneRecordBatch(v []byte) []byte {
	rec := binary.AppendVarint(nil, -1) // key: null
	rec = binary.AppendVarint(rec, int64(len(v)))
	rec = append(rec, v...)
	rec = binary.AppendVarint(rec, 0) // headers
	body := []byte{0}                 // attributes
	body = binary.AppendVarint(body, 0)
	body = binary.AppendVarint(body, 0) // timestamp and offset deltas
	body = append(body, rec...)
	records := binary.AppendVarint(nil, int64(len(body)))
	records = append(records, body...)

	now := time.Now().UnixMilli()
	b := make([]byte, 0, 61+len(records))
	b = binary.BigEndian.AppendUint64(b, 0)                          // base offset
	b = binary.BigEndian.AppendUint32(b, uint32(61-12+len(records))) // batch length
	b = binary.BigEndian.AppendUint32(b, 0)                          // partition leader epoch
	b = append(b, 2)                                                 // magic
	b = binary.BigEndian.AppendUint32(b, 0)                          // crc, below
	crcFrom := len(b)
	b = binary.BigEndian.AppendUint16(b, 0) // attributes
	b = binary.BigEndian.AppendUint32(b, 0) // last offset delta
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, uint64(now))
	b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // producer id -1
	b = binary.BigEndian.AppendUint16(b, 0xffff)     // producer epoch -1
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // base sequence -1
	b = binary.BigEndian.AppendUint32(b, 1)          // records
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[crcFrom-4:], crc32.Checksum(b[crcFrom:], castagnoli))
	return b
}

// readRawResponse reads one response frame for req (sent with correlation
// id want, flexible header) and decodes it with kmsg (test code: the bytes
// come from kseal, the system under test).
func readRawResponse(t *testing.T, r *bufio.Reader, want int32, req kmsg.Request) kmsg.Response {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		t.Fatalf("response to %d: %v", want, err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("response to %d: %v", want, err)
	}
	if len(body) < 5 {
		t.Fatalf("response to %d: %d bytes", want, len(body))
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != want || body[4] != 0 {
		t.Fatalf("response to request %d (%s) carries correlation id %d (tag byte %d): responses are out of order or corrupted",
			want, kmsg.NameForKey(req.Key()), got, body[4])
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(body[5:]); err != nil {
		t.Fatalf("response to %d (%s): %v", want, kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// ---- (e) ciphertext over the topic's size limit ----

// TestFaultRecordTooLarge: a value that fits the topic's max.message.bytes
// in plaintext but not once encrypted is refused with MESSAGE_TOO_LARGE
// (or RECORD_LIST_TOO_LARGE), nothing of it is stored, and the same
// connection keeps working.
func TestFaultRecordTooLarge(t *testing.T) {
	const limit = 4096
	kek := uniq("KEK-large")
	p := startEncProxy(t, newLocalKMS(t, kek), "it-large", kek, "")
	lim := strconv.Itoa(limit)
	small := newTopic(t, "large-limited", map[string]*string{"max.message.bytes": &lim})
	roomy := newTopic(t, "large-roomy", nil)
	canary := newCanary(t, small)
	registerCanary(roomy, canary)
	// The largest value whose plaintext batch still fits, less a margin.
	value := func(tag string) []byte {
		v := []byte(canary + "-" + tag + "|")
		return append(v, bytes.Repeat([]byte{'x'}, limit-61-24-len(v))...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	manual := kgo.RecordPartitioner(kgo.ManualPartitioner())
	noZip := kgo.ProducerBatchCompression(kgo.NoCompression())

	// Controls: the plaintext fits (written directly to the brokers,
	// without the canary), the ciphertext does not (through kseal, to a
	// topic without the limit).
	straight := testenv.Kgo(t, cluster.Bootstrap, manual, noZip)
	plainVal := bytes.Repeat([]byte{'y'}, len(value("a")))
	if err := straight.ProduceSync(ctx, &kgo.Record{Topic: small, Partition: 0, Value: plainVal}).FirstErr(); err != nil {
		t.Fatalf("the plaintext value does not fit max.message.bytes=%d by itself: %v", limit, err)
	}
	cl := testenv.Kgo(t, []string{p.Bootstrap}, manual, noZip)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: roomy, Partition: 0, Value: value("roomy")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	bs, err := cluster.TopicBatches(roomy)
	if err != nil || len(bs[0]) != 1 {
		t.Fatalf("roomy topic batches: %v %v", bs, err)
	}
	if size := 61 + len(bs[0][0].Records); size <= limit {
		t.Fatalf("the encrypted batch is %d bytes: under the %d limit, the test proves nothing", size, limit)
	} else {
		t.Logf("plaintext value %d bytes; its encrypted batch is %d bytes, over max.message.bytes=%d", len(plainVal), size, limit)
	}

	before := endOffset(t, small, 0)
	err = cl.ProduceSync(ctx, &kgo.Record{Topic: small, Partition: 0, Value: value("big")}).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) && !errors.Is(err, kerr.RecordListTooLarge) {
		t.Errorf("produce of a value that is too large once encrypted: got %v, want MESSAGE_TOO_LARGE or RECORD_LIST_TOO_LARGE", err)
	}
	if after := endOffset(t, small, 0); after != before {
		t.Errorf("end offset moved from %d to %d: something of the refused record was stored", before, after)
	}
	// The same client and connection keep working.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: small, Partition: 0, Value: []byte(canary + "-small")}).FirstErr(); err != nil {
		t.Errorf("a small record after the refused one: %v", err)
	}
	cons := testenv.Kgo(t, []string{p.Bootstrap}, kgo.ConsumeTopics(small), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := testenv.KgoConsume(t, cons, 2, 30*time.Second)
	if len(got) != 2 || got[0].Value != string(plainVal) || got[1].Value != canary+"-small" {
		t.Errorf("consumed %d records %.100v, want the direct plaintext one and the small one", len(got), got)
	}

	// The common case: many small records, each far under the limit, in a
	// batch the client filled up to the limit. Encryption adds some 150
	// bytes to every record, so the whole batch is refused: a client must
	// keep its batch size below the topic limit by that overhead.
	batcher := testenv.Kgo(t, []string{p.Bootstrap}, manual, noZip,
		kgo.ProducerBatchMaxBytes(limit-100), kgo.ProducerLinger(time.Second))
	var batch []*kgo.Record
	for size := 61; size+40+len(canary) < limit-100; size += 40 + len(canary) {
		batch = append(batch, &kgo.Record{Topic: small, Partition: 0, Value: fmt.Appendf(nil, "%s-b%03d", canary, len(batch))})
	}
	before = endOffset(t, small, 0)
	res := batcher.ProduceSync(ctx, batch...)
	for _, r := range res {
		if !errors.Is(r.Err, kerr.MessageTooLarge) && !errors.Is(r.Err, kerr.RecordListTooLarge) {
			t.Errorf("record %q of a full batch: got %v, want MESSAGE_TOO_LARGE or RECORD_LIST_TOO_LARGE", r.Record.Value, r.Err)
			break
		}
	}
	if after := endOffset(t, small, 0); after != before {
		t.Errorf("end offset moved from %d to %d: part of the refused batch was stored", before, after)
	}
	t.Logf("a batch of %d records of %d bytes fitting max.message.bytes in plaintext was refused once encrypted", len(batch), len(batch[0].Value))
	assertNoCanaryOnDisk(t, canary)
}

// endOffset is topic[partition]'s high watermark, read from the brokers.
func endOffset(t *testing.T, topic string, partition int32) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := directAdmin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup(topic, partition)
	if !ok || o.Err != nil {
		t.Fatalf("end offset of %s[%d]: %v", topic, partition, o.Err)
	}
	return o.Offset
}

package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Cluster is a running Apache Kafka cluster started by scripts/kafka.sh.
type Cluster struct {
	Dir       string           // holds cluster.env, node-N.log and the node data
	Bootstrap []string         // host:port of every broker
	Brokers   map[int32]string // node id -> host:port
	LogDirs   []string         // one log.dirs folder per node
	Libs      string           // folder of the Kafka jars (for the Java clients)
	Home      string           // .cache/kafka-<ver>, holds config/tools-log4j2.properties

	stopOnce sync.Once
	stopErr  error
}

// BootstrapString is the comma-separated bootstrap list clients take.
func (c *Cluster) BootstrapString() string { return strings.Join(c.Bootstrap, ",") }

// IsBrokerPort reports whether port is one of the real brokers' ports: no
// client of the proxy must ever be told one of these.
func (c *Cluster) IsBrokerPort(port int) bool {
	for _, a := range c.Brokers {
		if strings.HasSuffix(a, ":"+strconv.Itoa(port)) {
			return true
		}
	}
	return false
}

// live clusters, stopped by the signal handler below.
var (
	liveMu   sync.Mutex
	live     = map[*Cluster]struct{}{}
	sigSetup sync.Once
)

// StartCluster fetches Kafka if needed and starts a cluster of brokers
// combined broker+controller nodes (1 or 3) under test/.work. The caller
// must Stop it; if the test process dies first, the script's watcher stops
// it, and SIGINT/SIGTERM to the test process stop it too.
func StartCluster(ctx context.Context, brokers int) (*Cluster, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	work, err := WorkDir()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(root, "scripts", "kafka.sh")
	if out, err := exec.CommandContext(ctx, script, "fetch").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testenv: kafka.sh fetch: %w\n%s", err, out)
	}
	dir, err := os.MkdirTemp(work, "cluster-")
	if err != nil {
		return nil, fmt.Errorf("testenv: cluster folder: %w", err)
	}
	installSignalHandler()
	cmd := exec.CommandContext(ctx, script, "start",
		"--brokers", strconv.Itoa(brokers), "--dir", dir, "--owner-pid", strconv.Itoa(os.Getpid()))
	out, err := cmd.CombinedOutput()
	if err != nil {
		// start stops what it started when it fails; stop again in case
		// the context killed the script midway.
		_ = exec.Command(script, "stop", "--dir", dir).Run()
		return nil, fmt.Errorf("testenv: kafka.sh start --brokers %d: %w\n%s", brokers, err, out)
	}
	c, err := readClusterEnv(dir)
	if err != nil {
		_ = exec.Command(script, "stop", "--dir", dir).Run()
		return nil, err
	}
	liveMu.Lock()
	live[c] = struct{}{}
	liveMu.Unlock()
	return c, nil
}

func readClusterEnv(dir string) (*Cluster, error) {
	f, err := os.Open(filepath.Join(dir, "cluster.env"))
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("testenv: read cluster.env: %w", err)
	}
	c := &Cluster{
		Dir:       dir,
		Bootstrap: strings.Split(env["BOOTSTRAP"], ","),
		Brokers:   map[int32]string{},
		LogDirs:   strings.Split(env["LOG_DIRS"], ","),
		Libs:      env["KAFKA_LIBS"],
		Home:      env["KAFKA_HOME"],
	}
	for _, b := range strings.Split(env["BROKERS"], ",") {
		id, addr, ok := strings.Cut(b, "=")
		n, err := strconv.Atoi(id)
		if !ok || err != nil {
			return nil, fmt.Errorf("testenv: cluster.env: bad BROKERS entry %q", b)
		}
		c.Brokers[int32(n)] = addr
	}
	if len(c.Brokers) == 0 || c.Libs == "" {
		return nil, fmt.Errorf("testenv: cluster.env in %s is incomplete", dir)
	}
	return c, nil
}

// Stop stops every node (TERM, then KILL) and waits for them. Calling it
// again returns the first result. The folder stays for post-mortems; Remove
// deletes it.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			c.stopErr = err
			return
		}
		out, err := exec.Command(filepath.Join(root, "scripts", "kafka.sh"), "stop", "--dir", c.Dir).CombinedOutput()
		if err != nil {
			c.stopErr = fmt.Errorf("testenv: kafka.sh stop: %w\n%s", err, out)
		}
		liveMu.Lock()
		delete(live, c)
		liveMu.Unlock()
	})
	return c.stopErr
}

// Remove deletes the cluster's folder (data and logs); call it after Stop.
func (c *Cluster) Remove() error { return os.RemoveAll(c.Dir) }

// installSignalHandler makes an interrupted test run stop its clusters
// before exiting instead of leaving it to the watcher.
func installSignalHandler() {
	sigSetup.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			s := <-ch
			liveMu.Lock()
			cs := make([]*Cluster, 0, len(live))
			for c := range live {
				cs = append(cs, c)
			}
			liveMu.Unlock()
			for _, c := range cs {
				_ = c.Stop()
			}
			fmt.Fprintf(os.Stderr, "testenv: %v: stopped %d Kafka cluster(s)\n", s, len(cs))
			os.Exit(130)
		}()
	})
}

// GrepSegments returns the on-disk log segment files (*.log under every
// node's log.dirs, all topics and replicas) whose bytes contain needle:
// what an administrator with disk access sees. Compressed record batches
// are also searched after decompression, since anyone with the files can
// decompress them.
func (c *Cluster) GrepSegments(needle []byte) ([]string, error) {
	if len(needle) == 0 {
		return nil, fmt.Errorf("testenv: GrepSegments: empty needle")
	}
	var hits []string
	for _, d := range c.LogDirs {
		// The log cleaner and retention replace and delete segments while
		// we read: a file that vanished means the directory is listed and
		// read again (its data now lives in the files that replaced it).
		rescans := 0
	rescan:
		dirHits := len(hits)
		segs, err := segmentFiles(d)
		if err != nil {
			return nil, err
		}
		for _, p := range segs {
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) && rescans < 20 {
				rescans++
				hits = hits[:dirHits]
				goto rescan
			}
			if err != nil {
				return nil, fmt.Errorf("testenv: read segment: %w", err)
			}
			found := bytes.Contains(b, needle)
			if !found {
				batches, _ := ParseSegment(b)
				for _, sb := range batches {
					if sb.Codec == CodecNone {
						continue
					}
					plain, err := sb.Decompressed()
					if err != nil {
						return nil, fmt.Errorf("testenv: %s offset %d: %w", p, sb.BaseOffset, err)
					}
					if bytes.Contains(plain, needle) {
						found = true
						break
					}
				}
			}
			if found {
				hits = append(hits, p)
			}
		}
	}
	return hits, nil
}

// segmentFiles lists the segment files under one log dir.
func segmentFiles(logDir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(logDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			// A partition folder deleted while we walk is not an error.
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".log") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("testenv: walk %s: %w", logDir, err)
	}
	sort.Strings(out)
	return out, nil
}

// TopicBatches reads the record batches of every partition of topic from
// disk, from the replica with the most data (followers may lag). The
// result is keyed by partition.
func (c *Cluster) TopicBatches(topic string) (map[int32][]SegmentBatch, error) {
	best := map[int32][]SegmentBatch{}
	bestSize := map[int32]int{}
	for _, d := range c.LogDirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			i := strings.LastIndexByte(name, '-')
			if !e.IsDir() || i < 0 || name[:i] != topic {
				continue
			}
			p, err := strconv.Atoi(name[i+1:])
			if err != nil {
				continue
			}
			segs, err := segmentFiles(filepath.Join(d, name))
			if err != nil {
				return nil, err
			}
			var all []SegmentBatch
			size := 0
			for _, s := range segs {
				b, err := os.ReadFile(s)
				if err != nil {
					return nil, fmt.Errorf("testenv: read segment: %w", err)
				}
				bs, _ := ParseSegment(b) // a torn tail batch is normal while the broker writes
				all = append(all, bs...)
				size += len(b)
			}
			if size >= bestSize[int32(p)] {
				best[int32(p)] = all
				bestSize[int32(p)] = size
			}
		}
	}
	return best, nil
}

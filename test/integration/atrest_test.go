//go:build integration

package integration

// The at-rest check. Every value a test sends to an encrypted topic carries
// a plaintext canary that starts with canaryPrefix; kseal must encrypt it,
// so no log segment on any broker may ever contain one. Tests get canaries
// from newCanary (or register their own with registerCanary); TestZZAtRest,
// which sorts last, and atRestSweep (for TestMain, after every test) scan
// every segment of every node for the prefix and for each registered
// canary, raw and inside compressed batches.
//
// The contract for every test in this package: put canaryPrefix only in
// record VALUES bound for topics kseal encrypts. Keys, headers and
// passthrough topics are plaintext by design and must not carry it.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/kseal/kseal/internal/testenv"
)

// canaryPrefix starts every canary: finding it on disk fails the run.
const canaryPrefix = "KSEAL-CANARY-PLAINTEXT"

var canaries struct {
	sync.Mutex
	byTopic map[string][]string
}

// registerCanary records that canary is sent, in record values, to the
// encrypted topic topic. Canaries without canaryPrefix are searched for
// individually.
func registerCanary(topic, canary string) {
	canaries.Lock()
	defer canaries.Unlock()
	if canaries.byTopic == nil {
		canaries.byTopic = map[string][]string{}
	}
	canaries.byTopic[topic] = append(canaries.byTopic[topic], canary)
}

// newCanary returns a canary unique to this test and registers it for
// topic. It holds only [A-Za-z0-9_-], so it can be embedded in any value.
func newCanary(t *testing.T, topic string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
	c := uniq(canaryPrefix + "-" + name)
	registerCanary(topic, c)
	return c
}

// registeredCanaries returns the canaries to search for besides the
// prefix (those without it) and the set of encrypted topics.
func registeredCanaries() (extra []string, topics map[string]bool) {
	canaries.Lock()
	defer canaries.Unlock()
	topics = map[string]bool{}
	for topic, cs := range canaries.byTopic {
		topics[topic] = true
		for _, c := range cs {
			if !strings.HasPrefix(c, canaryPrefix) {
				extra = append(extra, c)
			}
		}
	}
	return extra, topics
}

// atRestHit is one canary found in one segment file.
type atRestHit struct {
	Segment    string
	Topic      string // from the partition folder's name
	Canary     string
	Compressed bool // found only after decompressing a batch
}

func (h atRestHit) String() string {
	where := "raw bytes"
	if h.Compressed {
		where = "a decompressed batch"
	}
	return fmt.Sprintf("%q in %s of %s (topic %s)", h.Canary, where, h.Segment, h.Topic)
}

// atRestStats says how much a scan read.
type atRestStats struct {
	Segments int
	Bytes    int64
}

// scanAtRest reads every segment file under logDirs once and returns every
// occurrence of canaryPrefix and of the needles, both in the raw bytes and
// inside compressed record batches.
func scanAtRest(logDirs []string, needles []string) ([]atRestHit, atRestStats, error) {
	var hits []atRestHit
	var st atRestStats
	needles = append([]string{canaryPrefix}, needles...)
	for _, dir := range logDirs {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, os.ErrNotExist) { // a partition deleted meanwhile
					return nil
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".log") {
				return nil
			}
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			st.Segments++
			st.Bytes += int64(len(b))
			topic := topicOfSegment(p)
			found := map[string]bool{}
			search := func(data []byte, compressed bool) {
				for _, n := range needles {
					for rest := data; ; {
						i := bytes.Index(rest, []byte(n))
						if i < 0 {
							break
						}
						c := canaryAt(rest[i:])
						if !found[c] {
							found[c] = true
							hits = append(hits, atRestHit{Segment: p, Topic: topic, Canary: c, Compressed: compressed})
						}
						rest = rest[i+len(n):]
					}
				}
			}
			search(b, false)
			batches, _ := testenv.ParseSegment(b) // a torn tail batch is normal while a broker writes
			for _, sb := range batches {
				if sb.Codec == testenv.CodecNone {
					continue
				}
				plain, err := sb.Decompressed()
				if err != nil {
					return fmt.Errorf("%s: batch at offset %d: %w", p, sb.BaseOffset, err)
				}
				search(plain, true)
			}
			return nil
		})
		if err != nil {
			return hits, st, fmt.Errorf("at-rest scan of %s: %w", dir, err)
		}
	}
	return hits, st, nil
}

// canaryAt returns the canary token at the start of b: up to the first
// byte outside [A-Za-z0-9_-], at most 200 bytes.
func canaryAt(b []byte) string {
	n := 0
	for n < len(b) && n < 200 {
		c := b[n]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			n++
			continue
		}
		break
	}
	if n == 0 {
		n = min(len(b), 32)
	}
	return string(b[:n])
}

// topicOfSegment names the topic of a segment path
// .../<topic>-<partition>[.<id>-delete]/<offset>.log.
func topicOfSegment(p string) string {
	d := filepath.Base(filepath.Dir(p))
	if strings.HasSuffix(d, "-delete") {
		if i := strings.LastIndexByte(d, '.'); i > 0 {
			d = d[:i]
		}
	}
	if i := strings.LastIndexByte(d, '-'); i > 0 {
		return d[:i]
	}
	return d
}

// atRestSweep scans cluster c for every canary; TestZZAtRest runs it, and
// TestMain may run it after m.Run so that parallel tests are covered too.
func atRestSweep(c *testenv.Cluster) (atRestStats, error) {
	extra, topics := registeredCanaries()
	hits, st, err := scanAtRest(c.LogDirs, extra)
	if err != nil || len(hits) == 0 {
		return st, err
	}
	lines := make([]string, 0, len(hits))
	for _, h := range hits {
		tag := ""
		if topics[h.Topic] {
			tag = " [registered as encrypted]"
		}
		lines = append(lines, h.String()+tag)
	}
	sort.Strings(lines)
	return st, fmt.Errorf("at-rest check: plaintext canaries on disk (%d segments, %s scanned):\n  %s",
		st.Segments, mib(st.Bytes), strings.Join(lines, "\n  "))
}

// assertNoCanaryOnDisk fails t if canary is in any segment of the cluster.
func assertNoCanaryOnDisk(t *testing.T, canary string) {
	t.Helper()
	hits, err := cluster.GrepSegments([]byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) > 0 {
		t.Errorf("plaintext canary %q found on disk in:\n  %s", canary, strings.Join(hits, "\n  "))
	}
}

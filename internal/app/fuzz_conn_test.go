package app

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/frame"
)

var writeSeeds = flag.Bool("write-connection-seeds", false, "write FuzzConnection's seed corpus to testdata/fuzz")

// TestWriteConnectionSeeds writes connectionSeeds as FuzzConnection's seed
// corpus (go test -run TestWriteConnectionSeeds -write-connection-seeds).
func TestWriteConnectionSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("-write-connection-seeds not set")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzConnection")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := connectionSeeds()
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seeds[name])
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// connectionSeeds are client byte streams for FuzzConnection: real frames
// (a Produce to an encrypted topic, fetches of its records) and hostile
// ones (a topic name that is not UTF-8, a truncated frame, huge tag
// counts, a frame size past the limit).
func connectionSeeds() map[string][]byte {
	produce := func(topic string, v int16) []byte {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 1000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch("seed-value")}}}}
		return appendTestRequest(nil, req, v, 1)
	}
	fetch := func(v int16) []byte {
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes, req.MaxWaitMillis = 1<<20, 10
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "orders", cannedOrdersID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return appendTestRequest(nil, req, v, 2)
	}
	shareFetch := func() []byte {
		req := kmsg.NewPtrShareFetchRequest()
		req.GroupID, req.MemberID = kmsg.StringPtr("g"), kmsg.StringPtr("m")
		rt := kmsg.NewShareFetchRequestTopic()
		rt.TopicID = cannedOrdersID
		rt.Partitions = append(rt.Partitions, kmsg.NewShareFetchRequestTopicPartition())
		req.Topics = append(req.Topics, rt)
		return appendTestRequest(nil, req, 1, 3)
	}
	metadata := appendTestRequest(nil, kmsg.NewPtrMetadataRequest(), 12, 4)
	apiVersions := appendTestRequest(nil, kmsg.NewPtrApiVersionsRequest(), 3, 5)
	valid := produce("orders", 9)
	frameOf := func(msg []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)
	}
	// Produce v9 (flexible), header with client id "fz", then a transactional
	// id, acks, timeout and a topic count of 2^32-2 with nothing behind it.
	hugeTopics := frameOf([]byte{0, 0, 0, 9, 0, 0, 0, 1, 0, 2, 'f', 'z', 0, 0, 0xff, 0xff, 0, 0, 3, 0xe8, 0xff, 0xff, 0xff, 0xff, 0x0f})
	return map[string][]byte{
		"produce-encrypted":          valid,
		"produce-v3":                 produce("orders", 3),
		"produce-passthrough":        produce("plain", 9),
		"produce-topic-0xff":         produce("\xff", 9),
		"produce-then-fetch":         append(append(append([]byte(nil), valid...), fetch(12)...), shareFetch()...),
		"fetch-v16-by-id":            fetch(16),
		"share-fetch":                shareFetch(),
		"metadata-apiversions":       append(append([]byte(nil), apiVersions...), metadata...),
		"truncated-frame":            valid[:len(valid)/2],
		"oversized-frame":            binary.BigEndian.AppendUint32(nil, 200<<20),
		"header-tag-count-2pow32":    frameOf([]byte{0, 18, 0, 3, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}),
		"produce-topic-count-2pow32": hugeTopics,
	}
}

// FuzzConnection feeds arbitrary client bytes into a real kseal connection:
// the whole app built from a config, its filter chain with the real encrypt
// filter over a DEK manager and the local KMS, in front of a broker that
// answers every request. Each input must be handled without a panic (not
// even one recovered), within a time bound (the connection closes soon
// after the client stops sending), and leave kseal serving new
// connections.
func FuzzConnection(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzConnection (see
	// TestWriteConnectionSeeds).
	// PASSTHROUGH_UNENCRYPTED: topics without a KEK take the plaintext
	// path, so client-chosen topic names reach it too.
	e := startCanned(f, "{maxFrameBytes: 1048576}", "PASSTHROUGH_UNENCRYPTED", nil)
	e.produceEncrypted(f, "fuzz-encrypted-0", "fuzz-encrypted-1")
	// A connection open all along: kseal keeps serving it whatever the
	// inputs do to theirs.
	live, err := net.DialTimeout("tcp", e.bootstrap, 2*time.Second)
	if err != nil {
		f.Fatal(err)
	}
	defer live.Close()
	liveness := appendTestRequest(nil, kmsg.NewPtrApiVersionsRequest(), 3, 9)
	pairs := newUnixPairs(f)
	inputs := 0
	f.Fuzz(func(t *testing.T, in []byte) {
		// A Unix socket connection, served by kseal as if
		// accepted on the bootstrap port: no TCP port per input (thousands
		// of inputs a second would fill the machine's ephemeral ports with
		// TIME_WAIT), and ServeConn returning says kseal is done with it.
		panicsBefore := panicsRecovered(t, e)
		c, served := pairs.pair(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.app.Server.ServeConn("canned", served)
		}()
		defer c.Close()
		// The bound on one input's handling: kseal closes the connection
		// once the client has stopped sending and every answer is out.
		const bound = 5 * time.Second
		c.SetDeadline(time.Now().Add(bound))
		c.Write(in) // kseal may close before reading everything
		c.CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open %s after the client's last byte", bound)
			}
		}
		select {
		case <-done:
		case <-time.After(bound):
			t.Fatalf("kseal still serving the connection %s after the client's last byte", bound)
		}
		if n := panicsRecovered(t, e) - panicsBefore; n > 0 {
			t.Fatalf("%v panics recovered; logs:\n%s", n, panicLines(e.logs.String()))
		}
		// kseal still serves.
		live.SetDeadline(time.Now().Add(bound))
		if _, err := live.Write(liveness); err != nil {
			t.Fatalf("connection open before the input: %v", err)
		}
		if _, err := frame.ReadResponse(live, nil, 1<<20); err != nil {
			t.Fatalf("connection open before the input: %v", err)
		}
		inputs++
		if inputs%200 == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > 1<<30 {
				t.Fatalf("heap in use %d MiB", ms.HeapInuse>>20)
			}
		}
	})
}

// panicsRecovered is the sum of kseal_panics_total.
func panicsRecovered(tb testing.TB, e *cannedEnv) float64 {
	tb.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "kseal_panics_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func panicLines(logs string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "panic") {
			out = append(out, strings.ReplaceAll(l, `\n`, "\n"))
		}
	}
	return strings.Join(out, "\n")
}

// unixPairs makes connected pairs of Unix stream sockets.
type unixPairs struct{ ln *net.UnixListener }

func newUnixPairs(tb testing.TB) *unixPairs {
	tb.Helper()
	dir, err := os.MkdirTemp("", "kseal") // short: socket paths are limited
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return &unixPairs{ln: ln}
}

func (u *unixPairs) pair(tb testing.TB) (client, server *net.UnixConn) {
	tb.Helper()
	c, err := net.DialUnix("unix", nil, u.ln.Addr().(*net.UnixAddr))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := u.ln.AcceptUnix()
	if err != nil {
		tb.Fatal(err)
	}
	return c, s
}

package codec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Shared helpers for the tests of the address rewriters and the Fetch,
// ShareFetch and ShareAcknowledge walkers.

// rwCall is one MapBroker call as the mapper saw it.
type rwCall struct {
	NodeID int32
	Host   string
	Port   int32
}

// rwMapper maps node n to rwProxyHost(n):rwProxyPort(n) and refuses the
// nodes in drop. The mapping depends on the node id only, so rewriting a
// rewritten body changes nothing.
type rwMapper struct {
	drop  map[int32]bool
	calls []rwCall
}

func (m *rwMapper) MapBroker(nodeID int32, host string, port int32) (string, int32, bool) {
	m.calls = append(m.calls, rwCall{nodeID, host, port})
	if m.drop[nodeID] {
		return "", 0, false
	}
	return rwProxyHost(nodeID), rwProxyPort(nodeID), true
}

func rwProxyHost(id int32) string { return fmt.Sprintf("kseal-%d.proxy.test", id) }
func rwProxyPort(id int32) int32  { return 19000 + id }

// rwIdentity maps every broker to its own address.
var rwIdentity = MapperFunc(func(_ int32, host string, port int32) (string, int32, bool) {
	return host, port, true
})

// rwFuzzMapper drops every third node id and maps the rest like rwMapper.
var rwFuzzMapper = MapperFunc(func(id int32, _ string, _ int32) (string, int32, bool) {
	if id%3 == 0 {
		return "", 0, false
	}
	return rwProxyHost(id), rwProxyPort(id), true
})

func rwStr(s string) *string { return &s }

func rwTags(key uint32, val string) kmsg.Tags {
	var t kmsg.Tags
	t.Set(key, []byte(val))
	return t
}

// rwHdr stands for what a proxy puts in dst before the body (frame size and
// response header); rewriters must append after it and never touch it.
var rwHdr = []byte("HEADER")

// rwDst returns a fresh copy of rwHdr with spare capacity.
func rwDst() []byte { return append(make([]byte, 0, 64), rwHdr...) }

// rwCheckAppended checks that out is rwHdr followed by want.
func rwCheckAppended(t *testing.T, out, want []byte) {
	t.Helper()
	if !bytes.HasPrefix(out, rwHdr) {
		t.Fatalf("dst prefix lost: %q", out[:min(len(out), len(rwHdr))])
	}
	if got := out[len(rwHdr):]; !bytes.Equal(got, want) {
		t.Fatalf("rewritten body differs from kmsg encoding\n got %x\nwant %x", got, want)
	}
}

// rwCheckUnchanged checks the result of a rewrite that must not change
// anything.
func rwCheckUnchanged(t *testing.T, out []byte, changed bool, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if changed || !bytes.Equal(out, rwHdr) {
		t.Fatalf("changed=%v, out=%q: want unchanged and dst as given", changed, out)
	}
}

// rwWriteSeeds writes fuzz seed corpus files for fuzz target name when
// KSEAL_WRITE_CODEC_SEEDS is set (go test -run Seeds to regenerate). Each seed
// is (version uint8, body []byte).
func rwWriteSeeds(t *testing.T, name string, seeds map[string]struct {
	version int16
	body    []byte
}) {
	t.Helper()
	if os.Getenv("KSEAL_WRITE_CODEC_SEEDS") == "" {
		t.Skip("set KSEAL_WRITE_CODEC_SEEDS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, s := range seeds {
		data := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", uint8(s.version), s.body)
		if err := os.WriteFile(filepath.Join(dir, file), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type rwSeeds = map[string]struct {
	version int16
	body    []byte
}

// rwFastReject checks that rewrite fails on body, and that the fastest of a
// few tries takes well under a millisecond: huge tagged-field counts must be
// rejected up front, not looped over (kmsg takes minutes on such input).
func rwFastReject(t *testing.T, body []byte, rewrite func([]byte) error) {
	t.Helper()
	best := time.Hour
	for range 5 {
		start := time.Now()
		err := rewrite(body)
		best = min(best, time.Since(start))
		if err == nil {
			t.Fatalf("body %x was accepted", body)
		}
	}
	if best > 100*time.Microsecond {
		t.Fatalf("rejecting took %v, want well under 1ms", best)
	}
}

// rwHugeTagCount is a tagged-field count of 2^32-1.
var rwHugeTagCount = kbin.AppendUvarint(nil, ^uint32(0))

func TestRewriteEndpointsEdges(t *testing.T) {
	entry := func(dst []byte, id int32, host string, port int32, flex bool) []byte {
		dst = kbin.AppendInt32(dst, id)
		dst = appendStr(dst, host, flex)
		dst = kbin.AppendInt32(dst, port)
		dst = appendNullableStr(dst, nil, flex)
		if flex {
			dst = append(dst, 0)
		}
		return dst
	}
	for _, flex := range []bool{false, true} {
		t.Run(fmt.Sprintf("flex=%v", flex), func(t *testing.T) {
			// A null array stays null and is not a change.
			var null []byte
			if flex {
				null = []byte{0}
			} else {
				null = kbin.AppendInt32(nil, -1)
			}
			r := newBodyReader(null, flex)
			out, changed := rewriteEndpoints(nil, &r, &rwMapper{}, endpointLayout{rack: true})
			if !r.Ok() || changed || !bytes.Equal(out, null) {
				t.Fatalf("null array: ok=%v changed=%v out=%x", r.Ok(), changed, out)
			}

			// 200 entries, all dropped: the compact count shrinks from two
			// bytes to one and the entries after it must move with it.
			var body []byte
			if flex {
				body = kbin.AppendCompactArrayLen(nil, 200)
			} else {
				body = kbin.AppendArrayLen(nil, 200)
			}
			drop := map[int32]bool{}
			for i := range int32(200) {
				body = entry(body, i, "b.internal", 9092, flex)
				if i != 7 {
					drop[i] = true
				}
			}
			r = newBodyReader(body, flex)
			out, changed = rewriteEndpoints([]byte("x"), &r, &rwMapper{drop: drop}, endpointLayout{rack: true})
			var want []byte
			if flex {
				want = kbin.AppendCompactArrayLen([]byte("x"), 1)
			} else {
				want = kbin.AppendArrayLen([]byte("x"), 1)
			}
			want = entry(want, 7, rwProxyHost(7), rwProxyPort(7), flex)
			if !r.Ok() || len(r.Src) != 0 || !changed || !bytes.Equal(out, want) {
				t.Fatalf("ok=%v left=%d changed=%v\n got %x\nwant %x", r.Ok(), len(r.Src), changed, out, want)
			}

			// A count larger than the bytes left fails before any loop.
			var lying []byte
			if flex {
				lying = kbin.AppendCompactArrayLen(nil, 1<<30)
			} else {
				lying = kbin.AppendArrayLen(nil, 1<<30)
			}
			r = newBodyReader(lying, flex)
			m := &rwMapper{}
			rewriteEndpoints(nil, &r, m, endpointLayout{})
			if r.Ok() || len(m.calls) != 0 {
				t.Fatalf("lying count accepted (ok=%v, %d calls)", r.Ok(), len(m.calls))
			}
		})
	}
}

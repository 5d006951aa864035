package codec

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// coord is one coordinator in test tables, for either layout.
type coord struct {
	key     string
	nodeID  int32
	host    string
	port    int32
	errCode int16
	errMsg  *string
}

// findCoordinatorFixture encodes coordinators as a FindCoordinator response
// of version v: the first one in the v0-v3 layout, all of them from v4.
func findCoordinatorFixture(v int16, cs []coord) []byte {
	resp := kmsg.NewPtrFindCoordinatorResponse()
	resp.Version = v
	resp.ThrottleMillis = 11
	if v < 4 {
		c := cs[0]
		resp.NodeID, resp.Host, resp.Port, resp.ErrorCode = c.nodeID, c.host, c.port, c.errCode
		if v >= 1 {
			resp.ErrorMessage = c.errMsg
		}
	} else {
		for _, c := range cs {
			e := kmsg.NewFindCoordinatorResponseCoordinator()
			e.Key, e.NodeID, e.Host, e.Port, e.ErrorCode, e.ErrorMessage = c.key, c.nodeID, c.host, c.port, c.errCode, c.errMsg
			e.UnknownTags = rwTags(3, "coord-"+c.key)
			resp.Coordinators = append(resp.Coordinators, e)
		}
	}
	if v >= 3 {
		resp.UnknownTags = rwTags(8, "top")
	}
	return resp.AppendTo(nil)
}

func TestRewriteFindCoordinatorResponseEveryVersion(t *testing.T) {
	if got := (&kmsg.FindCoordinatorResponse{}).MaxVersion(); got != FindCoordinatorMaxVersion {
		t.Fatalf("kmsg knows FindCoordinator v%d, rewriter v%d: check the new layout", got, FindCoordinatorMaxVersion)
	}
	unmappedMsg := rwStr(coordinatorUnmappedMessage)
	cases := []struct {
		name string
		in   coord
		drop bool
		want coord
		// calls is whether the mapper must be asked.
		calls bool
	}{
		{
			name: "mapped", calls: true,
			in:   coord{key: "g1", nodeID: 1, host: "b1.internal", port: 9092},
			want: coord{key: "g1", nodeID: 1, host: rwProxyHost(1), port: rwProxyPort(1)},
		},
		{
			name: "unmapped becomes COORDINATOR_NOT_AVAILABLE", calls: true, drop: true,
			in:   coord{key: "g2", nodeID: 1, host: "b1.internal", port: 9092},
			want: coord{key: "g2", nodeID: -1, host: "", port: -1, errCode: 15, errMsg: unmappedMsg},
		},
		{
			name: "error entry kept",
			in:   coord{key: "g3", nodeID: -1, host: "", port: -1, errCode: 30, errMsg: rwStr("denied")},
			want: coord{key: "g3", nodeID: -1, host: "", port: -1, errCode: 30, errMsg: rwStr("denied")},
		},
		{
			name: "error entry naming an unmapped host is blanked", calls: true, drop: true,
			in:   coord{key: "g4", nodeID: 1, host: "b1.internal", port: 9092, errCode: 14},
			want: coord{key: "g4", nodeID: 1, host: "", port: -1, errCode: 14},
		},
	}
	for v := int16(0); v <= FindCoordinatorMaxVersion; v++ {
		for _, c := range cases {
			t.Run(fmt.Sprintf("v%d/%s", v, c.name), func(t *testing.T) {
				in, want := c.in, c.want
				if v == 0 {
					in.errMsg, want.errMsg = nil, nil // no message field
				}
				m := &rwMapper{}
				if c.drop {
					m.drop = map[int32]bool{in.nodeID: true}
				}
				body := findCoordinatorFixture(v, []coord{in})
				out, changed, err := RewriteFindCoordinatorResponse(rwDst(), body, v, m)
				if err != nil {
					t.Fatal(err)
				}
				if (len(m.calls) > 0) != c.calls {
					t.Fatalf("mapper calls %v, want called=%v", m.calls, c.calls)
				}
				if c.calls && !reflect.DeepEqual(m.calls[0], rwCall{in.nodeID, in.host, in.port}) {
					t.Fatalf("mapper saw %v, want %v", m.calls[0], in)
				}
				if !c.calls {
					rwCheckUnchanged(t, out, changed, err)
					return
				}
				if !changed {
					t.Fatal("not changed")
				}
				rwCheckAppended(t, out, findCoordinatorFixture(v, []coord{want}))
			})
		}
	}
}

func TestRewriteFindCoordinatorBatchedMixed(t *testing.T) {
	in := []coord{
		{key: "a", nodeID: 1, host: "b1", port: 9092},
		{key: "b", nodeID: 3, host: "b3", port: 9094},
		{key: "c", nodeID: -1, host: "", port: -1, errCode: 15, errMsg: rwStr("loading")},
		{key: "d", nodeID: 2, host: "b2", port: 9093},
	}
	want := []coord{
		{key: "a", nodeID: 1, host: rwProxyHost(1), port: rwProxyPort(1)},
		{key: "b", nodeID: -1, host: "", port: -1, errCode: 15, errMsg: rwStr(coordinatorUnmappedMessage)},
		in[2],
		{key: "d", nodeID: 2, host: rwProxyHost(2), port: rwProxyPort(2)},
	}
	for v := int16(4); v <= FindCoordinatorMaxVersion; v++ {
		m := &rwMapper{drop: map[int32]bool{3: true}}
		out, changed, err := RewriteFindCoordinatorResponse(rwDst(), findCoordinatorFixture(v, in), v, m)
		if err != nil || !changed {
			t.Fatalf("v%d: changed=%v err=%v", v, changed, err)
		}
		rwCheckAppended(t, out, findCoordinatorFixture(v, want))
		if len(m.calls) != 3 {
			t.Fatalf("v%d: mapper calls %v, want 3 (error entry skipped)", v, m.calls)
		}
		out, changed, err = RewriteFindCoordinatorResponse(rwDst(), findCoordinatorFixture(v, in), v, rwIdentity)
		rwCheckUnchanged(t, out, changed, err)
	}
}

func TestRewriteFindCoordinatorErrors(t *testing.T) {
	if _, _, err := RewriteFindCoordinatorResponse(nil, nil, FindCoordinatorMaxVersion+1, rwIdentity); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("err=%v, want ErrUnknownVersion", err)
	}
	for v := int16(0); v <= FindCoordinatorMaxVersion; v++ {
		body := findCoordinatorFixture(v, []coord{{key: "k", nodeID: 1, host: "b1", port: 9092}})
		// Cuts inside the coordinator fields are refused. (Cuts in the
		// trailing tags are the client's business: they are copied.)
		end := len(body) - 1 - 6 // top-level tags: count, key, size, "top"
		if v < 3 {
			end = len(body) - 1
		}
		for i := 0; i <= end; i++ {
			out, _, err := RewriteFindCoordinatorResponse(rwDst(), body[:i], v, rwIdentity)
			if !errors.Is(err, ErrMalformed) || string(out) != string(rwHdr) {
				t.Fatalf("v%d cut at %d/%d: err=%v out=%q", v, i, len(body), err, out)
			}
		}
	}
}

func TestFindCoordinatorHugeTagCountRejectedFast(t *testing.T) {
	body := kbin.AppendInt32(nil, 0)           // throttle
	body = kbin.AppendCompactArrayLen(body, 1) // one coordinator
	body = kbin.AppendCompactString(body, "k")
	body = kbin.AppendInt32(body, 1)
	body = kbin.AppendCompactString(body, "h")
	body = kbin.AppendInt32(body, 9092)
	body = kbin.AppendInt16(body, 0)
	body = kbin.AppendCompactNullableString(body, nil)
	body = append(body, rwHugeTagCount...)
	body = append(body, make([]byte, 64)...)
	rwFastReject(t, body, func(b []byte) error {
		_, _, err := RewriteFindCoordinatorResponse(nil, b, 4, rwIdentity)
		return err
	})
}

func findCoordinatorSeeds() rwSeeds {
	seeds := rwSeeds{}
	for v := int16(0); v <= FindCoordinatorMaxVersion; v++ {
		cs := []coord{
			{key: "a", nodeID: 1, host: "b1", port: 9092},
			{key: "b", nodeID: 3, host: "b3", port: 9094},
			{key: "c", nodeID: -1, host: "", port: -1, errCode: 15, errMsg: rwStr("x")},
		}
		seeds[fmt.Sprintf("v%d", v)] = struct {
			version int16
			body    []byte
		}{v, findCoordinatorFixture(v, cs)}
	}
	return seeds
}

func TestWriteFindCoordinatorSeeds(t *testing.T) {
	rwWriteSeeds(t, "FuzzFindCoordinatorResponse", findCoordinatorSeeds())
}

func FuzzFindCoordinatorResponse(f *testing.F) {
	for _, s := range findCoordinatorSeeds() {
		f.Add(uint8(s.version), s.body)
	}
	f.Fuzz(func(t *testing.T, version uint8, body []byte) {
		v := int16(version) % (FindCoordinatorMaxVersion + 1)
		out, changed, err := RewriteFindCoordinatorResponse(nil, body, v, rwFuzzMapper)
		if err != nil || !changed {
			return
		}
		again, changed, err := RewriteFindCoordinatorResponse(nil, out, v, rwFuzzMapper)
		if err != nil || changed {
			t.Fatalf("rewritten body: changed=%v err=%v (%x)", changed, err, again)
		}
	})
}

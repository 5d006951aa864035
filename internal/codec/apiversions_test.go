package codec

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type apiRange struct{ key, min, max int16 }

// apiVersionsFixture builds a response advertising ranges, with tags and
// feature fields in flexible versions so the rewrite must carry them.
func apiVersionsFixture(version int16, errCode int16, ranges []apiRange) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	resp.ErrorCode = errCode
	for i, r := range ranges {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = r.key, r.min, r.max
		if version >= 3 && i%3 == 0 {
			k.UnknownTags = pTags(5, "entry")
		}
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	resp.ThrottleMillis = 7
	if version >= 3 {
		resp.SupportedFeatures = []kmsg.ApiVersionsResponseSupportedFeature{{Name: "metadata.version", MinVersion: 1, MaxVersion: 20}}
		resp.FinalizedFeaturesEpoch = 42
		resp.FinalizedFeatures = []kmsg.ApiVersionsResponseFinalizedFeature{{Name: "metadata.version", MaxVersionLevel: 20, MinVersionLevel: 20}}
		resp.ZkMigrationReady = true
		resp.UnknownTags = pTags(9, "future")
	}
	return resp
}

var brokerRanges = []apiRange{
	{0, 0, 11},     // Produce: below kseal's max, kept as is
	{1, 0, 20},     // Fetch: capped at FetchMaxVersion
	{2, 12, 13},    // ListOffsets: entirely above kmsg's max, dropped
	{3, 0, 13},     // Metadata: exactly kseal's max
	{17, 0, 1},     // SASLHandshake: untouched
	{18, 0, 6},     // ApiVersions: capped
	{32, 0, 9},     // DescribeConfigs: capped at kmsg's max
	{9999, 0, 3},   // unknown to kmsg: dropped
	{-5, 0, 0},     // nonsense key: dropped
	{60, 0, 2},     // DescribeCluster
	{78, 1, 2},     // ShareFetch
	{79, 1, 2},     // ShareAcknowledge
	{10, 0, 6},     // FindCoordinator
	{7, 0, 3},      // ControlledShutdown
	{68, 0, 1},     // ConsumerGroupHeartbeat
	{22, 0, 5},     // InitProducerID
	{1000, 0, 0},   // unknown
	{24, 0, 5},     // AddPartitionsToTxn
	{11, 0, 9},     // JoinGroup
	{19, 0, 7},     // CreateTopics
	{12, 0, 4},     // Heartbeat
	{36, 0, 2},     // SASLAuthenticate
	{9, 0, 10},     // OffsetFetch
	{8, 0, 10},     // OffsetCommit
	{14, 0, 5},     // SyncGroup
	{13, 0, 5},     // LeaveGroup
	{15, 0, 6},     // DescribeGroups
	{16, 0, 5},     // ListGroups
	{4, 0, 7},      // LeaderAndISR
	{5, 0, 4},      // StopReplica
	{6, 0, 8},      // UpdateMetadata
	{20, 0, 6},     // DeleteTopics
	{21, 0, 2},     // DeleteRecords
	{23, 0, 4},     // OffsetForLeaderEpoch
	{25, 0, 4},     // AddOffsetsToTxn
	{26, 0, 5},     // EndTxn
	{27, 0, 2},     // WriteTxnMarkers
	{28, 0, 6},     // TxnOffsetCommit
	{29, 0, 3},     // DescribeACLs
	{30, 0, 3},     // CreateACLs
	{31, 0, 3},     // DeleteACLs
	{33, 0, 2},     // AlterConfigs
	{34, 0, 2},     // AlterReplicaLogDirs
	{35, 0, 5},     // DescribeLogDirs
	{37, 0, 3},     // CreatePartitions
	{42, 0, 3},     // DeleteGroups
	{44, 0, 1},     // IncrementalAlterConfigs
	{50, 0, 0},     // DescribeUserSCRAMCredentials
	{55, 0, 2},     // DescribeQuorum
	{61, 0, 0},     // DescribeProducers
	{65, 0, 0},     // DescribeTransactions
	{66, 0, 2},     // ListTransactions
	{69, 0, 1},     // ConsumerGroupDescribe
	{71, 0, 0},     // GetTelemetrySubscriptions
	{72, 0, 0},     // PushTelemetry
	{75, 0, 0},     // DescribeTopicPartitions
	{76, 0, 1},     // ShareGroupHeartbeat
	{77, 0, 1},     // ShareGroupDescribe
	{300, 0, 0},    // unknown
	{0x7fff, 0, 0}, // unknown
}

// expectedRanges applies LimitVersions by hand from the fixture comments.
func expectedRanges() []apiRange {
	var out []apiRange
	for _, r := range brokerRanges {
		switch r.key {
		case 2, 9999, -5, 1000, 300, 0x7fff:
			continue
		case 1:
			r.max = 18
		case 18:
			r.max = 5
		case 32:
			r.max = 4
		}
		out = append(out, r)
	}
	return out
}

func TestRewriteApiVersionsEveryVersion(t *testing.T) {
	for v := int16(0); v <= ApiVersionsMaxVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			body := apiVersionsFixture(v, 0, brokerRanges).AppendTo(nil)
			out, changed, err := RewriteApiVersionsResponse([]byte("pre"), body, v, LimitVersions)
			if err != nil || !changed {
				t.Fatalf("changed %v, %v", changed, err)
			}
			want := apiVersionsFixture(v, 0, expectedRanges())
			// Entry tags follow their entries: rebuild the expectation with
			// the tags on the same entries as in the broker's response.
			for i := range want.ApiKeys {
				want.ApiKeys[i].UnknownTags = kmsg.Tags{}
				for j, r := range brokerRanges {
					if r.key == want.ApiKeys[i].ApiKey && v >= 3 && j%3 == 0 {
						want.ApiKeys[i].UnknownTags = pTags(5, "entry")
					}
				}
			}
			if w := want.AppendTo([]byte("pre")); !bytes.Equal(out, w) {
				t.Fatalf("\n got %x\nwant %x", out, w)
			}
			// Rewriting the result again changes nothing.
			again, changed, err := RewriteApiVersionsResponse(nil, out[3:], v, LimitVersions)
			if err != nil || changed || again != nil {
				t.Fatalf("second rewrite: changed %v, %v", changed, err)
			}
		})
	}
}

func TestRewriteApiVersionsUnsupportedVersion(t *testing.T) {
	// A broker answering a too-new ApiVersions request replies in the v0
	// layout whatever the request version.
	ranges := []apiRange{{18, 0, 6}}
	body := apiVersionsFixture(0, 35, ranges).AppendTo(nil)
	for v := int16(0); v <= ApiVersionsMaxVersion; v++ {
		out, changed, err := RewriteApiVersionsResponse(nil, body, v, LimitVersions)
		if err != nil || !changed {
			t.Fatalf("v%d: changed %v, %v", v, changed, err)
		}
		if want := apiVersionsFixture(0, 35, []apiRange{{18, 0, 5}}).AppendTo(nil); !bytes.Equal(out, want) {
			t.Fatalf("v%d:\n got %x\nwant %x", v, out, want)
		}
	}
	// A v3 body that carries error 35 anyway is still read in its layout.
	body = apiVersionsFixture(3, 35, ranges).AppendTo(nil)
	out, changed, err := RewriteApiVersionsResponse(nil, body, 3, LimitVersions)
	if want := apiVersionsFixture(3, 35, []apiRange{{18, 0, 5}}); err != nil || !changed {
		t.Fatalf("v3 with error 35: changed %v, %v", changed, err)
	} else if want.ApiKeys[0].UnknownTags = pTags(5, "entry"); !bytes.Equal(out, want.AppendTo(nil)) {
		t.Fatalf("v3 with error 35:\n got %x\nwant %x", out, want.AppendTo(nil))
	}
}

func TestAppendApiVersionsUnsupported(t *testing.T) {
	want := kmsg.NewPtrApiVersionsResponse()
	want.ErrorCode = 35
	want.ApiKeys = []kmsg.ApiVersionsResponseApiKey{{ApiKey: 18, MinVersion: 0, MaxVersion: ApiVersionsMaxVersion}}
	if got := AppendApiVersionsUnsupported(nil, ApiVersionsMaxVersion); !bytes.Equal(got, want.AppendTo(nil)) {
		t.Fatalf("got %x, want %x", got, want.AppendTo(nil))
	}
}

func TestRewriteApiVersionsUnchangedAndErrors(t *testing.T) {
	ok := apiVersionsFixture(3, 0, []apiRange{{0, 3, 11}, {3, 0, 12}}).AppendTo(nil)
	if out, changed, err := RewriteApiVersionsResponse(nil, ok, 3, LimitVersions); err != nil || changed || out != nil {
		t.Fatalf("within limits: changed %v, %v", changed, err)
	}
	// A limit may not raise a maximum nor keep an empty range.
	raise := func(key, lo, hi int16) (int16, bool) { return hi + 5, true }
	if _, changed, err := RewriteApiVersionsResponse(nil, ok, 3, raise); err != nil || changed {
		t.Fatalf("raising limit: changed %v, %v", changed, err)
	}
	below := func(key, lo, hi int16) (int16, bool) { return lo - 1, true }
	out, changed, err := RewriteApiVersionsResponse(nil, ok, 3, below)
	if want := apiVersionsFixture(3, 0, nil).AppendTo(nil); err != nil || !changed || !bytes.Equal(out, want) {
		t.Fatalf("empty ranges: changed %v, %v, %x", changed, err, out)
	}

	v0 := apiVersionsFixture(0, 0, brokerRanges).AppendTo(nil)
	tests := []struct {
		name    string
		body    []byte
		version int16
		wantErr error
	}{
		{"unknown version", ok, 6, ErrUnknownVersion},
		{"truncated", ok[:len(ok)-1], 3, ErrMalformed},
		{"trailing", append(append([]byte{}, v0...), 1), 0, ErrMalformed},
		{"v0 read as v3", v0, 3, ErrMalformed},
		{"null array", []byte{0, 0, 0xff, 0xff, 0xff, 0xff}, 0, ErrMalformed},
		{"count past end", []byte{0, 0, 0, 0, 0, 9}, 0, ErrMalformed},
		{"huge tag count", append([]byte{0, 0, 1, 0, 0, 0, 0}, kbin.AppendUvarint(nil, 0xffffffff)...), 3, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, changed, err := RewriteApiVersionsResponse([]byte("x"), tt.body, tt.version, LimitVersions)
			if !errors.Is(err, tt.wantErr) || changed || string(out) != "x" {
				t.Fatalf("err = %v (want %v), changed %v", err, tt.wantErr, changed)
			}
		})
	}
}

func TestProxyMaxVersionsMatchKmsg(t *testing.T) {
	// Every API kseal rewrites is capped at a version kmsg knows; a kmsg
	// upgrade adding versions shows up here until the walkers are checked.
	for _, key := range []int16{0, 1, 3, 10, 18, 60, 78, 79} {
		got, ok := ProxyMaxVersion(key)
		if !ok {
			t.Fatalf("key %d not in the proxy table", key)
		}
		if want := kmsg.RequestForKey(key).MaxVersion(); got != want {
			t.Errorf("key %d: proxy max %d, kmsg max %d", key, got, want)
		}
	}
	if _, ok := ProxyMaxVersion(17); ok {
		t.Error("SASLHandshake listed as rewritten")
	}
	if _, ok := KnownMaxVersion(9999); ok {
		t.Error("key 9999 known")
	}
}

func FuzzApiVersionsResponse(f *testing.F) {
	for v := int16(0); v <= ApiVersionsMaxVersion; v++ {
		f.Add(apiVersionsFixture(v, 0, brokerRanges[:12]).AppendTo(nil), v)
	}
	f.Add(apiVersionsFixture(0, 35, []apiRange{{18, 0, 9}}).AppendTo(nil), int16(3))
	f.Fuzz(func(t *testing.T, body []byte, version int16) {
		out, changed, err := RewriteApiVersionsResponse(nil, body, version, LimitVersions)
		if err != nil || !changed {
			return
		}
		if len(out) > len(body) {
			t.Fatalf("rewrite grew the body from %d to %d bytes", len(body), len(out))
		}
		if _, _, err := RewriteApiVersionsResponse(nil, out, version, LimitVersions); err != nil {
			t.Fatalf("rewritten body does not parse: %v", err)
		}
	})
}

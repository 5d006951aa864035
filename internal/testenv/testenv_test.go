package testenv

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/config"
)

// The YAML StartKseal is given must be what kseal's config accepts.
func TestKsealConfigParses(t *testing.T) {
	g := Gateway{Host: "127.0.0.1", BootstrapPort: 21000, BrokerPortStart: 21100, BrokerPortCount: 16}
	y := KsealConfig([]string{"127.0.0.1:9092", "127.0.0.1:9093"}, g, "")
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("config.Parse:\n%s\n%v", y, err)
	}
	vc := c.VirtualClusters[0]
	if vc.Gateway.BootstrapPort != 21000 || vc.Gateway.BrokerPortStart != 21100 || vc.Gateway.BrokerPortCount != 16 ||
		vc.Gateway.AdvertisedHost != "127.0.0.1" || len(vc.Upstream.BootstrapServers) != 2 {
		t.Errorf("parsed config differs from what was rendered: %+v", vc)
	}
	addrs, err := bootstrapAddrs(y)
	if err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1:21000" {
		t.Errorf("bootstrapAddrs = %v, %v", addrs, err)
	}
}

func TestGatewayOwns(t *testing.T) {
	g := Gateway{Host: "127.0.0.1", BootstrapPort: 21000, BrokerPortStart: 21100, BrokerPortCount: 16}
	for _, tc := range []struct {
		host string
		port int
		want bool
	}{
		{"127.0.0.1", 21000, true},
		{"127.0.0.1", 21100, true},
		{"127.0.0.1", 21115, true},
		{"127.0.0.1", 21116, false},
		{"127.0.0.1", 21099, false},
		{"localhost", 21101, false},
	} {
		if got := g.Owns(tc.host, tc.port); got != tc.want {
			t.Errorf("Owns(%s, %d) = %v, want %v", tc.host, tc.port, got, tc.want)
		}
	}
	if got := g.BrokerAddr(3); got != "127.0.0.1:21103" {
		t.Errorf("BrokerAddr(3) = %s", got)
	}
}

func TestFreePortRange(t *testing.T) {
	start, err := FreePortRange(16)
	if err != nil {
		t.Fatal(err)
	}
	if start < portLow || !portsFree(start, 16) {
		t.Errorf("FreePortRange(16) = %d: not a free range above %d", start, portLow)
	}
}

func batch(t *testing.T, base int64, attrs int16, pid int64, n int32, records []byte) []byte {
	t.Helper()
	b := kmsg.RecordBatch{FirstOffset: base, Magic: 2, Attributes: attrs, LastOffsetDelta: n - 1,
		ProducerID: pid, ProducerEpoch: 1, FirstSequence: 5, NumRecords: n, Records: records}
	b.Length = int32(len(b.AppendTo(nil)) - 12)
	return b.AppendTo(nil)
}

func TestParseSegment(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("hello canary"))
	w.Close()
	seg := append(batch(t, 0, 0, -1, 2, []byte("plain records")), batch(t, 2, 1|0x10, 77, 3, gz.Bytes())...)
	full := len(seg)
	seg = append(seg, batch(t, 5, 0x20, 77, 1, []byte("marker"))[:30]...) // torn tail
	bs, err := ParseSegment(seg)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 {
		t.Fatalf("got %d batches from %d bytes (%d complete), want 2", len(bs), len(seg), full)
	}
	if b := bs[0]; b.BaseOffset != 0 || b.LastOffset != 1 || b.Codec != CodecNone || b.ProducerID != -1 ||
		b.NumRecords != 2 || string(b.Records) != "plain records" {
		t.Errorf("batch 0 = %+v", b)
	}
	b := bs[1]
	if b.BaseOffset != 2 || b.LastOffset != 4 || b.Codec != CodecGzip || !b.Transactional || b.Control ||
		b.ProducerID != 77 || b.ProducerEpoch != 1 || b.BaseSequence != 5 || b.NumRecords != 3 {
		t.Errorf("batch 1 = %+v", b)
	}
	plain, err := b.Decompressed()
	if err != nil || string(plain) != "hello canary" {
		t.Errorf("Decompressed = %q, %v", plain, err)
	}

	bad := batch(t, 0, 0, -1, 1, []byte("x"))
	bad[16] = 1
	if _, err := ParseSegment(bad); err == nil {
		t.Error("magic 1 batch: no error")
	}
}

func TestParseConsoleConsumer(t *testing.T) {
	out := "Partition:3\tOffset:7\tsrc:java,i:1\tk1\tv 1\tstill value\n" +
		"Partition:0\tOffset:0\tNO_HEADERS\tnull\tv2\n"
	got := parseConsoleConsumer(t, "t", out)
	want := []Record{
		{Topic: "t", Partition: 3, Offset: 7, Key: "k1", Value: "v 1\tstill value", Headers: []Header{H("src", "java"), H("i", "1")}},
		{Topic: "t", Partition: 0, Offset: 0, Value: "v2"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i].String() {
			t.Errorf("record %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestParseKcatJSON(t *testing.T) {
	out := `{"topic":"t","partition":1,"offset":4,"tstype":"create","ts":1,"broker":2,"headers":["a","b","c","d"],"key":"k","payload":"v"}
{"topic":"t","partition":0,"offset":0,"tstype":"create","ts":1,"broker":1,"key":null,"payload":"only value"}
`
	got := parseKcatJSON(t, []byte(out))
	want := []string{
		Record{Topic: "t", Partition: 1, Offset: 4, Key: "k", Value: "v", Headers: []Header{H("a", "b"), H("c", "d")}}.String(),
		Record{Topic: "t", Partition: 0, Offset: 0, Value: "only value"}.String(),
	}
	if len(got) != 2 || got[0].String() != want[0] || got[1].String() != want[1] {
		t.Errorf("got %v, want %s", got, strings.Join(want, "; "))
	}
}

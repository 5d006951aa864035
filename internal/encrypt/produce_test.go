package encrypt

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/policy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// mixedRules encrypt "enc-*" under KEK-<topic>, pass "plain-*" through and
// leave every other topic unresolved (PASSTHROUGH_UNENCRYPTED).
var mixedRules = []policy.RuleConfig{
	{TopicPrefix: "enc-", KEK: "KEK-$(topicName)"},
	// Entity KEKs (shred.go): header tenant=a gives KEK-enc-a.
	{TopicPrefix: "ent-", KEK: "KEK-enc-$(header:tenant)", OnDestroyedKek: "NULL_VALUE"},
	{TopicPrefix: "plain-", Passthrough: true},
}

func newMixedFilter(t testing.TB, mod func(*Options)) *Filter {
	t.Helper()
	return newFilter(t, mixedRules, []string{"KEK-enc-a", "KEK-enc-b"}, mod)
}

type producePart struct {
	topic     string
	partition int32
	set       []byte
}

const produceVersion = 9

// produceFrame encodes a Produce v9 request frame (header v2) and returns it
// with the header length.
func produceFrame(acks int16, parts []producePart) ([]byte, int) {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(produceVersion)
	req.Acks = acks
	req.TimeoutMillis = 1000
	for _, p := range parts {
		if n := len(req.Topics); n == 0 || req.Topics[n-1].Topic != p.topic {
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = p.topic
			req.Topics = append(req.Topics, rt)
		}
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = p.partition
		rp.Records = p.set
		rt := &req.Topics[len(req.Topics)-1]
		rt.Partitions = append(rt.Partitions, rp)
	}
	frame := []byte{0, 0, 0, produceVersion, 0, 0, 0, 7, 0, 1, 't', 0}
	hlen := len(frame)
	return req.AppendTo(frame), hlen
}

// produceResult is what the filter did with a Produce request.
type produceResult struct {
	err       error
	local     bool
	codes     map[string]int16 // "topic/partition" -> code, when local
	forwarded *kmsg.ProduceRequest
	request   []byte // the frame to forward
}

func produceThrough(t testing.TB, f *Filter, acks int16, parts []producePart) produceResult {
	t.Helper()
	frame, hlen := produceFrame(acks, parts)
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Produce), produceVersion, frame, hlen, nil, 0)
	var res produceResult
	if res.err = f.OnRequest(context.Background(), x); res.err != nil {
		return res
	}
	res.local = x.Local
	if x.Local {
		resp := kmsg.NewPtrProduceResponse()
		resp.SetVersion(produceVersion)
		if err := resp.ReadFrom(x.Response[5:]); err != nil { // correlation id, header tags
			t.Fatal(err)
		}
		res.codes = map[string]int16{}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				res.codes[fmt.Sprintf("%s/%d", rt.Topic, rp.Partition)] = rp.ErrorCode
			}
		}
		return res
	}
	res.request = bytes.Clone(x.Request)
	res.forwarded = kmsg.NewPtrProduceRequest()
	res.forwarded.SetVersion(produceVersion)
	if err := res.forwarded.ReadFrom(x.Request[x.HeaderLen:]); err != nil {
		t.Fatal(err)
	}
	return res
}

func (r produceResult) wantCodes(t testing.TB, want map[string]*kerr.Error) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("OnRequest: %v", r.err)
	}
	if !r.local {
		t.Fatalf("request forwarded, want a local answer %v", want)
	}
	for k, e := range want {
		got, ok := r.codes[k]
		if !ok {
			t.Fatalf("no answer for %s in %v", k, r.codes)
		}
		if got != e.Code {
			t.Fatalf("%s answered %d (%v), want %d (%s)", k, got, kerr.ErrorForCode(got), e.Code, e.Message)
		}
	}
	if len(r.codes) != len(want) {
		t.Fatalf("answers %v, want %d", r.codes, len(want))
	}
}

// headerBatch encodes an uncompressed batch of one record carrying headers
// (key/value pairs).
func headerBatch(c records.Codec, headers ...string) []byte {
	r := kmsg.Record{Key: []byte("k"), Value: []byte("v")}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, kmsg.Header{Key: headers[i], Value: []byte(headers[i+1])})
	}
	body := r.AppendTo(nil)[1:]
	r.Length = int32(len(body))
	recs := r.AppendTo(nil)
	if c != records.CodecNone {
		var err error
		if recs, err = records.NewCodecs(0).Compress(nil, recs, c); err != nil {
			panic(err)
		}
	}
	h := kmsg.RecordBatch{Magic: 2, Attributes: int16(c), NumRecords: 1, ProducerID: -1, ProducerEpoch: -1,
		FirstSequence: -1, Records: recs, Length: int32(49 + len(recs))}
	raw := h.AppendTo(nil)
	setCRC(raw)
	return raw
}

// Finding 1: a topic name that is not valid UTF-8 reached
// prometheus.WithLabelValues, whose panic ended the process. Names are now
// checked against Kafka's rules before anything uses them.
func TestProduceInvalidTopicRefused(t *testing.T) {
	f := newMixedFilter(t, nil)
	ok := plainBatch([][]byte{[]byte("v")})
	for _, name := range []string{"\xff", "plain-\xff", "", ".", "..", "a b", "enc-a/x", strings.Repeat("a", 250), "enc-\u00e9"} {
		for _, other := range []string{"enc-a", "plain-x", "unknown"} {
			res := produceThrough(t, f, -1, []producePart{{other, 0, ok}, {name, 0, ok}, {name, 1, ok}})
			res.wantCodes(t, map[string]*kerr.Error{
				other + "/0": kerr.RequestTimedOut, // retriable: nothing was written
				name + "/0":  kerr.InvalidTopicException,
				name + "/1":  kerr.InvalidTopicException,
			})
		}
	}
	// Valid names at the edges pass.
	for _, name := range []string{"plain-" + strings.Repeat("a", 243), "plain-._-AZaz09", "..."} {
		if res := produceThrough(t, f, -1, []producePart{{name, 0, ok}}); res.err != nil || res.local {
			t.Fatalf("%q refused: %v %v", name, res.err, res.codes)
		}
	}
	// acks=0: the connection is closed, and nothing panics.
	if res := produceThrough(t, f, 0, []producePart{{"\xff", 0, ok}}); res.err == nil {
		t.Fatal("acks=0 produce to an invalid topic accepted")
	}
}

func TestValidTopic(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "A.b_c-9": true, "...": true, strings.Repeat("x", 249): true,
		"": false, ".": false, "..": false, strings.Repeat("x", 250): false, "a\x00": false, "\xff": false, "a/b": false, "<other>": false,
	} {
		if validTopic(name) != want || validTopic([]byte(name)) != want {
			t.Errorf("validTopic(%q) = %v, want %v", name, !want, want)
		}
	}
}

// Finding 5: kseal_records_total made a series for every topic name sent.
func TestRecordsTopicLabelsCapped(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newMixedFilter(t, func(o *Options) { o.Metrics = NewMetrics(reg); o.MaxTopicLabels = 3 })
	ok := plainBatch([][]byte{[]byte("v")})
	for i := range 10 {
		if res := produceThrough(t, f, -1, []producePart{{fmt.Sprintf("plain-%d", i), 0, ok}}); res.err != nil || res.local {
			t.Fatalf("refused: %v %v", res.err, res.codes)
		}
	}
	produceThrough(t, f, -1, []producePart{{"plain-\xff", 0, ok}}) // refused, never labelled
	if n := countSeries(t, f.m.records); n != 2*(3+1) {            // two outcomes for 3 topics and <other>
		t.Fatalf("%d series, want 8", n)
	}
	if v := counterValue(t, f.m.records.WithLabelValues(otherTopics, "produce", "plaintext")); v != 7 {
		t.Fatalf("<other> counted %v records, want 7", v)
	}
}

func TestProduceDuplicatePartitionsRefused(t *testing.T) {
	f := newMixedFilter(t, nil)
	ok := plainBatch([][]byte{[]byte("v")})
	// The same topic twice in the topics array, partition 0 in both.
	res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, ok}, {"plain-x", 1, ok}, {"enc-a", 0, ok}})
	if res.err != nil || !res.local {
		t.Fatalf("duplicate partitions forwarded: %v", res.err)
	}
	for k, c := range res.codes {
		if c != kerr.InvalidRequest.Code {
			t.Fatalf("%s answered %d, want INVALID_REQUEST", k, c)
		}
	}
	// Same partition number under two topics is fine.
	if res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, ok}, {"enc-b", 0, ok}}); res.err != nil || res.local {
		t.Fatalf("refused: %v %v", res.err, res.codes)
	}
}

// Finding 4: the forged-marker check ran only on encrypted topics, so any
// producer could plant a kseal header on a passthrough or unresolved topic
// and poison it for every consumer through kseal.
func TestProduceForgedMarkerRefusedOnEveryTopic(t *testing.T) {
	f := newMixedFilter(t, nil)
	for _, c := range []records.Codec{records.CodecNone, records.CodecZstd, records.CodecSnappy} {
		forged := headerBatch(c, "a", "b", recordcrypt.HeaderKey, "\x01")
		for _, topic := range []string{"enc-a", "plain-x", "unknown"} {
			res := produceThrough(t, f, -1, []producePart{{topic, 3, forged}})
			res.wantCodes(t, map[string]*kerr.Error{topic + "/3": kerr.InvalidRecord})
		}
	}
	// A record without the marker on a passthrough topic is forwarded as
	// it came, byte for byte.
	clean := headerBatch(records.CodecNone, "a", "b", "ksealx", "y")
	frame, _ := produceFrame(-1, []producePart{{"plain-x", 0, clean}})
	res := produceThrough(t, f, -1, []producePart{{"plain-x", 0, clean}})
	if res.err != nil || res.local || !bytes.Equal(res.request, frame) {
		t.Fatalf("passthrough request changed: %v %v", res.err, res.codes)
	}
}

// Finding 7: a client batch with the control bit set was copied byte for
// byte, its values unencrypted.
func TestProduceControlBatchRefusedOnEncryptedTopic(t *testing.T) {
	f := newMixedFilter(t, nil)
	b := plainBatch([][]byte{[]byte("secret")})
	b[22] |= 0x20 // attributes: control
	setCRC(b)
	res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, b}})
	res.wantCodes(t, map[string]*kerr.Error{"enc-a/0": kerr.InvalidRecord})
}

// zeros is a batch of one record whose value is n zero bytes, compressed.
func zerosBatch(n int, c records.Codec) []byte {
	return codecBatch([][]byte{make([]byte, n)}, c)
}

// Finding 2: a small request of compressed bombs made kseal hold gigabytes.
func TestProduceRequestBudget(t *testing.T) {
	budget := NewBudget(1<<30, nil)
	f := newMixedFilter(t, func(o *Options) { o.MaxProduceRewriteBytes = 4 << 20; o.Budget = budget })
	for _, c := range []records.Codec{records.CodecGzip, records.CodecSnappy, records.CodecLz4, records.CodecZstd} {
		bomb := zerosBatch(8<<20, c)
		for _, topic := range []string{"enc-a", "plain-x"} {
			res := produceThrough(t, f, -1, []producePart{{topic, 0, bomb}})
			res.wantCodes(t, map[string]*kerr.Error{topic + "/0": kerr.MessageTooLarge})
		}
		// Many partitions each under the limit, together over it.
		var parts []producePart
		for i := range 8 {
			parts = append(parts, producePart{"enc-a", int32(i), zerosBatch(1<<20, c)})
		}
		res := produceThrough(t, f, -1, parts)
		if res.err != nil || !res.local {
			t.Fatalf("%s: request over its budget forwarded", c)
		}
		tooLarge := 0
		for _, code := range res.codes {
			if code == kerr.MessageTooLarge.Code {
				tooLarge++
			}
		}
		if tooLarge == 0 {
			t.Fatalf("%s: no partition refused with MESSAGE_TOO_LARGE: %v", c, res.codes)
		}
		// Within the budget: accepted.
		if res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, zerosBatch(1<<20, c)}}); res.err != nil || res.local {
			t.Fatalf("%s: small batch refused: %v %v (log: %s)", c, res.err, res.codes, "")
		}
		if n := budget.InUse(); n != 0 {
			t.Fatalf("%d bytes still reserved after the requests", n)
		}
	}
}

func TestProduceProcessBudget(t *testing.T) {
	budget := NewBudget(1<<20, nil)
	reg := prometheus.NewRegistry()
	f := newMixedFilter(t, func(o *Options) { o.Budget = budget; o.Metrics = NewMetrics(reg) })
	// Another request holds most of the budget.
	if !budget.tryAcquire(1<<20 - 1000) {
		t.Fatal("acquire")
	}
	startAt := time.Now()
	res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, zerosBatch(64<<10, records.CodecZstd)}})
	res.wantCodes(t, map[string]*kerr.Error{"enc-a/0": kerr.RequestTimedOut})
	if d := time.Since(startAt); d < budgetWait/2 || d > 5*budgetWait {
		t.Fatalf("refused after %v, want about %v", d, budgetWait)
	}
	if v := counterValue(t, f.m.processRefusals); v != 1 {
		t.Fatalf("process refusals %v", v)
	}
	budget.release(1<<20 - 1000)
	if res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, zerosBatch(64<<10, records.CodecZstd)}}); res.err != nil || res.local {
		t.Fatalf("refused once the budget was free: %v %v", res.err, res.codes)
	}
	if n := budget.InUse(); n != 0 {
		t.Fatalf("%d bytes still reserved", n)
	}
}

// Every record of an encrypted topic in a forwarded request is sealed.
func TestProduceForwardedRecordsSealed(t *testing.T) {
	f := newMixedFilter(t, nil)
	res := produceThrough(t, f, -1, []producePart{
		{"enc-a", 0, codecBatch([][]byte{[]byte("x"), nil, []byte("y")}, records.CodecLz4)},
		{"plain-x", 0, plainBatch([][]byte{[]byte("z")})},
	})
	if res.err != nil || res.local {
		t.Fatalf("refused: %v %v", res.err, res.codes)
	}
	checkSealed(t, f, res.forwarded)
}

func countSeries(t testing.TB, c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 10000)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A batch just under the decompression bound grows past it once encrypted:
// forwarded, no consumer through kseal could read it (fetch decompresses
// within the same bound), so it is refused instead.
func TestProduceRefusesBatchesFetchCouldNotOpen(t *testing.T) {
	f := newMixedFilter(t, func(o *Options) { o.MaxDecompressed = 1 << 20 })
	vals := make([][]byte, 9000)
	for i := range vals {
		vals[i] = bytes.Repeat([]byte{'v'}, 100)
	}
	res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, codecBatch(vals, records.CodecGzip)}})
	res.wantCodes(t, map[string]*kerr.Error{"enc-a/0": kerr.MessageTooLarge})
	// Uncompressed, fetch reads it in place: accepted.
	if res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, codecBatch(vals, records.CodecNone)}}); res.err != nil || res.local {
		t.Fatalf("refused: %v %v", res.err, res.codes)
	}
}

// The produce path allocates per request and per batch, never per record.
func TestProduceAllocsDoNotGrowWithRecords(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector say nothing")
	}
	f := newMixedFilter(t, nil)
	allocs := func(n int, topic string, c records.Codec) float64 {
		vals := make([][]byte, n)
		for i := range vals {
			vals[i] = []byte("value")
		}
		frame, hlen := produceFrame(-1, []producePart{{topic, 0, codecBatch(vals, c)}})
		var s filter.Standalone
		run := func() {
			x := s.Exchange(int16(kmsg.Produce), produceVersion, bytes.Clone(frame), hlen, nil, 0)
			if err := f.OnRequest(context.Background(), x); err != nil || x.Local {
				t.Fatalf("refused: %v", err)
			}
			s.Done(x)
		}
		run()
		return testing.AllocsPerRun(20, run)
	}
	for _, topic := range []string{"enc-a", "plain-x"} {
		for _, c := range []records.Codec{records.CodecNone, records.CodecLz4} {
			small, large := allocs(10, topic, c), allocs(1000, topic, c)
			if large > small+2 {
				t.Errorf("%s %s: %v allocations for 10 records, %v for 1000", topic, c, small, large)
			}
		}
	}
}

// A request needing more than the whole process budget can never pass:
// MESSAGE_TOO_LARGE at once, not a retriable code after a wait.
func TestProduceLargerThanProcessBudget(t *testing.T) {
	f := newMixedFilter(t, func(o *Options) { o.Budget = NewBudget(1<<20, nil) })
	startAt := time.Now()
	res := produceThrough(t, f, -1, []producePart{{"enc-a", 0, zerosBatch(2<<20, records.CodecZstd)}})
	res.wantCodes(t, map[string]*kerr.Error{"enc-a/0": kerr.MessageTooLarge})
	if d := time.Since(startAt); d > budgetWait/2 {
		t.Fatalf("refused after %v", d)
	}
}

// Answering a refused request was quadratic in its partitions (each answer
// looked its partition up among all of them): 100,000 partitions took
// seconds of CPU.
func TestProduceRefusalLinearInPartitions(t *testing.T) {
	f := newMixedFilter(t, nil)
	parts := make([]producePart, 100_000)
	for i := range parts {
		parts[i] = producePart{"\xff", int32(i), nil}
	}
	frame, hlen := produceFrame(-1, parts)
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Produce), produceVersion, frame, hlen, nil, 0)
	startAt := time.Now()
	if err := f.OnRequest(context.Background(), x); err != nil || !x.Local {
		t.Fatalf("not refused: %v", err)
	}
	limit := time.Second // quadratic took 15 s
	if raceEnabled {
		limit = 8 * time.Second // the race detector slows it ten times
	}
	if d := time.Since(startAt); d > limit {
		t.Fatalf("refusing 100,000 partitions took %v", d)
	}
}

func TestBudgetMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := NewBudget(1<<20, reg)
	if !b.tryAcquire(1000) || b.tryAcquire(1<<20) {
		t.Fatal("acquire")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if _, ok := got["kseal_rewrite_buffer_pool_bytes"]; !ok {
		t.Fatalf("no kseal_rewrite_buffer_pool_bytes in %v", got)
	}
	if got["kseal_rewrite_budget_bytes"] != 1000 || got["kseal_rewrite_budget_limit_bytes"] != 1<<20 {
		t.Fatalf("gauges %v", got)
	}
	b.release(1000)
}

// The filter encrypts on the exchange's one parse of the request (the one
// another filter asking for it, or the plumbing reading acks, gets too),
// not on a parse of its own.
func TestProduceUsesTheExchangeParse(t *testing.T) {
	f := newMixedFilter(t, nil)
	frame, hlen := produceFrame(0, []producePart{{"enc-a", 0, plainBatch([][]byte{[]byte("x")})}})
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Produce), produceVersion, frame, hlen, nil, 0)
	req, err := x.ProduceRequest() // a filter before encryption asked
	if err != nil {
		t.Fatal(err)
	}
	if err := f.OnRequest(context.Background(), x); err != nil || x.Local {
		t.Fatalf("refused: %v", err)
	}
	// The records were replaced on that parse: encryption did not parse its
	// own copy.
	if !req.Changed() || req.Acks != 0 {
		t.Fatalf("the exchange's parse was not the one encrypted (changed %v)", req.Changed())
	}
	if acks, err := x.Acks(); err != nil || acks != 0 {
		t.Fatalf("acks %d, %v", acks, err)
	}
}

// The budget pools large rewrite buffers within an eighth of itself,
// reserved while pooled, hands out only one large enough, and gives the
// pooled bytes up when a request needs them.
func TestBudgetPool(t *testing.T) {
	b := NewBudget(64<<20, nil)
	b.putBuf(make([]byte, 0, 5<<20))
	b.putBuf(make([]byte, 0, 4<<20)) // past an eighth with the first: not pooled
	if b.Pooled() != 5<<20 || b.InUse() != 0 || b.used.Load() != 5<<20 {
		t.Fatalf("pooled %d, in use %d, reserved %d", b.Pooled(), b.InUse(), b.used.Load())
	}
	if buf := b.getBuf(6 << 20); buf != nil || b.Pooled() != 0 || b.used.Load() != 0 {
		t.Fatalf("asked 6 MiB of a pool of 5: got %d, pooled %d, reserved %d", cap(buf), b.Pooled(), b.used.Load())
	}
	b.putBuf(make([]byte, 10, 5<<20))
	if buf := b.getBuf(1 << 20); cap(buf) != 5<<20 || len(buf) != 0 || b.used.Load() != 0 {
		t.Fatalf("got %d/%d, reserved %d", len(buf), cap(buf), b.used.Load())
	}
	b.putBuf(make([]byte, 0, 5<<20))
	if !b.acquire(context.Background(), 62<<20) || b.Pooled() != 0 || b.used.Load() != 62<<20 {
		t.Fatalf("a request did not get the pooled bytes: pooled %d, reserved %d", b.Pooled(), b.used.Load())
	}
	b.putBuf(make([]byte, 0, 5<<20)) // no room in the budget: not pooled
	if b.Pooled() != 0 || b.used.Load() != 62<<20 {
		t.Fatalf("pooled %d, reserved %d", b.Pooled(), b.used.Load())
	}
	b.release(62 << 20)
}

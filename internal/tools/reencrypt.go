package tools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// ReencryptOptions says what to copy.
type ReencryptOptions struct {
	// Direct reaches the brokers: topic setup, progress and the count check.
	Direct Conn
	// Proxy reaches kseal: every record is read and written through it.
	Proxy Conn
	// Source and Dest are the topics; Dest gets Source's partition count.
	Source, Dest string
	// From is the first offset copied in every partition (clamped to the
	// log start).
	From int64
	// To is the offset to stop before in every partition; 0 or negative
	// for the source's last stable offset when the run starts. That
	// default end is soft: records that arrived since and came in the same
	// fetch as the last record before it are copied too (the group's
	// progress moves past every record fetched, so a record fetched and
	// not copied would be skipped by a later run). An explicit To is hard:
	// nothing at or after it is copied, and progress is kept in a group of
	// its own (see Group).
	To int64
	// Group is the consumer group whose committed offsets store progress,
	// and TransactionalID the producer's id; both default to
	// "kseal-reencrypt.<source>.<dest>", with ".to-<To>" appended for an
	// explicit To: that group's progress may have passed records after To
	// without copying them, so a run with another end must not use it.
	Group           string
	TransactionalID string
	// CreateDest creates Dest when it does not exist, with Source's
	// partition count, replication factor and topic-level configs.
	CreateDest bool
	// Limit stops the run after the transaction that reaches this many
	// records (0: no limit); running again continues.
	Limit int64
	// RecordsPerTxn bounds one transaction (default 10,000).
	RecordsPerTxn int
	// Idle is how long to wait for expected records before giving up.
	Idle     time.Duration
	Progress *Progress
	// Describe names KEKs in the count check's summary of Dest.
	Describe kms.DescribeFunc
	// Format, when not 0, is the record format Dest must end up in: the
	// copy is re-encrypted by the kseal it goes through, so WriteVersion
	// (that kseal's encryption.format.writeVersion, from its config) must
	// be Format, and the count check fails if Dest holds encrypted records
	// of another format. Format 2 moves a topic from version 1 to 2.
	Format       int
	WriteVersion int

	// afterProduce, for tests, runs once a transaction's records are
	// produced and before it ends; returning true simulates a crash: the
	// run returns at once, without ending the transaction or closing the
	// client (the hook owns sess then).
	afterProduce func(sess *kgo.GroupTransactSession, copied int64) bool
	// beforeCopy, for tests, runs when the ranges and the progress are
	// known, before the copy starts.
	beforeCopy func()
	// beforeDestCount, for tests, runs when the count check has counted
	// Source and turns to Dest.
	beforeDestCount func()
	// stableWait bounds the wait for Dest's open transactions to end
	// before the count check (default 2 minutes).
	stableWait time.Duration
}

// DefaultGroup is the progress group reencrypt uses for a pair of topics.
func DefaultGroup(src, dst string) string { return "kseal-reencrypt." + src + "." + dst }

// ReencryptResult is what a run did.
type ReencryptResult struct {
	Source     string `json:"source"`
	Dest       string `json:"dest"`
	Group      string `json:"group"`
	Partitions int    `json:"partitions"`
	Created    bool   `json:"created"` // Dest was created by this run
	// Copied counts records committed to Dest by this run.
	Copied int64 `json:"copied"`
	// Aborted counts transactions aborted and retried (rebalances).
	Aborted int `json:"aborted"`
	// Complete: every partition was copied to its end offset.
	Complete bool    `json:"complete"`
	Ends     []Range `json:"ranges"` // per partition, the source range
	// Check is the final count check, run when Complete.
	Check *CountCheck `json:"check,omitempty"`
	// Error is why the run failed, when it did (set by the command, for
	// its JSON output).
	Error string `json:"error,omitempty"`
}

// CountCheck compares, partition by partition, the committed records of
// the source range with those of the destination.
type CountCheck struct {
	In         int64            `json:"in"`
	Out        int64            `json:"out"`
	OK         bool             `json:"ok"`
	Partitions []PartitionCount `json:"partitions"`
	// DestKEKs are the KEK versions the destination's records use.
	DestKEKs      []KEKUsage `json:"destKeks"`
	DestPlaintext int64      `json:"destPlaintext"`
	// DestFormats counts the destination's encrypted records by format
	// version ("1", "2").
	DestFormats map[string]int64 `json:"destFormats"`
	// FormatOK: every encrypted record of the destination is in the
	// format asked for (true when none was).
	FormatOK bool `json:"formatOk"`
}

// PartitionCount is one partition's part of the count check.
type PartitionCount struct {
	Partition int32 `json:"partition"`
	In        int64 `json:"in"`
	Out       int64 `json:"out"`
}

// ErrCountMismatch is returned when the count check fails.
var ErrCountMismatch = errors.New("records in and records out differ")

// ErrFormatMismatch is returned when the destination holds encrypted
// records of another format than the one asked for.
var ErrFormatMismatch = errors.New("destination records are not all in the format asked for")

// Reencrypt copies Source to Dest through the proxy in transactions that
// also commit the source offsets (exactly once: a run that is interrupted,
// even killed, resumes after the last committed transaction without
// duplicates), then checks the counts. Keys, headers (except kseal's
// marker, which the proxy adds again), timestamps and partitions are kept.
func Reencrypt(ctx context.Context, o ReencryptOptions) (*ReencryptResult, error) {
	if o.Source == "" || o.Dest == "" || o.Source == o.Dest {
		return nil, errors.New("reencrypt needs a source and a different destination topic")
	}
	if o.Group == "" {
		o.Group = DefaultGroup(o.Source, o.Dest)
		if o.To > 0 {
			o.Group += fmt.Sprintf(".to-%d", o.To)
		}
	}
	if o.TransactionalID == "" {
		o.TransactionalID = o.Group
	}
	if o.RecordsPerTxn <= 0 {
		o.RecordsPerTxn = 10000
	}
	switch {
	case o.Format == 0:
	case o.Format != 1 && o.Format != 2:
		return nil, fmt.Errorf("format %d: kseal writes format 1 or 2", o.Format)
	case o.WriteVersion != o.Format:
		return nil, fmt.Errorf("format %d asked for, but kseal's config writes format %d: records are re-encrypted by the kseal they go through, so set encryption.format.writeVersion: %d there (and in the config given here) first", o.Format, o.WriteVersion, o.Format)
	}
	res := &ReencryptResult{Source: o.Source, Dest: o.Dest, Group: o.Group}
	rd, err := newReader(o.Direct, true, o.Idle)
	if err != nil {
		return nil, err
	}
	defer rd.close()

	src, err := rd.ranges(ctx, o.Source)
	if err != nil {
		return nil, err
	}
	res.Partitions = len(src)
	if res.Created, err = ensureDest(ctx, rd.adm, o, len(src)); err != nil {
		return nil, err
	}
	if res.Created {
		if err := waitReady(ctx, rd, o.Dest); err != nil {
			return nil, err
		}
	}
	for i := range src {
		src[i] = clampRange(src[i], max(o.From, 0), o.To)
	}
	res.Ends = src

	// A killed predecessor may have left a transaction open; fencing it
	// (which aborts it, or completes one it had already asked to commit)
	// makes the stored progress final before it is read.
	if err := fence(ctx, o); err != nil {
		return nil, err
	}
	pos, err := progress(ctx, rd, o, src)
	if err != nil {
		return nil, err
	}
	var remaining int64
	for _, r := range src {
		remaining += max(r.End-pos[r.Partition], 0)
	}
	o.Progress.SetTotal(remaining)
	if o.beforeCopy != nil {
		o.beforeCopy()
	}
	if remaining > 0 {
		crashed, err := copyRecords(ctx, o, src, pos, res)
		o.Progress.Finish()
		if crashed || err != nil {
			return res, err
		}
		// Kafka makes a transaction's offset commit visible when it has
		// written the commit markers, after answering EndTxn: wait for
		// that, so that whoever looks at the group once the run has
		// returned (the next run, an operator, a test) sees its progress.
		if err := retry(ctx, func() error {
			offs, err := rd.adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), o.Group, o.Source)
			if err == nil {
				err = offs.Error()
			}
			return err
		}); err != nil {
			return res, fmt.Errorf("stored progress (group %q) after the last transaction: %w", o.Group, err)
		}
	} else {
		res.Complete = true
	}
	if !res.Complete {
		return res, nil
	}
	if o.To <= 0 {
		// The soft end: the copy may have gone past it (see To).
		for i, r := range src {
			src[i].End = max(r.End, pos[r.Partition])
		}
	}
	if res.Check, err = countCheck(ctx, rd, o, src); err != nil {
		return res, err
	}
	if !res.Check.OK {
		return res, fmt.Errorf("%w: %d records in, %d out", ErrCountMismatch, res.Check.In, res.Check.Out)
	}
	if !res.Check.FormatOK {
		return res, fmt.Errorf("%w: %s holds encrypted records of formats %v, want only %d (is the kseal the copy went through writing format %d?)",
			ErrFormatMismatch, o.Dest, res.Check.DestFormats, o.Format, o.Format)
	}
	return res, nil
}

// ensureDest checks Dest's partition count, creating the topic if asked.
func ensureDest(ctx context.Context, adm *kadm.Client, o ReencryptOptions, partitions int) (created bool, err error) {
	md, err := adm.Metadata(ctx, o.Source, o.Dest)
	if err != nil {
		return false, fmt.Errorf("metadata of %s and %s: %w", o.Source, o.Dest, err)
	}
	if d, ok := md.Topics[o.Dest]; ok && d.Err == nil {
		if len(d.Partitions) != partitions {
			return false, fmt.Errorf("destination %q has %d partitions, source %q has %d: records could not keep their partition", o.Dest, len(d.Partitions), o.Source, partitions)
		}
		return false, nil
	}
	if !o.CreateDest {
		return false, fmt.Errorf("destination topic %q does not exist (create it with %d partitions, or let reencrypt create it)", o.Dest, partitions)
	}
	rf := int16(-1) // the broker's default
	if s := md.Topics[o.Source]; len(s.Partitions) > 0 {
		for _, p := range s.Partitions {
			rf = int16(len(p.Replicas))
			break
		}
	}
	configs := map[string]*string{}
	rcs, err := adm.DescribeTopicConfigs(ctx, o.Source)
	if err != nil {
		return false, fmt.Errorf("configs of %s: %w", o.Source, err)
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Source == kmsg.ConfigSourceDynamicTopicConfig && !c.Sensitive && c.Value != nil {
				configs[c.Key] = c.Value
			}
		}
	}
	resp, err := adm.CreateTopic(ctx, int32(partitions), rf, configs, o.Dest)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return false, fmt.Errorf("create %s: %w", o.Dest, err)
	}
	return true, nil
}

// retry calls fn until it returns nil or an error Kafka does not call
// retriable, for up to 30s: a group's coordinator may still be loading
// (the offsets topic is created on first use).
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil || !kerr.IsRetriable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitReady waits until a new topic's partitions all have leaders.
func waitReady(ctx context.Context, rd *reader, topic string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := rd.ranges(ctx, topic)
		if err == nil || !errors.Is(err, kerr.UnknownTopicOrPartition) && !errors.Is(err, kerr.LeaderNotAvailable) && !errors.Is(err, kerr.NotLeaderForPartition) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("new topic %q not ready after 30s: %w", topic, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// progress returns where each partition resumes: the group's committed
// offsets, seeded with the range starts on the first run (then Dest must
// hold nothing, or the count check could never pass).
func progress(ctx context.Context, rd *reader, o ReencryptOptions, src []Range) (map[int32]int64, error) {
	var offs kadm.OffsetResponses
	err := retry(ctx, func() (err error) {
		// Stable: wait out a commit of offsets still in flight.
		offs, err = rd.adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), o.Group, o.Source)
		if err == nil {
			err = offs.Error()
		}
		return err
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		offs, err = nil, nil // a group that never committed
	}
	if err != nil {
		return nil, fmt.Errorf("stored progress (group %q): %w", o.Group, err)
	}
	pos := map[int32]int64{}
	seeded := false
	for _, r := range src {
		if or, ok := offs.Lookup(o.Source, r.Partition); ok && or.At >= 0 {
			pos[r.Partition] = or.At
			seeded = true
		}
	}
	if seeded {
		for _, r := range src {
			if _, ok := pos[r.Partition]; !ok {
				return nil, fmt.Errorf("group %q stores progress for some partitions of %q but not partition %d", o.Group, o.Source, r.Partition)
			}
		}
		return pos, nil
	}
	dst, err := rd.ranges(ctx, o.Dest)
	if err != nil {
		return nil, err
	}
	for _, r := range dst {
		if r.End > r.Start {
			return nil, fmt.Errorf("destination %q already holds records (partition %d, offsets %d..%d) and group %q stores no progress: use an empty destination topic", o.Dest, r.Partition, r.Start, r.End, o.Group)
		}
	}
	seed := kadm.Offsets{}
	for _, r := range src {
		seed.Add(kadm.Offset{Topic: o.Source, Partition: r.Partition, At: r.Start, LeaderEpoch: -1})
		pos[r.Partition] = r.Start
	}
	if err := retry(ctx, func() error { return rd.adm.CommitAllOffsets(ctx, o.Group, seed) }); err != nil {
		return nil, fmt.Errorf("store starting offsets (group %q): %w", o.Group, err)
	}
	return pos, nil
}

// fence takes over the transactional id: Kafka aborts a transaction a
// killed run left open (or finishes one whose commit it had begun) before it
// answers, so no commit of progress is pending afterwards and the next
// run's group join does not wait out the transaction timeout.
func fence(ctx context.Context, o ReencryptOptions) error {
	// Through kseal, like the copy's own transactions (same identity, same
	// permissions).
	cl, err := kgo.NewClient(append(o.Proxy.opts(), kgo.TransactionalID(o.TransactionalID))...)
	if err != nil {
		return fmt.Errorf("connect to kseal at %s: %w", strings.Join(o.Proxy.Brokers, ","), err)
	}
	defer cl.Close()
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, _, err := cl.ProducerID(fctx); err != nil {
		return fmt.Errorf("take over transactional id %q: %w", o.TransactionalID, err)
	}
	return nil
}

// errCrashed is the simulated crash of the test hook.
var errCrashed = errors.New("simulated crash")

// copyRecords runs the consume-transform-produce loop through the proxy.
func copyRecords(ctx context.Context, o ReencryptOptions, src []Range, pos map[int32]int64, res *ReencryptResult) (crashed bool, err error) {
	end := map[int32]int64{}
	done := map[int32]bool{}
	var paused []int32
	for _, r := range src {
		end[r.Partition] = r.End
		if pos[r.Partition] >= r.End {
			done[r.Partition] = true
			paused = append(paused, r.Partition)
		}
	}
	sess, err := kgo.NewGroupTransactSession(append(o.Proxy.opts(),
		kgo.ConsumerGroup(o.Group),
		// Static membership: a run restarted after a crash takes over its
		// dead predecessor's place at once, instead of waiting a session
		// timeout for the group to give up on it.
		kgo.InstanceID(o.TransactionalID),
		kgo.ConsumeTopics(o.Source),
		kgo.TransactionalID(o.TransactionalID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return false, fmt.Errorf("connect to kseal at %s: %w", strings.Join(o.Proxy.Brokers, ","), err)
	}
	cl := sess.Client()
	if len(paused) > 0 {
		cl.PauseFetchPartitions(map[string][]int32{o.Source: paused})
	}
	defer func() {
		if !crashed {
			sess.Close()
		}
	}()
	// Joining the group can take a while (a coordinator loading, a
	// predecessor's transaction being aborted), so the wait for the first
	// records is longer than a scan's.
	idle := max(o.Idle, time.Minute)
	last := time.Now()
	for len(done) < len(src) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if o.Limit > 0 && res.Copied >= o.Limit {
			return false, nil
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := sess.PollRecords(pctx, o.RecordsPerTxn)
		cancel()
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s[%d] through kseal: %w", t, p, err)
			}
		})
		if ferr != nil {
			return false, ferr
		}
		recs := fs.Records()
		if len(recs) == 0 {
			if time.Since(last) > idle {
				return false, fmt.Errorf("nothing arrived from %q through kseal for %v with %d of %d partitions still to copy", o.Source, idle, len(src)-len(done), len(src))
			}
			continue
		}
		last = time.Now()
		if err := sess.Begin(); err != nil {
			return false, fmt.Errorf("begin transaction: %w", err)
		}
		var (
			mu      sync.Mutex
			prodErr error
			wg      sync.WaitGroup
			n       int64
			moved   int64
		)
		// Every record polled counts as consumed: End commits the offset
		// after the last one of each partition. So with the soft end every
		// polled record is copied, and with a hard end those at or after
		// it are left behind in a group kept for that end (see To).
		hard := o.To > 0
		reached := map[int32]bool{}
		for _, rec := range recs {
			p := rec.Partition
			if rec.Offset >= end[p] {
				reached[p] = true
				if hard {
					continue
				}
			}
			if !rec.Attrs.IsControl() {
				wg.Add(1)
				n++
				sess.Produce(ctx, copyOf(rec, o.Dest), func(_ *kgo.Record, err error) {
					defer wg.Done()
					if err != nil {
						mu.Lock()
						if prodErr == nil {
							prodErr = err
						}
						mu.Unlock()
					}
				})
			}
			if rec.Offset+1 >= end[p] {
				reached[p] = true
			}
		}
		if len(reached) > 0 {
			ps := make([]int32, 0, len(reached))
			for p := range reached {
				ps = append(ps, p)
			}
			cl.PauseFetchPartitions(map[string][]int32{o.Source: ps})
		}
		if o.afterProduce != nil && o.afterProduce(sess, res.Copied+n) {
			return true, errCrashed
		}
		// Ending uses its own deadline: an interrupt (ctx) should let the
		// current transaction finish or abort cleanly, not leave it open.
		ectx, ecancel := context.WithTimeout(context.Background(), time.Minute)
		wg.Wait()
		try := kgo.TryCommit
		if prodErr != nil || ctx.Err() != nil {
			try = kgo.TryAbort
		}
		committed, err := sess.End(ectx, try)
		ecancel()
		if err != nil {
			return false, fmt.Errorf("end transaction: %w", err)
		}
		if prodErr != nil {
			return false, fmt.Errorf("produce to %q through kseal (transaction aborted): %w", o.Dest, prodErr)
		}
		if !committed {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			// A rebalance: the session rewound to the committed offsets.
			res.Aborted++
			resume := make([]int32, 0, len(reached))
			for p := range reached {
				resume = append(resume, p)
			}
			cl.ResumeFetchPartitions(map[string][]int32{o.Source: resume})
			continue
		}
		res.Copied += n
		for t, ps := range cl.CommittedOffsets() {
			if t != o.Source {
				continue
			}
			for p, eo := range ps {
				if old := pos[p]; eo.Offset > old {
					moved += eo.Offset - old
					pos[p] = eo.Offset
				}
				if eo.Offset >= end[p] {
					done[p] = true
				}
			}
		}
		o.Progress.Add(moved)
	}
	res.Complete = true
	return false, nil
}

// copyOf is rec for dest: same partition, key, value, headers (less the
// marker) and timestamp.
func copyOf(rec *kgo.Record, dest string) *kgo.Record {
	out := &kgo.Record{Topic: dest, Partition: rec.Partition, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp}
	if len(rec.Headers) > 0 {
		out.Headers = make([]kgo.RecordHeader, 0, len(rec.Headers))
		for _, h := range rec.Headers {
			if h.Key != recordcrypt.HeaderKey {
				out.Headers = append(out.Headers, h)
			}
		}
	}
	return out
}

// waitStable waits until no transaction is open in topic: every
// partition's last stable offset equals its high watermark. A transaction
// Kafka has acknowledged as committed becomes visible to read_committed
// readers only when the coordinator has written its commit markers, which
// it does after answering EndTxn; until then the last stable offset stays
// at the transaction's first record.
func waitStable(ctx context.Context, adm *kadm.Client, topic string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		hw, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = hw.Error()
		}
		var lso kadm.ListedOffsets
		if err == nil {
			lso, err = adm.ListCommittedOffsets(ctx, topic)
		}
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			return fmt.Errorf("end offsets of %s: %w", topic, err)
		}
		var open []string
		hw.Each(func(h kadm.ListedOffset) {
			if l, ok := lso.Lookup(h.Topic, h.Partition); !ok || l.Offset < h.Offset {
				open = append(open, fmt.Sprintf("partition %d (stable up to %d of %d)", h.Partition, l.Offset, h.Offset))
			}
		})
		if len(open) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(open)
			return fmt.Errorf("%q still has open transactions after %v, in %s: its records cannot be counted yet; run again to repeat the check", topic, limit, strings.Join(open, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// countCheck reads both topics straight from the brokers (committed
// records only) and compares the counts partition by partition. It first
// waits for Dest's transactions, the run's own last one included, to become
// visible: counting earlier reads a prefix of Dest and reports records
// missing that are there.
func countCheck(ctx context.Context, rd *reader, o ReencryptOptions, src []Range) (*CountCheck, error) {
	chk := &CountCheck{OK: true, DestKEKs: []KEKUsage{}, DestFormats: map[string]int64{}, FormatOK: true}
	// The log start may have moved since the copy began (retention).
	now, err := rd.ranges(ctx, o.Source)
	if err != nil {
		return nil, err
	}
	in := map[int32]int64{}
	ranges := make([]Range, len(src))
	for i, r := range src {
		r.Start = max(r.Start, now[i].Start)
		ranges[i] = r
	}
	if err := rd.scan(ctx, ranges, func(rec *kgo.Record) error { in[rec.Partition]++; return nil }, nil); err != nil {
		return nil, fmt.Errorf("count check, source: %w", err)
	}
	if o.beforeDestCount != nil {
		o.beforeDestCount()
	}
	wait := o.stableWait
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	if err := waitStable(ctx, rd.adm, o.Dest, wait); err != nil {
		return nil, fmt.Errorf("count check: %w", err)
	}
	dst, err := rd.ranges(ctx, o.Dest)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	cls := NewClassifier(o.Describe)
	acc := &topicAcc{rep: &TopicReport{}, keks: map[kekKey]*KEKUsage{}, findings: map[string]*Finding{}}
	if err := rd.scan(ctx, dst, func(rec *kgo.Record) error {
		out[rec.Partition]++
		info := cls.Classify(rec)
		acc.add(info, rec)
		if info.State == Encrypted {
			chk.DestFormats[fmt.Sprint(info.Format)]++
			if o.Format != 0 && info.Format != o.Format {
				chk.FormatOK = false
			}
		}
		return nil
	}, nil); err != nil {
		return nil, fmt.Errorf("count check, destination: %w", err)
	}
	acc.finish()
	chk.DestKEKs = acc.rep.KEKs
	chk.DestPlaintext = acc.rep.Plaintext
	for _, r := range src {
		pc := PartitionCount{Partition: r.Partition, In: in[r.Partition], Out: out[r.Partition]}
		chk.In += pc.In
		chk.Out += pc.Out
		chk.OK = chk.OK && pc.In == pc.Out
		chk.Partitions = append(chk.Partitions, pc)
	}
	return chk, nil
}

// WriteText writes the result for a person.
// WriteJSON writes the result as one indented JSON document, for scripts.
func (r *ReencryptResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *ReencryptResult) WriteText(w io.Writer) error {
	var b strings.Builder
	if r.Created {
		fmt.Fprintf(&b, "created %s with %d partitions\n", r.Dest, r.Partitions)
	}
	fmt.Fprintf(&b, "%s -> %s: %s records copied through kseal by this run", r.Source, r.Dest, count(r.Copied))
	if r.Aborted > 0 {
		fmt.Fprintf(&b, " (%d transactions aborted by rebalances and retried)", r.Aborted)
	}
	b.WriteString("\n")
	if !r.Complete {
		fmt.Fprintf(&b, "not finished: progress is stored in group %q; run the same command again to continue\n", r.Group)
	}
	if c := r.Check; c != nil {
		verdict := "OK"
		if !c.OK {
			verdict = "MISMATCH"
		}
		fmt.Fprintf(&b, "count check: %s records in, %s records out: %s\n", count(c.In), count(c.Out), verdict)
		for _, p := range c.Partitions {
			if p.In != p.Out {
				fmt.Fprintf(&b, "  partition %d: %d in, %d out\n", p.Partition, p.In, p.Out)
			}
		}
		for _, k := range c.DestKEKs {
			name := k.KEK
			if name == "" {
				name = "(KEK unknown)"
			} else if k.Version != "" {
				name += " v" + k.Version
			}
			fmt.Fprintf(&b, "  %s now holds %s records under %s\n", r.Dest, count(k.Records), name)
		}
		for _, f := range slices.Sorted(maps.Keys(c.DestFormats)) {
			fmt.Fprintf(&b, "  %s holds %s encrypted records in format %s\n", r.Dest, count(c.DestFormats[f]), f)
		}
		if !c.FormatOK {
			b.WriteString("  FORMAT MISMATCH: not every encrypted record is in the format asked for\n")
		}
		if c.DestPlaintext > 0 {
			fmt.Fprintf(&b, "  %s holds %s plaintext records (its policy does not encrypt them)\n", r.Dest, count(c.DestPlaintext))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

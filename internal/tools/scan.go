package tools

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Range is the offsets [Start, End) of one partition.
type Range struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Start     int64  `json:"start"`
	End       int64  `json:"end"`
}

func (r Range) String() string {
	return fmt.Sprintf("%s[%d] offsets %d..%d", r.Topic, r.Partition, r.Start, r.End)
}

// IncompleteError reports partitions a scan gave up on: nothing arrived for
// the idle timeout although their end was not reached (a broker down, or
// offsets at the end of a log that no fetch returns).
type IncompleteError struct {
	Remaining []Range // what was not read
}

func (e *IncompleteError) Error() string {
	parts := make([]string, 0, len(e.Remaining))
	for _, r := range e.Remaining {
		parts = append(parts, r.String())
	}
	return "scan incomplete: nothing more arrived for " + strings.Join(parts, ", ")
}

// errSkipPartition, returned by a scan callback, stops reading the record's
// partition.
var errSkipPartition = errors.New("skip the rest of this partition")

// DefaultIdle is how long a scan waits for records it expects before it
// gives up on a partition.
const DefaultIdle = 15 * time.Second

// reader reads partitions straight from the brokers, record batches as
// stored: it never goes through kseal and never decrypts.
type reader struct {
	cl        *kgo.Client
	adm       *kadm.Client
	committed bool
	idle      time.Duration
}

// newReader connects to the brokers. With committed, it reads what a
// read_committed consumer sees (no records of aborted or open
// transactions); otherwise every record stored.
func newReader(conn Conn, committed bool, idle time.Duration) (*reader, error) {
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	if idle <= 0 {
		idle = DefaultIdle
	}
	opts := append(conn.opts(),
		kgo.FetchIsolationLevel(iso),
		// Control records (transaction markers) take offsets too; seeing
		// them is how a scan knows it reached an end that is a marker.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(conn.Brokers, ","), err)
	}
	return &reader{cl: cl, adm: kadm.NewClient(cl), committed: committed, idle: idle}, nil
}

func (r *reader) close() { r.cl.Close() }

// ranges returns each partition's stored offsets [log start, end) for the
// topics, sorted by topic and partition. The end is the high watermark, or
// the last stable offset when reading committed records.
func (r *reader) ranges(ctx context.Context, topics ...string) ([]Range, error) {
	starts, err := r.adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	list := r.adm.ListEndOffsets
	if r.committed {
		list = r.adm.ListCommittedOffsets
	}
	ends, err := list(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", strings.Join(topics, ", "), err)
	}
	var out []Range
	for _, t := range topics {
		if len(ends[t]) == 0 {
			return nil, fmt.Errorf("topic %q: no partitions (does it exist?)", t)
		}
		for p, e := range ends[t] {
			s, ok := starts.Lookup(t, p)
			if !ok {
				return nil, fmt.Errorf("topic %q partition %d: no start offset", t, p)
			}
			out = append(out, Range{Topic: t, Partition: p, Start: s.Offset, End: e.Offset})
		}
	}
	sortRanges(out)
	return out, nil
}

func sortRanges(rs []Range) {
	slices.SortFunc(rs, func(a, b Range) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
}

type tp struct {
	topic     string
	partition int32
}

// scan reads the data records of ranges, calling fn for each; advance is
// called with how many offsets each poll moved past (data and control
// records), for progress. It returns an *IncompleteError when partitions
// stall for the idle timeout.
func (r *reader) scan(ctx context.Context, ranges []Range, fn func(*kgo.Record) error, advance func(int64)) error {
	pending := map[tp]*Range{}
	add := map[string]map[int32]kgo.Offset{}
	for i := range ranges {
		rg := ranges[i]
		if rg.Start >= rg.End {
			continue
		}
		pending[tp{rg.Topic, rg.Partition}] = &rg
		if add[rg.Topic] == nil {
			add[rg.Topic] = map[int32]kgo.Offset{}
		}
		add[rg.Topic][rg.Partition] = kgo.NewOffset().At(rg.Start)
	}
	if len(pending) == 0 {
		return nil
	}
	r.cl.AddConsumePartitions(add)
	defer func() {
		rm := map[string][]int32{}
		for t, ps := range add {
			for p := range ps {
				rm[t] = append(rm[t], p)
			}
		}
		r.cl.RemoveConsumePartitions(rm)
		r.cl.ResumeFetchPartitions(rm)
	}()
	finish := func(k tp) {
		delete(pending, k)
		r.cl.PauseFetchPartitions(map[string][]int32{k.topic: {k.partition}})
	}
	last := time.Now()
	for len(pending) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := r.cl.PollRecords(pctx, 10000)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		var moved int64
		var cbErr error
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			k := tp{fp.Topic, fp.Partition}
			rg := pending[k]
			for _, rec := range fp.Records {
				if rg == nil || cbErr != nil {
					return
				}
				if rec.Offset < rg.Start {
					continue // a batch fetched whole begins before the range
				}
				if rec.Offset >= rg.End {
					finish(k)
					return
				}
				moved += rec.Offset + 1 - rg.Start
				rg.Start = rec.Offset + 1
				if !rec.Attrs.IsControl() {
					if err := fn(rec); errors.Is(err, errSkipPartition) {
						finish(k)
						return
					} else if err != nil {
						cbErr = err
						return
					}
				}
				if rg.Start >= rg.End {
					finish(k)
					return
				}
			}
		})
		if cbErr != nil {
			return cbErr
		}
		if moved > 0 {
			last = time.Now()
			if advance != nil {
				advance(moved)
			}
		} else if time.Since(last) > r.idle {
			inc := &IncompleteError{}
			for _, rg := range pending {
				inc.Remaining = append(inc.Remaining, *rg)
			}
			sortRanges(inc.Remaining)
			return inc
		}
	}
	return nil
}

package testenv

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SegmentRecord is one record of a batch as stored on disk (key, value and
// header values nil when null).
type SegmentRecord struct {
	Offset  int64
	Key     []byte
	Value   []byte
	Headers []BinHeader
}

// Parse decodes the batch's records (decompressing them first), with a
// reader of its own, independent of the proxy's.
func (b SegmentBatch) Parse() ([]SegmentRecord, error) {
	data := b.Records
	if b.Codec != CodecNone {
		var err error
		if data, err = b.Decompressed(); err != nil {
			return nil, err
		}
	}
	r := segReader{b: data}
	out := make([]SegmentRecord, 0, b.NumRecords)
	for i := int32(0); i < b.NumRecords; i++ {
		n := r.varint()
		if r.err != nil || n < 0 || int(n) > len(r.b) {
			return out, fmt.Errorf("testenv: batch at %d: record %d: bad length", b.BaseOffset, i)
		}
		rec := segReader{b: r.b[:n]}
		r.b = r.b[n:]
		rec.byte1()  // attributes
		rec.varint() // timestamp delta
		var sr SegmentRecord
		sr.Offset = b.BaseOffset + rec.varint()
		sr.Key = rec.bytes()
		sr.Value = rec.bytes()
		nh := rec.varint()
		for j := int64(0); j < nh && rec.err == nil; j++ {
			k := rec.bytes()
			sr.Headers = append(sr.Headers, BinHeader{Key: string(k), Value: rec.bytes()})
		}
		if rec.err != nil || len(rec.b) != 0 {
			return out, fmt.Errorf("testenv: batch at %d: record %d is malformed", b.BaseOffset, i)
		}
		out = append(out, sr)
	}
	return out, nil
}

type segReader struct {
	b   []byte
	err error
}

func (r *segReader) byte1() byte {
	if len(r.b) < 1 {
		r.err = fmt.Errorf("short")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// varint reads a zigzag varint (Kafka's record fields).
func (r *segReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return int64(u>>1) ^ -int64(u&1)
}

// bytes reads varint-length bytes, nil for length -1.
func (r *segReader) bytes() []byte {
	n := r.varint()
	if r.err != nil || n < 0 {
		return nil
	}
	if int(n) > len(r.b) {
		r.err = fmt.Errorf("short")
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// ReplicaRecords reads every record of topic[partition] from disk, once per
// replica (one slice per log dir holding the partition), so a test can
// check what each broker's log cleaner left. Batches a broker is still
// appending are skipped, like in TopicBatches.
func (c *Cluster) ReplicaRecords(topic string, partition int32) (map[string][]SegmentRecord, error) {
	out := map[string][]SegmentRecord{}
	for _, d := range c.LogDirs {
		dir := filepath.Join(d, topic+"-"+strconv.Itoa(int(partition)))
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		segs, err := segmentFiles(dir)
		if err != nil {
			return nil, err
		}
		var all []SegmentRecord
		for _, s := range segs {
			b, err := os.ReadFile(s)
			if os.IsNotExist(err) {
				// The cleaner swapped the segment while we listed: read
				// the partition again later.
				return nil, fmt.Errorf("testenv: %s vanished while read: %w", s, err)
			}
			if err != nil {
				return nil, fmt.Errorf("testenv: read segment: %w", err)
			}
			bs, _ := ParseSegment(b)
			for _, sb := range bs {
				if sb.Control {
					continue
				}
				rs, err := sb.Parse()
				if err != nil {
					return nil, fmt.Errorf("testenv: %s: %w", s, err)
				}
				all = append(all, rs...)
			}
		}
		out[strings.TrimSuffix(d, "/")] = all
	}
	return out, nil
}

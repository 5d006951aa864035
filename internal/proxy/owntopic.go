package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/records"
)

// This file is kseal's own client for the single-partition topics it keeps
// for itself in the upstream cluster (the deterministic record-key keys of
// internal/detkey live in one). It runs over kseal's own connections
// (ownConn: TLS and kseal's SASL login when configured), like tail.go:
// requests are encoded with kmsg, the broker's answers are read with
// bounded hand-written decoders of non-flexible versions (never kmsg's
// decoders), and record batches with internal/records (CRC checked,
// decompression bounded).

// Versions of kseal's own-topic requests: the newest non-flexible ones, all
// served by Kafka 2.x to 4.x brokers (Metadata, ListOffsets and Fetch are
// tail.go's).
const (
	ownCreateTopicsVersion = 4
	ownProduceVersion      = 7
)

const (
	// ownAttempts bounds the tries of one own-topic operation (a leader or
	// controller that moved, a topic created a moment ago that the broker
	// does not know yet).
	ownAttempts = 6
	// ownBackoff is the pause before the second try, doubled up to
	// ownBackoffMax.
	ownBackoff    = 100 * time.Millisecond
	ownBackoffMax = 2 * time.Second
	// ownTimeoutMs is the broker-side timeout of CreateTopics and Produce.
	ownTimeoutMs = 15000
	// ownMaxDecompressed bounds what one fetched batch of an own topic may
	// decompress to (kseal writes them uncompressed; a larger one is
	// refused as corrupt).
	ownMaxDecompressed = 8 << 20
	// ownMaxFetches bounds the Fetch requests of one ReadFrom call (each
	// returns up to tailFetchMaxBytes): a caller reads more with another
	// call from the offset it got back.
	ownMaxFetches = 64
)

// Upstream implements filter.Conn: kseal's own client of the connection's
// upstream cluster.
func (c *conn) Upstream() filter.Upstream { return ownUpstream{vc: c.vc} }

// Upstream returns kseal's own client of the named virtual cluster's
// upstream cluster, or nil when there is no such virtual cluster.
func (s *Server) Upstream(virtualCluster string) filter.Upstream {
	for _, vc := range s.clusters {
		if vc.name == virtualCluster {
			return ownUpstream{vc: vc}
		}
	}
	return nil
}

// ownUpstream is the filter.Upstream of a virtual cluster.
type ownUpstream struct{ vc *virtualCluster }

// retriable reports whether a broker's error code may pass with a retry
// (after a metadata refresh).
func retriableCode(code int16) bool {
	switch code {
	case kerr.NotController.Code, kerr.NotLeaderForPartition.Code, kerr.LeaderNotAvailable.Code,
		kerr.UnknownTopicOrPartition.Code, kerr.FencedLeaderEpoch.Code, kerr.UnknownLeaderEpoch.Code:
		return true
	}
	e := kerr.ErrorForCode(code)
	var ke *kerr.Error
	return errors.As(e, &ke) && ke.Retriable
}

// codeError is a broker's error code as an error that errors.Is matches
// against kerr's values.
func codeError(code int16) error {
	return kerr.ErrorForCode(code)
}

// retryOwn runs op up to ownAttempts times with backoff while it reports
// the failure as retriable and ctx allows. The last error is wrapped in
// filter.ErrUpstreamUnavailable when it was retriable.
func retryOwn(ctx context.Context, what string, op func() (retry bool, err error)) error {
	backoff := ownBackoff
	var err error
	for attempt := 1; ; attempt++ {
		var retry bool
		retry, err = op()
		if err == nil {
			return nil
		}
		if !retry {
			return fmt.Errorf("%s: %w", what, err)
		}
		if attempt >= ownAttempts || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, ownBackoffMax)
	}
	return fmt.Errorf("%s: %w: %w", what, filter.ErrUpstreamUnavailable, err)
}

// metadata asks the bootstrap servers about topic.
func (u ownUpstream) metadata(ctx context.Context, topic string) (ownMetadata, error) {
	var lastErr error
	for _, addr := range u.vc.cfg.Upstream.BootstrapServers {
		md, err := u.metadataFrom(ctx, addr, topic)
		if err == nil {
			return md, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return ownMetadata{}, lastErr
}

func (u ownUpstream) metadataFrom(ctx context.Context, addr, topic string) (ownMetadata, error) {
	c, err := u.vc.ownConn(ctx, addr)
	if err != nil {
		return ownMetadata{}, err
	}
	defer c.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(tailMetadataVersion)
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = &topic
	req.Topics = []kmsg.MetadataRequestTopic{rt}
	req.AllowAutoTopicCreation = false
	body, err := ownRoundTrip(c, int16(kmsg.Metadata), tailMetadataVersion, 100, req, u.vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return ownMetadata{}, fmt.Errorf("metadata for %q from %s: %w", topic, addr, err)
	}
	md, err := parseOwnMetadata(body, topic)
	if err != nil {
		return ownMetadata{}, fmt.Errorf("metadata for %q from %s: %w", topic, addr, err)
	}
	return md, nil
}

// addr is the address of broker node (from md, else what the cluster told
// kseal before).
func (u ownUpstream) addr(md ownMetadata, node int32) (string, bool) {
	if a, ok := md.brokers[node]; ok {
		return a, true
	}
	return u.vc.brokerAddr(node)
}

// leader is the address of the leader of partition 0 of topic. exists is
// false when the cluster has no such topic.
func (u ownUpstream) leader(ctx context.Context, topic string) (addr string, exists bool, err error) {
	md, err := u.metadata(ctx, topic)
	if err != nil {
		return "", false, err
	}
	for _, p := range md.parts {
		if p.id != 0 {
			continue
		}
		if p.leader < 0 {
			return "", true, fmt.Errorf("topic %q partition 0: %w", topic, codeError(kerr.LeaderNotAvailable.Code))
		}
		a, ok := u.addr(md, p.leader)
		if !ok {
			return "", true, fmt.Errorf("topic %q: leader %d is not in the metadata", topic, p.leader)
		}
		return a, true, nil
	}
	if len(md.parts) > 0 {
		return "", true, fmt.Errorf("topic %q has no partition 0", topic)
	}
	return "", false, nil
}

// CreateTopic implements Upstream.
func (u ownUpstream) CreateTopic(ctx context.Context, topic string, replicationFactor int16, configs map[string]string) error {
	return u.guard(func() error { return u.createTopic(ctx, topic, replicationFactor, configs) })
}

// guard runs one of the own client's operations, callers' visit functions
// included, so that a panic on what a broker sent (a bug) fails that
// operation, logged and counted in kseal_panics_total{side="own_client"},
// instead of ending the process: the callers run in background goroutines
// (the key store's reads and writes) where nothing else would recover it.
func (u ownUpstream) guard(fn func() error) error {
	return u.vc.guard(sideOwnClient, u.vc.log, fn)
}

func (u ownUpstream) createTopic(ctx context.Context, topic string, replicationFactor int16, configs map[string]string) error {
	return retryOwn(ctx, fmt.Sprintf("create topic %q", topic), func() (bool, error) {
		md, err := u.metadata(ctx, topic)
		if err != nil {
			return true, err
		}
		if len(md.parts) > 0 {
			return false, nil // exists
		}
		rf := replicationFactor
		if rf <= 0 {
			rf = int16(min(3, len(md.brokers)))
			if rf < 1 {
				return true, errors.New("the metadata names no broker")
			}
		}
		addr, ok := u.addr(md, md.controller)
		if !ok { // KRaft clusters name a random broker; any broker forwards
			ids := make([]int32, 0, len(md.brokers))
			for id := range md.brokers {
				ids = append(ids, id)
			}
			if len(ids) == 0 {
				return true, errors.New("the metadata names no broker")
			}
			sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
			addr = md.brokers[ids[0]]
		}
		return u.createTopicAt(ctx, addr, topic, rf, configs)
	})
}

func (u ownUpstream) createTopicAt(ctx context.Context, addr, topic string, rf int16, configs map[string]string) (bool, error) {
	c, err := u.vc.ownConn(ctx, addr)
	if err != nil {
		return true, err
	}
	defer c.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(ownCreateTopicsVersion)
	req.TimeoutMillis = ownTimeoutMs
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = 1
	rt.ReplicationFactor = rf
	names := make([]string, 0, len(configs))
	for k := range configs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		cfg := kmsg.NewCreateTopicsRequestTopicConfig()
		cfg.Name = k
		v := configs[k]
		cfg.Value = &v
		rt.Configs = append(rt.Configs, cfg)
	}
	req.Topics = []kmsg.CreateTopicsRequestTopic{rt}
	body, err := ownRoundTrip(c, int16(kmsg.CreateTopics), ownCreateTopicsVersion, 100, req, u.vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return true, fmt.Errorf("%s: %w", addr, err)
	}
	code, msg, err := parseOwnCreateTopics(body, topic)
	if err != nil {
		return true, fmt.Errorf("%s: %w", addr, err)
	}
	switch {
	case code == 0, code == kerr.TopicAlreadyExists.Code:
		return false, nil
	case retriableCode(code):
		return true, fmt.Errorf("%s: %w%s", addr, codeError(code), msg)
	default:
		return false, fmt.Errorf("%s: %w%s", addr, codeError(code), msg)
	}
}

// parseOwnCreateTopics reads a CreateTopics v4 response: topic's error code
// and message (as ": message", made printable, or "").
func parseOwnCreateTopics(body []byte, topic string) (int16, string, error) {
	r := kbin.Reader{Src: body}
	r.Int32() // throttle
	n, err := tailArrayLen(&r)
	if err != nil {
		return 0, "", err
	}
	for range n {
		name := tailString(&r)
		code := r.Int16()
		msg := r.NullableString()
		if !r.Ok() {
			break
		}
		if name == topic {
			m := ""
			if msg != nil && *msg != "" {
				m = ": " + printable(*msg)
			}
			return code, m, nil
		}
	}
	if !r.Ok() {
		return 0, "", errors.New("malformed create topics response")
	}
	return 0, "", fmt.Errorf("topic %q missing from the create topics response", topic)
}

// Produce implements Upstream.
func (u ownUpstream) Produce(ctx context.Context, topic string, key, value []byte) (offset int64, err error) {
	err = u.guard(func() error {
		offset, err = u.produce(ctx, topic, key, value)
		return err
	})
	return offset, err
}

func (u ownUpstream) produce(ctx context.Context, topic string, key, value []byte) (int64, error) {
	batch := appendOneRecordBatch(nil, key, value, time.Now().UnixMilli())
	var offset int64
	err := retryOwn(ctx, fmt.Sprintf("produce to %q", topic), func() (bool, error) {
		addr, exists, err := u.leader(ctx, topic)
		if err != nil {
			return true, err
		}
		if !exists {
			return true, fmt.Errorf("topic %q: %w", topic, codeError(kerr.UnknownTopicOrPartition.Code))
		}
		var retry bool
		offset, retry, err = u.produceAt(ctx, addr, topic, batch)
		return retry, err
	})
	return offset, err
}

func (u ownUpstream) produceAt(ctx context.Context, addr, topic string, batch []byte) (int64, bool, error) {
	c, err := u.vc.ownConn(ctx, addr)
	if err != nil {
		return 0, true, err
	}
	defer c.Close()
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(ownProduceVersion)
	req.Acks = -1
	req.TimeoutMillis = ownTimeoutMs
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = 0
	rp.Records = batch
	rt.Partitions = []kmsg.ProduceRequestTopicPartition{rp}
	req.Topics = []kmsg.ProduceRequestTopic{rt}
	body, err := ownRoundTrip(c, int16(kmsg.Produce), ownProduceVersion, 100, req, u.vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return 0, true, fmt.Errorf("%s: %w", addr, err)
	}
	code, offset, err := parseOwnProduce(body, topic)
	if err != nil {
		return 0, true, fmt.Errorf("%s: %w", addr, err)
	}
	if code != 0 {
		return 0, retriableCode(code), fmt.Errorf("%s: %w", addr, codeError(code))
	}
	if offset < 0 {
		return 0, false, fmt.Errorf("%s: produce answered offset %d", addr, offset)
	}
	return offset, false, nil
}

// parseOwnProduce reads a Produce v7 response: partition 0's error code
// and base offset.
func parseOwnProduce(body []byte, topic string) (int16, int64, error) {
	r := kbin.Reader{Src: body}
	nt, err := tailArrayLen(&r)
	if err != nil {
		return 0, 0, err
	}
	for range nt {
		name := tailString(&r)
		np, err := tailArrayLen(&r)
		if err != nil {
			return 0, 0, err
		}
		for range np {
			id := r.Int32()
			code := r.Int16()
			offset := r.Int64()
			r.Int64() // log append time
			r.Int64() // log start offset
			if !r.Ok() {
				return 0, 0, errors.New("malformed produce response")
			}
			if name == topic && id == 0 {
				return code, offset, nil
			}
		}
	}
	if !r.Ok() {
		return 0, 0, errors.New("malformed produce response")
	}
	return 0, 0, fmt.Errorf("topic %q partition 0 missing from the produce response", topic)
}

// appendOneRecordBatch appends a v2 record batch (uncompressed, no producer
// id) holding one record with key, value and no headers.
func appendOneRecordBatch(dst, key, value []byte, timestamp int64) []byte {
	var rec []byte
	rec = append(rec, 0)              // attributes
	rec = binary.AppendVarint(rec, 0) // timestamp delta
	rec = binary.AppendVarint(rec, 0) // offset delta
	rec = appendVarbytes(rec, key)    //
	rec = appendVarbytes(rec, value)  //
	rec = binary.AppendVarint(rec, 0) // headers
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, 0)          // base offset
	dst = binary.BigEndian.AppendUint32(dst, 0)          // length, set below
	dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // partition leader epoch -1
	dst = append(dst, 2)                                 // magic
	crcAt := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, 0) // crc, set below
	dst = binary.BigEndian.AppendUint16(dst, 0) // attributes
	dst = binary.BigEndian.AppendUint32(dst, 0) // last offset delta
	dst = binary.BigEndian.AppendUint64(dst, uint64(timestamp))
	dst = binary.BigEndian.AppendUint64(dst, uint64(timestamp))
	dst = binary.BigEndian.AppendUint64(dst, 0xffffffffffffffff) // producer id -1
	dst = binary.BigEndian.AppendUint16(dst, 0xffff)             // producer epoch -1
	dst = binary.BigEndian.AppendUint32(dst, 0xffffffff)         // base sequence -1
	dst = binary.BigEndian.AppendUint32(dst, 1)                  // records
	dst = binary.AppendVarint(dst, int64(len(rec)))
	dst = append(dst, rec...)
	binary.BigEndian.PutUint32(dst[start+8:], uint32(len(dst)-start-12))
	binary.BigEndian.PutUint32(dst[crcAt:], crc32.Checksum(dst[crcAt+4:], castagnoli))
	return dst
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendVarbytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// ReadFrom implements Upstream.
func (u ownUpstream) ReadFrom(ctx context.Context, topic string, offset int64, visit func(int64, []byte, []byte) bool) (next int64, err error) {
	next = offset
	err = u.guard(func() error {
		next, err = u.readFrom(ctx, topic, offset, visit)
		return err
	})
	return next, err
}

func (u ownUpstream) readFrom(ctx context.Context, topic string, offset int64, visit func(int64, []byte, []byte) bool) (int64, error) {
	next := offset
	err := retryOwn(ctx, fmt.Sprintf("read %q from offset %d", topic, offset), func() (bool, error) {
		addr, exists, err := u.leader(ctx, topic)
		if err != nil {
			return true, err
		}
		if !exists {
			return false, nil
		}
		var retry bool
		next, retry, err = u.readAt(ctx, addr, topic, next, visit)
		return retry, err
	})
	return next, err
}

// readAt reads partition 0 of topic from offset on the broker at addr (its
// leader) up to the high watermark. It returns the offset to read from
// next, also on failure (the records before it were visited).
func (u ownUpstream) readAt(ctx context.Context, addr, topic string, offset int64, visit func(int64, []byte, []byte) bool) (int64, bool, error) {
	c, err := u.vc.ownConn(ctx, addr)
	if err != nil {
		return offset, true, err
	}
	defer c.Close()
	proc := records.NewProcessor(records.WithMaxDecompressed(ownMaxDecompressed), records.WithVerifyCRC(true))
	defer proc.Close()
	corr := int32(100)
	next := offset
	for range ownMaxFetches {
		corr++
		f, err := u.fetch(c, corr, topic, next)
		if errors.Is(err, kerr.OffsetOutOfRange) {
			// Records below next are gone (kseal's topics keep theirs
			// forever; someone deleted them). Go on from the log start.
			start, lerr := u.logStart(c, corr+1, topic)
			corr++
			if lerr != nil {
				return next, true, lerr
			}
			if start <= next {
				return next, false, fmt.Errorf("offset %d out of range, log start %d", next, start)
			}
			next = start
			continue
		}
		if err != nil {
			var ke *kerr.Error
			retry := !errors.As(err, &ke) || retriableCode(ke.Code)
			return next, retry, fmt.Errorf("%s: %w", addr, err)
		}
		if next >= f.hw {
			return next, false, nil
		}
		before := next
		stop := false
		it := records.NewBatchIter(f.records)
		for !stop && it.Next() {
			b := it.Batch()
			if b.Kind == records.KindPartial {
				break
			}
			last := b.BaseOffset + int64(b.LastOffsetDelta)
			if last < next {
				continue
			}
			if b.Control() {
				next = last + 1
				continue
			}
			// A batch that cannot be read (bad CRC, corrupt, too large,
			// legacy format) holds no record kseal wrote: it is skipped
			// from where it fails, the same way by every kseal process.
			if err := proc.Reset(b); err == nil {
				for proc.Next() {
					rec := proc.Record()
					o := b.BaseOffset + int64(rec.OffsetDelta)
					if o > last {
						break // corrupt offset delta: skip the rest
					}
					if o < next {
						continue
					}
					next = o + 1
					if !visit(o, rec.Key, rec.Value) {
						stop = true
						break
					}
				}
			}
			if stop {
				break
			}
			next = max(next, last+1)
		}
		if stop {
			return next, false, nil
		}
		if err := it.Err(); err != nil {
			return next, false, fmt.Errorf("%s: %w", addr, err)
		}
		if next == before {
			return next, false, fmt.Errorf("%s: fetch at offset %d below the high watermark %d returned no whole batch", addr, next, f.hw)
		}
	}
	return next, false, nil
}

// fetched is partition 0 of a Fetch response.
type fetched struct {
	records  []byte
	hw       int64
	logStart int64
}

func (u ownUpstream) fetch(c net.Conn, corr int32, topic string, offset int64) (fetched, error) {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(tailFetchVersion)
	req.ReplicaID = -1
	req.MaxBytes = tailFetchMaxBytes
	req.SessionEpoch = -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.CurrentLeaderEpoch = -1
	fp.FetchOffset = offset
	fp.LogStartOffset = -1
	fp.PartitionMaxBytes = tailFetchMaxBytes
	ft.Partitions = []kmsg.FetchRequestTopicPartition{fp}
	req.Topics = []kmsg.FetchRequestTopic{ft}
	body, err := ownRoundTrip(c, int16(kmsg.Fetch), tailFetchVersion, corr, req, u.vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return fetched{}, err
	}
	return parseOwnFetch(body, topic, 0)
}

// logStart asks for partition 0's log start offset (ListOffsets, earliest).
func (u ownUpstream) logStart(c net.Conn, corr int32, topic string) (int64, error) {
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.SetVersion(tailListOffsetsVersion)
	lo.ReplicaID = -1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.CurrentLeaderEpoch = -1
	lp.Timestamp = -2 // earliest
	lt.Partitions = []kmsg.ListOffsetsRequestTopicPartition{lp}
	lo.Topics = []kmsg.ListOffsetsRequestTopic{lt}
	body, err := ownRoundTrip(c, int16(kmsg.ListOffsets), tailListOffsetsVersion, corr, lo, u.vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return 0, err
	}
	ends, err := parseTailListOffsets(body, topic)
	if err != nil {
		return 0, err
	}
	start, ok := ends[0]
	if !ok {
		return 0, errors.New("partition 0 missing from the list offsets response")
	}
	return start, nil
}

// parseOwnFetch reads a Fetch v11 response for partition p of topic. A
// broker's error code comes back as its kerr value (errors.Is).
func parseOwnFetch(body []byte, topic string, p int32) (fetched, error) {
	r := kbin.Reader{Src: body}
	r.Int32() // throttle
	if code := r.Int16(); code != 0 {
		return fetched{}, codeError(code)
	}
	r.Int32() // session
	nt, err := tailArrayLen(&r)
	if err != nil {
		return fetched{}, err
	}
	for range nt {
		name := tailString(&r)
		np, err := tailArrayLen(&r)
		if err != nil {
			return fetched{}, err
		}
		for range np {
			id := r.Int32()
			code := r.Int16()
			hw := r.Int64()
			r.Int64() // last stable offset
			logStart := r.Int64()
			na, err := tailArrayLen(&r)
			if err != nil {
				return fetched{}, err
			}
			r.Span(16 * na) // aborted transactions
			r.Int32()       // preferred read replica
			recs := r.NullableBytes()
			if !r.Ok() {
				return fetched{}, errors.New("malformed fetch response")
			}
			if name == topic && id == p {
				if code != 0 {
					return fetched{}, codeError(code)
				}
				return fetched{records: recs, hw: hw, logStart: logStart}, nil
			}
		}
	}
	if !r.Ok() {
		return fetched{}, errors.New("malformed fetch response")
	}
	return fetched{}, fmt.Errorf("partition %d missing from the fetch response", p)
}

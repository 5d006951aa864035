package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/filter"
)

// This file reads the newest record batches of a topic over kseal's own
// upstream connections: Metadata for the partitions and their leaders,
// ListOffsets for each partition's high watermark, then Fetch from just
// below it. The encryption filter uses it to tell whether kseal has been
// encrypting a topic (its newest batches carry kseal's marker) before it
// lets the topic's records through in plaintext.
//
// The broker's answers are decoded here with bounded readers (never kmsg's
// decoders), like every other answer to kseal's own requests: non-flexible
// versions only, every array length checked against the bytes left.

// Versions of kseal's own tail requests: the newest non-flexible ones
// (no tagged fields), all served by Kafka 2.x to 4.x brokers.
const (
	tailMetadataVersion    = 8
	tailListOffsetsVersion = 5
	tailFetchVersion       = 11
)

// MaxTailSteps bounds how many times NewestBatches fetches further back in
// one partition when the visitor asks for older batches (transaction
// markers and tombstones at the end of a log say nothing).
const MaxTailSteps = 4

// NewestBatches implements filter.Conn (see there): it reads the newest
// record batches of every partition of topic over kseal's own upstream
// connections, going back at most MaxTailSteps times per partition.
func (c *conn) NewestBatches(ctx context.Context, topic string, visit filter.TailVisitor) error {
	return c.vc.newestBatches(ctx, topic, visit)
}

type tailPartition struct {
	id     int32
	leader int32
}

func (vc *virtualCluster) newestBatches(ctx context.Context, topic string, visit filter.TailVisitor) error {
	parts, brokers, err := vc.tailMetadata(ctx, topic)
	if err != nil {
		return err
	}
	byLeader := map[int32][]int32{}
	var leaders []int32
	for _, p := range parts {
		if p.leader < 0 {
			return fmt.Errorf("topic %q partition %d has no leader", topic, p.id)
		}
		if byLeader[p.leader] == nil {
			leaders = append(leaders, p.leader)
		}
		byLeader[p.leader] = append(byLeader[p.leader], p.id)
	}
	for _, leader := range leaders {
		addr, ok := brokers[leader]
		if !ok {
			if addr, ok = vc.brokerAddr(leader); !ok {
				return fmt.Errorf("topic %q: leader %d is not in the metadata", topic, leader)
			}
		}
		stop, err := vc.tailLeader(ctx, addr, topic, byLeader[leader], visit)
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// tailMetadata asks a bootstrap server for topic's partitions and leaders
// and the brokers' addresses.
func (vc *virtualCluster) tailMetadata(ctx context.Context, topic string) ([]tailPartition, map[int32]string, error) {
	var lastErr error
	for _, addr := range vc.cfg.Upstream.BootstrapServers {
		parts, brokers, err := vc.tailMetadataFrom(ctx, addr, topic)
		if err == nil {
			return parts, brokers, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, lastErr
}

func (vc *virtualCluster) tailMetadataFrom(ctx context.Context, addr, topic string) ([]tailPartition, map[int32]string, error) {
	c, err := vc.ownConn(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(tailMetadataVersion)
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = &topic
	req.Topics = []kmsg.MetadataRequestTopic{rt}
	req.AllowAutoTopicCreation = false
	body, err := ownRoundTrip(c, int16(kmsg.Metadata), tailMetadataVersion, 100, req, vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata for %q from %s: %w", topic, addr, err)
	}
	parts, brokers, err := parseTailMetadata(body, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata for %q from %s: %w", topic, addr, err)
	}
	return parts, brokers, nil
}

// arrayLen reads a non-flexible array length, refusing one longer than the
// bytes left (every element takes at least one byte).
func tailArrayLen(r *kbin.Reader) (int, error) {
	n := r.ArrayLen()
	if n == -1 {
		return 0, nil
	}
	if n < 0 || int(n) > len(r.Src) || !r.Ok() {
		return 0, errors.New("malformed array length")
	}
	return int(n), nil
}

func tailString(r *kbin.Reader) string {
	n := r.Int16()
	if n < 0 {
		return ""
	}
	return string(r.Span(int(n)))
}

// parseTailMetadata reads a Metadata v8 response.
func parseTailMetadata(body []byte, topic string) ([]tailPartition, map[int32]string, error) {
	md, err := parseOwnMetadata(body, topic)
	return md.parts, md.brokers, err
}

// ownMetadata is what a Metadata v8 response says about one topic and the
// cluster.
type ownMetadata struct {
	parts      []tailPartition // none: the cluster has no such topic
	brokers    map[int32]string
	controller int32
}

// parseOwnMetadata reads a Metadata v8 response for topic.
func parseOwnMetadata(body []byte, topic string) (ownMetadata, error) {
	parts, brokers, controller, err := parseMetadataV8(body, topic)
	return ownMetadata{parts: parts, brokers: brokers, controller: controller}, err
}

func parseMetadataV8(body []byte, topic string) ([]tailPartition, map[int32]string, int32, error) {
	r := kbin.Reader{Src: body}
	r.Int32() // throttle
	nb, err := tailArrayLen(&r)
	if err != nil {
		return nil, nil, 0, err
	}
	brokers := make(map[int32]string, nb)
	for range nb {
		id := r.Int32()
		host := tailString(&r)
		port := r.Int32()
		r.NullableString() // rack
		brokers[id] = net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	r.NullableString() // cluster id
	controller := r.Int32()
	nt, err := tailArrayLen(&r)
	if err != nil {
		return nil, nil, 0, err
	}
	var parts []tailPartition
	found := false
	for range nt {
		code := r.Int16()
		name := tailString(&r)
		r.Bool() // internal
		np, err := tailArrayLen(&r)
		if err != nil {
			return nil, nil, 0, err
		}
		mine := name == topic
		if mine {
			found = true
			switch {
			case code == kerr.UnknownTopicOrPartition.Code:
				// No such topic: nothing was ever written to it.
			case code != 0:
				return nil, nil, 0, fmt.Errorf("topic %q: %s", topic, errorName(code))
			}
		}
		for range np {
			pcode := r.Int16()
			id := r.Int32()
			leader := r.Int32()
			r.Int32()     // leader epoch
			for range 3 { // replicas, isr, offline replicas
				n, err := tailArrayLen(&r)
				if err != nil {
					return nil, nil, 0, err
				}
				r.Span(4 * n)
			}
			if mine && code == 0 {
				if pcode != 0 && pcode != kerr.ReplicaNotAvailable.Code {
					return nil, nil, 0, fmt.Errorf("topic %q partition %d: %s", topic, id, errorName(pcode))
				}
				parts = append(parts, tailPartition{id: id, leader: leader})
			}
		}
		r.Int32() // topic authorized operations
	}
	if !r.Ok() {
		return nil, nil, 0, errors.New("malformed metadata response")
	}
	if !found {
		return nil, nil, 0, fmt.Errorf("topic %q missing from the metadata response", topic)
	}
	return parts, brokers, controller, nil
}

// tailLeader reads the newest batches of partitions led by the broker at addr.
func (vc *virtualCluster) tailLeader(ctx context.Context, addr, topic string, partitions []int32, visit filter.TailVisitor) (bool, error) {
	c, err := vc.ownConn(ctx, addr)
	if err != nil {
		return false, err
	}
	defer c.Close()
	corr := int32(100)
	next := func() int32 { corr++; return corr }

	lo := kmsg.NewPtrListOffsetsRequest()
	lo.SetVersion(tailListOffsetsVersion)
	lo.ReplicaID = -1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p
		lp.CurrentLeaderEpoch = -1
		lp.Timestamp = -1 // latest: the high watermark
		lt.Partitions = append(lt.Partitions, lp)
	}
	lo.Topics = []kmsg.ListOffsetsRequestTopic{lt}
	body, err := ownRoundTrip(c, int16(kmsg.ListOffsets), tailListOffsetsVersion, next(), lo, vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return false, fmt.Errorf("list offsets of %q from %s: %w", topic, addr, err)
	}
	ends, err := parseTailListOffsets(body, topic)
	if err != nil {
		return false, fmt.Errorf("list offsets of %q from %s: %w", topic, addr, err)
	}
	for _, p := range partitions {
		end, ok := ends[p]
		if !ok {
			return false, fmt.Errorf("list offsets of %q from %s: partition %d missing", topic, addr, p)
		}
		offset := end - 1
		for step := 0; offset >= 0 && step < MaxTailSteps; step++ {
			recs, logStart, err := vc.tailFetch(c, next(), topic, p, offset)
			if err != nil {
				return false, fmt.Errorf("fetch %q partition %d offset %d from %s: %w", topic, p, offset, addr, err)
			}
			earlier, stop := visit(p, recs)
			if stop {
				return true, nil
			}
			if !earlier || len(recs) < 8 {
				break
			}
			offset = int64(binary.BigEndian.Uint64(recs)) - 1
			if offset < logStart {
				break
			}
		}
	}
	return false, nil
}

// parseTailListOffsets reads a ListOffsets v5 response: partition -> offset.
func parseTailListOffsets(body []byte, topic string) (map[int32]int64, error) {
	r := kbin.Reader{Src: body}
	r.Int32() // throttle
	nt, err := tailArrayLen(&r)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for range nt {
		name := tailString(&r)
		np, err := tailArrayLen(&r)
		if err != nil {
			return nil, err
		}
		for range np {
			id := r.Int32()
			code := r.Int16()
			r.Int64() // timestamp
			offset := r.Int64()
			r.Int32() // leader epoch
			if name != topic {
				continue
			}
			if code != 0 {
				return nil, fmt.Errorf("partition %d: %s", id, errorName(code))
			}
			out[id] = offset
		}
	}
	if !r.Ok() {
		return nil, errors.New("malformed list offsets response")
	}
	return out, nil
}

// tailFetchMaxBytes bounds one tail Fetch. Brokers return the first batch
// whole even when it is larger (KIP-74), up to the frame limit.
const tailFetchMaxBytes = 1 << 20

// tailFetch fetches partition p of topic from offset on c.
func (vc *virtualCluster) tailFetch(c net.Conn, corr int32, topic string, p int32, offset int64) ([]byte, int64, error) {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(tailFetchVersion)
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 0
	req.MaxBytes = tailFetchMaxBytes
	req.IsolationLevel = 0
	req.SessionID = 0
	req.SessionEpoch = -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition = p
	fp.CurrentLeaderEpoch = -1
	fp.FetchOffset = offset
	fp.LogStartOffset = -1
	fp.PartitionMaxBytes = tailFetchMaxBytes
	ft.Partitions = []kmsg.FetchRequestTopicPartition{fp}
	req.Topics = []kmsg.FetchRequestTopic{ft}
	body, err := ownRoundTrip(c, int16(kmsg.Fetch), tailFetchVersion, corr, req, vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		return nil, 0, err
	}
	return parseTailFetch(body, topic, p)
}

// parseTailFetch reads a Fetch v11 response for one partition: its records
// and log start offset.
func parseTailFetch(body []byte, topic string, p int32) ([]byte, int64, error) {
	f, err := parseOwnFetch(body, topic, p)
	return f.records, f.logStart, err
}

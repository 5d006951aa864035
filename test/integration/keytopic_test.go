//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/filter"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/proxy"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
)

// wrapKMS is a KMS every "process" of the test shares by construction: an
// EDEK carries its DEK in hex (the test is about the key topic, not the KMS).
type wrapKMS struct{ gen, dec atomic.Int64 }

func (k *wrapKMS) GenerateDEK(_ context.Context, kek kms.KEKRef) (kms.DEK, error) {
	k.gen.Add(1)
	key := make([]byte, 32)
	rand.Read(key)
	return kms.DEK{Key: key, EDEK: []byte("it|" + kek.Name + "|" + hex.EncodeToString(key))}, nil
}

func (k *wrapKMS) DecryptDEK(_ context.Context, edek []byte) ([]byte, error) {
	k.dec.Add(1)
	parts := strings.Split(string(edek), "|")
	if len(parts) != 3 {
		return nil, errors.New("not an EDEK of this KMS")
	}
	return hex.DecodeString(parts[2])
}

// ownUpstream builds a kseal server (not started: only its own client to
// the cluster is used) and returns that client.
func ownUpstream(t *testing.T) filter.Upstream {
	t.Helper()
	doc := fmt.Sprintf(`
virtualClusters:
  - name: it
    upstream: {bootstrapServers: [%s]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: 39990, brokerPortStart: 39991, brokerPortCount: 4}
`, cluster.BootstrapString())
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv.Upstream("it")
}

// The deterministic key store over a real 3-broker cluster: two kseal
// processes (two servers, two Stores) racing for the same (topic, KEK) from
// many goroutines agree on one key, the key topic is created as designed
// (1 partition, replication 3, delete policy, infinite retention), the
// winning key is its first record, and a restarted process finds the same
// key without writing.
func TestKeyTopicRaceAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keyTopic := uniq("it-keys")
	k := &wrapKMS{}
	newStore := func() *detkey.Store {
		s, err := detkey.New(k, detkey.Options{Topic: keyTopic})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	upA, upB := ownUpstream(t), ownUpstream(t)
	a, b := newStore(), newStore()
	kek := kms.KEKRef{Name: "KEK-it", ID: "KEK-it"}
	topics := []string{"orders", "payments", "customers"}

	type result struct {
		topic string
		dk    *recordcrypt.DetKey
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	for i := range 12 {
		s, up := a, upA
		if i%2 == 1 {
			s, up = b, upB
		}
		topic := topics[i%len(topics)]
		wg.Go(func() {
			dk, err := s.ForWrite(ctx, up, topic, kek)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			results = append(results, result{topic, dk})
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	winners := map[string]*recordcrypt.DetKey{}
	for _, r := range results {
		w := winners[r.topic]
		if w == nil {
			winners[r.topic] = r.dk
			continue
		}
		if w.ID != r.dk.ID || !bytes.Equal(w.AEAD.Seal(nil, []byte("id-1"), []byte(r.topic)), r.dk.AEAD.Seal(nil, []byte("id-1"), []byte(r.topic))) {
			t.Fatalf("topic %s: two keys (%x, %x)", r.topic, w.ID, r.dk.ID)
		}
	}

	// The topic as designed.
	adm := directAdmin(t)
	td, err := adm.ListTopics(ctx, keyTopic)
	if err != nil {
		t.Fatal(err)
	}
	d := td[keyTopic]
	if d.Err != nil || len(d.Partitions) != 1 || len(d.Partitions[0].Replicas) != 3 {
		t.Fatalf("key topic: %v, %d partitions, replicas %v", d.Err, len(d.Partitions), d.Partitions[0].Replicas)
	}
	rc, err := adm.DescribeTopicConfigs(ctx, keyTopic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		got[c.Key] = c.MaybeValue()
	}
	for key, want := range detkey.TopicConfigs {
		if got[key] != want {
			t.Errorf("key topic config %s = %q, want %q", key, got[key], want)
		}
	}

	// Its records, read straight from the brokers: per (topic, KEK) the
	// first record is the key everyone uses; at most one candidate per
	// process.
	recs := readKeyTopic(ctx, t, keyTopic)
	first := map[string][8]byte{}
	count := map[string]int{}
	for _, r := range recs {
		kr, err := detkey.ParseKeyRecord(r.Key, r.Value)
		if err != nil {
			t.Fatalf("record at offset %d: %v", r.Offset, err)
		}
		count[kr.Topic]++
		if _, ok := first[kr.Topic]; !ok {
			first[kr.Topic] = detkey.KeyID(kr.EDEK)
		}
	}
	for _, topic := range topics {
		if first[topic] != winners[topic].ID {
			t.Errorf("topic %s: key %x is not the first record's (%x)", topic, winners[topic].ID, first[topic])
		}
		if count[topic] < 1 || count[topic] > 2 {
			t.Errorf("topic %s: %d key records (one per process at most)", topic, count[topic])
		}
	}
	t.Logf("%d key records for %d topics (%d GenerateDEK, %d DecryptDEK)", len(recs), len(topics), k.gen.Load(), k.dec.Load())

	// A restarted process: same keys, nothing written, found by id too.
	gen := k.gen.Load()
	c := newStore()
	upC := ownUpstream(t)
	for _, topic := range topics {
		dk, err := c.ForWrite(ctx, upC, topic, kek)
		if err != nil {
			t.Fatal(err)
		}
		if dk.ID != winners[topic].ID {
			t.Fatalf("restart: topic %s key %x, want %x", topic, dk.ID, winners[topic].ID)
		}
	}
	reader := newStore()
	for _, topic := range topics {
		dk, err := reader.ForRead(ctx, upC, topic, winners[topic].ID)
		if err != nil || dk.ID != winners[topic].ID {
			t.Fatalf("read by id: %v", err)
		}
	}
	if _, err := reader.ForRead(ctx, upC, "orders", [8]byte{1}); !errors.Is(err, detkey.ErrUnknownKey) {
		t.Fatalf("unknown id: %v", err)
	}
	if k.gen.Load() != gen || len(readKeyTopic(ctx, t, keyTopic)) != len(recs) {
		t.Fatal("the restarted process wrote a key")
	}
}

// readKeyTopic reads every record of the key topic straight from the
// brokers.
func readKeyTopic(ctx context.Context, t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	cl := testenv.Kgo(t, cluster.Bootstrap, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	adm := directAdmin(t)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	var out []*kgo.Record
	for int64(len(out)) < end.Offset {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d key records: %v", len(out), end.Offset, err)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// A key topic that exists already (created by an operator) and holds
// records that are not key records, some in compressed batches: kseal uses
// the topic as it is, skips them, and two Stores still agree.
func TestKeyTopicSkipsForeignRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keyTopic := uniq("it-keys-junk")
	adm := directAdmin(t)
	if _, err := adm.CreateTopic(ctx, 1, 3, nil, keyTopic); err != nil {
		t.Fatal(err)
	}
	cl := testenv.Kgo(t, cluster.Bootstrap, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	junk := []*kgo.Record{
		{Topic: keyTopic, Key: []byte("orders\x00KEK-it"), Value: []byte{9, 9, 9}},
		{Topic: keyTopic, Key: []byte("orders"), Value: []byte("x")},
		{Topic: keyTopic, Value: []byte("no key")},
	}
	if err := cl.ProduceSync(ctx, junk...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	k := &wrapKMS{}
	kek := kms.KEKRef{Name: "KEK-it"}
	var keys [2]*recordcrypt.DetKey
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			s, err := detkey.New(k, detkey.Options{Topic: keyTopic})
			if err != nil {
				t.Error(err)
				return
			}
			if keys[i], err = s.ForWrite(ctx, ownUpstream(t), "orders", kek); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if keys[0].ID != keys[1].ID {
		t.Fatalf("two keys: %x, %x", keys[0].ID, keys[1].ID)
	}
	recs := readKeyTopic(ctx, t, keyTopic)
	if len(recs) < len(junk)+1 {
		t.Fatalf("%d records", len(recs))
	}
	kr, err := detkey.ParseKeyRecord(recs[len(junk)].Key, recs[len(junk)].Value)
	if err != nil || detkey.KeyID(kr.EDEK) != keys[0].ID {
		t.Fatalf("the first key record is not the key: %v", err)
	}
}

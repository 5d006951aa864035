//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// kekLossBound is how long the tests give kseal to refuse produce after a
// KEK is deleted or disabled: kekCheckInterval (1s here) plus one KMS call
// plus the local KMS's store reload (200ms), with room for a loaded CI
// machine. The default bound (30s interval) is documented in
// docs/threat-model.md.
const kekLossBound = 10 * time.Second

// TestKEKLoss deletes or disables the KEK of a topic kseal is encrypting,
// on every KMS server the tests run, with the permissive
// unresolvedKeyPolicy PASSTHROUGH_UNENCRYPTED in force: produce must be
// refused with RESOURCE_NOT_FOUND within kekLossBound, and nothing of the
// topic may ever be stored in plaintext.
func TestKEKLoss(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	t.Run("local-delete", func(t *testing.T) {
		t.Parallel()
		k := newE2ELocalKMS(t)
		topic := e2eTopic(t, "kekloss-local", 2, nil)
		k.create(t, "KEK-"+topic)
		p := testKEKLoss(t, topic, k.section(), func(t *testing.T) { k.remove(t, "KEK-"+topic) })
		// Across a restart, against a KMS that has never heard of the KEK
		// (as Vault or Azure after a purge): kseal reads the topic's newest
		// batches, finds its marker, and still refuses.
		p.Stop()
		fresh := newE2ELocalKMS(t)
		plain := e2eTopic(t, "kekloss-plain", 2, nil)
		empty := e2eTopic(t, "kekloss-empty", 1, nil)
		testenv.KgoProduce(t, testenv.Kgo(t, cluster.Bootstrap), []testenv.Record{{Topic: plain, Key: "k", Value: "stored plaintext on purpose"}})
		q := startKEKLossProxy(t, fresh.section())
		cl := testenv.Kgo(t, []string{q.Bootstrap}, kgo.RecordDeliveryTimeout(5*time.Second))
		canary := newCanary(t, topic)
		for i := range 3 {
			err := produceOne(cl, topic, fmt.Sprintf("after restart %d %s", i, canary))
			if !errors.Is(err, kerr.ResourceNotFound) {
				t.Fatalf("after restart, produce to the encrypted topic: %v, want RESOURCE_NOT_FOUND", err)
			}
		}
		// Topics kseal never encrypted still pass under PASSTHROUGH.
		for _, tp := range []string{plain, empty} {
			if err := produceOne(cl, tp, "plain on purpose"); err != nil {
				t.Fatalf("produce to %s (never encrypted) under PASSTHROUGH: %v", tp, err)
			}
		}
		e2eAssertNotOnDisk(t, canary)
	})
	t.Run("openbao-delete", func(t *testing.T) {
		if os.Getenv("KSEAL_IT_NO_VAULT") == "1" {
			t.Skip("KSEAL_IT_NO_VAULT=1")
		}
		t.Parallel()
		topic := e2eTopic(t, "kekloss-bao", 1, nil)
		x := e2eOpenBao(t, "KEK-"+topic)
		testKEKLoss(t, topic, x.section, func(t *testing.T) { x.lose(t, "delete") })
	})
	for _, how := range []string{"disable", "schedule-deletion"} {
		t.Run("moto-"+how, func(t *testing.T) {
			if os.Getenv("KSEAL_IT_NO_AWS") == "1" {
				t.Skip("KSEAL_IT_NO_AWS=1")
			}
			t.Parallel()
			topic := e2eTopic(t, "kekloss-aws-"+how, 1, nil)
			x := e2eMoto(t, "KEK-"+topic)
			testKEKLoss(t, topic, x.section, func(t *testing.T) { x.lose(t, how) })
		})
	}
}

func startKEKLossProxy(t *testing.T, kmsSection string) *e2eProxy {
	t.Helper()
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	enc := "    encryption:\n" + kmsSection + `      policy:
        rules:
          - topicRegex: '.*'
            kek: 'KEK-$(topicName)'
        unresolvedKeyPolicy: PASSTHROUGH_UNENCRYPTED
      dek: {kekCheckInterval: 1s, kmsTimeout: 2s, kmsAttempts: 2}
`
	return e2eStartKseal(t, testenv.KsealConfig(cluster.Bootstrap, gw, enc))
}

func produceOne(cl *kgo.Client, topic, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(value)}).FirstErr()
}

// testKEKLoss produces to topic through kseal, calls lose, and checks that
// produce is refused within kekLossBound and stays refused, and that every
// stored record is ciphertext.
func testKEKLoss(t *testing.T, topic, kmsSection string, lose func(t *testing.T)) *e2eProxy {
	t.Helper()
	p := startKEKLossProxy(t, kmsSection)
	cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.RecordDeliveryTimeout(5*time.Second))
	canary := newCanary(t, topic)
	for i := range 10 {
		if err := produceOne(cl, topic, fmt.Sprintf("before %d %s", i, canary)); err != nil {
			t.Fatalf("produce before the KEK is lost: %v", err)
		}
	}
	lose(t)
	start := time.Now()
	acked := 0
	for {
		err := produceOne(cl, topic, fmt.Sprintf("window %d %s", acked, canary))
		if errors.Is(err, kerr.ResourceNotFound) {
			break
		}
		if err == nil {
			acked++
		} else {
			t.Logf("produce while the loss is noticed: %v", err)
		}
		if time.Since(start) > kekLossBound {
			t.Fatalf("produce still not refused %v after the KEK was lost (%d records acknowledged meanwhile)", time.Since(start), acked)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("refused %v after the KEK was lost; %d records acknowledged in that window (sealed, unrecoverable)", time.Since(start).Round(time.Millisecond), acked)
	for i := range 5 {
		if err := produceOne(cl, topic, fmt.Sprintf("after %d %s", i, canary)); !errors.Is(err, kerr.ResourceNotFound) {
			t.Fatalf("produce after refusal: %v, want RESOURCE_NOT_FOUND", err)
		}
	}
	n := e2eSum(e2eEndOffsets(t, topic))
	if want := int64(10 + acked); n != want {
		t.Errorf("%d records stored, want %d (10 before, %d in the window)", n, want, acked)
	}
	e2eAssertSealed(t, e2eRaw(t, int(n), topic), canary)
	e2eAssertNotOnDisk(t, canary)
	return p
}

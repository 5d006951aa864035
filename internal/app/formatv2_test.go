package app

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/recordcrypt"
)

// A reload to writeVersion 2 with a rule encrypting keys and headers makes
// kseal seal them, its deterministic-key store creating and reading the key
// topic over kseal's own upstream connection (here to kfake); consumers get
// the records back as produced, the broker holds no plaintext key. A
// change of encryption.keyTopic is refused until a restart.
func TestFormatV2ThroughApp(t *testing.T) {
	e := startEncrypting(t, "PASSTHROUGH_UNENCRYPTED")
	ctx := context.Background()
	doc := strings.Replace(e.doc, "          - topicRegex: '.*'\n            kek: 'KEK-$(topicName)'\n",
		"          - topicRegex: '.*'\n            kek: 'KEK-$(topicName)'\n            encrypt: {key: true, headers: ['*']}\n", 1)
	doc += "      format: {writeVersion: 2}\n"
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	p := client(t, e.bootstrap)
	rec := &kgo.Record{Topic: "orders", Key: []byte("customer-7"), Value: []byte(canary),
		Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("hv")}, {Key: "h", Value: []byte("hv2")}}}
	if err := p.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	raw := consumeN(t, client(t, e.fake.ListenAddrs()[0], kgo.ConsumeTopics("orders")), 1)[0]
	if bytes.Contains(raw.Key, []byte("customer-7")) || len(raw.Key) != len("customer-7")+recordcrypt.SealedKeyOverhead {
		t.Errorf("stored key %q", raw.Key)
	}
	if len(raw.Headers) != 1 || raw.Headers[0].Key != recordcrypt.HeaderKey || raw.Headers[0].Value[0] != recordcrypt.Version2 {
		t.Errorf("stored headers %v", raw.Headers)
	}
	got := consumeN(t, client(t, e.bootstrap, kgo.ConsumeTopics("orders")), 1)[0]
	if string(got.Key) != "customer-7" || string(got.Value) != canary || len(got.Headers) != 2 ||
		string(got.Headers[0].Value) != "hv" || string(got.Headers[1].Value) != "hv2" {
		t.Errorf("consumed %q=%q %v", got.Key, got.Value, got.Headers)
	}
	// The key topic exists, made by kseal, and holds the key record.
	keys := consumeN(t, client(t, e.fake.ListenAddrs()[0], kgo.ConsumeTopics("__kseal_keys")), 1)
	if !bytes.HasPrefix(keys[0].Key, []byte("orders\x00KEK-orders")) {
		t.Errorf("key record key %q", keys[0].Key)
	}
	// Clients cannot write to it through kseal.
	err = p.ProduceSync(ctx, &kgo.Record{Topic: "__kseal_keys", Key: []byte("orders\x00KEK-orders"), Value: []byte("x")}).FirstErr()
	if err == nil || !strings.Contains(err.Error(), "TOPIC_AUTHORIZATION_FAILED") {
		t.Errorf("produce to the key topic: %v", err)
	}

	moved, err := config.Parse([]byte(doc + "      keyTopic: {name: other_keys}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.Reload(ctx, moved); err == nil || !strings.Contains(err.Error(), "encryption.keyTopic: changes need a restart") {
		t.Errorf("reload of keyTopic: %v", err)
	}
}

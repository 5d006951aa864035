//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/testenv"
)

// TestKEKRevocationOpenConsumer: a consumer that stays connected through
// kseal and keeps reading a topic sees RESOURCE_NOT_FOUND (91) within
// decryptCacheMaxAge plus one KMS operation after the topic's Transit key
// is deleted in OpenBao, although its DEKs are in constant use (a sliding
// TTL alone kept them forever). Before the deletion, reading for longer
// than the maximum age goes on without an error: the DEKs are unwrapped
// again in the background.
func TestKEKRevocationOpenConsumer(t *testing.T) {
	e2eSkipDirect(t)
	if os.Getenv("KSEAL_IT_NO_VAULT") == "1" {
		t.Skip("KSEAL_IT_NO_VAULT=1")
	}
	t.Parallel()
	const (
		maxAge     = 4 * time.Second
		kmsTimeout = 2 * time.Second
		perDEK     = 5
	)
	topic := e2eTopic(t, "revoke", 1, nil)
	kek := "KEK-" + topic
	bao := e2eRevocableOpenBao(t, kek)

	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	// decryptCacheTtl stays at its default (1h): only the maximum age can
	// end a DEK in use.
	enc := "    encryption:\n" + bao.section + fmt.Sprintf(`      policy:
        rules:
          - topicRegex: '.*'
            kek: 'KEK-$(topicName)'
        unresolvedKeyPolicy: REJECT
      dek: {maxEncryptionsPerDek: %d, decryptCacheMaxAge: %s, notFoundTtl: 1s, kmsTimeout: %s, kmsAttempts: 2}
`, perDEK, maxAge, kmsTimeout)
	p := e2eStartKseal(t, fmt.Sprintf("admin: {listen: %q}\n", admin)+testenv.KsealConfig(cluster.Bootstrap, gw, enc))

	// Two DEKs in the partition, so every pass over it looks a DEK up in
	// kseal's cache at least once (consecutive records of one DEK reuse it).
	canary := uniq("canary")
	var recs []*kgo.Record
	var want []string
	for i := range 2 * perDEK {
		v := fmt.Sprintf("%d %s", i, canary)
		want = append(want, v)
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(v)})
	}
	pcl := testenv.Kgo(t, []string{p.Bootstrap})
	pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	for _, r := range recs { // one at a time: the DEK changes at the cap
		if err := pcl.ProduceSync(pctx, r).FirstErr(); err != nil {
			cancel()
			t.Fatalf("produce: %v", err)
		}
	}
	cancel()
	envs := e2eAssertSealed(t, e2eRaw(t, len(recs), topic), canary)
	if envs[0].DEKID() == envs[len(envs)-1].DEKID() {
		t.Fatal("all records under one DEK; want two")
	}

	// The open consumer: one client, rewound to the start after each pass.
	cl := testenv.Kgo(t, []string{p.Bootstrap}, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepRetryableFetchErrors(),
		kgo.FetchMaxWait(200*time.Millisecond))
	// pass reads the partition once; it returns the fetch error it got, if
	// any, and how many records it received.
	pass := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got := 0
		for got < len(want) {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return got, fmt.Errorf("pass timed out after %d records", got)
			}
			var ferr error
			fs.EachError(func(_ string, _ int32, err error) { ferr = err })
			fs.EachRecord(func(r *kgo.Record) {
				if string(r.Value) != want[r.Offset] {
					t.Errorf("offset %d: %q, want %q", r.Offset, r.Value, want[r.Offset])
				}
				got++
			})
			if ferr != nil {
				return got, ferr
			}
		}
		cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{topic: {0: {Epoch: -1, Offset: 0}}})
		return got, nil
	}

	// Longer than two maximum ages of constant use: no error.
	passes := 0
	for end := time.Now().Add(2*maxAge + time.Second); time.Now().Before(end); passes++ {
		if _, err := pass(); err != nil {
			t.Fatalf("pass %d before the deletion: %v", passes, err)
		}
	}
	if n := e2eMetric(t, admin, "kseal_dek_decrypt_refreshes_total", nil); n < 2 {
		t.Errorf("kseal_dek_decrypt_refreshes_total = %v after %d passes over %v, want at least 2", n, passes, 2*maxAge)
	}
	if n := e2eMetric(t, admin, "kseal_kms_operations_total",
		map[string]string{"operation": "decrypt_dek", "outcome": "success"}); n < 4 {
		t.Errorf("%v successful decrypt_dek calls, want at least 4 (2 DEKs, unwrapped again)", n)
	}

	bao.remove(t)
	deleted := time.Now()
	bound := maxAge + kmsTimeout
	for {
		_, err := pass()
		if errors.Is(err, kerr.ResourceNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("after the deletion: %v, want RESOURCE_NOT_FOUND", err)
		}
		// The bound, plus one pass (a fetch wait and a poll) of slack.
		if time.Since(deleted) > bound+2*time.Second {
			t.Fatalf("an open consumer still decrypts %v after its KEK was deleted (bound %v)", time.Since(deleted), bound)
		}
	}
	t.Logf("%d passes before the deletion; RESOURCE_NOT_FOUND %v after it (bound %v)",
		passes, time.Since(deleted).Round(time.Millisecond), bound)
}

// e2eRevocableKMS is an OpenBao server with one Transit key that the test
// can delete.
type e2eRevocableKMS struct {
	section string
	remove  func(t *testing.T)
}

// e2eRevocableOpenBao starts OpenBao with a Transit key kek that allows
// deletion, and gives kseal a token holding only the least-privilege
// policy of docs/kms-vault.md.
func e2eRevocableOpenBao(t *testing.T, kek string) *e2eRevocableKMS {
	t.Helper()
	dir := filepath.Join(e2eWorkDir(t), "bao")
	e2eScript(t, "openbao.sh", "start", "--dir", dir, "--owner-pid", strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { e2eScript(t, "openbao.sh", "stop", "--dir", dir) })
	env := e2eEnvFile(t, filepath.Join(dir, "openbao.env"))
	addr, root := env["BAO_ADDR"], env["BAO_TOKEN"]
	hc := &http.Client{Timeout: 10 * time.Second}
	call := func(t *testing.T, method, path, body string) []byte {
		t.Helper()
		req, err := http.NewRequest(method, addr+"/v1/"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Vault-Token", root)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	policy, _ := json.Marshal(map[string]string{"policy": `
path "transit/keys/KEK-*" { capabilities = ["read"] }
path "transit/datakey/plaintext/KEK-*" { capabilities = ["update"] }
path "transit/decrypt/KEK-*" { capabilities = ["update"] }
`})
	call(t, "PUT", "sys/policies/acl/kseal", string(policy))
	call(t, "POST", "transit/keys/"+kek, `{}`)
	call(t, "POST", "transit/keys/"+kek+"/config", `{"deletion_allowed":true}`)
	var tok struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	if err := json.Unmarshal(call(t, "POST", "auth/token/create", `{"policies":["kseal"],"no_default_policy":true,"ttl":"1h"}`), &tok); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(filepath.Dir(dir), "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &e2eRevocableKMS{
		section: fmt.Sprintf("      kms:\n        type: vault\n        config: {address: %q, tokenFile: %q, timeout: 1s}\n",
			addr, tokenFile),
		remove: func(t *testing.T) { call(t, "DELETE", "transit/keys/"+kek, "") },
	}
}

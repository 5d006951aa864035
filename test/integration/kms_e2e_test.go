//go:build integration

package integration

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kseal/kseal/internal/kms"
	kmsaws "github.com/kseal/kseal/internal/kms/aws"
	"github.com/kseal/kseal/internal/kms/azure"
	"github.com/kseal/kseal/internal/kms/azure/azurefake"
	"github.com/kseal/kseal/internal/kms/hadoop"
	"github.com/kseal/kseal/internal/kms/kmip"
	"github.com/kseal/kseal/internal/kms/vault"
	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/testenv"
)

// e2eExternalKMS is one external KMS server as the scenario needs it.
type e2eExternalKMS struct {
	provider string
	// section is the `kms:` block of kseal's encryption section.
	section string
	// rotate makes a new version of the KEK primary in the KMS.
	rotate func(t *testing.T)
	// down makes the KMS unreachable; up brings it back.
	down, up func(t *testing.T)
	// describe reads an EDEK offline (KEK name or id, version).
	describe kms.DescribeFunc
	// version, when set, is the KEK version an EDEK names for the first
	// KEK version (n = 1) and for the one rotate made (n = 2). AWS leaves
	// it unset: moto rotates without new key material, so AWS EDEKs cannot
	// show a rotation.
	version func(n int) string
	// newKeyOnRotate says rotate makes a new KMS key under the same name
	// (KMIP: a new key object whose Unique Identifier the EDEKs name)
	// rather than a new version of the same key. kseal finds it at its
	// next KEK check (kekCheckInterval, 1s here), and its very next DEK is
	// under the new key: the scenario waits for that check instead of
	// running the old DEK to its cap.
	newKeyOnRotate bool
	// verify, when set, checks kseal's log and metrics (admin is its
	// admin address) at the end of the scenario.
	verify func(t *testing.T, log, admin string)
	// lose makes the KEK unusable in the KMS: "delete" (OpenBao), "disable"
	// or "schedule-deletion" (AWS). See keklife_test.go.
	lose func(t *testing.T, how string)
}

// TestKMSProviders runs one scenario through kseal on the real cluster
// against each external KMS server, each started by its project script:
// OpenBao (scripts/openbao.sh) for vault with a token, with AppRole, JWT
// and Kubernetes auth (a stand-in TokenReview API: no cluster here); moto
// (scripts/moto.sh) for aws; Apache Hadoop KMS (scripts/hadoop-kms.sh) for
// hadoop; PyKMIP's server (scripts/pykmip.sh) for kmip; for azure, no
// emulator being reachable here, the fake Key Vault of the provider's unit
// tests (azurefake), served by this test process over loopback TLS. The
// scenario: produce, read ciphertext from the brokers and plaintext through
// kseal, rotate the KEK in the KMS, take the KMS away mid-stream and bring
// it back. KSEAL_IT_NO_VAULT=1, KSEAL_IT_NO_AWS=1, KSEAL_IT_NO_HADOOP=1,
// KSEAL_IT_NO_KMIP=1, KSEAL_IT_NO_AZURE_FAKE=1 skip a provider.
func TestKMSProviders(t *testing.T) {
	e2eSkipDirect(t)
	t.Parallel()
	for _, c := range []struct {
		name, skip string
		// prefix is the KEK name's prefix, the policy's kek template
		// prefix+$(topicName): Hadoop KMS's JCEKS key store refuses
		// uppercase key names, so its KEKs are kek-<topic>.
		prefix string
		start  func(t *testing.T, kek string) *e2eExternalKMS
	}{
		{"vault", "KSEAL_IT_NO_VAULT", "KEK-", e2eOpenBao},
		{"vault-approle", "KSEAL_IT_NO_VAULT", "KEK-", func(t *testing.T, kek string) *e2eExternalKMS { return e2eOpenBaoAuth(t, kek, "approle") }},
		{"vault-jwt", "KSEAL_IT_NO_VAULT", "KEK-", func(t *testing.T, kek string) *e2eExternalKMS { return e2eOpenBaoAuth(t, kek, "jwt") }},
		{"vault-kubernetes", "KSEAL_IT_NO_VAULT", "KEK-", func(t *testing.T, kek string) *e2eExternalKMS { return e2eOpenBaoAuth(t, kek, "kubernetes") }},
		{"aws", "KSEAL_IT_NO_AWS", "KEK-", e2eMoto},
		{"hadoop", "KSEAL_IT_NO_HADOOP", "kek-", e2eHadoopKMS},
		{"kmip", "KSEAL_IT_NO_KMIP", "KEK-", e2ePyKMIP},
		{"azure", "KSEAL_IT_NO_AZURE_FAKE", "KEK-", e2eAzureFake},
	} {
		t.Run(c.name, func(t *testing.T) {
			if os.Getenv(c.skip) == "1" {
				t.Skip(c.skip + "=1")
			}
			t.Parallel()
			topic := e2eTopic(t, "kms-"+c.name, 1, nil)
			start := time.Now()
			x := c.start(t, c.prefix+topic)
			t.Logf("%s: KMS server ready in %v", c.name, time.Since(start).Round(time.Millisecond))
			testKMSScenario(t, topic, c.prefix+"$(topicName)", x)
		})
	}
}

// e2eMaxEncryptions is the DEK cap of the scenario: small, so that a new
// DEK is needed at a point the test chooses.
const e2eMaxEncryptions = 20

func testKMSScenario(t *testing.T, topic, kekTemplate string, x *e2eExternalKMS) {
	admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	gw, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	// The DEKs last for the whole test except for their cap; one KMS
	// operation (with its retries) gives up after 2s.
	check := ""
	if x.newKeyOnRotate {
		check = ", kekCheckInterval: 1s"
	}
	enc := "    encryption:\n" + x.section + fmt.Sprintf(`      policy:
        rules:
          - topicRegex: '.*'
            kek: '%s'
        unresolvedKeyPolicy: REJECT
      dek: {maxEncryptionsPerDek: %d, kmsTimeout: 2s, kmsAttempts: 2%s}
`, kekTemplate, e2eMaxEncryptions, check)
	cfg := fmt.Sprintf("admin: {listen: %q}\n", admin) + testenv.KsealConfig(cluster.Bootstrap, gw, enc)
	p := e2eStartKseal(t, cfg)
	cl := testenv.Kgo(t, []string{p.Bootstrap})
	ctx := context.Background()

	canary := uniq("canary")
	var values []string
	produce := func(n int, what string) {
		t.Helper()
		var recs []*kgo.Record
		for range n {
			v := fmt.Sprintf("%d %s %s", len(values), what, canary)
			values = append(values, v)
			recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(v)})
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce %d records (%s): %v", n, what, err)
		}
	}
	// stored returns the envelopes of every stored record, checking they
	// are ciphertext.
	stored := func() []recordcrypt.Envelope {
		t.Helper()
		return e2eAssertSealed(t, e2eRaw(t, len(values), topic), canary)
	}
	consume := func(who, bootstrap string) {
		t.Helper()
		got := e2eMustConsume(t, who, bootstrap, len(values), []string{topic})
		for _, r := range got {
			if string(r.Value) != values[r.Offset] {
				t.Errorf("%s: offset %d is %q, want %q", who, r.Offset, r.Value, values[r.Offset])
			}
		}
	}
	describe := func(env recordcrypt.Envelope) kms.EDEKInfo {
		t.Helper()
		info, err := x.describe(env.EDEK)
		if err != nil {
			t.Fatalf("EDEK: %v", err)
		}
		return info
	}

	began := time.Now()
	phase := func(what string) { t.Logf("%s at %v", what, time.Since(began).Round(time.Millisecond)) }

	// kseal is ready once its upstream and its KMS have answered.
	e2eEventually(t, 30*time.Second, 200*time.Millisecond, "/readyz is not 200 with the KMS up", func() bool {
		code, _ := e2eGet(t, admin, "/readyz")
		return code == http.StatusOK
	})

	// 1. Encrypted at rest, plaintext through kseal.
	produce(5, "first")
	envs := stored()
	dek1 := envs[0].DEKID()
	if info := describe(envs[0]); x.version != nil && info.Version != x.version(1) {
		t.Errorf("first DEK under KEK version %q, want %q", info.Version, x.version(1))
	}
	consume("franz-go through kseal", p.Bootstrap)

	phase("produced and consumed")

	// 2. Rotation in the KMS: the DEK made after it is under the new
	// version; old records still decrypt. A new version of the same key
	// is used from the next DEK on: the first DEK reaches its cap with
	// this batch. A new key under the same name is used as soon as kseal's
	// KEK check has found it.
	x.rotate(t)
	if x.newKeyOnRotate {
		resolved := e2eMetric(t, admin, "kseal_kms_operations_total",
			map[string]string{"provider": x.provider, "operation": "resolve_kek", "outcome": "success"})
		// Two more checks: the first may have started before the rotation.
		e2eEventually(t, 30*time.Second, 200*time.Millisecond, "kseal did not check its KEK again after the rotation", func() bool {
			return e2eMetric(t, admin, "kseal_kms_operations_total",
				map[string]string{"provider": x.provider, "operation": "resolve_kek", "outcome": "success"}) >= resolved+2
		})
	} else {
		produce(e2eMaxEncryptions-5, "until the cap")
	}
	underDEK1 := len(values)
	produce(1, "after rotation")
	envs = stored()
	last := envs[len(envs)-1]
	dek2 := last.DEKID()
	for i, env := range envs[:underDEK1] {
		if env.DEKID() != dek1 || env.Counter != uint64(i) {
			t.Errorf("record %d: DEK %s counter %d, want DEK %s counter %d", i, env.DEKID(), env.Counter, dek1, i)
		}
	}
	if dek2 == dek1 || last.Counter != 0 {
		t.Fatalf("record after the rotation: DEK %s counter %d, want a new DEK at counter 0", dek2, last.Counter)
	}
	if info := describe(last); x.version != nil && info.Version != x.version(2) {
		t.Errorf("DEK made after the rotation is under KEK version %q, want %q", info.Version, x.version(2))
	}
	consume("franz-go through kseal after rotation", p.Bootstrap)

	phase("rotated")

	// 3. The KMS goes away. The cached DEKs keep produce (up to the cap)
	// and fetch working.
	x.down(t)
	kmsUp := false
	t.Cleanup(func() {
		if !kmsUp {
			x.up(t)
		}
	})
	for range e2eMaxEncryptions - 1 {
		produce(1, "KMS down, cached DEK")
	}
	consume("franz-go through kseal, KMS down", p.Bootstrap)
	if envs := stored(); envs[len(envs)-1].DEKID() != dek2 {
		t.Fatalf("records produced while the KMS was down are not under the cached DEK %s", dek2)
	}

	// The next record needs a new DEK: kseal refuses the request with a
	// retriable error and franz-go keeps retrying; nothing reaches the
	// broker.
	before := e2eSum(e2eEndOffsets(t, topic))
	refusedBefore := strings.Count(p.Logs(), "produce refused")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked int
	var produceErrs []error
	for i := range 5 {
		v := fmt.Sprintf("%d needs a new DEK %s", len(values), canary)
		values = append(values, v)
		wg.Add(1)
		// One record a request, so the records cannot be reordered.
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				produceErrs = append(produceErrs, fmt.Errorf("record %d: %w", i, err))
			} else {
				acked++
			}
		})
	}
	// Two refusals later (each after a failed KMS operation, bounded by
	// kmsTimeout), nothing is written and nothing acknowledged.
	e2eEventually(t, 30*time.Second, 200*time.Millisecond, "kseal did not refuse the produce twice", func() bool {
		return strings.Count(p.Logs(), "produce refused") >= refusedBefore+2
	})
	if after := e2eSum(e2eEndOffsets(t, topic)); after != before {
		t.Errorf("%d records reached the broker while the KMS was down", after-before)
	}
	mu.Lock()
	if acked > 0 || len(produceErrs) > 0 {
		t.Errorf("while the KMS was down: %d records acknowledged, errors %v; want franz-go still retrying", acked, produceErrs)
	}
	mu.Unlock()
	// Not ready, saying why, yet alive: a KMS outage must not get kseal
	// restarted.
	var readyBody string
	e2eEventually(t, 30*time.Second, 200*time.Millisecond, "/readyz still 200 with the KMS down", func() bool {
		var code int
		code, readyBody = e2eGet(t, admin, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(readyBody, "kms:") {
		t.Errorf("/readyz with the KMS down does not name the KMS: %q", readyBody)
	}
	if code, body := e2eGet(t, admin, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the KMS down = %d %q, want 200", code, body)
	}
	if n := e2eMetric(t, admin, "kseal_kms_operations_total",
		map[string]string{"provider": x.provider, "operation": "generate_dek", "outcome": "error"}); n == 0 {
		t.Error("kseal_kms_operations_total{generate_dek,error} is 0 while the KMS is down")
	}

	// 4. The KMS comes back: kseal recovers by itself, the waiting
	// records arrive, and everything reads back exactly once.
	phase("KMS down, produce refused")
	x.up(t)
	phase("KMS back")
	kmsUp = true
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the records waiting for a DEK were not acknowledged within 60s of the KMS coming back")
	}
	if len(produceErrs) > 0 {
		t.Fatalf("produce after the KMS came back: %v", produceErrs)
	}
	envs = stored()
	if dek3 := envs[len(envs)-1].DEKID(); dek3 == dek2 || dek3 == dek1 {
		t.Errorf("records after the outage are under an old DEK")
	}
	consume("franz-go through kseal after the outage", p.Bootstrap)
	e2eEventually(t, 30*time.Second, 200*time.Millisecond, "/readyz is not 200 again after the KMS came back", func() bool {
		code, _ := e2eGet(t, admin, "/readyz")
		return code == http.StatusOK
	})

	phase("recovered")

	// A second kseal with empty caches unwraps every DEK through the KMS:
	// the ones under the old KEK version and the new.
	gw2, err := testenv.NewGateway()
	if err != nil {
		t.Fatal(err)
	}
	admin2 := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
	p2 := e2eStartKseal(t, fmt.Sprintf("admin: {listen: %q}\n", admin2)+testenv.KsealConfig(cluster.Bootstrap, gw2, enc))
	consume("franz-go through a fresh kseal", p2.Bootstrap)

	ops := func(addr, op, outcome string) float64 {
		return e2eMetric(t, addr, "kseal_kms_operations_total",
			map[string]string{"provider": x.provider, "operation": op, "outcome": outcome})
	}
	if n := ops(admin, "generate_dek", "success"); n < 3 {
		t.Errorf("kseal_kms_operations_total{generate_dek,success} = %v, want at least 3 (one DEK per phase)", n)
	}
	if n := ops(admin, "resolve_kek", "success"); n < 1 {
		t.Errorf("kseal_kms_operations_total{resolve_kek,success} = %v, want at least 1", n)
	}
	if n := ops(admin2, "decrypt_dek", "success"); n < 3 {
		t.Errorf("fresh kseal: kseal_kms_operations_total{decrypt_dek,success} = %v, want at least 3 (three DEKs)", n)
	}
	if x.verify != nil {
		x.verify(t, p.Logs(), admin)
	}
	phase("done")
}

// e2eGet fetches an admin endpoint of kseal: status and body.
func e2eGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// e2eScript runs one of scripts/*.sh and fails the test on an error.
func e2eScript(t *testing.T, name string, args ...string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(root, "scripts", name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func e2eEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// e2eOpenBao starts OpenBao (scripts/openbao.sh: Raft storage, so a
// restart keeps keys and tokens) with a Transit key kek, and gives kseal a
// token holding only the least-privilege policy of docs/kms-vault.md.
// Down stops the server; up restarts it on the same storage.
func e2eOpenBao(t *testing.T, kek string) *e2eExternalKMS {
	return e2eOpenBaoAuth(t, kek, "token")
}

// e2eOpenBaoAuth is e2eOpenBao with kseal getting its token by the auth
// method given: "token" (a token file), "approle" (role id and secret id
// files; the role's tokens live 4s, at most 8s, so kseal renews and logs in
// again during the scenario, the outage included) or "jwt" (a JWT signed by
// a key of the test's own, standing in for an OIDC provider) or
// "kubernetes" (OpenBao's kubernetes method with a stand-in TokenReview
// API). Each role grants only the least-privilege policy.
func e2eOpenBaoAuth(t *testing.T, kek, method string) *e2eExternalKMS {
	t.Helper()
	dir := filepath.Join(e2eWorkDir(t), "bao")
	owner := strconv.Itoa(os.Getpid())
	e2eScript(t, "openbao.sh", "start", "--dir", dir, "--owner-pid", owner)
	t.Cleanup(func() { e2eScript(t, "openbao.sh", "stop", "--dir", dir) })
	env := e2eEnvFile(t, filepath.Join(dir, "openbao.env"))
	addr, root := env["BAO_ADDR"], env["BAO_TOKEN"]
	hc := &http.Client{Timeout: 10 * time.Second}
	call := func(token, method, path, body string) []byte {
		t.Helper()
		req, err := http.NewRequest(method, addr+"/v1/"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Vault-Token", token)
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
	call(root, "PUT", "sys/policies/acl/kseal", string(policy))
	call(root, "POST", "transit/keys/"+kek, `{}`)
	files := filepath.Dir(dir)
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(files, name)
		if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var auth string
	var verify func(t *testing.T, log, admin string)
	switch method {
	case "token":
		var tok struct {
			Auth struct {
				ClientToken string   `json:"client_token"`
				Policies    []string `json:"policies"`
			} `json:"auth"`
		}
		if err := json.Unmarshal(call(root, "POST", "auth/token/create", `{"policies":["kseal"],"no_default_policy":true,"ttl":"1h"}`), &tok); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(tok.Auth.Policies) != "[kseal]" {
			t.Fatalf("kseal token policies %v, want only kseal", tok.Auth.Policies)
		}
		auth = fmt.Sprintf("tokenFile: %q", write("token", tok.Auth.ClientToken))
	case "approle":
		call(root, "POST", "sys/auth/approle", `{"type":"approle"}`)
		call(root, "POST", "auth/approle/role/kseal",
			`{"token_policies":["kseal"],"token_no_default_policy":true,"token_ttl":"4s","token_max_ttl":"8s"}`)
		var rid struct {
			Data struct {
				RoleID string `json:"role_id"`
			} `json:"data"`
		}
		var sid struct {
			Data struct {
				SecretID string `json:"secret_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(call(root, "GET", "auth/approle/role/kseal/role-id", ""), &rid); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(call(root, "POST", "auth/approle/role/kseal/secret-id", `{}`), &sid); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth: {method: approle, roleIdFile: %q, secretIdFile: %q}",
			write("role-id", rid.Data.RoleID), write("secret-id", sid.Data.SecretID))
		// The scenario outlives the 8s max TTL: kseal must have logged in
		// again (renewal cannot go past it).
		verify = func(t *testing.T, log, _ string) {
			if n := strings.Count(log, "vault kms: logged in"); n < 2 {
				t.Errorf("kseal logged in %d times with AppRole over the scenario; want a re-login past the token's max TTL", n)
			}
		}
	case "jwt":
		signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pubDER, err := x509.MarshalPKIXPublicKey(&signer.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := json.Marshal(map[string]any{
			"jwt_validation_pubkeys": []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))},
			"bound_issuer":           "https://issuer.test",
		})
		call(root, "POST", "sys/auth/jwt", `{"type":"jwt"}`)
		call(root, "POST", "auth/jwt/config", string(cfg))
		call(root, "POST", "auth/jwt/role/kafka", `{"role_type":"jwt","user_claim":"sub","bound_audiences":["kseal"],
			"token_policies":["kseal"],"token_no_default_policy":true,"token_ttl":"1h"}`)
		jwt := e2eMintJWT(t, signer, map[string]any{"iss": "https://issuer.test", "sub": "kseal-proxy", "aud": "kseal"})
		auth = fmt.Sprintf("auth: {method: jwt, role: kafka, jwtFile: %q}", write("jwt", jwt))
	case "kubernetes":
		// OpenBao's real kubernetes method; the Kubernetes API it asks
		// (TokenReview) is a stand-in served by this test process, as no
		// cluster is reachable here. It authenticates the test's
		// service-account JWT and echoes the audiences asked for.
		signer, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		const sa = "system:serviceaccount:kafka:kseal"
		saJWT := e2eMintJWT(t, signer, map[string]any{
			"iss": "https://kubernetes.default.svc", "sub": sa, "aud": []string{"https://kubernetes.default.svc"},
			"kubernetes.io": map[string]any{"namespace": "kafka", "serviceaccount": map[string]any{"name": "kseal", "uid": "0b5c7a8e-1111-2222-3333-444455556666"}},
		})
		var reviews atomic.Int32
		api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.Method != http.MethodPost {
				http.NotFound(w, r)
				return
			}
			reviews.Add(1)
			var review struct {
				Spec struct {
					Token     string   `json:"token"`
					Audiences []string `json:"audiences"`
				} `json:"spec"`
			}
			_ = json.NewDecoder(r.Body).Decode(&review)
			status := map[string]any{"authenticated": false}
			if review.Spec.Token == saJWT {
				status = map[string]any{"authenticated": true, "audiences": review.Spec.Audiences, "user": map[string]any{
					"username": sa, "uid": "0b5c7a8e-1111-2222-3333-444455556666",
					"groups": []string{"system:serviceaccounts", "system:serviceaccounts:kafka"}}}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
		}))
		t.Cleanup(api.Close)
		apiCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}))
		kcfg, _ := json.Marshal(map[string]any{"kubernetes_host": api.URL, "kubernetes_ca_cert": apiCA, "disable_local_ca_jwt": true})
		call(root, "POST", "sys/auth/kubernetes", `{"type":"kubernetes"}`)
		call(root, "POST", "auth/kubernetes/config", string(kcfg))
		call(root, "POST", "auth/kubernetes/role/kseal", `{"bound_service_account_names":["kseal"],
			"bound_service_account_namespaces":["kafka"],"token_policies":["kseal"],"token_no_default_policy":true,"token_ttl":"1h"}`)
		auth = fmt.Sprintf("auth: {method: kubernetes, role: kseal, jwtFile: %q}", write("sa-token", saJWT))
		verify = func(t *testing.T, _, _ string) {
			if reviews.Load() == 0 {
				t.Error("OpenBao never asked the stand-in TokenReview API: kseal did not log in with kubernetes auth")
			}
		}
	default:
		t.Fatalf("openbao: unknown auth method %q", method)
	}
	return &e2eExternalKMS{
		provider: "vault",
		section: fmt.Sprintf("      kms:\n        type: vault\n        config: {address: %q, timeout: 1s, %s}\n",
			addr, auth),
		rotate:   func(t *testing.T) { call(root, "POST", "transit/keys/"+kek+"/rotate", `{}`) },
		down:     func(t *testing.T) { e2eScript(t, "openbao.sh", "stop", "--dir", dir) },
		up:       func(t *testing.T) { e2eScript(t, "openbao.sh", "start", "--dir", dir, "--owner-pid", owner) },
		describe: vault.DescribeEDEK,
		version:  strconv.Itoa,
		verify:   verify,
		lose: func(t *testing.T, how string) {
			if how != "delete" {
				t.Fatalf("openbao: cannot %s a key", how)
			}
			call(root, "POST", "transit/keys/"+kek+"/config", `{"deletion_allowed":true}`)
			call(root, "DELETE", "transit/keys/"+kek, "")
		},
	}
}

// e2eMintJWT signs claims with ES256 (plus iat, nbf and a one-hour exp).
func e2eMintJWT(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	now := time.Now().Unix()
	c := map[string]any{"iat": now, "nbf": now - 5, "exp": now + 3600}
	for k, v := range claims {
		c[k] = v
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT"})
	body, _ := json.Marshal(c)
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(signing))
	r, sig, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	sig.FillBytes(raw[32:])
	return signing + "." + enc.EncodeToString(raw)
}

// e2eMoto starts moto (scripts/moto.sh) with a KMS key behind the alias
// alias/<kek>. moto keeps its keys in memory only, so a stopped moto comes
// back without them: down freezes the server (SIGSTOP: every call times
// out, as with an unreachable KMS) and up thaws it.
func e2eMoto(t *testing.T, kek string) *e2eExternalKMS {
	t.Helper()
	dir := filepath.Join(e2eWorkDir(t), "moto")
	e2eScript(t, "moto.sh", "start", "--dir", dir, "--owner-pid", strconv.Itoa(os.Getpid()))
	env := e2eEnvFile(t, filepath.Join(dir, "moto.env"))
	pid, err := strconv.Atoi(env["MOTO_PID"])
	if err != nil {
		t.Fatalf("moto.env: MOTO_PID: %v", err)
	}
	signal := func(t *testing.T, sig syscall.Signal) {
		var err error
		if sig == syscall.SIGSTOP {
			err = testenv.Freeze(pid) // returns once every thread is stopped
		} else {
			err = syscall.Kill(pid, sig)
		}
		if err != nil {
			t.Fatalf("signal %v to moto: %v", sig, err)
		}
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGCONT)
		e2eScript(t, "moto.sh", "stop", "--dir", dir)
	})
	adm := awskms.New(awskms.Options{
		Region:       env["AWS_REGION"],
		BaseEndpoint: awssdk.String(env["MOTO_ENDPOINT"]),
		Credentials: awssdk.CredentialsProviderFunc(func(context.Context) (awssdk.Credentials, error) {
			return awssdk.Credentials{AccessKeyID: env["AWS_ACCESS_KEY_ID"], SecretAccessKey: env["AWS_SECRET_ACCESS_KEY"]}, nil
		}),
	})
	key, err := adm.CreateKey(t.Context(), &awskms.CreateKeyInput{Description: awssdk.String("kseal e2e " + kek)})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	id := *key.KeyMetadata.KeyId
	if _, err := adm.CreateAlias(t.Context(), &awskms.CreateAliasInput{AliasName: awssdk.String("alias/" + kek), TargetKeyId: &id}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	secret := filepath.Join(filepath.Dir(dir), "aws-secret")
	if err := os.WriteFile(secret, []byte(env["AWS_SECRET_ACCESS_KEY"]), 0o600); err != nil {
		t.Fatal(err)
	}
	return &e2eExternalKMS{
		provider: "aws",
		section: fmt.Sprintf(`      kms:
        type: aws
        config:
          region: %s
          endpoint: %q
          timeout: 1s
          credentials: {source: static, accessKeyId: %q, secretAccessKeyFile: %q}
`, env["AWS_REGION"], env["MOTO_ENDPOINT"], env["AWS_ACCESS_KEY_ID"], secret),
		rotate: func(t *testing.T) {
			if _, err := adm.RotateKeyOnDemand(t.Context(), &awskms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
				t.Fatalf("RotateKeyOnDemand: %v", err)
			}
		},
		down:     func(t *testing.T) { signal(t, syscall.SIGSTOP) },
		up:       func(t *testing.T) { signal(t, syscall.SIGCONT) },
		describe: kmsaws.DescribeEDEK,
		lose: func(t *testing.T, how string) {
			var err error
			switch how {
			case "disable":
				_, err = adm.DisableKey(t.Context(), &awskms.DisableKeyInput{KeyId: &id})
			case "schedule-deletion":
				_, err = adm.ScheduleKeyDeletion(t.Context(), &awskms.ScheduleKeyDeletionInput{KeyId: &id, PendingWindowInDays: awssdk.Int32(7)})
			default:
				t.Fatalf("moto: cannot %s a key", how)
			}
			if err != nil {
				t.Fatalf("%s: %v", how, err)
			}
		},
	}
}

// e2eHadoopKMS starts Apache Hadoop KMS (scripts/hadoop-kms.sh: a JCEKS key
// store in its folder, so a restart keeps keys and versions) with a 256-bit
// key kek. kseal acts as the script's user, whom the KMS's key ACLs grant
// READ, GENERATE_EEK and DECRYPT_EEK (and, for this test's set-up,
// MANAGEMENT). Down stops the server; up restarts it on the same address
// and key store. Versions are named kek@0, kek@1, ...
func e2eHadoopKMS(t *testing.T, kek string) *e2eExternalKMS {
	t.Helper()
	dir := filepath.Join(e2eWorkDir(t), "hadoop-kms")
	owner := strconv.Itoa(os.Getpid())
	start := func(t *testing.T) {
		e2eScript(t, "hadoop-kms.sh", "start", "--dir", dir, "--owner-pid", owner)
	}
	start(t)
	t.Cleanup(func() { e2eScript(t, "hadoop-kms.sh", "stop", "--dir", dir) })
	env := e2eEnvFile(t, filepath.Join(dir, "hadoop-kms.env"))
	addr, user := env["HADOOP_KMS_ADDR"], env["HADOOP_KMS_USER"]
	hc := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	call := func(t *testing.T, path, body string, want int) {
		t.Helper()
		resp, err := hc.Post(addr+"/kms/v1/"+path+"?user.name="+user, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("POST %s: HTTP %d, want %d: %.300s", path, resp.StatusCode, want, b)
		}
	}
	call(t, "keys", fmt.Sprintf(`{"name":%q,"cipher":"AES/CTR/NoPadding","length":256}`, kek), http.StatusCreated)
	return &e2eExternalKMS{
		provider: "hadoop",
		section: fmt.Sprintf("      kms:\n        type: hadoop\n        config: {address: %q, user: %q, timeout: 1s}\n",
			addr, user),
		// A roll-over: a new key version, kek@1.
		rotate:   func(t *testing.T) { call(t, "key/"+kek, `{}`, http.StatusOK) },
		down:     func(t *testing.T) { e2eScript(t, "hadoop-kms.sh", "stop", "--dir", dir) },
		up:       start,
		describe: hadoop.DescribeEDEK,
		version:  func(n int) string { return strconv.Itoa(n - 1) },
	}
}

// e2ePyKMIP starts PyKMIP's server (scripts/pykmip.sh: its own CA, server
// and client certificates, keys in a sqlite database in its folder) with an
// Active AES-256 key named kek, made with kseal's own KMIP client. kseal
// connects over mutual TLS with the script's client certificate. A rotation
// is a new Active key under the same name; EDEKs name the key's Unique
// Identifier. Down stops the server; up restarts it on the same port,
// certificates and database.
func e2ePyKMIP(t *testing.T, kek string) *e2eExternalKMS {
	t.Helper()
	dir := filepath.Join(e2eWorkDir(t), "pykmip")
	owner := strconv.Itoa(os.Getpid())
	e2eScript(t, "pykmip.sh", "start", "--dir", dir, "--owner-pid", owner)
	t.Cleanup(func() { e2eScript(t, "pykmip.sh", "stop", "--dir", dir) })
	env := e2eEnvFile(t, filepath.Join(dir, "pykmip.env"))
	cfg := kmip.NewConfig()
	cfg.Endpoint = env["KMIP_ENDPOINT"]
	cfg.CAFile = env["KMIP_CA_FILE"]
	cfg.CertFile = env["KMIP_CERT_FILE"]
	cfg.KeyFile = env["KMIP_KEY_FILE"]
	cfg.ServerName = env["KMIP_SERVER_NAME"]
	adm, err := kmip.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Close() })
	var ids []string
	newKey := func(t *testing.T) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		id, err := adm.CreateKey(ctx, kek)
		if err != nil {
			t.Fatalf("KMIP Create %s: %v", kek, err)
		}
		if err := adm.Activate(ctx, id); err != nil {
			t.Fatalf("KMIP Activate %s: %v", id, err)
		}
		ids = append(ids, id)
	}
	newKey(t)
	created := time.Now()
	return &e2eExternalKMS{
		provider: "kmip",
		section: fmt.Sprintf(`      kms:
        type: kmip
        config:
          endpoint: %q
          caFile: %q
          certFile: %q
          keyFile: %q
          serverName: %q
          timeout: 1s
`, cfg.Endpoint, cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.ServerName),
		rotate: func(t *testing.T) {
			// PyKMIP keeps no Activation Date: kseal tells the newest
			// Active key by its Initial Date, in whole seconds.
			time.Sleep(time.Until(created.Add(1100 * time.Millisecond)))
			newKey(t)
		},
		down: func(t *testing.T) { e2eScript(t, "pykmip.sh", "stop", "--dir", dir) },
		up: func(t *testing.T) {
			e2eScript(t, "pykmip.sh", "start", "--dir", dir, "--port", env["KMIP_PORT"], "--owner-pid", owner)
		},
		describe:       kmip.DescribeEDEK,
		version:        func(n int) string { return ids[n-1] },
		newKeyOnRotate: true,
		// The pool's metrics saw the outage: connections refused while
		// the server was down, new ones after it came back, and pooled
		// connections it had dropped.
		verify: func(t *testing.T, _, admin string) {
			m := func(name string, labels ...string) float64 {
				want := map[string]string{"provider": "kmip"}
				for i := 0; i+1 < len(labels); i += 2 {
					want[labels[i]] = labels[i+1]
				}
				return e2eMetric(t, admin, name, want)
			}
			if n := m("kseal_kms_connection_dials_total", "outcome", "error"); n == 0 {
				t.Error("kseal_kms_connection_dials_total{outcome=error} is 0 after the KMIP server was down")
			}
			if n := m("kseal_kms_connection_dials_total", "outcome", "success"); n < 2 {
				t.Errorf("kseal_kms_connection_dials_total{outcome=success} = %v, want a connection before the outage and one after", n)
			}
			if n := m("kseal_kms_connection_errors_total"); n == 0 {
				t.Error("kseal_kms_connection_errors_total is 0: the connections the stopped server closed were not counted")
			}
			if n := m("kseal_kms_connections", "state", "idle") + m("kseal_kms_connections", "state", "in_use"); n < 1 {
				t.Errorf("kseal_kms_connections = %v after the scenario, want the pool's connection", n)
			}
		},
	}
}

// e2eAzureFake serves the fake Key Vault of the azure provider's unit tests
// (package azurefake: real A256KW wrapping, versions, bearer tokens from a
// managed identity endpoint) from this test process over loopback TLS, with
// an oct-HSM key kek (the kind whose wrapping needs the vault: an RSA KEK
// wraps with its public key, so new DEKs would not need the vault). kseal
// verifies the vault's certificate against the fake's CA file. Down closes
// the vault's listener (the token endpoint stays up); up serves it again on
// the same address with the same keys. No Azure emulator is reachable
// here (docs/kms-azure.md), so this is the fake, not a real server.
func e2eAzureFake(t *testing.T, kek string) *e2eExternalKMS {
	t.Helper()
	f := azurefake.New(t)
	var versions []string
	v1, err := f.CreateKey(kek, "oct-HSM", 256)
	if err != nil {
		t.Fatal(err)
	}
	versions = append(versions, v1)
	return &e2eExternalKMS{
		provider: "azure",
		section: fmt.Sprintf(`      kms:
        type: azure
        config:
          vaultUrl: %q
          timeout: 1s
          auth: {method: managedIdentity, identityEndpoint: %q}
          tls: {caFile: %q}
`, f.URL(), f.IdentityEndpoint(), f.CAFile),
		rotate: func(t *testing.T) {
			v, err := f.RotateKey(kek)
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, v)
		},
		down:     func(t *testing.T) { f.Stop() },
		up:       func(t *testing.T) { f.Start() },
		describe: azure.DescribeEDEK,
		version:  func(n int) string { return versions[n-1] },
	}
}

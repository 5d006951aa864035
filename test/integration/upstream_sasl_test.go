//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kseal/kseal/internal/testenv"
)

// testUpstreamSASL: kseal's own connections to the secure broker's
// SASL_PLAINTEXT listener (broker discovery) with upstream.sasl.
//   - SCRAM-SHA-512 (password file) and PLAIN (password variable): kseal
//     learns the broker and binds its port, and /readyz is 200, before any
//     client connects; clients with their own SCRAM or PLAIN login still
//     produce and consume through kseal.
//   - A wrong password: one error line naming the mechanism and the
//     broker's message, and /readyz 503 saying the same, even once clients
//     (with their own, right, credentials) passed through.
//   - No upstream.sasl: one hint to set it, no repeated "cannot reach"
//     warnings, and /readyz 200 (the broker answered and asked for SASL).
func testUpstreamSASL(t *testing.T, b *e2eSecureBroker) {
	const envVar = "KSEAL_IT_UPSTREAM_SASL_PASSWORD" // set for this process and so the kseal it starts
	os.Setenv(envVar, e2eSASLPassword)
	t.Cleanup(func() { os.Unsetenv(envVar) })
	pwFile := func(pass string) string {
		p := filepath.Join(e2eWorkDir(t), "kafka-password")
		if err := os.WriteFile(p, []byte(pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// start runs kseal with an admin listener in front of the SASL
	// listener, with sasl (indented for the upstream section) if set.
	start := func(t *testing.T, sasl string) (*e2eProxy, testenv.Gateway, string) {
		gw, err := testenv.NewGateway()
		if err != nil {
			t.Fatal(err)
		}
		admin := fmt.Sprintf("127.0.0.1:%d", e2eFreePort(t))
		cfg := fmt.Sprintf("admin: {listen: %q}\n", admin) + e2eConfig(gw, b.sasl, sasl, "")
		return e2eStartKseal(t, cfg), gw, admin
	}
	brokerBound := func(gw testenv.Gateway) bool {
		c, err := net.DialTimeout("tcp", gw.BrokerAddr(1), time.Second) // the secure broker is node 1
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	scramClient := kgo.SASL(scram.Auth{User: e2eSASLUser, Pass: e2eSASLPassword}.AsSha512Mechanism())
	plainClient := kgo.SASL(plain.Auth{User: e2eSASLUser, Pass: e2eSASLPassword}.AsMechanism())

	for _, tc := range []struct {
		name, mech, source string
	}{
		{"SCRAM-SHA-512 from a file", "SCRAM-SHA-512", fmt.Sprintf("passwordFile: %q", pwFile(e2eSASLPassword))},
		{"PLAIN from a variable", "PLAIN", "passwordEnv: " + envVar},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, gw, admin := start(t, fmt.Sprintf("      sasl: {mechanism: %s, username: %s, %s}\n", tc.mech, e2eSASLUser, tc.source))
			// No client has connected yet: only kseal's own login can
			// have taught it the broker.
			p.waitLog(t, "serving broker", 1, 20*time.Second)
			if !brokerBound(gw) {
				t.Errorf("broker port %s not bound after discovery", gw.BrokerAddr(1))
			}
			if code, body := e2eGet(t, admin, "/readyz"); code != http.StatusOK {
				t.Errorf("/readyz before any client: %d %q", code, body)
			}
			logs := p.Logs()
			for _, bad := range []string{"cannot reach upstream", "upstream SASL login failed", e2eSASLPassword} {
				if strings.Contains(logs, bad) {
					t.Errorf("kseal's log holds %q", bad)
				}
			}
			topic := b.topic(t, "upstream-sasl")
			recs := e2eConnRecords(topic, "own-"+tc.mech, 4)
			testenv.KgoProduce(t, testenv.Kgo(t, []string{p.Bootstrap}, scramClient), recs)
			var got []testenv.Record
			for _, r := range e2eMustConsume(t, "franz-go with PLAIN", p.Bootstrap, len(recs), []string{topic}, plainClient) {
				got = append(got, testenv.FromKgo(r))
			}
			assertSameRecords(t, "franz-go with PLAIN", got, recs)
		})
	}

	// Both wait past a refresh (30 s) to see nothing logged twice: in
	// parallel, so the waits overlap.
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		started := time.Now()
		p, _, admin := start(t, fmt.Sprintf("      sasl: {mechanism: SCRAM-SHA-512, username: %s, passwordFile: %q}\n",
			e2eSASLUser, pwFile("not-"+e2eSASLPassword)))
		const brokerSays = "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
		p.waitLog(t, "upstream SASL login failed", 1, 20*time.Second)
		var line string
		for l := range strings.SplitSeq(p.Logs(), "\n") {
			if strings.Contains(l, "upstream SASL login failed") {
				line = l
			}
		}
		for _, want := range []string{"level=ERROR", "mechanism=SCRAM-SHA-512", "SASL_AUTHENTICATION_FAILED: " + brokerSays} {
			if !strings.Contains(line, want) {
				t.Errorf("login error lacks %q:\n%s", want, line)
			}
		}
		code, body := e2eGet(t, admin, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "SASL SCRAM-SHA-512 login to "+b.sasl+" failed: SASL_AUTHENTICATION_FAILED: "+brokerSays) {
			t.Errorf("/readyz with a wrong password: %d %q", code, body)
		}
		// Clients log in as themselves and pass; kseal stays unready.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := testenv.Kgo(t, []string{p.Bootstrap}, scramClient).Ping(ctx); err != nil {
			t.Errorf("client SCRAM login through kseal: %v", err)
		}
		if code, _ := e2eGet(t, admin, "/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz after client traffic with kseal's own login failing: %d", code)
		}
		time.Sleep(time.Until(started.Add(35 * time.Second)))
		if n := strings.Count(p.Logs(), "upstream SASL login failed"); n != 1 {
			t.Errorf("login failure logged %d times in 35 s, want once", n)
		}
	})

	t.Run("no upstream.sasl", func(t *testing.T) {
		t.Parallel()
		started := time.Now()
		p, gw, admin := start(t, "")
		const hint = "the upstream cluster requires SASL and upstream.sasl is not set"
		p.waitLog(t, hint, 1, 20*time.Second)
		if code, body := e2eGet(t, admin, "/readyz"); code != http.StatusOK {
			t.Errorf("/readyz on a SASL-only cluster without upstream.sasl: %d %q", code, body)
		}
		if brokerBound(gw) {
			t.Error("a broker port is bound before any client's Metadata")
		}
		if n := strings.Count(p.Logs(), "cannot reach upstream"); n != 0 {
			t.Errorf("%d 'cannot reach upstream' warnings", n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := testenv.Kgo(t, []string{p.Bootstrap}, scramClient).Ping(ctx); err != nil {
			t.Errorf("client SCRAM login through kseal: %v", err)
		}
		time.Sleep(time.Until(started.Add(35 * time.Second)))
		if n := strings.Count(p.Logs(), hint); n != 1 {
			t.Errorf("hint logged %d times in 35 s, want once", n)
		}
		if n := strings.Count(p.Logs(), "cannot reach upstream"); n != 0 {
			t.Errorf("%d 'cannot reach upstream' warnings in 35 s", n)
		}
	})
}

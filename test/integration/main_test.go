//go:build integration

// Package integration runs kseal against a real 3-broker Apache Kafka
// cluster with three independent clients: franz-go, librdkafka (kcat) and
// the Java client (console tools from the broker's jars). Every client talks
// to the cluster through kseal only.
//
// Run with scripts/test-integration.sh (or go test -tags integration
// ./test/integration/...). KSEAL_IT_DIRECT=1 skips the proxy and talks to
// the brokers directly, to tell a proxy bug from a test bug;
// KSEAL_IT_KEEP=1 keeps the cluster folder (test/.work/cluster-*) after a
// passing run; KSEAL_IT_LOGS=1 prints kseal's log for passing tests too;
// KSEAL_IT_RACE=1 builds kseal with the race detector (the script's
// default); KSEAL_IT_KGO_LOG=debug logs the franz-go clients.
package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/testenv"
)

// cluster is the one 3-broker cluster every test shares: starting one costs
// tens of seconds, so tests isolate themselves by topic, group and
// transactional id names instead.
var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, err := testenv.StartCluster(ctx, 3)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: cannot start Kafka: %v\n", err)
		return 1
	}
	cluster = c
	fmt.Fprintf(os.Stderr, "integration: 3-broker Kafka up in %v at %s (%s)\n",
		time.Since(start).Round(100*time.Millisecond), c.BootstrapString(), c.Dir)
	code := m.Run()
	if err := c.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 && os.Getenv("KSEAL_IT_KEEP") == "" {
		_ = c.Remove()
	} else {
		fmt.Fprintf(os.Stderr, "integration: broker logs and data kept in %s\n", c.Dir)
	}
	return code
}

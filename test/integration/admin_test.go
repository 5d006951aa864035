//go:build integration

package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kseal/kseal/internal/testenv"
)

// TestAdmin: topic create, describe, config describe and alter, and delete
// through kseal, with franz-go's kadm and the Java admin tools; kcat's
// metadata view confirms each step from a third client.
func TestAdmin(t *testing.T) {
	t.Parallel()
	tg := startProxy(t)

	// kcatSees reports whether kcat's metadata through kseal lists topic
	// with 6 partitions of 3 replicas each.
	kcatSees := func(t *testing.T, topic string) bool {
		md := testenv.KcatList(t, tg.Bootstrap, "-t", topic)
		for _, tp := range md.Topics {
			if tp.Topic == topic && tp.Error == "" && len(tp.Partitions) == partitions {
				for _, p := range tp.Partitions {
					if len(p.Replicas) != replication {
						return false
					}
				}
				return true
			}
		}
		return false
	}
	// eventually retries cond for 30s: metadata reaches every broker a
	// moment after the controller accepts a change.
	eventually := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 30s: %s", what)
			}
		}
	}

	t.Run("franz-go kadm", func(t *testing.T) {
		adm := kadm.NewClient(testenv.Kgo(t, []string{tg.Bootstrap}))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		topic := uniq("it-admin-kadm")
		retention := "3600000"
		resp, err := adm.CreateTopic(ctx, partitions, replication, map[string]*string{"retention.ms": &retention}, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("CreateTopics through kseal: %v", err)
		}
		eventually(t, "kcat does not see the topic kadm created", func() bool { return kcatSees(t, topic) })
		eventually(t, "kadm does not list the topic with leaders", func() bool {
			td, err := adm.ListTopics(ctx, topic)
			return err == nil && td[topic].Err == nil && len(td[topic].Partitions) == partitions
		})

		configValue := func(want string) func() bool {
			return func() bool {
				rcs, err := adm.DescribeTopicConfigs(ctx, topic)
				if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
					t.Logf("DescribeConfigs: %v %v", err, rcs)
					return false
				}
				for _, c := range rcs[0].Configs {
					if c.Key == "retention.ms" && c.Value != nil {
						return *c.Value == want
					}
				}
				return false
			}
		}
		eventually(t, "DescribeConfigs does not show retention.ms=3600000", configValue("3600000"))
		longer := "7200000"
		ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &longer}}, topic)
		if err == nil && len(ar) == 1 {
			err = ar[0].Err
		}
		if err != nil {
			t.Fatalf("IncrementalAlterConfigs through kseal: %v", err)
		}
		eventually(t, "DescribeConfigs does not show the altered retention.ms=7200000", configValue(longer))

		// Broker configs must be asked of that broker: kseal routes each
		// to its own broker port.
		for id := range cluster.Brokers {
			rcs, err := adm.DescribeBrokerConfigs(ctx, id)
			if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
				t.Fatalf("DescribeConfigs broker %d: %v %+v", id, err, rcs)
			}
			if rcs[0].Name != fmt.Sprint(id) {
				t.Errorf("DescribeConfigs broker %d answered for %q", id, rcs[0].Name)
			}
			found := false
			for _, c := range rcs[0].Configs {
				if c.Key == "node.id" && c.Value != nil {
					found = true
					if *c.Value != fmt.Sprint(id) {
						t.Errorf("broker %d configs say node.id=%s", id, *c.Value)
					}
				}
			}
			if !found {
				t.Errorf("broker %d configs lack node.id", id)
			}
		}

		dr, err := adm.DeleteTopic(ctx, topic)
		if err == nil {
			err = dr.Err
		}
		if err != nil {
			t.Fatalf("DeleteTopics through kseal: %v", err)
		}
		eventually(t, "the deleted topic is still listed", func() bool {
			td, err := adm.ListTopics(ctx)
			_, still := td[topic]
			return err == nil && !still
		})
		eventually(t, "kcat still sees the deleted topic", func() bool { return !kcatSees(t, topic) })
	})

	t.Run("java admin tools", func(t *testing.T) {
		topic := uniq("it-admin-java")
		java := func(main string, args ...string) string {
			return testenv.Java(t, cluster, "", main, append([]string{"--bootstrap-server", tg.Bootstrap}, args...)...)
		}
		java(testenv.JavaTopicCommand, "--create", "--topic", topic, "--partitions", fmt.Sprint(partitions),
			"--replication-factor", fmt.Sprint(replication), "--config", "retention.ms=3600000")
		eventually(t, "kcat does not see the topic the Java tool created", func() bool { return kcatSees(t, topic) })

		desc := java(testenv.JavaTopicCommand, "--describe", "--topic", topic)
		for _, want := range []string{"PartitionCount: 6", "ReplicationFactor: 3", "retention.ms=3600000"} {
			if !strings.Contains(desc, want) {
				t.Errorf("TopicCommand --describe lacks %q:\n%s", want, desc)
			}
		}
		if got := len(regexp.MustCompile(`Partition: \d+\s+Leader: [123]\s`).FindAllString(desc, -1)); got != partitions {
			t.Errorf("TopicCommand --describe shows %d partitions with a leader, want %d:\n%s", got, partitions, desc)
		}

		cfg := java(testenv.JavaConfigCommand, "--describe", "--entity-type", "topics", "--entity-name", topic)
		if !strings.Contains(cfg, "retention.ms=3600000") {
			t.Errorf("ConfigCommand --describe lacks retention.ms=3600000:\n%s", cfg)
		}
		java(testenv.JavaConfigCommand, "--alter", "--entity-type", "topics", "--entity-name", topic,
			"--add-config", "retention.ms=7200000")
		eventually(t, "ConfigCommand does not show the altered retention.ms", func() bool {
			return strings.Contains(java(testenv.JavaConfigCommand, "--describe", "--entity-type", "topics", "--entity-name", topic),
				"retention.ms=7200000")
		})
		broker := java(testenv.JavaConfigCommand, "--describe", "--all", "--entity-type", "brokers", "--entity-name", "2")
		if !strings.Contains(broker, "node.id=2") {
			t.Errorf("ConfigCommand --describe --all broker 2 lacks node.id=2:\n%s", tailLines(broker, 20))
		}

		java(testenv.JavaTopicCommand, "--delete", "--topic", topic)
		eventually(t, "TopicCommand --list still lists the deleted topic", func() bool {
			return !strings.Contains(java(testenv.JavaTopicCommand, "--list"), topic)
		})
		eventually(t, "kcat still sees the deleted topic", func() bool { return !kcatSees(t, topic) })
	})
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

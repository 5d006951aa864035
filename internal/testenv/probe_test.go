package testenv

import (
	"strings"
	"testing"
	"time"
)

func TestProbeLines(t *testing.T) {
	steps := []ProbeStep{
		{Consume: true, Bootstrap: "b:1", Props: map[string]string{"sasl.jaas.config": `x required username="a\b";`}, Topic: "t", Partition: 2, Offset: 5, N: 3, Timeout: 2 * time.Second},
		{Bootstrap: "b:1", Topic: "t", Record: BinRecord{Partition: -1, Key: nil, Value: []byte{}, Headers: []BinHeader{{Key: "h", Value: nil}}}},
	}
	in := probeInput(steps, true)
	lines := strings.Split(strings.TrimSuffix(in, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "consume\tb:1\t") || !strings.HasSuffix(lines[0], "\tt\t2\t5\t3\t2000") {
		t.Fatalf("consume line %q", lines[0])
	}
	if lines[1] != "produce\tb:1\t\tt\t-1\t-\t:\t68=-" {
		t.Fatalf("produce line %q", lines[1])
	}
	// Java's Properties.load reads backslashes as escapes: doubled.
	if !strings.Contains(lines[0], "615c5c62") { // a\\b
		t.Errorf("java props not escaped: %q", lines[0])
	}
	out := "R\t0\t2\t5\t:6b\t-\t68=:76\nE\t0\tboom: x\tmore\nP\t1\t0\t7\nD\t1\t1\n"
	res := parseProbe(t, "test", steps, []byte(out))
	if len(res[0].Records) != 1 || res[0].Records[0].Offset != 5 || res[0].Records[0].Value != nil || string(res[0].Records[0].Key) != "k" ||
		res[0].Err != "boom: x more" {
		t.Errorf("step 0: %+v", res[0])
	}
	if res[1].Partition != 0 || res[1].Offset != 7 || res[1].Err != "" {
		t.Errorf("step 1: %+v", res[1])
	}
}

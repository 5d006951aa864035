package encrypt

import (
	"context"
	"crypto/cipher"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/filter"
)

// panicKeys panics wherever a data key is needed to decrypt.
type panicKeys struct{ Keys }

func (panicKeys) Decryptor(context.Context, []byte) (cipher.AEAD, error) {
	panic("decryptor bug")
}

// A panic while decrypting a large response in parallel fails the
// partitions it hit (UNKNOWN_SERVER_ERROR), counted and logged; it never
// escapes a goroutine of its own, which would end the process (this test
// binary with it).
func TestParallelDecryptPanicFailsPartitions(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	f := newTestFilter(t, "KEK-orders")
	var parts []fetchPart
	for i := 0; i < 4; i++ {
		set, _ := bigPartition(t, f, "orders", 12, 16, 1024)
		parts = append(parts, fetchPart{topic: "orders", partition: int32(i), set: set})
	}
	cur := f.state.Load()
	f.Swap(cur.policy, panicKeys{cur.keys})
	frame, hlen := fetchResponse(parts)
	var s filter.Standalone
	x := s.Exchange(int16(kmsg.Fetch), fetchVersion, nil, 0, frame, hlen)
	if err := s.Respond(context.Background(), x, f); err != nil {
		t.Fatalf("OnResponse: %v", err)
	}
	if got := counterValue(t, f.m.errors.WithLabelValues("fetch", "panic")); got != 4 {
		t.Errorf("panics counted %v, want 4 (one per partition)", got)
	}
}

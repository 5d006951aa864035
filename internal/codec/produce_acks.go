package codec

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kbin"
)

// ProduceAcks reads only the acks field of a Produce request body, for the
// plumbing, which must know whether a response will come (acks=0: none).
func ProduceAcks(body []byte, version int16) (int16, error) {
	r := kbin.Reader{Src: body}
	if version >= 3 {
		// transactional id: nullable string, compact from v9
		if version >= produceFirstFlexible {
			if n := r.Uvarint(); n > 0 {
				r.Span(int(n) - 1)
			}
		} else if n := r.Int16(); n > 0 {
			r.Span(int(n))
		}
	}
	acks := r.Int16()
	if !r.Ok() {
		return 0, fmt.Errorf("produce request v%d: acks: %w", version, ErrMalformed)
	}
	return acks, nil
}

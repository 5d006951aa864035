package records_test

import (
	"fmt"

	"github.com/kseal/kseal/internal/records"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// marker stands in for the header the encrypt stage adds to sealed records.
// The []byte forms are made once: converting per record would allocate.
const marker = "kseal.enc"

var markerKey, markerValue = []byte(marker), []byte{1}

// produceSide rewrites a partition's record set from a Produce request,
// replacing every non-null value. Old message sets and cut-off batches are
// refused; control batches pass through Rewrite unchanged.
func produceSide(p *records.Processor, set []byte, seal func(dst, v []byte) []byte) ([]byte, error) {
	var out, scratch []byte
	it := records.NewBatchIter(set)
	for it.Next() {
		b := it.Batch()
		if b.Kind != records.KindBatch {
			return nil, fmt.Errorf("produce: %s entry at byte %d", b.Kind, it.Offset())
		}
		if err := p.Reset(b); err != nil {
			return nil, err
		}
		var err error
		out, err = p.Rewrite(out, func(r *records.Record) error {
			if r.Value == nil { // tombstones stay tombstones
				return nil
			}
			scratch = seal(scratch[:0], r.Value)
			r.Value = scratch // copied out by Rewrite before the next record
			r.Headers = append(r.Headers, records.RecordHeader{Key: markerKey, Value: markerValue})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, it.Err()
}

// fetchSide rewrites a partition's record set from a Fetch response. Batches
// without the marker header, control batches, old message sets and the
// trailing partial batch are forwarded byte for byte.
func fetchSide(p *records.Processor, set []byte, open func(dst, v []byte) []byte) ([]byte, error) {
	var out, scratch []byte
	it := records.NewBatchIter(set)
	for it.Next() {
		b := it.Batch()
		if b.Kind != records.KindBatch || b.Control() {
			out = append(out, b.Raw...)
			continue
		}
		if err := p.Reset(b); err != nil {
			return nil, err
		}
		if has, err := p.HasHeader(marker); err != nil {
			return nil, err
		} else if !has {
			out = append(out, b.Raw...)
			continue
		}
		var err error
		out, err = p.Rewrite(out, func(r *records.Record) error {
			for i, h := range r.Headers {
				if string(h.Key) == marker {
					r.Headers = append(r.Headers[:i], r.Headers[i+1:]...)
					scratch = open(scratch[:0], r.Value)
					r.Value = scratch
					return nil
				}
			}
			return nil // this record was not sealed
		})
		if err != nil {
			return nil, err
		}
	}
	if err := it.Err(); err != nil {
		// The bytes from it.Offset() on could not be read; a fetch
		// path may choose to forward them as they are.
		return nil, fmt.Errorf("fetch record set at byte %d: %w", it.Offset(), err)
	}
	return out, nil
}

func Example() {
	// A one-record batch, as a client would send it.
	rec := kmsg.Record{Key: []byte("k"), Value: []byte("hello")}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1)
	batch := kmsg.RecordBatch{Magic: 2, NumRecords: 1, Records: rec.AppendTo(nil)}
	batch.Length = int32(49 + len(batch.Records))
	set := batch.AppendTo(nil)

	p := records.NewProcessor(records.WithMaxDecompressed(16 << 20))
	reverse := func(dst, v []byte) []byte {
		for i := len(v) - 1; i >= 0; i-- {
			dst = append(dst, v[i])
		}
		return dst
	}
	sealed, err := produceSide(p, set, reverse)
	if err != nil {
		panic(err)
	}
	opened, err := fetchSide(p, sealed, reverse)
	if err != nil {
		panic(err)
	}
	for _, s := range [][]byte{sealed, opened} {
		b, _ := records.ParseBatch(s)
		_ = p.Reset(&b)
		for p.Next() {
			r := p.Record()
			fmt.Printf("key=%s value=%s headers=%d crc-ok=%v\n", r.Key, r.Value, len(r.Headers), b.VerifyCRC() == nil)
		}
	}
	// Output:
	// key=k value=olleh headers=1 crc-ok=true
	// key=k value=hello headers=0 crc-ok=true
}

package detkey

import (
	"bytes"
	"context"
	"testing"

	"github.com/kseal/kseal/internal/recordcrypt"
	"github.com/kseal/kseal/internal/records"
)

// A record key sealed (format v2, key only) under one process's key opens
// in another process that finds the key by the id in the sealed key, and
// equal plaintext keys seal to equal bytes.
func TestSealedKeyOpensInAnotherStore(t *testing.T) {
	ctx := context.Background()
	log := &fakeLog{}
	a := newStore(t, &fakeKMS{}, Options{})
	dk, err := a.ForWrite(ctx, log, "orders", kekA)
	if err != nil {
		t.Fatal(err)
	}
	var sealer recordcrypt.Sealer
	sealKey := func(key string) []byte {
		r := records.Record{Key: []byte(key), Value: []byte("v")}
		ok, err := sealer.SealV2(nil, dk, "orders", recordcrypt.PartKey, nil, &r)
		if err != nil || !ok {
			t.Fatalf("seal: %v %v", ok, err)
		}
		return bytes.Clone(r.Key)
	}
	k1, k2 := sealKey("customer-42"), sealKey("customer-42")
	if !bytes.Equal(k1, k2) || bytes.Contains(k1, []byte("customer-42")) {
		t.Fatalf("sealed keys %x / %x", k1, k2)
	}

	r := records.Record{Key: []byte("customer-42"), Value: []byte("v")}
	if _, err := sealer.SealV2(nil, dk, "orders", recordcrypt.PartKey, nil, &r); err != nil {
		t.Fatal(err)
	}
	r = records.Record{Key: bytes.Clone(r.Key), Value: r.Value, Headers: append([]records.RecordHeader(nil), r.Headers...)}
	rec, version, err := recordcrypt.ParseRecord(&r)
	if err != nil || version != 2 || rec.KeyID != dk.ID {
		t.Fatalf("parse: v%d id %x %v", version, rec.KeyID, err)
	}
	b := newStore(t, &fakeKMS{}, Options{})
	dkB, err := b.ForRead(ctx, log, "orders", rec.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	var opener recordcrypt.Opener
	if err := opener.OpenV2(nil, dkB, "orders", rec, &r); err != nil {
		t.Fatal(err)
	}
	if string(r.Key) != "customer-42" {
		t.Fatalf("opened key %q", r.Key)
	}
}

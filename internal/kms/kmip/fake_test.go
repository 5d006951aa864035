package kmip

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/kms/kmip/ttlv"
)

// fakeServer is an in-process KMIP server for unit tests: Locate by Name,
// Get Attributes (State, Initial Date), and AES-GCM Encrypt/Decrypt, over
// net.Pipe connections (no TLS: the integration test covers that).
type fakeServer struct {
	mu    sync.Mutex
	keys  map[string]*fakeKey
	dials int
	// closeAfter closes each connection after that many responses (0: never).
	closeAfter int
	// pad adds a filler item to every response, to test maxResponseBytes.
	pad int
}

type fakeKey struct {
	name  string
	state int64
	at    int64
	aead  cipher.AEAD
}

func newFake() *fakeServer { return &fakeServer{keys: map[string]*fakeKey{}} }

func (f *fakeServer) add(id, name string, state, at int64) {
	k := make([]byte, 32)
	rand.Read(k)
	b, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCMWithNonceSize(b, 16)
	f.mu.Lock()
	f.keys[id] = &fakeKey{name: name, state: state, at: at, aead: a}
	f.mu.Unlock()
}

func (f *fakeServer) kms(t *testing.T) *KMS {
	c := newClient("fake:5696", nil, 2*time.Second, 1, 4, 2, 4096)
	c.dial = func(ctx context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		f.mu.Lock()
		f.dials++
		f.mu.Unlock()
		go f.serve(b)
		return a, nil
	}
	k := &KMS{c: c, mode: edekModeGCM}
	t.Cleanup(func() { k.Close() })
	return k
}

func (f *fakeServer) serve(nc net.Conn) {
	defer nc.Close()
	for n := 1; ; n++ {
		var hdr [8]byte
		if _, err := io.ReadFull(nc, hdr[:]); err != nil {
			return
		}
		size, err := ttlv.MessageLen(hdr[:])
		if err != nil {
			return
		}
		buf := make([]byte, size)
		copy(buf, hdr[:])
		if _, err := io.ReadFull(nc, buf[8:]); err != nil {
			return
		}
		req, err := ttlv.Decode(buf, ttlv.DefaultLimits)
		if err != nil {
			return
		}
		bi := req.Find(tagBatchItem)
		op := bi.Find(tagOperation).Int
		payload, reason := f.handle(op, bi.Find(tagRequestPayload))
		item := ttlv.Struct(tagBatchItem, ttlv.Enum(tagOperation, uint32(op)))
		if reason != 0 {
			item.Items = append(item.Items, ttlv.Enum(tagResultStatus, 1), ttlv.Enum(tagResultReason, uint32(reason)), ttlv.Text(tagResultMessage, "fake says no"))
		} else {
			item.Items = append(item.Items, ttlv.Enum(tagResultStatus, statusSuccess))
			payload.Tag = tagResponsePayload
			item.Items = append(item.Items, payload)
		}
		msg := ttlv.Struct(tagResponseMessage, ttlv.Struct(tagResponseHeader, ttlv.Int(tagBatchCount, 1)), item)
		if f.pad > 0 {
			msg.Items = append(msg.Items, ttlv.Bytes(0x540000, make([]byte, f.pad)))
		}
		if _, err := nc.Write(ttlv.Encode(msg)); err != nil {
			return
		}
		if f.closeAfter > 0 && n >= f.closeAfter {
			return
		}
	}
}

func (f *fakeServer) handle(op int64, p *ttlv.Item) (ttlv.Item, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := ttlv.Struct(0)
	switch op {
	case opLocate:
		var name string
		for _, a := range p.Items {
			if a.Tag == tagAttribute && a.Find(tagAttributeName).Text() == "Name" {
				name = a.Find(tagAttributeValue).Find(tagNameValue).Text()
			}
		}
		for id, k := range f.keys {
			if k.name == name {
				out.Items = append(out.Items, ttlv.Text(tagUniqueIdentifier, id))
			}
		}
		return out, 0
	case opGetAttributes, opEncrypt, opDecrypt:
		id := p.Find(tagUniqueIdentifier).Text()
		k := f.keys[id]
		if k == nil {
			return out, reasonItemNotFound
		}
		if op == opGetAttributes {
			out.Items = append(out.Items,
				ttlv.Struct(tagAttribute, ttlv.Text(tagAttributeName, "State"), ttlv.Enum(tagAttributeValue, uint32(k.state))),
				ttlv.Struct(tagAttribute, ttlv.Text(tagAttributeName, "Initial Date"), ttlv.DateTimeItem(tagAttributeValue, k.at)))
			return out, 0
		}
		if k.state != stateActive {
			return out, reasonPermissionDenied
		}
		data := p.Find(tagData).Bytes
		if op == opEncrypt {
			iv := make([]byte, 16)
			rand.Read(iv)
			sealed := k.aead.Seal(nil, iv, data, nil)
			n := len(sealed) - 16
			out.Items = append(out.Items, ttlv.Text(tagUniqueIdentifier, id), ttlv.Bytes(tagData, sealed[:n]),
				ttlv.Bytes(tagIVCounterNonce, iv), ttlv.Bytes(tagAuthenticatedEncryptionTag, sealed[n:]))
			return out, 0
		}
		ct := append(append([]byte(nil), data...), p.Find(tagAuthenticatedEncryptionTag).Bytes...)
		pt, err := k.aead.Open(nil, p.Find(tagIVCounterNonce).Bytes, ct, nil)
		if err != nil {
			return out, 0x0A // Cryptographic Failure
		}
		out.Items = append(out.Items, ttlv.Text(tagUniqueIdentifier, id), ttlv.Bytes(tagData, pt))
		return out, 0
	}
	return out, reasonOperationNotSupported
}

func TestFakeRoundTripAndRotation(t *testing.T) {
	f := newFake()
	f.add("1", "KEK-orders", stateActive, 100)
	k := f.kms(t)
	ctx := context.Background()
	ref, err := k.ResolveKEK(ctx, "KEK-orders")
	if err != nil || ref.ID != "1" {
		t.Fatalf("ResolveKEK = %+v, %v", ref, err)
	}
	d, err := k.GenerateDEK(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.DecryptDEK(ctx, d.EDEK)
	if err != nil || string(got) != string(d.Key) {
		t.Fatalf("DecryptDEK: %v", err)
	}
	f.add("2", "KEK-orders", stateActive, 200)
	if ref, err := k.ResolveKEK(ctx, "KEK-orders"); err != nil || ref.ID != "2" {
		t.Fatalf("after rotation: %+v, %v", ref, err)
	}
	f.add("3", "KEK-orders", stateActive, 200)
	if _, err := k.ResolveKEK(ctx, "KEK-orders"); err == nil || errors.Is(err, kms.ErrKeyNotFound) || errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("two keys activated at once: %v, want a plain error", err)
	}
	if f.dials > 2 {
		t.Fatalf("%d connections for sequential requests; want reuse", f.dials)
	}
}

func TestFakeKeyErrors(t *testing.T) {
	f := newFake()
	f.add("1", "KEK-old", stateDeactivated, 100)
	f.add("2", "KEK-live", stateActive, 100)
	k := f.kms(t)
	ctx := context.Background()
	if _, err := k.ResolveKEK(ctx, "KEK-none"); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := k.ResolveKEK(ctx, "KEK-old"); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("deactivated: %v", err)
	}
	d, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-live", ID: "2"})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.keys["2"].state = stateCompromised
	f.mu.Unlock()
	if _, err := k.DecryptDEK(ctx, d.EDEK); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("Decrypt with a compromised key: %v", err)
	}
	if _, err := k.GenerateDEK(ctx, kms.KEKRef{Name: "KEK-live", ID: "2"}); !errors.Is(err, kms.ErrKeyUnusable) {
		t.Fatalf("Encrypt with a compromised key: %v", err)
	}
	f.mu.Lock()
	delete(f.keys, "2")
	f.mu.Unlock()
	if _, err := k.DecryptDEK(ctx, d.EDEK); !errors.Is(err, kms.ErrKeyNotFound) {
		t.Fatalf("Decrypt with a deleted key: %v", err)
	}
}

// A pooled connection the server closed while idle is replaced once,
// without an error reaching the caller.
func TestFakeStaleConnectionRetried(t *testing.T) {
	f := newFake()
	f.closeAfter = 1
	f.add("1", "KEK-orders", stateActive, 100)
	k := f.kms(t)
	for i := range 3 {
		if _, err := k.ResolveKEK(context.Background(), "KEK-orders"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

func TestFakeResponseTooLarge(t *testing.T) {
	f := newFake()
	f.pad = 8192
	k := f.kms(t)
	_, err := k.ResolveKEK(context.Background(), "KEK-orders")
	if !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("oversized response: %v, want ErrUnavailable", err)
	}
}

func TestFakePoolBounded(t *testing.T) {
	f := newFake()
	f.add("1", "KEK-orders", stateActive, 100)
	k := f.kms(t)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := k.ResolveKEK(context.Background(), "KEK-orders"); err != nil {
				t.Error(strconv.Itoa(i), err)
			}
		}()
	}
	wg.Wait()
	if f.dials > 2 {
		t.Fatalf("%d connections with maxConnections 2", f.dials)
	}
}

// The pool's counters (kms.ConnStats, exported as kseal_kms_connection*
// metrics) follow its connections: dials, reuse, broken connections, dial
// failures and requests waiting for a free connection.
func TestFakePoolStats(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	f.add("1", "KEK-orders", stateActive, 100)
	k := f.kms(t)
	check := func(what string, want kms.ConnStats) {
		t.Helper()
		if got := k.ConnStats(); got != want {
			t.Fatalf("%s: ConnStats %+v, want %+v", what, got, want)
		}
	}
	check("fresh", kms.ConnStats{})
	for range 2 {
		if _, err := k.ResolveKEK(ctx, "KEK-orders"); err != nil {
			t.Fatal(err)
		}
	}
	check("two resolves on one connection", kms.ConnStats{Idle: 1, Dials: 1})

	// Both connections taken: the next request waits, then gets one back.
	c1, _, err := k.c.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, _, err := k.c.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("both connections lent", kms.ConnStats{InUse: 2, Dials: 2})
	done := make(chan error, 1)
	go func() {
		_, err := k.ResolveKEK(ctx, "KEK-orders")
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); k.ConnStats().Waits == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the third request never waited")
		}
	}
	k.c.put(c1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	k.c.put(c2)
	check("after the wait", kms.ConnStats{Idle: 2, Dials: 2, Waits: 1})

	// A server closing each connection after one response: the pooled
	// connection fails, is counted broken, and is replaced.
	fc := newFake()
	fc.closeAfter = 1
	fc.add("1", "KEK-orders", stateActive, 100)
	kc := fc.kms(t)
	for range 2 {
		if _, err := kc.ResolveKEK(ctx, "KEK-orders"); err != nil {
			t.Fatal(err)
		}
	}
	if s := kc.ConnStats(); s.Broken == 0 || s.Dials != s.Broken+1 || s.InUse != 0 {
		t.Fatalf("server closing connections: %+v, want broken ones, each replaced, none in use", s)
	}

	// A failed dial.
	k.Close()
	before := k.ConnStats()
	k.c.dial = func(context.Context) (net.Conn, error) { return nil, errors.New("refused") }
	if _, err := k.ResolveKEK(ctx, "KEK-orders"); !errors.Is(err, kms.ErrUnavailable) {
		t.Fatalf("dial failure: %v", err)
	}
	if s := k.ConnStats(); s.DialErrors != before.DialErrors+1 || s.Dials != before.Dials+1 || s.InUse != 0 || s.Idle != 0 {
		t.Fatalf("after a failed dial: %+v (before %+v)", s, before)
	}
}

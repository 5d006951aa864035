package dek

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms"
)

// fakeKMS is an in-memory KMS for tests. EDEKs are "<kek id>|<serial>"; the
// raw keys it hands out are remembered so tests can check they were wiped.
type fakeKMS struct {
	mu      sync.Mutex
	keks    map[string]bool   // existing KEK ids
	off     map[string]bool   // existing but disabled KEKs (ResolveKEK: ErrKeyUnusable)
	keys    map[string][]byte // EDEK -> key copy
	handed  [][]byte          // every raw key slice returned to the caller
	serial  int
	sameKey []byte // if set, GenerateDEK always returns this key (a broken KMS)

	// gate, if set, blocks every call until it is closed or ctx ends; with
	// ignoreCtx it blocks until closed regardless of ctx.
	gate      chan struct{}
	ignoreCtx bool
	// fail, if set, is returned by every call.
	fail error

	resolveCalls, generateCalls, decryptCalls atomic.Int64
}

func newFakeKMS(keks ...string) *fakeKMS {
	f := &fakeKMS{keks: map[string]bool{}, keys: map[string][]byte{}}
	for _, k := range keks {
		f.keks[k] = true
	}
	return f
}

func (f *fakeKMS) block(ctx context.Context) error {
	f.mu.Lock()
	gate, ignore, fail := f.gate, f.ignoreCtx, f.fail
	f.mu.Unlock()
	if gate != nil {
		if ignore {
			<-gate
		} else {
			select {
			case <-gate:
			case <-ctx.Done():
				return fmt.Errorf("%w: %w", kms.ErrUnavailable, ctx.Err())
			}
		}
	}
	return fail
}

func (f *fakeKMS) setGate(ch chan struct{}, ignoreCtx bool) {
	f.mu.Lock()
	f.gate, f.ignoreCtx = ch, ignoreCtx
	f.mu.Unlock()
}

func (f *fakeKMS) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

// disable marks a KEK disabled (or enabled again): like moto, GenerateDEK
// keeps serving it, only ResolveKEK tells.
func (f *fakeKMS) disable(name string, off bool) {
	f.mu.Lock()
	if f.off == nil {
		f.off = map[string]bool{}
	}
	f.off[name] = off
	f.mu.Unlock()
}

func (f *fakeKMS) deleteKEK(id string) {
	f.mu.Lock()
	delete(f.keks, id)
	f.mu.Unlock()
}

func (f *fakeKMS) ResolveKEK(ctx context.Context, name string) (kms.KEKRef, error) {
	f.resolveCalls.Add(1)
	if err := f.block(ctx); err != nil {
		return kms.KEKRef{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off[name] {
		return kms.KEKRef{}, fmt.Errorf("fake: %q is disabled: %w", name, kms.ErrKeyUnusable)
	}
	if !f.keks[name] {
		return kms.KEKRef{}, fmt.Errorf("fake: %q: %w", name, kms.ErrKeyNotFound)
	}
	return kms.KEKRef{Name: name, ID: "id-" + name}, nil
}

func (f *fakeKMS) GenerateDEK(ctx context.Context, kek kms.KEKRef) (kms.DEK, error) {
	f.generateCalls.Add(1)
	if err := f.block(ctx); err != nil {
		return kms.DEK{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.keks[kek.Name] {
		return kms.DEK{}, fmt.Errorf("fake: %q: %w", kek.Name, kms.ErrKeyNotFound)
	}
	key := make([]byte, 32)
	if f.sameKey != nil {
		copy(key, f.sameKey)
	} else {
		rand.Read(key)
	}
	f.serial++
	edek := fmt.Sprintf("%s|%d", kek.Name, f.serial)
	f.keys[edek] = append([]byte(nil), key...)
	f.handed = append(f.handed, key)
	return kms.DEK{Key: key, EDEK: []byte(edek)}, nil
}

func (f *fakeKMS) DecryptDEK(ctx context.Context, edek []byte) ([]byte, error) {
	f.decryptCalls.Add(1)
	if err := f.block(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	kek, _, _ := strings.Cut(string(edek), "|")
	key, ok := f.keys[string(edek)]
	if !ok || !f.keks[kek] {
		return nil, fmt.Errorf("fake: EDEK of %q: %w", kek, kms.ErrKeyNotFound)
	}
	out := append([]byte(nil), key...)
	f.handed = append(f.handed, out)
	return out, nil
}

func (f *fakeKMS) DescribeEDEK(edek []byte) (kms.EDEKInfo, error) {
	kek, _, ok := strings.Cut(string(edek), "|")
	if !ok {
		return kms.EDEKInfo{}, errors.New("fake: bad EDEK")
	}
	return kms.EDEKInfo{KEK: kek}, nil
}

// fakeClock is a manual clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newManager builds a Manager with a fake clock and fast KMS retries.
func newManager(t *testing.T, f *fakeKMS, opts Options) (*Manager, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	opts.Now = clock.Now
	if opts.KMSBackoff == 0 {
		opts.KMSBackoff = time.Millisecond
	}
	if opts.KMSBackoffMax == 0 {
		opts.KMSBackoffMax = 2 * time.Millisecond
	}
	m, err := New(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, clock
}

func ref(name string) kms.KEKRef { return kms.KEKRef{Name: name, ID: "id-" + name} }

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

package filter

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/frame"
)

// Answer writes the response header of the exchange's API and version: v0
// (correlation id only) for ApiVersions and non-flexible versions, v1 (an
// empty tag section) for flexible ones, then the body, in a frame the
// plumbing can write with its size prefix.
func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		key, version int16
		headerLen    int
	}{
		{int16(kmsg.ApiVersions), 4, 4}, // flexible, but ApiVersions answers with header v0
		{int16(kmsg.Produce), 7, 4},
		{int16(kmsg.Produce), 9, 5},
		{int16(kmsg.Fetch), 13, 5},
	} {
		var s Standalone
		x := s.Exchange(tc.key, tc.version, []byte("request"), 7, nil, 0)
		x.CorrelationID = 0x01020304
		if err := x.Answer(func(dst []byte) []byte { return append(dst, "body"...) }); err != nil {
			t.Fatal(err)
		}
		if !x.Local || x.RespHeaderLen != tc.headerLen {
			t.Fatalf("key %d v%d: local %v, header %d, want %d", tc.key, tc.version, x.Local, x.RespHeaderLen, tc.headerLen)
		}
		if got := binary.BigEndian.Uint32(x.Response); got != 0x01020304 {
			t.Fatalf("correlation id %x", got)
		}
		rh, err := frame.ParseResponseHeader(x.Response, tc.key, tc.version)
		if err != nil || rh.Len != tc.headerLen {
			t.Fatalf("key %d v%d: header %+v, %v", tc.key, tc.version, rh, err)
		}
		if string(x.Response[tc.headerLen:]) != "body" {
			t.Fatalf("body %q", x.Response[tc.headerLen:])
		}
	}
	var s Standalone
	x := s.Exchange(-7, 0, nil, 0, nil, 0)
	if err := x.Answer(func(dst []byte) []byte { return dst }); err == nil || x.Local {
		t.Fatalf("unknown API key answered: %v", err)
	}
}

// Scratch never hands out a buffer the exchange's request or response
// lives in, and a buffer kept after one exchange serves the next.
func TestScratchAndKeep(t *testing.T) {
	var s Standalone
	x := s.Exchange(int16(kmsg.Produce), 7, []byte("req"), 3, nil, 0)
	a := append(x.Scratch(), "first"...)
	x.Request = a
	b := x.Scratch()
	if aliases(a, b) {
		t.Fatal("Scratch aliases the request")
	}
	b = append(b, "second"...)
	x.Response = b
	if c := x.Scratch(); c != nil {
		t.Fatalf("both buffers are in use, Scratch gave %d bytes of capacity", cap(c))
	}
	s.Done(x)
	y := s.Exchange(int16(kmsg.Produce), 7, []byte("req"), 3, nil, 0)
	got := [][]byte{y.Scratch(), y.Scratch()}
	if !(aliases(got[0], a) && aliases(got[1], b)) && !(aliases(got[0], b) && aliases(got[1], a)) {
		t.Fatal("the buffers of the last exchange were not kept")
	}
}

func TestSideKeep(t *testing.T) {
	var s Side
	read := make([]byte, 0, 64)
	s.Keep(read[:10], read)
	if cap(s.scratch[0])+cap(s.scratch[1]) != 0 {
		t.Fatal("kept the read buffer")
	}
	s.Keep(make([]byte, 0, MaxKept+1), nil)
	if cap(s.scratch[0])+cap(s.scratch[1]) != 0 {
		t.Fatal("kept a buffer over MaxKept")
	}
	small, big := make([]byte, 3, 16), make([]byte, 5, 32)
	s.Keep(small, nil)
	s.Keep(big, nil)
	if !(aliases(s.scratch[0], small) || aliases(s.scratch[1], small)) || !(aliases(s.scratch[0], big) || aliases(s.scratch[1], big)) {
		t.Fatal("fresh buffers were not kept")
	}
	if len(s.scratch[0]) != 0 || len(s.scratch[1]) != 0 {
		t.Fatal("kept buffers are not empty")
	}
	bigger := make([]byte, 0, 64)
	s.Keep(bigger, nil)
	if !aliases(s.scratch[0], bigger) && !aliases(s.scratch[1], bigger) || aliases(s.scratch[0], small) || aliases(s.scratch[1], small) {
		t.Fatal("a bigger fresh buffer did not replace the smaller slot")
	}
}

// ConnState is per side: an exchange bound to another side sees that
// side's values.
func TestConnStatePerSide(t *testing.T) {
	var req, resp Side
	var s Standalone
	x := &Exchange{}
	key := new(int)
	req.Bind(x, &s)
	a := x.ConnState(key, func() any { return new(int) })
	if x.ConnState(key, func() any { t.Fatal("made twice"); return nil }) != a {
		t.Fatal("ConnState changed")
	}
	resp.Bind(x, &s)
	if x.ConnState(key, func() any { return new(int) }) == a {
		t.Fatal("the response side sees the request side's state")
	}
	if x.Conn() != Conn(&s) {
		t.Fatal("Conn is not the bound connection")
	}
}

func TestStandaloneConn(t *testing.T) {
	ctx := context.Background()
	s := Standalone{Topics: map[[16]byte]string{{1}: "a"}}
	x := s.Exchange(0, 0, nil, 0, nil, 0)
	if n, ok := x.TopicName(ctx, [16]byte{1}); !ok || n != "a" {
		t.Fatal(n, ok)
	}
	if _, ok := x.TopicName(ctx, [16]byte{2}); ok {
		t.Fatal("unknown id resolved")
	}
	if id := x.Identity(); id == nil || len(id.Names()) != 0 || id.String() != "anonymous" {
		t.Fatalf("identity without one: %v", id)
	}
	s.Identity = NewIdentity([]string{"CN=c"}, "", "")
	if x.Identity().String() != "CN=c" {
		t.Fatal(x.Identity())
	}
	if err := x.NewestBatches(ctx, "t", nil); !errors.Is(err, ErrNoUpstream) {
		t.Fatal(err)
	}
	var none Exchange
	if _, ok := none.TopicName(ctx, [16]byte{1}); ok || none.Identity() == nil || !errors.Is(none.NewestBatches(ctx, "t", nil), ErrNoUpstream) {
		t.Fatal("an exchange without a connection")
	}
}

func TestNoUpstream(t *testing.T) {
	var s Standalone
	up := s.Exchange(0, 0, nil, 0, nil, 0).Upstream()
	ctx := context.Background()
	if err := up.CreateTopic(ctx, "t", 0, nil); !errors.Is(err, ErrNoUpstream) {
		t.Fatal(err)
	}
	if _, err := up.Produce(ctx, "t", nil, nil); !errors.Is(err, ErrNoUpstream) {
		t.Fatal(err)
	}
	if next, err := up.ReadFrom(ctx, "t", 4, nil); !errors.Is(err, ErrNoUpstream) || next != 4 {
		t.Fatal(next, err)
	}
}

func TestIdentity(t *testing.T) {
	id := NewIdentity([]string{"CN=svc,O=Example", "SAN:DNS:svc.example"}, "", "")
	if id.String() != "CN=svc,O=Example" || id.Principal() != "" {
		t.Fatal(id)
	}
	login := id.WithPrincipal("User:alice", "PLAIN")
	if !slices.Equal(login.Names(), []string{"CN=svc,O=Example", "SAN:DNS:svc.example", "User:alice"}) ||
		login.String() != "User:alice" || login.Mechanism() != "PLAIN" || len(login.Certificate()) != 2 {
		t.Fatalf("%q %s", login.Names(), login.Mechanism())
	}
	if len(id.Names()) != 2 {
		t.Fatal("WithPrincipal changed the identity it was called on")
	}
	var none *Identity
	if got := none.WithPrincipal("User:bob", "SCRAM-SHA-512"); !slices.Equal(got.Names(), []string{"User:bob"}) {
		t.Fatal(got.Names())
	}
}

func TestPanics(t *testing.T) {
	var p Panics
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer p.Recover()
		panic("boom")
	}()
	<-done
	defer func() {
		if v, _ := recover().(string); len(v) < 4 || v[:4] != "boom" {
			t.Fatalf("Repanic gave %q", v)
		}
	}()
	p.Repanic()
	t.Fatal("Repanic did not panic")
}

// A buffer a filter lends goes back to it once the plumbing is done with the
// message, not into the side's scratch buffers; one the message no longer
// lives in is not handed back.
func TestLend(t *testing.T) {
	var s Standalone
	x := s.Exchange(int16(kmsg.Produce), 7, []byte("req"), 3, nil, 0)
	buf := make([]byte, 0, 64)
	var back []byte
	x.Request = append(buf, "rebuilt"...)
	x.Lend(buf, func(b []byte) { back = b })
	s.Done(x)
	if !aliases(back, buf) {
		t.Fatal("the lent buffer was not handed back")
	}
	if aliases(s.side.scratch[0], buf) || aliases(s.side.scratch[1], buf) {
		t.Fatal("the lent buffer was kept as scratch")
	}
	back = nil
	y := s.Exchange(int16(kmsg.Produce), 7, []byte("req"), 3, nil, 0)
	y.Lend(buf, func(b []byte) { back = b })
	y.Request = append(y.Scratch(), "replaced"...)
	s.Done(y)
	s.side.Keep(buf, nil)
	if back != nil {
		t.Fatal("a buffer the message no longer lived in was handed back")
	}
}

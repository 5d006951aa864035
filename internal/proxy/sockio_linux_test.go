package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(done)
			return
		}
		done <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-done
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Frames far larger than the socket buffers go through whole and in order,
// written by writeFrame (waiting for the socket to drain) and read back
// through sockIO.Read.
func TestSockIOLargeFrames(t *testing.T) {
	a, b := tcpPair(t)
	w, r := socketIO(a), socketIO(b)
	if _, ok := w.(*sockIO); !ok {
		t.Fatalf("socketIO(%T) = %T, want *sockIO", a, w)
	}
	msgs := make([][]byte, 8)
	for i := range msgs {
		msgs[i] = make([]byte, 1<<20+i*977)
		rand.Read(msgs[i])
	}
	errc := make(chan error, 1)
	go func() {
		var prefix [4]byte
		for _, m := range msgs {
			if err := writeFrame(w, &prefix, m); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, m := range msgs {
		var size [4]byte
		if _, err := io.ReadFull(r, size[:]); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, int(size[0])<<24|int(size[1])<<16|int(size[2])<<8|int(size[3]))
		// Odd read sizes: reads end wherever the socket has nothing more.
		for n := 0; n < len(got); {
			k, err := r.Read(got[n:min(len(got), n+12345)])
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
		if !bytes.Equal(got, m) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// The end of the stream, a read deadline (how drain stops the request side)
// and a closed connection read as they do through net.Conn.
func TestSockIOEndsAsNetConn(t *testing.T) {
	a, b := tcpPair(t)
	r := socketIO(b)
	a.Write([]byte("hi"))
	a.Close()
	buf := make([]byte, 10)
	if n, err := io.ReadAtLeast(r, buf, 2); n != 2 || err != nil || string(buf[:2]) != "hi" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}

	_, d := tcpPair(t)
	r = socketIO(d)
	go func() {
		time.Sleep(50 * time.Millisecond)
		r.SetReadDeadline(time.Now())
	}()
	if _, err := r.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past a deadline: %v, want os.ErrDeadlineExceeded", err)
	}

	_, f := tcpPair(t)
	r = socketIO(f)
	go func() {
		time.Sleep(50 * time.Millisecond)
		r.Close()
	}()
	if _, err := r.Read(buf); !isClosed(err) {
		t.Fatalf("read of a closed connection: %v, want net.ErrClosed", err)
	}
	if err := writeFrame(r, new([4]byte), []byte("x")); !isClosed(err) {
		t.Fatalf("write to a closed connection: %v, want net.ErrClosed", err)
	}
}

// Reading and writing a frame allocates nothing.
func TestSockIOAllocs(t *testing.T) {
	a, b := tcpPair(t)
	w, r := socketIO(a), socketIO(b)
	msg := make([]byte, 1000)
	buf := make([]byte, 4+len(msg))
	var prefix [4]byte
	n := testing.AllocsPerRun(200, func() {
		if err := writeFrame(w, &prefix, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%.1f allocations per frame, want 0", n)
	}
}

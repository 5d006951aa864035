package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/frame"
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

// A streamWriter between two plaintext TCP connections splices long runs:
// the bytes arrive in order after what was buffered before them, and the
// bytes after the run stay readable from the source.
func TestStreamWriterSplices(t *testing.T) {
	upPeer, up := tcpPair(t)    // the broker writes to upPeer
	client, cPeer := tcpPair(t) // the client reads from cPeer
	data := make([]byte, 3<<20)
	rand.Read(data)
	go func() {
		upPeer.Write(data)
	}()
	src := bufio.NewReaderSize(socketIO(up), 64<<10)
	w := newStreamWriter(socketIO(client), socketIO(up), 64<<10, nil)
	defer w.Close()
	if w.sp == nil {
		t.Fatal("no splicing between two TCP connections")
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(data)-1000)
		io.ReadFull(cPeer, b)
		got <- b
	}()
	// A header through the buffer, then a long run (some of it already in
	// src's buffer), then the rest is left in src.
	head, _ := src.Peek(100)
	w.Write(head)
	src.Discard(100)
	if _, err := src.Peek(10); err != nil {
		t.Fatal(err)
	}
	if err := frame.Forward(w, src, len(data)-1100); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, data[:len(data)-1000]) {
		t.Fatal("the client got different bytes")
	}
	rest := make([]byte, 1000)
	if _, err := io.ReadFull(src, rest); err != nil || !bytes.Equal(rest, data[len(data)-1000:]) {
		t.Fatalf("the bytes after the run: %v", err)
	}
}

// A broker stream that ends inside a spliced run is io.ErrUnexpectedEOF; a
// client gone is a write error.
func TestStreamWriterSpliceErrors(t *testing.T) {
	upPeer, up := tcpPair(t)
	client, cPeer := tcpPair(t)
	go func() {
		upPeer.Write(make([]byte, 200<<10))
		upPeer.Close()
	}()
	go io.Copy(io.Discard, cPeer)
	w := newStreamWriter(socketIO(client), socketIO(up), 64<<10, nil)
	defer w.Close()
	src := bufio.NewReaderSize(socketIO(up), 64<<10)
	if err := frame.Forward(w, src, 300<<10); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short broker stream: %v, want io.ErrUnexpectedEOF", err)
	}

	upPeer2, up2 := tcpPair(t)
	client2, cPeer2 := tcpPair(t)
	cPeer2.(*net.TCPConn).SetLinger(0)
	cPeer2.Close()
	time.Sleep(50 * time.Millisecond)
	go upPeer2.Write(make([]byte, 4<<20))
	w = newStreamWriter(socketIO(client2), socketIO(up2), 64<<10, nil)
	defer w.Close()
	src = bufio.NewReaderSize(socketIO(up2), 64<<10)
	err := frame.Forward(w, src, 4<<20)
	var we *frame.WriteError
	if !errors.As(err, &we) {
		t.Fatalf("forwarding to a closed client: %v, want a frame.WriteError", err)
	}
}

// BenchmarkLoopbackHop is the kernel's floor under a proxy on loopback:
// one 46 KiB frame (a Produce request of 45 records of 1 KiB, Kafka's
// default batching over 3 partitions) written to a TCP socket with one
// writev and read whole from its peer, both ends in this process. A proxy
// does the read of one hop and the write of the next per request, so the
// process CPU of one hop (us/hop, from getrusage, system time included) is
// about its share per request. Run pinned for a proxy's view:
//
//	taskset -c 1 go test -run '^$' -bench LoopbackHop -cpu 1 ./internal/proxy/
func BenchmarkLoopbackHop(b *testing.B) {
	for _, size := range []int{1 << 10, 46 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			a, c := tcpPairB(b)
			w, r := socketIO(a), socketIO(c)
			msg := make([]byte, size)
			buf := make([]byte, 4+size)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range b.N {
					if _, err := io.ReadFull(r, buf); err != nil {
						return
					}
				}
			}()
			var prefix [4]byte
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				if err := writeFrame(w, &prefix, msg); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/hop")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(size>>10), "cpu-ns/KiB")
		})
	}
}

func tcpPairB(b *testing.B) (x, y net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	x, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	y = <-ch
	b.Cleanup(func() { x.Close(); y.Close() })
	return x, y
}

// Through a real proxy connection (plaintext TCP on both sides), a streamed
// Fetch response's records go from the broker's socket to the client's with
// splice(2): kseal_spliced_bytes_total grows by about the records' size
// (less what the read buffer held when the records field began), and the
// client gets them exactly. It fails if codec.FetchStream stops handing a
// partition's records to frame.Forward with the proxy's writer.
func TestFetchRecordsSplicedThroughProxy(t *testing.T) {
	const size = 6 << 20
	b := startFetchBrokerSize(t, size)
	p := startProxy(t, []string{b.ln.Addr().String()}, func(vc *config.VirtualCluster) {
		vc.Limits.MaxFrameBytes = 16 << 20
	})
	spliced := p.srv.metrics.spliced.WithLabelValues("test")
	for _, v := range []int16{4, 11, 16} {
		before := testutil.ToFloat64(spliced)
		msg := fetchThroughProxy(t, p.bootstrap, v)
		moved := testutil.ToFloat64(spliced) - before
		checkFetchedRecords(t, msg, v, b.records)
		// The proxy's broker reader buffers 64 KiB: at most that much of
		// the records is copied before the rest is spliced.
		if moved < size-64<<10 || moved > size {
			t.Fatalf("v%d: kseal_spliced_bytes_total grew by %v, want about the records' %d bytes", v, moved, size)
		}
	}
}

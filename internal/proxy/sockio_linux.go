package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"github.com/kseal/kseal/internal/frame"
)

// sockIO reads and writes a plaintext TCP connection with raw system calls
// on its socket, which Go's net package always makes non-blocking, and
// waits for readiness through the same netpoller as net.Conn (so read
// deadlines, Close and drain work as for the net.Conn).
//
// Why: a system call through package syscall tells Go's scheduler it may
// block (entersyscall). On a busy proxy with few cores that costs more than
// the read or write itself: it wakes the sysmon thread whenever the process
// was idle a moment before, which then polls every 20 us for a while, and a
// write that runs long (a 46 KiB produce request over loopback) has its P
// handed to another thread and must win one back. bench/profiles has the
// before and after. A non-blocking read or write never blocks, so the raw
// call is safe; it keeps the P for the few microseconds it runs.
//
// One goroutine reads and one writes (the request and response sides of a
// conn); the functions handed to syscall.RawConn are made once, so a read
// or write allocates nothing.
type sockIO struct {
	net.Conn
	rc syscall.RawConn

	// Read side.
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	// Write side: the pending iovecs of one write.
	iov     [2]syscall.Iovec
	wbufs   [2][]byte
	wn      int // bytes of wbufs still to write
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// socketIO returns c itself unless it is a plaintext TCP connection, and
// then a sockIO over it. TLS connections keep Go's own I/O.
func socketIO(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sockIO{Conn: c, rc: rc}
	s.readFn = s.doRead
	s.writeFn = s.doWrite
	return s
}

func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf, s.rn, s.rerrno = p, 0, 0
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	if err != nil {
		return 0, err
	}
	if s.rerrno != 0 {
		return 0, os.NewSyscallError("read", s.rerrno)
	}
	if s.rn == 0 {
		return 0, io.EOF
	}
	return s.rn, nil
}

// doRead is one read attempt: false when the socket has nothing yet (the
// caller then waits in the netpoller and tries again).
func (s *sockIO) doRead(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			s.rerrno = e
			return true
		}
	}
}

func (s *sockIO) Write(p []byte) (int, error) {
	return s.Writev(p, nil)
}

// Writev writes a then b (either may be empty) with as few system calls as
// the socket allows: one, unless its send buffer fills. It returns the
// bytes written.
func (s *sockIO) Writev(a, b []byte) (int, error) {
	total := len(a) + len(b)
	if total == 0 {
		return 0, nil
	}
	s.wbufs[0], s.wbufs[1], s.wn, s.werrno = a, b, total, 0
	err := s.rc.Write(s.writeFn)
	s.wbufs[0], s.wbufs[1] = nil, nil
	done := total - s.wn
	if err != nil {
		return done, err
	}
	if s.werrno != 0 {
		return done, os.NewSyscallError("writev", s.werrno)
	}
	return done, nil
}

// doWrite writes what is pending until it is all written (true), the
// socket's buffer is full (false: the caller waits until it is writable),
// or an error (true, with werrno set).
func (s *sockIO) doWrite(fd uintptr) bool {
	for s.wn > 0 {
		n := 0
		for _, b := range s.wbufs {
			if len(b) > 0 {
				s.iov[n].Base = &b[0]
				s.iov[n].SetLen(len(b))
				n++
			}
		}
		w, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&s.iov[0])), uintptr(n))
		s.iov[0].Base, s.iov[1].Base = nil, nil
		switch e {
		case 0:
			if w == 0 {
				return false // nothing taken: wait until writable
			}
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			s.werrno = e
			return true
		}
		s.wn -= int(w)
		for i := range s.wbufs {
			k := min(int(w), len(s.wbufs[i]))
			s.wbufs[i] = s.wbufs[i][k:]
			w -= uintptr(k)
		}
	}
	return true
}

// pipeSize is the capacity asked for a splicer's pipe (the kernel may
// grant less: /proc/sys/fs/pipe-max-size).
const pipeSize = 1 << 20

// splicer moves bytes from one socket to another with splice(2) through a
// pipe, never through user memory, with raw system calls like sockIO. The
// pipe is made on first use and kept until Close.
type splicer struct {
	src, dst *sockIO
	pr, pw   int // the pipe's ends; -1: none yet
	size     int // its capacity
	inPipe   int // bytes in the pipe
	out      int // bytes splice has moved to dst
	want     int // bytes still to take from src
	eof      bool
	errno    syscall.Errno
	drainFn  func(fd uintptr) bool
	pumpFn   func(fd uintptr) bool
}

// newSplicer returns a splicer from src to dst when both are sockIOs
// (plaintext TCP), else nil.
func newSplicer(src, dst net.Conn) *splicer {
	a, ok1 := src.(*sockIO)
	b, ok2 := dst.(*sockIO)
	if !ok1 || !ok2 {
		return nil
	}
	s := &splicer{src: a, dst: b, pr: -1, pw: -1}
	s.drainFn, s.pumpFn = s.drain, s.pump
	return s
}

// open makes the pipe unless it exists.
func (s *splicer) open() error {
	if s.pr >= 0 {
		return nil
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return err
	}
	size, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[0]), syscall.F_SETPIPE_SZ, pipeSize)
	if e != 0 {
		if size, _, e = syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[0]), syscall.F_GETPIPE_SZ, 0); e != 0 {
			syscall.Close(p[0])
			syscall.Close(p[1])
			return e
		}
	}
	s.pr, s.pw, s.size, s.inPipe = p[0], p[1], int(size), 0
	return nil
}

// Close closes the pipe (a splicer can be used again: it makes a new one).
func (s *splicer) Close() {
	if s.pr >= 0 {
		syscall.Close(s.pr)
		syscall.Close(s.pw)
		s.pr, s.pw = -1, -1
	}
}

// splice moves n bytes from src to dst and returns how many reached dst
// (n when it succeeds). A failure to read src (or its end before n bytes:
// io.ErrUnexpectedEOF) is returned as is, a failure to write dst as a
// *frame.WriteError.
func (s *splicer) splice(n int) (int, error) {
	if err := s.open(); err != nil {
		return 0, err
	}
	s.want, s.eof, s.out = n, false, 0
	for s.want > 0 {
		s.errno = 0
		if err := s.src.rc.Read(s.drainFn); err != nil {
			s.Close() // bytes may be left in the pipe
			return s.out, err
		}
		if s.errno != 0 {
			s.Close()
			return s.out, os.NewSyscallError("splice", s.errno)
		}
		if s.eof {
			s.Close()
			return s.out, io.ErrUnexpectedEOF
		}
		if err := s.dst.rc.Write(s.pumpFn); err != nil {
			s.Close()
			return s.out, &frame.WriteError{Err: err}
		}
		if s.errno != 0 {
			s.Close()
			return s.out, &frame.WriteError{Err: os.NewSyscallError("splice", s.errno)}
		}
	}
	return s.out, nil
}

// drain moves what src has (up to what is wanted and fits) into the empty
// pipe: false when src has nothing yet.
func (s *splicer) drain(fd uintptr) bool {
	for {
		k, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, fd, 0, uintptr(s.pw), 0,
			uintptr(min(s.want, s.size)), spliceFlags)
		switch e {
		case 0:
			if k == 0 {
				s.eof = true
			}
			s.inPipe += int(k)
			s.want -= int(k)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			s.errno = e
			return true
		}
	}
}

// pump moves everything in the pipe to dst: false when dst's buffer is
// full.
func (s *splicer) pump(fd uintptr) bool {
	for s.inPipe > 0 {
		k, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(s.pr), 0, fd, 0, uintptr(s.inPipe), spliceFlags)
		switch e {
		case 0:
			if k == 0 {
				s.errno = syscall.EIO // no progress: never loop on it
				return true
			}
			s.inPipe -= int(k)
			s.out += int(k)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.errno = e
			return true
		}
	}
	return true
}

const spliceFlags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK

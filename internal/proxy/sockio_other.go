//go:build !linux

package proxy

import "net"

// socketIO returns c: raw socket I/O (sockio_linux.go) is for Linux only.
func socketIO(c net.Conn) net.Conn { return c }

// splicer is Linux only (sockio_linux.go); newSplicer returns nil here.
type splicer struct{}

func newSplicer(src, dst net.Conn) *splicer { return nil }

func (*splicer) open() error { panic("splice(2) is Linux only") }

func (*splicer) splice(n int) (int, error) { panic("splice(2) is Linux only") }

func (*splicer) Close() {}

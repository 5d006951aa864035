//go:build !linux

package proxy

import "net"

// socketIO returns c: raw socket I/O (sockio_linux.go) is for Linux only.
func socketIO(c net.Conn) net.Conn { return c }

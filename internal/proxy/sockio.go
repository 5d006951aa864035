package proxy

import (
	"encoding/binary"
	"net"
)

// writeFrame writes a frame, its 4-byte size prefix (put in prefix, the
// caller's, reused) and then msg, to w in one vectored write where w can
// (sockIO, net.TCPConn), without copying msg.
func writeFrame(w net.Conn, prefix *[4]byte, msg []byte) error {
	binary.BigEndian.PutUint32(prefix[:], uint32(len(msg)))
	if v, ok := w.(interface {
		Writev(a, b []byte) (int, error)
	}); ok {
		_, err := v.Writev(prefix[:], msg)
		return err
	}
	_, err := (&net.Buffers{prefix[:], msg}).WriteTo(w)
	return err
}

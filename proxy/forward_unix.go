//go:build unix

package proxy

import (
	"io"
	"os"
	"syscall"
)

// directPath: bodyless requests of a MITM'd tunnel go upstream directly
// (forward.go).
const directPath = true

// peekSocket is raw.Control's function for quiet: peekQuiet is whether
// the socket has nothing to read and is open (a peek that does not wait
// answers EAGAIN; bytes, or the end of the stream, mean the connection is
// done).
func (dc *directConn) peekSocket(fd uintptr) {
	for {
		_, _, err := syscall.Recvfrom(int(fd), dc.probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err != syscall.EINTR {
			dc.peekQuiet = err == syscall.EAGAIN
			return
		}
	}
}

// recvNow is raw.Control's function for probeConn's read during quiet's
// probe: one recv that does not wait. Nothing to read is
// os.ErrDeadlineExceeded; the end of the stream io.EOF.
func (c *probeConn) recvNow(fd uintptr) {
	if len(c.p) == 0 {
		return
	}
	for {
		n, _, err := syscall.Recvfrom(int(fd), c.p, syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			c.n, c.err = 0, os.ErrDeadlineExceeded
		case err != nil:
			c.n, c.err = 0, err
		case n == 0:
			c.n, c.err = 0, io.EOF
		default:
			c.n, c.err = n, nil
		}
		return
	}
}

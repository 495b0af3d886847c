//go:build unix

package proxy

import "syscall"

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

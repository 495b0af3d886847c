//go:build unix

package proxy

import "syscall"

// directPath: bodyless requests of a MITM'd tunnel go upstream directly
// (forward.go).
const directPath = true

// socketQuiet reports whether an idle socket has nothing to read and is
// open: a peek that does not wait answers EAGAIN (bytes, or the end of
// the stream, mean the connection is done).
func socketQuiet(rc syscall.RawConn) bool {
	quiet := false
	rc.Control(func(fd uintptr) {
		var one [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			quiet = err == syscall.EAGAIN
			return
		}
	})
	return quiet
}

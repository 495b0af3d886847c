//go:build unix

package proxy

import "syscall"

// rawReads: relayReader reads sockets through their raw connection.
const rawReads = true

// rawRead is relayReader's function for syscall.RawConn.Read: one read(2)
// into a buffer taken for it; false (wait until the socket is readable,
// then call again) with the buffer given back when it had nothing.
func (r *relayReader) rawRead(fd uintptr) bool {
	if r.bp == nil {
		r.bp = relayBuffers.Get().(*[]byte)
	}
	for {
		r.n, r.err = syscall.Read(int(fd), *r.bp)
		if r.err != syscall.EINTR {
			break
		}
	}
	if r.err == syscall.EAGAIN {
		relayBuffers.Put(r.bp)
		r.bp, r.n, r.err = nil, 0, nil
		return false
	}
	return true
}

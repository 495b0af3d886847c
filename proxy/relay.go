package proxy

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// relayBuffer is what a pass-through tunnel reads into, one way.
const relayBuffer = 32 << 10

// relayBuffers are shared by every pass-through tunnel: a tunnel takes
// one only once bytes have arrived and gives it back after writing them,
// so an idle tunnel holds none (two 32 KiB buffers each before).
var relayBuffers = sync.Pool{New: func() any { b := make([]byte, relayBuffer); return &b }}

// relayReader reads one side of a pass-through tunnel into buffers from
// relayBuffers. On a TCP connection (under a trackedConn or not) it waits
// for bytes without a buffer: the socket is read through its raw
// connection, with one read(2) when bytes are waiting as net.Conn's Read
// makes; the buffer is taken for that read and given back when the socket
// had nothing (EAGAIN), before the wait for it to become readable
// (rawRead). Elsewhere the buffer is held over the wait. The connection's
// deadlines apply as to Read, and a trackedConn's idle deadline is pushed
// as its Read pushes it.
type relayReader struct {
	tc *trackedConn // nil when the connection is not one
	c  net.Conn     // the connection read (tc's own, under it)
	rc syscall.RawConn
	fn func(fd uintptr) bool // rc's read function, bound once

	// set by fn
	bp  *[]byte
	n   int
	err error
}

func newRelayReader(c net.Conn) *relayReader {
	r := &relayReader{c: c}
	if tc, ok := c.(*trackedConn); ok {
		r.tc, r.c = tc, tc.Conn
	}
	if sc, ok := r.c.(syscall.Conn); ok && rawReads {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc, r.fn = rc, r.rawRead
		}
	}
	return r
}

// next waits for bytes, then returns them in a buffer from relayBuffers
// that the caller gives back (also when n is 0). err is io.EOF at the end.
func (r *relayReader) next() (bp *[]byte, n int, err error) {
	if r.tc != nil {
		r.tc.pushReadDeadline()
	}
	if r.rc == nil {
		bp = relayBuffers.Get().(*[]byte)
		n, err = r.c.Read(*bp)
		return bp, n, err
	}
	r.bp, r.n, r.err = nil, 0, nil
	werr := r.rc.Read(r.fn)
	bp, n, err = r.bp, r.n, r.err
	r.bp = nil
	if bp == nil { // the wait ended (deadline, closed) with no read made
		bp = relayBuffers.Get().(*[]byte)
	}
	switch {
	case werr != nil:
		return bp, 0, werr
	case err != nil:
		return bp, 0, &net.OpError{Op: "read", Net: "tcp", Source: r.c.LocalAddr(), Addr: r.c.RemoteAddr(), Err: err}
	case n <= 0:
		return bp, 0, io.EOF
	}
	return bp, n, nil
}

// relayCopy copies src to dst until src ends or fails or a write fails,
// holding a buffer only from a read to its write.
func relayCopy(dst net.Conn, src *relayReader) error {
	for {
		bp, n, err := src.next()
		if n > 0 {
			if _, werr := dst.Write((*bp)[:n]); werr != nil {
				relayBuffers.Put(bp)
				return werr
			}
		}
		relayBuffers.Put(bp)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

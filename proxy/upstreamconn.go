package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// directConn is one upstream connection of a directPool. Idle, it holds
// no buffer.
type directConn struct {
	pool   *directPool
	key    directKey
	conn   net.Conn
	raw    syscall.RawConn // the TCP socket under conn; nil where unknown
	idleAt time.Time
	br     *bufio.Reader // while a request is in flight

	// quiet's: a byte to read into, raw's function (bound once) and its
	// answer.
	probe     [1]byte
	peek      func(fd uintptr)
	peekQuiet bool
	// under is the socket under conn's TLS (nil without TLS, or where
	// raw is unknown): quiet's probe reads it without waiting.
	under *probeConn
	// deadlinePast: quiet left the read deadline in the past.
	deadlinePast bool
	// headerDeadline: the answer's header deadline is still set. It is
	// lifted before the body's first read that may wait on the socket,
	// not after the header: an answer whose body came with its header
	// (most small ones) never needs it lifted (an idle connection's
	// deadline wakes nobody, and the next exchange sets its own).
	headerDeadline bool

	// lim is what br reads from: the connection, bounded while an
	// answer's header is read (mitmconn.go's headerLimit: an upstream
	// sending an endless header costs a bounded buffer).
	lim headerLimit

	// mu orders the request's cancellation (a read deadline in the past)
	// against the header timeout's own deadline changes.
	mu        sync.Mutex
	cancelled bool
	// The exchange in flight is ended early by slot (a tunnel's) or, with
	// none, by its request's context (stopCtx unregisters).
	slot    *upstreamSlot
	stopCtx func() bool
}

// upstreamSlot is a tunnel's hold on its upstream exchange in flight (a
// tunnel carries one request at a time): the tunnel's end aborts it. One
// registration with the tunnel's context a tunnel, rather than one a
// request.
type upstreamSlot struct {
	mu      sync.Mutex
	cur     *directConn
	aborted bool
}

// abort ends the exchange in flight, and every later one at its start.
func (s *upstreamSlot) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	if s.cur != nil {
		s.cur.abort()
	}
}

// begin makes dc the exchange in flight: false when it is to end at once
// (the slot was aborted, or ctx is done).
func (dc *directConn) begin(ctx context.Context, slot *upstreamSlot) bool {
	dc.cancelled = false
	if slot == nil {
		dc.stopCtx = context.AfterFunc(ctx, dc.abort)
		return true
	}
	dc.slot = slot
	slot.mu.Lock()
	defer slot.mu.Unlock()
	slot.cur = dc
	return !slot.aborted
}

// end ends dc's exchange: false when it was aborted (the connection's
// deadline may be in the past).
func (dc *directConn) end() bool {
	if dc.slot == nil {
		ok := dc.stopCtx()
		dc.stopCtx = nil
		return ok
	}
	s := dc.slot
	dc.slot = nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == dc {
		s.cur = nil
	}
	return !s.aborted
}

var (
	directReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}
	directWriters = sync.Pool{New: func() any { return bufio.NewWriter(nil) }}
)

// aLongTimeAgo is a deadline that has passed: a read or write with it
// fails at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes req and reads its answer's header. retry: nothing of
// an answer came, so req may be sent again on another connection.
func (dc *directConn) roundTrip(req *http.Request, slot *upstreamSlot) (resp *http.Response, retry bool, err error) {
	if !dc.begin(req.Context(), slot) {
		dc.end()
		return nil, false, context.Canceled
	}
	bw := directWriters.Get().(*bufio.Writer)
	bw.Reset(dc.conn)
	err = writeDirect(bw, req)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	directWriters.Put(bw)
	if err != nil {
		dc.end()
		return nil, closedByPeer(err), err
	}
	dc.br = directReaders.Get().(*bufio.Reader)
	dc.lim.r, dc.lim.n = dc.conn, dc.pool.maxHeader
	dc.br.Reset(&dc.lim)
	if dc.pool.headerTimeout > 0 || dc.deadlinePast {
		var by time.Time
		if dc.pool.headerTimeout > 0 {
			by = time.Now().Add(dc.pool.headerTimeout)
		}
		dc.setReadDeadline(by)
		dc.deadlinePast = false
	}
	if _, err = dc.br.Peek(1); err != nil {
		dc.end()
		dc.releaseReader()
		return nil, closedByPeer(err), err
	}
	for interim := 0; ; interim++ {
		// What the buffer holds counts too: an upstream may not pass a
		// header past the bound by sending it with the answer before.
		dc.lim.n = dc.pool.maxHeader - int64(dc.br.Buffered())
		resp, err = http.ReadResponse(dc.br, req)
		if errors.Is(err, errHeaderTooLarge) {
			err = errAnswerHeaderTooLarge
		}
		if err != nil {
			dc.end()
			dc.releaseReader()
			return nil, false, err
		}
		// Interim answers (103 Early Hints) are skipped, as the transport
		// skips them; 101 is final (the caller refuses an unasked switch).
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if interim == 5 {
			dc.end()
			dc.releaseReader()
			return nil, false, errors.New("net/http: too many 1xx informational responses")
		}
	}
	dc.lim.n = noLimit
	dc.headerDeadline = dc.pool.headerTimeout > 0
	body := &directBody{dc: dc, src: resp.Body, keep: !resp.Close, left: resp.ContentLength}
	if resp.Body == http.NoBody {
		body.finish(true)
		return resp, false, nil
	}
	resp.Body = body
	return resp, false, nil
}

// errAnswerHeaderTooLarge is an upstream answer whose header ran past
// the pool's bound (the transport's MaxResponseHeaderBytes).
var errAnswerHeaderTooLarge = errors.New("net/http: server response headers exceeded the limit; aborted")

// closedByPeer: the upstream closed or reset the connection (not a
// timeout, nor a cancelled request).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// abort ends the exchange when the request's context is done.
func (dc *directConn) abort() {
	dc.mu.Lock()
	dc.cancelled = true
	dc.conn.SetDeadline(aLongTimeAgo)
	dc.mu.Unlock()
}

func (dc *directConn) setReadDeadline(t time.Time) {
	dc.mu.Lock()
	if !dc.cancelled {
		dc.conn.SetReadDeadline(t)
	}
	dc.mu.Unlock()
}

func (dc *directConn) releaseReader() {
	dc.br.Reset(nil)
	directReaders.Put(dc.br)
	dc.br = nil
}

// quiet reports whether an idle connection has nothing waiting to be read
// and is still open. Under TLS, decrypted bytes held by TLS or bytes on
// the socket: one read through TLS whose read of the socket cannot wait
// (probeConn), one syscall. Elsewhere, decrypted bytes held by TLS
// (checked with a read that cannot wait: the read deadline is left in the
// past, for roundTrip to set), then the socket itself (a peek that does
// not wait).
func (dc *directConn) quiet() bool {
	tc, ok := dc.conn.(*tls.Conn)
	if ok && dc.under != nil {
		dc.under.probing, dc.under.got = true, 0
		n, err := tc.Read(dc.probe[:])
		dc.under.probing = false
		// Any byte that came counts, whole record or not: the start of a
		// record unasked, held by TLS, would begin the next answer.
		return n == 0 && dc.under.got == 0 && errors.Is(err, os.ErrDeadlineExceeded)
	}
	if ok {
		tc.SetReadDeadline(aLongTimeAgo)
		dc.deadlinePast = true
		n, err := tc.Read(dc.probe[:])
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
	}
	if dc.raw == nil {
		return true
	}
	dc.raw.Control(dc.peek)
	return dc.peekQuiet
}

// probeConn is the TCP connection under an upstream connection's TLS. Its
// reads are the connection's, but for quiet's probe: then a read is one
// recv that does not wait, and nothing to read is
// os.ErrDeadlineExceeded, an error TLS takes as temporary (the
// connection stays usable), as it takes a deadline's. Any byte the probe
// reads means the connection is not quiet (and it is closed): a record
// unasked, whole or its first bytes only (which TLS would hold and
// complete with the next answer's), or anything else. It spares
// a request the deadline moved into the past and back, and the peek: a
// read through TLS that cannot wait, then a peek at the socket, were a
// timer change and a syscall more.
type probeConn struct {
	net.Conn
	raw     syscall.RawConn
	probing bool
	recv    func(fd uintptr) // recvNow, bound once
	p       []byte
	n       int
	err     error
	// got counts the bytes the probe read from the socket.
	got int
}

func newProbeConn(c net.Conn, raw syscall.RawConn) *probeConn {
	pc := &probeConn{Conn: c, raw: raw}
	pc.recv = pc.recvNow
	return pc
}

func (c *probeConn) Read(b []byte) (int, error) {
	if !c.probing {
		return c.Conn.Read(b)
	}
	c.p, c.n, c.err = b, 0, nil
	if err := c.raw.Control(c.recv); err != nil {
		c.p = nil
		return 0, err
	}
	c.p = nil
	c.got += c.n
	return c.n, c.err
}

// directBody is the body of an answer that came over a directConn: read
// to its end, it gives the connection back to the pool; closed before,
// or failed, it closes the connection (the transport, too, closes rather
// than reads the rest).
type directBody struct {
	dc   *directConn
	src  io.ReadCloser
	keep bool // the answer lets the connection carry another request
	// left is what is still to come of a body of declared length (-1:
	// unknown).
	left int64

	mu   sync.Mutex
	done bool
	eof  bool // done at the body's end: reads go on answering io.EOF
}

func (b *directBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	done, eof := b.done, b.eof
	b.mu.Unlock()
	switch {
	case eof:
		return 0, io.EOF
	case done:
		return 0, errBodyClosed
	}
	if dc := b.dc; dc.headerDeadline && (b.left < 0 || int64(dc.br.Buffered()) < b.left) {
		// This read may wait on the socket: no longer for the header's
		// deadline.
		dc.setReadDeadline(time.Time{})
		dc.headerDeadline = false
	}
	n, err := b.src.Read(p)
	if b.left >= 0 {
		b.left -= int64(n)
	}
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

// Close ends the body; a Read in progress fails.
func (b *directBody) Close() error {
	b.finish(false)
	return nil
}

// finish gives the connection back (ok: the body was read to its end,
// nothing more is buffered, the request was not cancelled) or closes it.
func (b *directBody) finish(ok bool) {
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return
	}
	b.done, b.eof = true, ok
	b.mu.Unlock()
	dc := b.dc
	if dc.end() && ok && b.keep && dc.br.Buffered() == 0 {
		dc.releaseReader()
		dc.pool.put(dc)
		return
	}
	dc.conn.Close()
}

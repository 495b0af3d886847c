package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// A request of a MITM'd tunnel that has no body and may be sent twice
// (GET, HEAD, OPTIONS, TRACE) goes upstream on the tunnel's own
// goroutine: the request written, the answer's header read and its body
// read by the tunnel as it writes the answer, over a pooled keep-alive
// connection (directPool). net/http's transport, which every other
// request takes, hands each request to a writer goroutine and its answer
// from a reader goroutine that also waits on every idle connection; that
// machinery is what this path leaves out. The framing is net/http's
// (Request.Write, http.ReadResponse), and the transport's checks and
// settings stay: header validation, the dialer (with its address
// policy), verified TLS, the response header timeout, the idle pool's
// bounds and timeout, the request's context ending the exchange.
//
// An idle connection is read by nobody, so before it is used again it is
// checked for bytes the upstream sent unasked (an answer past its
// declared end, a second answer) or for its end: such a connection is
// closed, never read as the answer to the next request, which may be
// another sandbox's. A connection the upstream closed between the check
// and the write costs a retry on a new one, as the transport retries.

// directPool holds the idle connections of one upstream pool (the shared
// one, or a tenant's with address rules; addrrules.go), by scheme and
// address.
type directPool struct {
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConfig     *tls.Config
	tlsTimeout    time.Duration
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxPerHost    int
	maxIdle       int

	mu      sync.Mutex
	idle    map[directKey][]*directConn
	n       int
	janitor *time.Timer
	closed  bool
}

type directKey struct {
	tls  bool
	addr string // host:port
}

// newDirectPool takes its settings from tr, the transport of the same
// pool (whose zero values mean what they mean there, but for an idle
// timeout of zero: 90 seconds here, never unbounded).
func newDirectPool(tr *http.Transport) *directPool {
	p := &directPool{
		dial: tr.DialContext, tlsConfig: tr.TLSClientConfig, tlsTimeout: tr.TLSHandshakeTimeout,
		headerTimeout: tr.ResponseHeaderTimeout, idleTimeout: tr.IdleConnTimeout,
		maxPerHost: tr.MaxIdleConnsPerHost, maxIdle: tr.MaxIdleConns,
		idle: map[directKey][]*directConn{},
	}
	if p.idleTimeout <= 0 {
		p.idleTimeout = 90 * time.Second
	}
	if p.maxPerHost <= 0 {
		p.maxPerHost = http.DefaultMaxIdleConnsPerHost
	}
	if p.maxIdle <= 0 {
		p.maxIdle = math.MaxInt
	}
	if p.tlsConfig == nil {
		p.tlsConfig = &tls.Config{}
	}
	return p
}

// directEligible reports whether req may go upstream directly: no body,
// a method that may be sent again, and nothing the transport would add
// or undo (its own gzip: Accept-Encoding is set, as askGzip sets it, or
// the transport would not ask), an ASCII host.
func directEligible(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody || req.ContentLength != 0 || req.Close {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	if req.URL.Scheme != "https" && req.URL.Scheme != "http" || req.URL.Host == "" || len(req.Trailer) > 0 {
		return false
	}
	for i := 0; i < len(req.URL.Host); i++ {
		if req.URL.Host[i] >= 0x80 {
			return false
		}
	}
	if req.Header.Get("Accept-Encoding") == "" && req.Method != http.MethodHead && req.Header.Get("Range") == "" {
		return false // the transport would ask for gzip and undo it
	}
	return true
}

// directAddr is the address of req's upstream, with the scheme's port
// when the URL names none.
func directAddr(req *http.Request) directKey {
	k := directKey{tls: req.URL.Scheme == "https", addr: req.URL.Host}
	if req.URL.Port() == "" {
		port := "80"
		if k.tls {
			port = "443"
		}
		k.addr = net.JoinHostPort(req.URL.Hostname(), port)
	}
	return k
}

// errInvalidHeader is a header the transport would not send either.
var errInvalidHeader = errors.New("net/http: invalid header field")

// roundTrip sends req (directEligible) and returns the answer, whose body
// gives the connection back to the pool when read to its end. The
// exchange ends early when slot is aborted or, without a slot, when the
// request's context is done.
func (p *directPool) roundTrip(req *http.Request, slot *upstreamSlot) (*http.Response, error) {
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("%w name %q", errInvalidHeader, k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				// No value in the error: it may be a credential.
				return nil, fmt.Errorf("%w value for %q", errInvalidHeader, k)
			}
		}
	}
	ctx := req.Context()
	key := directAddr(req)
	for try := 0; ; try++ {
		dc := p.get(key)
		reused := dc != nil
		if dc == nil {
			var err error
			if dc, err = p.connect(ctx, key, req.URL.Hostname()); err != nil {
				return nil, err
			}
		}
		resp, retry, err := dc.roundTrip(req, slot)
		if err == nil {
			return resp, nil
		}
		dc.conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A reused connection that the upstream had closed, the request
		// unanswered: once more on a new one.
		if !retry || !reused || try > 0 {
			return nil, err
		}
	}
}

// connect dials addr through the proxy's dialer and, for https, sets up
// verified TLS for host.
func (p *directPool) connect(ctx context.Context, key directKey, host string) (*directConn, error) {
	conn, err := p.dial(ctx, "tcp", key.addr)
	if err != nil {
		return nil, err
	}
	dc := &directConn{pool: p, key: key, conn: conn}
	if sc, ok := conn.(syscall.Conn); ok {
		dc.raw, _ = sc.SyscallConn()
		dc.peek = dc.peekSocket
	}
	if key.tls {
		cfg := p.tlsConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		hctx := ctx
		if p.tlsTimeout > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, p.tlsTimeout)
			defer cancel()
		}
		if err := tc.HandshakeContext(hctx); err != nil {
			conn.Close()
			return nil, err
		}
		dc.conn = tc
	}
	return dc, nil
}

// get takes the most recently used idle connection to key that is still
// sound; nil when there is none.
func (p *directPool) get(key directKey) *directConn {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		dc := list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[key] = list[:len(list)-1] // kept when empty: put appends to it again
		p.n--
		p.mu.Unlock()
		if time.Since(dc.idleAt) < p.idleTimeout && dc.quiet() {
			return dc
		}
		dc.conn.Close()
	}
}

// put keeps dc for the next request to its address, within the pool's
// bounds.
func (p *directPool) put(dc *directConn) {
	dc.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || p.n >= p.maxIdle || len(p.idle[dc.key]) >= p.maxPerHost {
		p.mu.Unlock()
		dc.conn.Close()
		return
	}
	p.idle[dc.key] = append(p.idle[dc.key], dc)
	p.n++
	if p.janitor == nil {
		p.janitor = time.AfterFunc(p.idleTimeout/2, p.sweep)
	}
	p.mu.Unlock()
}

// sweep closes the connections idle longer than the idle timeout, and
// runs again while any are left.
func (p *directPool) sweep() {
	var stale []*directConn
	p.mu.Lock()
	for key, list := range p.idle {
		keep := list[:0]
		for _, dc := range list {
			if time.Since(dc.idleAt) >= p.idleTimeout {
				stale = append(stale, dc)
			} else {
				keep = append(keep, dc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = keep
		}
	}
	p.n -= len(stale)
	if p.n > 0 && !p.closed {
		p.janitor.Reset(p.idleTimeout / 2)
	} else {
		p.janitor = nil
	}
	p.mu.Unlock()
	for _, dc := range stale {
		dc.conn.Close()
	}
}

// closeIdle closes every idle connection; with stop, the pool keeps none
// from now on.
func (p *directPool) closeIdle(stop bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.n = map[directKey][]*directConn{}, 0
	if stop {
		p.closed = true
	}
	p.mu.Unlock()
	for _, list := range idle {
		for _, dc := range list {
			dc.conn.Close()
		}
	}
}

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
	err = req.Write(bw)
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
	dc.br.Reset(dc.conn)
	// Always set: quiet left the deadline in the past.
	var by time.Time
	if dc.pool.headerTimeout > 0 {
		by = time.Now().Add(dc.pool.headerTimeout)
	}
	dc.setReadDeadline(by)
	if _, err = dc.br.Peek(1); err != nil {
		dc.end()
		dc.releaseReader()
		return nil, closedByPeer(err), err
	}
	for interim := 0; ; interim++ {
		resp, err = http.ReadResponse(dc.br, req)
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
	if dc.pool.headerTimeout > 0 {
		dc.setReadDeadline(time.Time{})
	}
	body := &directBody{dc: dc, src: resp.Body, keep: !resp.Close}
	if resp.Body == http.NoBody {
		body.finish(true)
		return resp, false, nil
	}
	resp.Body = body
	return resp, false, nil
}

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
// and is still open: decrypted bytes held by TLS (checked with a read
// that cannot wait: the read deadline is left in the past, for roundTrip
// to set), then the socket itself (a peek that does not wait).
func (dc *directConn) quiet() bool {
	if tc, ok := dc.conn.(*tls.Conn); ok {
		tc.SetReadDeadline(aLongTimeAgo)
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

// directBody is the body of an answer that came over a directConn: read
// to its end, it gives the connection back to the pool; closed before,
// or failed, it closes the connection (the transport, too, closes rather
// than reads the rest).
type directBody struct {
	dc   *directConn
	src  io.ReadCloser
	keep bool // the answer lets the connection carry another request

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
	n, err := b.src.Read(p)
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

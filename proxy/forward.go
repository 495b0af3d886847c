package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
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
// bounds and timeout, the tunnel's end (or the request's context) ending
// the exchange. One connection's exchange is in upstreamconn.go.
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
	maxHeader     int64 // an answer's header, in bytes

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
		maxPerHost: tr.MaxIdleConnsPerHost, maxIdle: tr.MaxIdleConns, maxHeader: tr.MaxResponseHeaderBytes,
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
	if p.maxHeader <= 0 {
		p.maxHeader = 10 << 20 // the transport's default
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
		under := conn
		if dc.raw != nil {
			dc.under = newProbeConn(conn, dc.raw)
			under = dc.under
		}
		tc := tls.Client(under, cfg)
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
		if p.janitor != nil {
			p.janitor.Stop()
			p.janitor = nil
		}
	}
	p.mu.Unlock()
	for _, list := range idle {
		for _, dc := range list {
			dc.conn.Close()
		}
	}
}

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"

	"github.com/elazarl/goproxy"
)

// A MITM'd tunnel is served by an http.Server of its own over the
// decrypted connection, not by goproxy's request loop: the server brings
// the header size limit, the header and idle timeouts, keep-alive,
// pipelining and Expect: 100-continue handling, and httputil.ReverseProxy
// forwards (hop-by-hop headers, trailers, flushing and WebSocket upgrades
// as net/http/httputil does them).

type stateKey struct{}

// hijackMITM returns goproxy's hijack function for a tunnel of sess.
func (p *Proxy) hijackMITM(sess *session) func(*http.Request, net.Conn, *goproxy.ProxyCtx) {
	return func(_ *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
		defer client.Close()
		if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
			return
		}
		br := bufio.NewReader(client)
		first, err := br.Peek(1)
		if err != nil {
			return
		}
		var conn net.Conn = &peekedConn{Conn: client, r: br}
		overTLS := first[0] == 0x16 // a TLS handshake record
		if overTLS {
			cfg, err := p.tlsConfig(net.JoinHostPort(sess.host, sess.port), nil)
			if err != nil {
				p.log.Warn("mitm: no certificate", "host", sess.host, "err", err.Error())
				return
			}
			tc := tls.Server(conn, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.HeaderTimeout)
			err = tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				p.log.Debug("mitm: client handshake failed", "sandbox", sess.sbx.ID, "host", sess.host, "err", err.Error())
				return
			}
			conn = tc
		}
		srv := &http.Server{
			Handler:           &mitmHandler{p: p, sess: sess, overTLS: overTLS},
			ReadHeaderTimeout: p.cfg.HeaderTimeout,
			IdleTimeout:       p.cfg.IdleTimeout,
			MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		}
		p.tunnels.add(srv)
		defer p.tunnels.remove(srv)
		srv.Serve(newOneConnListener(conn))
	}
}

// mitmHandler serves the requests of one MITM'd tunnel.
type mitmHandler struct {
	p       *Proxy
	sess    *session
	overTLS bool
}

func (h *mitmHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.overTLS {
		r.URL.Scheme = "https"
	} else {
		r.URL.Scheme = "http"
	}
	if r.URL.Host == "" {
		r.URL.Host = r.Host
	}
	// The request body and the response stream at once: an upstream that
	// answers before it has read the whole body must not cut the body short.
	http.NewResponseController(w).EnableFullDuplex()
	st, refusal := h.p.prepare(r, h.sess, h.overTLS)
	defer h.p.finalize(st)
	if refusal != nil {
		h.p.respond(st, refusal)
		writeResponse(w, refusal)
		return
	}
	h.p.forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	// ReverseProxy does not close the body it was given; a streamed body
	// (a pipe, a substituting reader) must stop here.
	r.Body.Close()
}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// newForwarder builds the ReverseProxy that sends prepared requests upstream.
func (p *Proxy) newForwarder() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// A forward proxy passes the sandbox's own forwarding headers
			// on as they were and adds none.
			for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
			pr.Out.Host = pr.In.Host
			// The query goes out byte for byte as the sandbox sent it (after
			// substitution), not re-encoded.
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			if p.cfg.Redact {
				// Let the transport negotiate and decode compression, so an
				// echoed value can be found and masked in the response.
				pr.Out.Header.Del("Accept-Encoding")
			}
		},
		Transport: p.transport,
		ModifyResponse: func(resp *http.Response) error {
			if st := stateFrom(resp.Request.Context()); st != nil {
				p.respond(st, resp)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			st := stateFrom(r.Context())
			resp := p.upstreamError(st, r, err)
			resp.Request = r
			if st != nil {
				p.respond(st, resp)
			}
			writeResponse(w, resp)
		},
		ErrorLog:   slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		BufferPool: copyBuffers,
	}
}

// copyBuffers recycles the 32 KiB buffers ReverseProxy copies bodies with.
var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// writeResponse sends one of the proxy's own answers.
func writeResponse(w http.ResponseWriter, resp *http.Response) {
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if resp.Body != nil {
		io.Copy(w, resp.Body)
		resp.Body.Close()
	}
}

// peekedConn reads through the bufio.Reader that peeked at the first byte.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// oneConnListener hands one connection to an http.Server, then reports
// closed once that connection is closed, so Serve returns.
type oneConnListener struct {
	conn chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{conn: make(chan net.Conn, 1), done: make(chan struct{}), addr: c.LocalAddr()}
	l.conn <- &notifyConn{Conn: c, l: l}
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conn:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

type notifyConn struct {
	net.Conn
	l *oneConnListener
}

func (c *notifyConn) Close() error {
	c.l.Close()
	return c.Conn.Close()
}

// tunnelSet tracks the servers of open MITM'd tunnels, to close them on
// shutdown.
type tunnelSet struct {
	mu sync.Mutex
	m  map[*http.Server]struct{}
}

func (t *tunnelSet) add(s *http.Server) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[*http.Server]struct{}{}
	}
	t.m[s] = struct{}{}
}

func (t *tunnelSet) remove(s *http.Server) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, s)
}

func (t *tunnelSet) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range t.m {
		s.Close()
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

const (
	// maxDrain is how much of a request body nobody read is read and
	// dropped after the answer, to keep the connection for the next
	// request (net/http's server does the same, with the same bound).
	maxDrain = 256 << 10
	// answerBuffer is the writer an answer is gathered in: an answer up
	// to this size leaves in one write (and one TLS record).
	answerBuffer = 16 << 10
	// noLimit lifts headerLimit while a body is read.
	noLimit = math.MaxInt64
)

// mitmConn serves the requests of one MITM'd tunnel, one after another.
type mitmConn struct {
	p    *Proxy
	sess *session
	conn net.Conn // decrypted (or plain http) client connection
	// raw is the client's TCP connection under conn: closing it ends the
	// tunnel at once, where closing the TLS layer first writes a
	// close_notify that a client not reading can hold up for seconds.
	raw     net.Conn
	overTLS bool
	remote  string

	lim *headerLimit // under br: bounds a request's header
	br  *bufio.Reader

	// ctx ends the requests in flight when the tunnel is closed.
	ctx    context.Context
	cancel context.CancelFunc

	watch clientWatch
	// upstream is the direct upstream exchange in flight (forward.go),
	// aborted when ctx ends.
	upstream upstreamSlot

	// wmu orders writes to conn: an interim 100 Continue, written by
	// whoever first reads a request's body, and the answer.
	wmu      sync.Mutex
	answered bool // the current request's answer has begun
}

func newMITMConn(p *Proxy, sess *session, conn net.Conn, overTLS bool) *mitmConn {
	c := &mitmConn{p: p, sess: sess, conn: conn, overTLS: overTLS}
	c.lim = &headerLimit{r: conn, n: noLimit}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if a := conn.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	return c
}

// close ends the tunnel: requests in flight are cancelled.
func (c *mitmConn) close() {
	c.cancel()
	if c.raw != nil {
		c.raw.Close()
		return
	}
	c.conn.Close()
}

// serve answers requests until the client closes, a request asks to,
// or one cannot be read.
func (c *mitmConn) serve() {
	defer c.cancel()
	stop := context.AfterFunc(c.ctx, c.upstream.abort)
	defer stop()
	for c.next() {
	}
	// The reader is not given back here: a request body the transport
	// may still be reading (the tunnel ended before finish took it back)
	// reads through it. The collector takes it with the tunnel.
}

// requestReaders hold the reader a tunnel parses requests with while it
// has one in hand: an idle tunnel holds none (awaitRequest), 4 KiB less
// for each of the many a sandbox keeps open.
var requestReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// awaitRequest waits, without a buffer, for the first byte of the next
// request (or the client's end), then takes a reader from the pool that
// reads that byte first. A tunnel whose reader still holds bytes (a
// pipelined request) keeps it.
func (c *mitmConn) awaitRequest() error {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return nil
		}
		c.releaseReader()
	}
	var one [1]byte
	for {
		n, err := c.conn.Read(one[:])
		if n == 1 {
			c.lim.first, c.lim.held = one[0], true
			break
		}
		if err != nil {
			return err
		}
	}
	c.br = requestReaders.Get().(*bufio.Reader)
	c.br.Reset(c.lim)
	return nil
}

// releaseReader gives the tunnel's reader back to the pool; it must hold
// no byte, and no request body may read through it any more (between
// requests, after finish).
func (c *mitmConn) releaseReader() {
	if c.br == nil || c.br.Buffered() > 0 {
		return
	}
	c.br.Reset(nil)
	requestReaders.Put(c.br)
	c.br = nil
}

// next reads and answers one request; false ends the tunnel.
func (c *mitmConn) next() bool {
	p := c.p
	// Waiting for a request, the idle timeout applies (trackedConn); from
	// its first byte on, the header timeout.
	if err := c.awaitRequest(); err != nil {
		return false
	}
	if err := c.skipBlankLines(); err != nil {
		return false
	}
	// A header that arrived whole (the usual case: one TLS record) is
	// parsed without reading the connection, so it needs no deadline, and
	// a request is spared two timer changes.
	wait := !headerBuffered(c.br)
	if wait {
		c.conn.SetReadDeadline(time.Now().Add(p.cfg.HeaderTimeout))
	}
	// As net/http's server: the limit counts bytes read from the
	// connection, so the reader's buffer is slack on top of it.
	c.lim.n = int64(p.cfg.MaxHeaderBytes) + 4096
	req, err := http.ReadRequest(c.br)
	tooLarge := c.lim.n <= 0
	c.lim.n = noLimit
	if err != nil {
		switch {
		case tooLarge:
			c.refuse(nil, http.StatusRequestHeaderFieldsTooLarge, "the request's header is larger than the proxy accepts")
		case commonReadError(err):
			// The client went away, or was too slow: nobody to answer.
		case strings.Contains(err.Error(), "transfer encoding"):
			c.refuse(nil, http.StatusNotImplemented, "the request's transfer encoding is not supported")
		default:
			p.log.Debug("mitm: unreadable request", "sandbox", c.sess.sbx.ID, "host", c.sess.host, "err", err.Error())
			c.refuse(nil, http.StatusBadRequest, "the request could not be read as HTTP/1.1")
		}
		return false
	}
	if wait {
		c.conn.SetReadDeadline(time.Time{})
	}
	if status, msg := checkRequest(req); status != 0 {
		c.refuse(req, status, msg)
		return false
	}
	return c.handle(req)
}

// headerBuffered reports whether br already holds a whole request header
// (up to its empty line).
func headerBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// skipBlankLines drops the empty lines some clients send after a body
// (RFC 9112 section 2.2 lets a server ignore them), a few at most, and
// waits for the next request's first byte.
func (c *mitmConn) skipBlankLines() error {
	for range 4 {
		b, err := c.br.Peek(1)
		if err != nil {
			return err
		}
		if b[0] != '\r' && b[0] != '\n' {
			return nil
		}
		c.br.Discard(1)
	}
	_, err := c.br.Peek(1)
	return err
}

// checkRequest makes the checks net/http's server makes after parsing.
func checkRequest(req *http.Request) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "only HTTP/1.x is spoken inside a tunnel"
	}
	if req.Method == http.MethodConnect {
		return http.StatusMethodNotAllowed, "CONNECT inside a tunnel is not supported"
	}
	// http.ReadRequest moved the Host header (one at most) to req.Host,
	// or took the host of an absolute URL.
	if req.ProtoAtLeast(1, 1) && req.Host == "" {
		return http.StatusBadRequest, "missing Host header"
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	if e := req.Header.Get("Expect"); e != "" && !strings.EqualFold(e, "100-continue") {
		return http.StatusExpectationFailed, "unsupported Expect header"
	}
	return 0, ""
}

// commonReadError: the client closed, reset or timed out.
func commonReadError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout() || errors.As(err, &oe) && oe.Op == "read" ||
		errors.Is(err, net.ErrClosed)
}

// handle answers one request; false ends the tunnel.
func (c *mitmConn) handle(req *http.Request) bool {
	p := c.p
	// The request runs under the tunnel's context, not one of its own: a
	// tunnel carries one request at a time, and what ends a request early
	// (the tunnel closed, the client gone: clientWatch) ends the tunnel
	// too. That spares a request a context, its channel and its entry in
	// the tunnel's.
	req = req.WithContext(c.ctx)
	req.RemoteAddr = c.remote
	if c.overTLS {
		req.URL.Scheme = "https"
	} else {
		req.URL.Scheme = "http"
	}
	if req.URL.Host == "" {
		req.URL.Host = req.Host
	}
	// HTTP/1.0 gets one request a connection; HTTP/1.1 keeps it unless
	// it said Connection: close.
	keep := !req.Close && req.ProtoAtLeast(1, 1)
	var body *reqBody
	// A WebSocket handshake has no body. One with a body is not upgraded:
	// the transport may still be reading it from the tunnel when the 101
	// comes, and the upgrade would read the same reader at once.
	ws := isWebSocket(req.Header) && (req.Body == nil || req.Body == http.NoBody)
	if req.Body != nil && req.Body != http.NoBody {
		body = &reqBody{c: c, r: req.Body, expect: req.ProtoAtLeast(1, 1) && req.Header.Get("Expect") != ""}
		req.Body = body
	}
	c.wmu.Lock()
	c.answered = false
	c.wmu.Unlock()

	st, refusal := p.prepare(req, c.sess, c.overTLS)
	defer p.finalize(st)
	resp, upstream := refusal, false
	if refusal != nil {
		p.respond(st, refusal)
		if body != nil && body.wontDrain(req.ContentLength) || refusal.StatusCode == http.StatusProxyAuthRequired {
			keep = false // say so in the answer, not only by closing
		}
	} else {
		c.watchClient(c.cancel, body)
		resp, upstream = c.roundTrip(req, st, ws)
		c.stopWatch()
	}
	if resp.StatusCode == http.StatusSwitchingProtocols && upstream {
		c.upgrade(req, resp, st)
		return false
	}
	if !c.answer(req, resp, st, upstream, keep) {
		return false
	}
	if body != nil && !body.finish() {
		return false
	}
	return keep
}

// roundTrip sends a prepared request upstream: as net/http/httputil's
// ReverseProxy would (hop-by-hop headers went in prepare), the sandbox's
// own forwarding headers passed on as they were and none added, the
// query byte for byte as sent. upstream is false when the answer is
// egressd's own (the round trip failed).
func (c *mitmConn) roundTrip(req *http.Request, st *reqState, ws bool) (resp *http.Response, upstream bool) {
	p := c.p
	req.RequestURI = ""
	if req.ContentLength == 0 {
		req.Body = nil // nothing to send, nothing to retry
	}
	if p.cfg.Redact {
		// egressd negotiates and decodes compression itself, so an
		// echoed value can be found and masked in the answer.
		askGzip(req, st)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // no Go default in its place
	}
	if ws {
		req.Header["Connection"] = []string{"Upgrade"}
		req.Header["Upgrade"] = []string{req.Header.Get("Upgrade")}
		if refusal := p.wsHandshake(req, st); refusal != nil {
			p.respond(st, refusal)
			return refusal, false
		}
	}
	var err error
	if ws {
		resp, err = p.transport.RoundTrip(req)
	} else {
		resp, err = p.transport.forward(req, &c.upstream)
	}
	if err != nil {
		resp = p.upstreamError(st, req, err)
		resp.Request = req
		p.respond(st, resp)
		return resp, false
	}
	if resp.StatusCode == http.StatusSwitchingProtocols &&
		(!ws || !strings.EqualFold(upgradeType(resp.Header), upgradeType(req.Header))) {
		// A switch nobody asked for, or to another protocol.
		resp.Body.Close()
		st.upstreamErr = true
		p.metrics.upstreamErrs.Inc()
		resp = errorResponse(req, http.StatusBadGateway, ReasonNone, "the upstream switched to a protocol that was not asked for")
		p.respond(st, resp)
		return resp, false
	}
	p.respond(st, resp)
	return resp, true
}

// upgradeType is the protocol an Upgrade header names.
func upgradeType(h http.Header) string {
	if !headerHas(h, "Connection", "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// answerWriters and copyBuffers are shared by all tunnels: a connection
// holds neither while it waits for its next request.
var (
	answerWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, answerBuffer) }}
	copyBuffers   = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
)

// answer writes resp to the client; false when the connection cannot
// carry another request (the answer broke off, or had to be ended by
// closing). upstream: the answer came from the upstream, whose
// hop-by-hop headers are dropped.
func (c *mitmConn) answer(req *http.Request, resp *http.Response, st *reqState, upstream, keep bool) bool {
	defer resp.Body.Close()
	c.wmu.Lock()
	c.answered = true
	c.wmu.Unlock()

	h := resp.Header
	if h == nil {
		h = http.Header{}
	}
	if upstream {
		removeResponseHopHeaders(h)
	}
	status := resp.StatusCode
	bodyless := req.Method == http.MethodHead || status/100 == 1 || status == http.StatusNoContent || status == http.StatusNotModified
	chunked := false
	switch {
	case bodyless:
		// The header as sent: a HEAD's Content-Length gives the size.
	case resp.ContentLength >= 0:
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	case req.ProtoAtLeast(1, 1):
		chunked = true
		delete(h, "Content-Length")
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		// An HTTP/1.0 client: the end of the body is the end of the
		// connection.
		keep = false
		delete(h, "Content-Length")
	}
	if chunked {
		delete(h, "Trailer")
		if len(resp.Trailer) > 0 {
			h["Trailer"] = []string{trailerNames(resp.Trailer)}
		}
	}
	if !keep {
		h["Connection"] = []string{"close"}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}

	bw := answerWriters.Get().(*bufio.Writer)
	bw.Reset(c.conn)
	defer func() {
		bw.Reset(nil)
		answerWriters.Put(bw)
	}()
	writeStatusLine(bw, status)
	h.Write(bw)
	bw.WriteString("\r\n")
	whole := true
	if !bodyless {
		whole = c.copyBody(bw, resp, chunked)
	}
	if !whole {
		// Never end a cut answer as if it were whole: flush what came and
		// close, so the client sees it broke off.
		c.p.finalize(st)
		bw.Flush()
		return false
	}
	if chunked {
		bw.WriteString("0\r\n")
		resp.Trailer.Write(bw)
		bw.WriteString("\r\n")
	}
	// The request is on record (log, metrics, audit) before the client
	// has the end of its answer.
	c.p.finalize(st)
	return bw.Flush() == nil && keep
}

// copyBody sends the answer's body, chunked or as it is, flushing after
// every read when its end is not known (a stream, events) so nothing
// waits in the buffer. It reports whether the body arrived whole.
func (c *mitmConn) copyBody(bw *bufio.Writer, resp *http.Response, chunked bool) bool {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	stream := chunked || resp.ContentLength < 0 || isEventStream(resp.Header)
	left := resp.ContentLength
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			b := buf[:n]
			if left >= 0 {
				b = b[:min(int64(n), left)]
				left -= int64(len(b))
			}
			var werr error
			if chunked {
				bw.WriteString(strconv.FormatInt(int64(len(b)), 16))
				bw.WriteString("\r\n")
				bw.Write(b)
				_, werr = bw.WriteString("\r\n")
			} else {
				_, werr = bw.Write(b)
			}
			if werr == nil && stream {
				werr = bw.Flush()
			}
			if werr != nil {
				return false // the client is gone
			}
		}
		if err == io.EOF {
			return left <= 0
		}
		if err != nil {
			c.p.log.Debug("mitm: answer broke off", "sandbox", c.sess.sbx.ID, "host", c.sess.host, "err", upstreamErrText(err))
			return false
		}
		if left == 0 {
			return true
		}
	}
}

func isEventStream(h http.Header) bool {
	ct, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

func writeStatusLine(bw *bufio.Writer, status int) {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(status))
	bw.WriteByte(' ')
	if text := http.StatusText(status); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.WriteString(strconv.Itoa(status))
	}
	bw.WriteString("\r\n")
}

func trailerNames(t http.Header) string {
	names := make([]string, 0, len(t))
	for k := range t {
		names = append(names, k)
	}
	return strings.Join(names, ", ")
}

// removeResponseHopHeaders drops an upstream answer's hop-by-hop headers
// (RFC 9110 section 7.6.1), as ReverseProxy does.
func removeResponseHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = textprotoKey(name); name != "" {
				delete(h, name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

func textprotoKey(s string) string {
	return http.CanonicalHeaderKey(strings.TrimSpace(s))
}

// refuse answers a request that could not be read (req nil) or was read
// and failed the checks, and the tunnel ends. A HEAD gets no body.
func (c *mitmConn) refuse(req *http.Request, status int, msg string) {
	if req == nil {
		// Unread: answered as to a GET (a body), as net/http's server does.
		req = &http.Request{Method: http.MethodGet, ProtoMajor: 1, ProtoMinor: 1}
	}
	resp := jsonError(req, status, ReasonBadRequest.String(), msg, true)
	c.answer(req, resp, nil, false, false)
}

// upgrade completes a WebSocket upgrade the upstream accepted: the 101
// goes to the client, then bytes pass both ways until either side
// closes: unread, but for the upstream's frames of a handshake that
// carried a substituted value, which are read and masked
// (websocket_redact.go).
func (c *mitmConn) upgrade(req *http.Request, resp *http.Response, st *reqState) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		st.upstreamErr = true
		c.answer(req, errorResponse(req, http.StatusBadGateway, ReasonNone, "the upstream's protocol switch could not be carried"), st, false, false)
		return
	}
	defer up.Close()
	echoes := c.p.wsEchoes(st)
	if echoes != nil && wsExtensionAnswered(resp.Header) {
		c.refuseUpgrade(req, st, up)
		return
	}
	c.wmu.Lock()
	c.answered = true
	c.wmu.Unlock()
	bw := bufio.NewWriter(c.conn)
	writeStatusLine(bw, resp.StatusCode)
	resp.Header.Write(bw)
	bw.WriteString("\r\n")
	if bw.Flush() != nil {
		return
	}
	c.p.finalize(st)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := io.Copy(up, c.br) // what the client sent after its request, then the rest
		// A clean end is passed on as a half-close; a failed client side (a
		// timeout, a reset, the tunnel closed) ends the upstream too, as
		// ReverseProxy does, or a quiet upstream would hold the tunnel.
		if cw, ok := up.(interface{ CloseWrite() error }); err != nil || !ok || cw.CloseWrite() != nil {
			up.Close()
		}
	}()
	if echoes != nil {
		c.relayMasked(up, st, echoes)
	} else {
		io.Copy(c.conn, up)
	}
	c.conn.Close()
	up.Close()
	<-done
}

// headerLimit bounds what a request's header may read from the
// connection: past n bytes it fails the read, and the request is
// answered 431.
type headerLimit struct {
	r io.Reader
	n int64
	// first, if held, is read before r: the first byte of a request that
	// an idle tunnel read without a buffer.
	first byte
	held  bool
}

var errHeaderTooLarge = errors.New("request header too large")

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooLarge
	}
	if len(p) == 0 {
		return 0, nil
	}
	if l.held {
		// The byte the idle tunnel waited for (awaitRequest).
		p[0], l.held = l.first, false
		l.n--
		return 1, nil
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// reqBody is a request body as the tunnel reads it. The transport reads
// it from a goroutine of its own, possibly still after the answer came
// back; finish takes it back before the next request is read from the
// same connection, so the two never read at once. Its first read answers
// Expect: 100-continue, unless the answer has begun.
type reqBody struct {
	c  *mitmConn
	r  io.ReadCloser // net/http's framing of the body, over the tunnel's reader
	mu sync.Mutex
	// expect: the client waits for 100 Continue before it sends the body.
	expect      bool
	eof, closed bool
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	if b.eof {
		return 0, io.EOF
	}
	if b.expect {
		b.expect = false
		if !b.c.sendContinue() {
			b.closed = true
			return 0, errBodyClosed
		}
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close stops further reads; the rest of the body stays for finish.
func (b *reqBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// finish ends the body's use and reports whether the connection can
// carry the next request: the body was read to its end, or its rest (at
// most maxDrain bytes) is read now. A body still being read by the
// transport, or one the client was told not to send yet, ends the
// connection instead.
func (b *reqBody) finish() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	b.closed = true
	if b.eof {
		return true
	}
	if b.expect {
		return false
	}
	c := b.c
	c.conn.SetReadDeadline(time.Now().Add(c.p.cfg.HeaderTimeout))
	defer c.conn.SetReadDeadline(time.Time{})
	_, err := io.CopyN(io.Discard, b.r, maxDrain+1)
	return err == io.EOF
}

// clientWatchAfter is how long a request waits for its answer before the
// tunnel starts watching for the client going away (for a quick answer,
// watching would cost more than it could save).
const clientWatchAfter = 500 * time.Millisecond

// clientWatch cancels a request (and so its upstream call: cancel ends the
// tunnel's context, which the request runs under) if the client closes
// the tunnel while the answer is awaited past clientWatchAfter: a
// sandbox killed during a long call must not keep the upstream working
// for nobody. It reads ahead from the tunnel, so only once the request's
// body is read whole (nobody else reads the tunnel then); a next request
// read ahead stays buffered for the loop. One per tunnel, reused by its
// requests.
type clientWatch struct {
	c *mitmConn
	t *time.Timer

	mu       sync.Mutex
	stopped  bool
	watching bool
	done     chan struct{} // closed when the read ahead returned
	cancel   context.CancelFunc
	body     *reqBody
}

// watchClient arms the watch for the request that cancel ends.
func (c *mitmConn) watchClient(cancel context.CancelFunc, body *reqBody) {
	w := &c.watch
	w.mu.Lock()
	w.stopped, w.watching, w.cancel, w.body = false, false, cancel, body
	w.mu.Unlock()
	if w.t == nil {
		w.c = c
		w.t = time.AfterFunc(clientWatchAfter, w.run)
	} else {
		w.t.Reset(clientWatchAfter)
	}
}

func (w *clientWatch) run() {
	w.mu.Lock()
	if w.stopped || w.body != nil && !w.body.readWhole() {
		w.mu.Unlock()
		return
	}
	w.watching = true
	w.done = make(chan struct{})
	done, cancel := w.done, w.cancel
	w.mu.Unlock()
	defer close(done)
	if _, err := w.c.br.Peek(1); err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			cancel() // the client is gone
		}
	}
}

// stopWatch ends the watch before the answer is written: a read ahead in
// progress is woken (a deadline in the past) and waited for, and the
// deadline lifted again.
func (c *mitmConn) stopWatch() {
	w := &c.watch
	w.t.Stop()
	w.mu.Lock()
	w.stopped = true
	watching, done := w.watching, w.done
	w.watching, w.cancel, w.body = false, nil, nil
	w.mu.Unlock()
	if watching {
		c.conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		c.conn.SetReadDeadline(time.Time{})
	}
}

// readWhole reports whether the body has been read to its end, without
// waiting for a read in progress (which means it has not).
func (b *reqBody) readWhole() bool {
	if !b.mu.TryLock() {
		return false
	}
	defer b.mu.Unlock()
	return b.eof
}

// wontDrain reports, for a body nobody else reads (the request was
// refused before it went upstream), that finish will not be able to read
// its rest: the client waits for a 100 Continue it will not get, or more
// than maxDrain bytes are declared.
func (b *reqBody) wontDrain(declared int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.eof && (b.expect || declared > maxDrain)
}

// sendContinue writes the interim 100 Continue, unless the answer has
// begun.
func (c *mitmConn) sendContinue() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.answered {
		return false
	}
	_, err := io.WriteString(c.conn, "HTTP/1.1 100 Continue\r\n\r\n")
	return err == nil
}

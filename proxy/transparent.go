package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// The transparent listener takes connections that the kernel redirected
// to it (an nftables or iptables redirect rule: docs/transparent.md), from
// clients that ignore the proxy variables. Such a connection carries no
// credentials and no CONNECT line, so three things stand in for them:
//
//   - the sandbox is the one whose source_addrs hold the connection's
//     source address (vault.SourceIndex), which its tenant's
//     source_prefixes must hold too (granted); none: refused;
//   - the host is the server name (SNI) of the TLS ClientHello the client
//     sends first, read whole and then replayed, so nothing is consumed;
//     no hello, or one without a name: refused (plain HTTP: the Host of
//     its first request, plainHTTP);
//   - the port is the original destination's, which the kernel kept
//     (SO_ORIGINAL_DST, transparent_linux.go); none: refused.
//
// From there the connection follows the CONNECT flow for (sandbox,
// host:port) (route, connect.go): the tenant's host rules, the egress
// policy on the host resolved once, then MITM with a leaf for the name,
// or a pass-through tunnel, by whether a secret of the sandbox may be
// used on the host; substitution, audit rows, decision lines and metrics
// as inside a CONNECT tunnel.
//
// The original destination's address is never dialed. The client chose
// it; the name in the hello is what the server acts on, what a secret's
// allowed_hosts and the tenant's host rules match, and what the policy
// resolves and checks. Dialing the client's address instead would let a
// sandbox send a hello for an allowed name to any address it likes
// (another host's, a private one), which is the CONNECT flow's SNI
// mismatch by another door.

// transparentConn is one connection on the transparent listener.
type transparentConn struct {
	p     *Proxy
	tl    *transparentListener
	conn  *trackedConn
	start time.Time
	ev    *Event
}

// transparentListener is a listener the transparent connections come
// from, and what it needs.
type transparentListener struct {
	p       *Proxy
	l       net.Listener
	sources *vault.SourceIndex
	// grants holds each tenant's source_prefixes parsed (tenant id →
	// *grant), reused while the resolver hands out the same list.
	grants sync.Map
	// origDst reads a connection's original destination; the Linux
	// reader unless a test sets its own.
	origDst func(net.Conn) (netip.AddrPort, error)
}

// errNoTransparent is returned where the transparent listener cannot
// run: systems other than Linux.
var errNoTransparent = errors.New("transparent mode needs Linux (SO_ORIGINAL_DST)")

// ServeTransparent accepts kernel-redirected connections on l until
// Shutdown (which closes l) or l fails. Only on Linux: elsewhere it
// returns an error at once.
func (p *Proxy) ServeTransparent(l net.Listener) error {
	if !TransparentSupported {
		return errNoTransparent
	}
	return p.serveTransparent(l, originalDst)
}

func (p *Proxy) serveTransparent(l net.Listener, origDst func(net.Conn) (netip.AddrPort, error)) error {
	p.sourcesOnce.Do(func() { p.sources = vault.NewSourceIndex(p.cfg.Store) })
	tl := &transparentListener{p: p, l: l, sources: p.sources, origDst: origDst}
	var closing sync.Once
	closed := make(chan struct{})
	p.server.RegisterOnShutdown(func() {
		closing.Do(func() { close(closed) })
		l.Close()
	})
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-closed:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait a little and
			// go on, as net/http's server does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("transparent: accept failed; retrying", "err", err.Error(), "in", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p.metrics.conns.Inc()
		tc := &trackedConn{Conn: c, p: p, idle: p.cfg.IdleTimeout}
		go tl.handle(tc)
	}
}

// handle identifies one connection and hands it to MITM or a tunnel, or
// refuses it.
func (tl *transparentListener) handle(c *trackedConn) {
	p := tl.p
	now := p.cfg.Now()
	t := &transparentConn{p: p, tl: tl, conn: c, start: now, ev: &Event{Time: now, Method: http.MethodConnect}}
	handedOff := false
	defer func() {
		if !handedOff {
			c.Close()
		}
	}()
	c.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	dst, err := tl.origDst(c.Conn)
	if err != nil || !dst.IsValid() {
		p.log.Debug("transparent: no original destination", "remote", c.RemoteAddr().String(), "err", errText(err))
		t.refuse(ReasonNoOriginalDestination)
		return
	}
	if tl.isSelf(c, dst) {
		t.refuse(ReasonTransparentLoop)
		return
	}
	src, ok := addrPortOf(c.RemoteAddr())
	if !ok {
		t.refuse(ReasonUnknownSource)
		return
	}
	sbx, err := tl.sources.Lookup(src.Addr())
	if errors.Is(err, vault.ErrUnknownSource) {
		p.log.Debug("transparent: unknown source", "source", src.Addr().String())
		t.refuse(ReasonUnknownSource)
		return
	}
	if err != nil {
		p.log.Warn("transparent: source lookup failed", "err", err.Error())
		t.refuse(ReasonResolveError)
		return
	}
	ctx := context.Background()
	if r := tl.granted(ctx, &sbx, src.Addr()); r != ReasonNone {
		t.refuse(r)
		return
	}
	stampIdentity(t.ev, &sbx)
	if !sbx.TokenLive(now) {
		// token_ttl bounds the sandbox's egress on either listener.
		t.refuse(ReasonTokenExpired)
		return
	}
	if ok, _ := p.allowSandbox(ctx, &sbx, true); !ok {
		t.refuse(ReasonRateLimited)
		return
	}
	if !c.claim(sbx.ID) {
		t.refuse(ReasonTooManyConnections)
		return
	}
	// The first byte says TLS (a handshake record) or plain HTTP.
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		p.log.Debug("transparent: nothing sent", "sandbox", sbx.ID, "err", err.Error())
		return
	}
	if first[0] != recordTypeHandshake {
		handedOff = t.plainHTTP(ctx, &sbx, dst, first[0])
		return
	}
	h, err := readClientHello(io.MultiReader(bytes.NewReader(first[:]), c))
	switch {
	case errors.Is(err, errNotTLS), errors.Is(err, errBadHello):
		t.refuse(ReasonNoServerName)
		return
	case err != nil:
		p.log.Debug("transparent: no ClientHello", "sandbox", sbx.ID, "err", err.Error())
		return // timeout or gone: just close
	case h.ech:
		// The server may act on the name hidden inside.
		t.refuse(ReasonSNIMismatch)
		return
	}
	host, ok := sniHost(h.serverName)
	if !ok {
		t.refuse(ReasonNoServerName)
		return
	}
	port := strconv.Itoa(int(dst.Port()))
	t.ev.Host = host
	rt, _, r := p.route(ctx, &sbx, host, port)
	if r != ReasonNone {
		t.refuse(r)
		return
	}
	c.markTunnel()
	sess := &session{sbx: sbx, host: host, port: port, mitm: rt.mitm}
	handedOff = true
	if rt.mitm {
		p.metrics.transparent.WithLabelValues("mitm").Inc()
		go func() {
			defer c.Close()
			p.serveMITMConn(sess, c, &replayConn{Conn: c, pending: h.raw}, true)
		}()
		return
	}
	p.metrics.transparent.WithLabelValues("tunnel").Inc()
	go t.tunnel(sess, rt, h.raw)
}

// granted checks that src lies inside the source_prefixes of sbx's
// tenant as they are now, read through the resolver's cache as every
// tenant setting is (dropped on the tenant's writes, this replica's and
// the others'). The store refuses claims outside them, so this refuses
// only a claim that a store write did not check: one made before the
// tenant's prefixes existed, or restored or migrated from elsewhere.
// Such a source is unknown_source, in no tenant's log.
func (tl *transparentListener) granted(ctx context.Context, sbx *vault.Sandbox, src netip.Addr) Reason {
	p := tl.p
	st, err := p.cfg.Resolver.Settings(ctx, sbx.TenantID)
	if errors.Is(err, resolver.ErrUnknownSandbox) {
		return ReasonUnknownSource
	}
	if err != nil {
		p.log.Warn("transparent: tenant settings read failed", "err", err.Error())
		return ReasonResolveError
	}
	if !vault.PrefixesHold(tl.parsedGrant(sbx.TenantID, st.SourcePrefixes), src) {
		p.log.Warn("transparent: a sandbox claims a source outside its tenant's source_prefixes; refused", "source", src.String(), "sandbox", sbx.ID, "tenant", sbx.TenantID)
		return ReasonUnknownSource
	}
	return ReasonNone
}

// grant is a tenant's source_prefixes and their parsed form.
type grant struct {
	raw    []string
	parsed []netip.Prefix
}

// parsedGrant returns raw (a tenant's source_prefixes) parsed, parsing it
// only when it is not the list parsed last for the tenant. The resolver
// hands out the same slice until the tenant's next write, so the check is
// on identity: a new list (or one read again) is parsed once, and a list
// is never mistaken for another.
func (tl *transparentListener) parsedGrant(tenantID string, raw []string) []netip.Prefix {
	if v, ok := tl.grants.Load(tenantID); ok {
		g := v.(*grant)
		if len(g.raw) == len(raw) && (len(raw) == 0 || &g.raw[0] == &raw[0]) {
			return g.parsed
		}
	}
	g := &grant{raw: raw, parsed: vault.ParsePrefixes(raw)}
	tl.grants.Store(tenantID, g)
	return g.parsed
}

// plainHTTP serves a connection that starts with something else than
// TLS: plain HTTP, routed by the Host of its first request, read whole
// (and replayed) within the handshake timeout. Every request is then read
// by the proxy's request loop, never tunnelled, whatever the secrets: each
// must name the same host (host_mismatch otherwise; a tunnel could not
// tell), and a placeholder in one is refused (plain_http), since values go
// out over TLS only. It reports whether it took the connection over.
func (t *transparentConn) plainHTTP(ctx context.Context, sbx *vault.Sandbox, dst netip.AddrPort, first byte) bool {
	p, c := t.p, t.conn
	head, hostport, err := readRequestHead(c, first, p.cfg.MaxHeaderBytes)
	if err != nil {
		if errors.Is(err, errNotHTTP) {
			t.refuse(ReasonNoServerName)
		} else {
			p.log.Debug("transparent: no request head", "sandbox", sbx.ID, "err", err.Error())
		}
		return false
	}
	hostname := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		hostname = h
	}
	host, ok := sniHost(hostname)
	if !ok {
		t.refuse(ReasonNoServerName)
		return false
	}
	port := strconv.Itoa(int(dst.Port()))
	t.ev.Host = host
	if _, _, r := p.route(ctx, sbx, host, port); r != ReasonNone {
		t.refuse(r)
		return false
	}
	c.markTunnel()
	p.metrics.transparent.WithLabelValues("http").Inc()
	sess := &session{sbx: *sbx, host: host, port: port, mitm: true}
	go func() {
		defer c.Close()
		p.serveMITMConn(sess, c, &replayConn{Conn: c, pending: head}, false)
	}()
	return true
}

// errNotHTTP: a transparent connection that is neither TLS nor an HTTP/1
// request egressd can read.
var errNotHTTP = errors.New("not an HTTP request")

// readRequestHead reads a plain HTTP request's head (first is its first
// byte, read already), at most max bytes, and returns every byte read (the
// head and whatever followed it in the same reads) and its Host. An error
// other than errNotHTTP is the reader's (a timeout, the client gone).
func readRequestHead(r io.Reader, first byte, max int) (read []byte, host string, err error) {
	read = append(make([]byte, 0, 1024), first)
	buf := make([]byte, 4096)
	// from is where the head's end may begin: not in bytes searched
	// before (it ends in the last read), so the search is linear however
	// slowly the head arrives.
	from := 0
	for {
		if end := headEnd(read, from); end > 0 {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(read[:end])))
			if err != nil || req.Method == http.MethodConnect || req.ProtoMajor != 1 || req.Host == "" {
				return nil, "", errNotHTTP
			}
			return read, req.Host, nil
		}
		if len(read) >= max {
			return nil, "", errNotHTTP
		}
		from = len(read) - len("\r\n\r\n") + 1
		n, err := r.Read(buf[:min(len(buf), max-len(read))])
		read = append(read, buf[:n]...)
		if err != nil && headEnd(read, from) < 0 {
			return nil, "", err
		}
	}
}

// headEnd is the length of the request head in b (through its empty
// line), or -1 before it is whole; the empty line starts at from or later.
func headEnd(b []byte, from int) int {
	from = max(from, 0)
	end := -1
	if i := bytes.Index(b[from:], []byte("\r\n\r\n")); i >= 0 {
		end = from + i + 4
	}
	if i := bytes.Index(b[from:], []byte("\n\n")); i >= 0 && (end < 0 || from+i+2 < end) {
		end = from + i + 2
	}
	return end
}

// tunnel dials the checked address and relays, the ClientHello first.
func (t *transparentConn) tunnel(sess *session, rt connectRoute, hello []byte) {
	p, c := t.p, t.conn
	ctx := withTunnelHost(context.Background(), sess.sbx.TenantID, sess.host)
	up, err := p.dialer.DialContext(ctx, "tcp", rt.target.String())
	if err != nil {
		r := denyReason(err)
		if r == ReasonNone {
			p.log.Debug("transparent: upstream dial failed", "sandbox", sess.sbx.ID, "host", sess.host, "err", err.Error())
			ev := *t.ev
			ev.ID, ev.Status, ev.Outcome = newEventID(ev.Time), http.StatusBadGateway, OutcomeUpstreamError
			p.metrics.upstreamErrs.Inc()
			p.finish(ctx, &ev, nil)
		} else {
			t.refuse(r)
		}
		c.Close()
		return
	}
	if _, err := up.Write(hello); err != nil {
		up.Close()
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	p.metrics.outcome(OutcomeTunnelled).requests.Inc()
	pt := &passTunnel{p: p, sess: sess, target: rt.target, ev: t.ev}
	pt.relay(c, up, true)
}

// refuse records a refused connection (decision line, audit event,
// metrics); the caller closes it. A transparent client gets no answer it
// could read: it sees the connection close.
func (t *transparentConn) refuse(r Reason) {
	p := t.p
	p.metrics.transparent.WithLabelValues("refused").Inc()
	ev := t.ev
	ev.ID = newEventID(ev.Time)
	ev.Status, ev.Outcome, ev.Reason = r.Status(), OutcomeDenied, r.String()
	p.finish(context.Background(), ev, nil)
}

// isSelf reports whether dst is the transparent listener itself, or
// another listener of egressd: a connection that was not redirected (its
// original destination is where it arrived), or one redirected in a loop.
func (tl *transparentListener) isSelf(c net.Conn, dst netip.AddrPort) bool {
	if local, ok := addrPortOf(c.LocalAddr()); ok && local.Addr().Unmap() == dst.Addr().Unmap() && local.Port() == dst.Port() {
		return true
	}
	if local, ok := addrPortOf(tl.l.Addr()); ok && local.Port() == dst.Port() && tl.p.dialer.policy.isOwn(local, dst.Addr().Unmap()) {
		return true
	}
	return tl.p.dialer.policy.check(dst) == ReasonOwnListener
}

// sniHost reads a ClientHello's server name as the tunnel's host: a DNS
// name as certs names one (RFC 6066 allows no address literal), lower
// case, no trailing dot. The name is checked to be ASCII before it is
// lowered: strings.ToLower would turn a Kelvin sign (U+212A) into 'k'.
func sniHost(name string) (string, bool) {
	return certs.NormalizeDNSName(name)
}

// addrPortOf is a net.Addr of TCP as a netip.AddrPort.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	if a == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err == nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// replayConn reads pending (the ClientHello read to learn the host)
// before the rest of the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
)

// A pass-through tunnel carries bytes it does not read, to the address
// the CONNECT's checks allowed. Two things are checked at its start.
//
// Where the tenant restricts hosts (egress_allow_hosts or
// egress_deny_hosts not empty), the CONNECT host is only what the sandbox
// says; the server that answers acts on the name in the TLS ClientHello
// (SNI), and a CDN or shared host answers for many names at one address
// ("domain fronting": CONNECT allowed.example carrying a hello for
// blocked.example). So the tunnel must start with a ClientHello (sni.go)
// that names the CONNECT host, compared without case and trailing dot;
// anything else is refused after the 200: sni_mismatch with a TLS
// access_denied alert, so the client reports a refusal rather than a
// broken connection, or tunnel_not_tls by closing. A hello without a
// server name is refused when the CONNECT named a host: clients send SNI
// for every name they connect to (RFC 6066, and every TLS stack a sandbox
// runs), and without it the server picks by its own default, which at a
// shared address may be any of its sites. A CONNECT to an IP address
// passes a hello without a name (clients send none for an address) or
// naming that address, and refuses one that names a host. A hello that
// carries encrypted_client_hello is refused too: the server may act on
// the name inside it. What this cannot see: the HTTP Host header inside
// the TLS session (a front that routes by Host, not SNI, is stopped only
// by MITM, --mitm all), and the second hello of a handshake the server
// restarts with a HelloRetryRequest (RFC 8446 makes servers refuse one
// that changed its name).
//
// Every tunnel must start within Config.HandshakeTimeout of its 200:
// the ClientHello whole where it is checked, otherwise a first byte from
// either side (a protocol whose server speaks first is not cut off). A
// CONNECT that never starts is closed then, not after the idle timeout.

// passTunnel is one pass-through tunnel, from the CONNECT that allowed it.
type passTunnel struct {
	p      *Proxy
	sess   *session
	target netip.AddrPort
	// ev is the CONNECT's event: identity, host and start time.
	ev *Event
	// checkHello: the tenant's host rules are in force.
	checkHello bool
}

// hijack is goproxy's hijack function: it owns the client connection.
func (t *passTunnel) hijack(req *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
	p := t.p
	relaying := false // then the relay closes both
	defer func() {
		if !relaying {
			client.Close()
		}
	}()
	ctx := withTunnelHost(req.Context(), t.sess.sbx.TenantID, t.sess.host)
	up, err := p.dialer.DialContext(ctx, "tcp", t.target.String())
	if err != nil {
		status, reason := http.StatusBadGateway, denyReason(err)
		if reason != ReasonNone {
			status = http.StatusForbidden
		}
		errorResponse(req, status, reason, "upstream connection failed").Write(client)
		return
	}
	defer func() {
		if !relaying {
			up.Close()
		}
	}()
	major, minor := req.ProtoMajor, req.ProtoMinor
	if major == 0 {
		major, minor = 1, 1
	}
	if _, err := fmt.Fprintf(client, "HTTP/%d.%d 200 Connection established\r\n\r\n", major, minor); err != nil {
		return
	}
	client.SetReadDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	var first []byte
	if t.checkHello {
		h, err := readClientHello(client)
		if r, why := t.helloReason(h, err); r != ReasonNone || err != nil {
			t.refuse(req, client, h, r, why)
			return
		}
		first = h.raw
		client.SetReadDeadline(time.Time{})
	}
	p.metrics.outcome(OutcomeTunnelled).requests.Inc()
	if len(first) > 0 {
		if _, err := up.Write(first); err != nil {
			return
		}
	}
	// The relay runs on goroutines of its own: net/http's, which a
	// tunnel relayed on would keep for its whole life with its stack and
	// the server's request reader, ends here.
	relaying = true
	go t.relay(client, up, first != nil)
}

// helloReason says why a tunnel's first bytes are refused (ReasonNone
// with a nil error: they may pass), and in a few words what was seen.
func (t *passTunnel) helloReason(h *clientHello, err error) (Reason, string) {
	switch {
	case errors.Is(err, errNotTLS):
		return ReasonTunnelNotTLS, "not TLS"
	case errors.Is(err, errBadHello):
		return ReasonTunnelNotTLS, "unreadable ClientHello"
	case err != nil:
		return ReasonNone, "no ClientHello: " + err.Error() // timeout or gone: just close
	case h.ech:
		return ReasonSNIMismatch, "encrypted_client_hello"
	}
	name := strings.ToLower(strings.TrimSuffix(h.serverName, "."))
	host := t.sess.host
	if ip, err := netip.ParseAddr(host); err == nil {
		if name == "" {
			return ReasonNone, ""
		}
		if a, err := netip.ParseAddr(name); err == nil && a.Unmap() == ip.Unmap() {
			return ReasonNone, ""
		}
		return ReasonSNIMismatch, "server name is not the CONNECT address"
	}
	switch name {
	case host:
		return ReasonNone, ""
	case "":
		return ReasonSNIMismatch, "no server name"
	}
	return ReasonSNIMismatch, "server name differs"
}

// refuse ends a tunnel whose start was refused (r) or never came (r
// ReasonNone): an alert for a refused ClientHello, an audit event for a
// refusal.
func (t *passTunnel) refuse(req *http.Request, client net.Conn, h *clientHello, r Reason, why string) {
	p := t.p
	attrs := []any{"sandbox", t.sess.sbx.ID, "host", t.sess.host, "why", why}
	if h != nil && h.serverName != "" {
		attrs = append(attrs, "sni", h.serverName)
	}
	p.log.Debug("tunnel refused", attrs...)
	if r == ReasonNone {
		return
	}
	if r == ReasonSNIMismatch {
		// A fatal access_denied alert (RFC 8446 6.2), in the record
		// version the client used.
		client.SetWriteDeadline(time.Now().Add(time.Second))
		client.Write([]byte{0x15, h.raw[1], h.raw[2], 0, 2, 2, 49})
	}
	ev := *t.ev
	ev.ID = newEventID(ev.Time)
	ev.Status, ev.Outcome, ev.Reason = r.Status(), OutcomeDenied, r.String()
	p.finish(req.Context(), &ev, nil)
}

// relay copies both ways until one side ends, then closes both. started
// says the tunnel has begun; otherwise the client's first read still
// runs under the handshake deadline, which the server's first bytes lift.
// Each way holds a buffer only from a read to its write (relayReader): an
// idle tunnel holds none.
func (t *passTunnel) relay(client, up net.Conn, started bool) {
	var upSpoke atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		src := newRelayReader(up)
		bp, n, err := src.next()
		if n > 0 {
			upSpoke.Store(true)
			if _, werr := client.Write((*bp)[:n]); werr != nil {
				relayBuffers.Put(bp)
				return
			}
		}
		relayBuffers.Put(bp)
		if err == nil {
			relayCopy(client, src)
		}
	}()
	defer func() { <-done }()
	defer up.Close()
	src := newRelayReader(client)
	if !started {
		bp, n, err := src.next()
		if n > 0 {
			if _, werr := up.Write((*bp)[:n]); werr != nil {
				relayBuffers.Put(bp)
				return
			}
		}
		relayBuffers.Put(bp)
		if err != nil {
			var ne net.Error
			timeout := errors.As(err, &ne) && ne.Timeout()
			if !timeout || !upSpoke.Load() {
				if timeout && n == 0 {
					t.p.log.Debug("tunnel: never started", "sandbox", t.sess.sbx.ID, "host", t.sess.host)
				}
				return
			}
			// The server spoke first; the client may take its time.
		}
		client.SetReadDeadline(time.Time{})
	}
	relayCopy(up, src)
}

package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/elazarl/goproxy"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// onConnect authenticates a CONNECT, applies the egress policy to its
// destination, and chooses MITM (a secret of the sandbox may be used on the
// host) or a byte-for-byte tunnel.
func (p *Proxy) onConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	start := p.cfg.Now()
	req := ctx.Req
	hostname, port, err := net.SplitHostPort(host)
	if err != nil {
		hostname, port = host, "443"
	}
	hostname = strings.ToLower(strings.TrimSuffix(hostname, "."))
	ev := &Event{Time: start, Host: hostname, Method: http.MethodConnect}
	reject := func(status int, reason Reason) (*goproxy.ConnectAction, string) {
		ctx.Resp = errorResponse(req, status, reason, "")
		ev.ID = newEventID(start)
		ev.Status, ev.Outcome, ev.Reason = status, OutcomeDenied, reason.String()
		p.finish(req.Context(), ev, nil)
		return goproxy.RejectConnect, host
	}
	sbx, reason, retry := p.authenticate(req)
	if reason != ReasonNone {
		action, h := reject(reason.Status(), reason)
		if reason == ReasonRateLimited {
			withRetryAfter(ctx.Resp, retry)
		}
		return action, h
	}
	stampIdentity(ev, &sbx)
	if ok, retry := p.allowSandbox(req.Context(), &sbx, true); !ok {
		action, h := reject(http.StatusTooManyRequests, ReasonRateLimited)
		withRetryAfter(ctx.Resp, retry)
		return action, h
	}
	if c := connFrom(req.Context()); c != nil && !c.claim(sbx.ID) {
		return reject(http.StatusTooManyRequests, ReasonTooManyConnections)
	}
	rt, status, r := p.route(req.Context(), &sbx, hostname, port)
	if r != ReasonNone {
		return reject(status, r)
	}
	if c := connFrom(req.Context()); c != nil {
		c.markTunnel()
	}
	sess := &session{sbx: sbx, host: hostname, port: port, mitm: rt.mitm}
	ctx.UserData = sess
	if !rt.mitm {
		p.log.Debug("tunnel", "sandbox", sbx.ID, "host", hostname)
		t := &passTunnel{p: p, sess: sess, target: rt.target, ev: ev, checkHello: rt.checkHello}
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: t.hijack}, host
	}
	return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: p.hijackMITM(sess)}, net.JoinHostPort(hostname, port)
}

// connectRoute is where a tunnel to (sandbox, host:port) goes.
type connectRoute struct {
	// target is the checked address a pass-through tunnel dials.
	target netip.AddrPort
	// mitm: a secret of the sandbox may be used on the host (or
	// Config.MITMAll), so TLS is terminated.
	mitm bool
	// checkHello: the tenant's host rules are in force, so a
	// pass-through tunnel's ClientHello must name the host.
	checkHello bool
}

// route decides a tunnel of an identified sandbox to hostname:port, for a
// CONNECT and for a transparent connection alike: the tenant's host rules,
// the egress policy on the destination resolved once, and MITM or
// pass-through by whether a secret of the sandbox may be used on the
// host. A refusal comes with its status and reason.
func (p *Proxy) route(ctx context.Context, sbx *vault.Sandbox, hostname, port string) (connectRoute, int, Reason) {
	// The checks and dials of this tunnel apply the tenant's address rules.
	tctx := withTenant(ctx, sbx.TenantID)
	if r := p.tenantRule(tctx, sbx, hostname); r != ReasonNone {
		return connectRoute{}, http.StatusForbidden, r
	}
	target, r := p.precheck(tctx, hostname, port)
	if r != ReasonNone {
		return connectRoute{}, r.Status(), r
	}
	use, err := p.cfg.Resolver.MayUse(ctx, sbx.ID, hostname)
	if errors.Is(err, resolver.ErrUnknownSandbox) {
		return connectRoute{}, http.StatusProxyAuthRequired, ReasonBadCredentials
	}
	if err != nil {
		return connectRoute{}, http.StatusBadGateway, ReasonResolveError
	}
	rt := connectRoute{target: target, mitm: use.Any || p.cfg.MITMAll}
	if !rt.mitm {
		rt.checkHello = p.hostRulesInForce(tctx, sbx.TenantID)
	}
	return rt, 0, ReasonNone
}

// tenantRule applies the name rules of the tenant's egress_allow_hosts and
// egress_deny_hosts to host; their address rules apply where the dialer
// connects (addrrules.go).
func (p *Proxy) tenantRule(ctx context.Context, sbx *vault.Sandbox, host string) Reason {
	p.transport.noteSandbox(sbx)
	st, err := p.cfg.Resolver.Settings(ctx, sbx.TenantID)
	if err != nil {
		return ReasonResolveError
	}
	if !st.EgressAllowed(host) {
		return ReasonHostDenied
	}
	return ReasonNone
}

// hostRulesInForce reports whether the tenant restricts hosts at all
// (egress_allow_hosts or egress_deny_hosts not empty): its pass-through
// tunnels must then name their CONNECT host in the TLS ClientHello.
func (p *Proxy) hostRulesInForce(ctx context.Context, tenantID string) bool {
	st, err := p.cfg.Resolver.Settings(ctx, tenantID)
	// An error here follows a successful read in tenantRule: check.
	return err != nil || len(st.EgressAllowHosts) > 0 || len(st.EgressDenyHosts) > 0
}

// tlsConfig serves the MITM'd client a leaf for the CONNECT host.
func (p *Proxy) tlsConfig(host string, _ *goproxy.ProxyCtx) (*tls.Config, error) {
	hostname, _, err := net.SplitHostPort(host)
	if err != nil {
		hostname = host
	}
	cert, err := p.cfg.Leafs.Get(hostname)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// precheck resolves the destination once and refuses it when no address
// is allowed. It returns the first allowed address: a tunnel dials exactly
// that one (no second lookup that DNS rebinding could answer differently);
// the dialer checks it again at the socket.
func (p *Proxy) precheck(ctx context.Context, hostname, port string) (netip.AddrPort, Reason) {
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil || pn == 0 {
		return netip.AddrPort{}, ReasonBadRequest
	}
	allowed, deny := p.dialer.allowed(ctx, hostname, uint16(pn))
	if deny != nil {
		return netip.AddrPort{}, deny.Reason
	}
	return allowed[0], ReasonNone
}

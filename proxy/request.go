package proxy

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// reqState follows one request from onRequest to onResponse.
type reqState struct {
	id     string
	sess   *session
	method string
	// host is the destination host, lower case.
	host string
	// path is the URL path as the sandbox sent it: placeholders, never values.
	path  string
	start time.Time
	sub   *subst
	deny  Reason
	// upstreamErr is set when the round trip failed.
	upstreamErr bool
	// status is the answer's status code; done is set once recorded.
	status int
	done   bool
	ctx    context.Context
	// askedGzip: egressd asked the upstream for gzip (askGzip), and
	// undoes it.
	askedGzip bool
}

// hopHeaders are removed before forwarding (RFC 9110 7.6.1), as
// net/http/httputil's ReverseProxy does.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// onRequest runs for every plain (not CONNECT) proxy request, which carries
// its own credentials. Requests inside a MITM'd tunnel go through mitm.go.
func (p *Proxy) onRequest(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	ctx.RoundTripper = goproxy.RoundTripperFunc(p.roundTrip)
	st, resp := p.prepare(req, nil, false)
	ctx.UserData = st
	return req, resp
}

// prepare checks one request and substitutes its placeholders: identity
// (authenticated here when sess is nil), host, tenant rules, URL, headers,
// body. overTLS says the request came through a MITM'd TLS tunnel. A
// non-nil response is the refusal to send instead.
func (p *Proxy) prepare(req *http.Request, sess *session, overTLS bool) (*reqState, *http.Response) {
	host := strings.ToLower(strings.TrimSuffix(req.URL.Hostname(), "."))
	now := p.cfg.Now()
	st := &reqState{id: newEventID(now), start: now, path: req.URL.Path, method: req.Method, host: host, ctx: req.Context()}
	inTunnel := sess != nil
	if !inTunnel {
		sbx, reason, retry := p.authenticate(req)
		if reason == ReasonRateLimited {
			st, resp := p.refuse(st, req, reason.Status(), reason)
			return st, withRetryAfter(resp, retry)
		}
		if reason != ReasonNone {
			return p.refuse(st, req, reason.Status(), reason)
		}
		if c := connFrom(req.Context()); c != nil && !c.claim(sbx.ID) {
			return p.refuse(st, req, http.StatusTooManyRequests, ReasonTooManyConnections)
		}
		sess = &session{sbx: sbx}
	}
	st.sess = sess
	if ok, retry := p.allowSandbox(req.Context(), &sess.sbx, false); !ok {
		st, resp := p.refuse(st, req, http.StatusTooManyRequests, ReasonRateLimited)
		return st, withRetryAfter(resp, retry)
	}
	if inTunnel && (host != sess.host || urlPort(req.URL) != sess.port) {
		return p.refuse(st, req, http.StatusForbidden, ReasonHostMismatch)
	}
	if r := p.tenantRule(req.Context(), &sess.sbx, host); r != ReasonNone {
		return p.refuse(st, req, http.StatusForbidden, r)
	}
	use, err := p.cfg.Resolver.MayUse(req.Context(), sess.sbx.ID, host)
	if errors.Is(err, resolver.ErrUnknownSandbox) {
		// Deleted while its connection was open.
		return p.refuse(st, req, http.StatusProxyAuthRequired, ReasonBadCredentials)
	}
	if err != nil {
		return p.refuse(st, req, http.StatusBadGateway, ReasonResolveError)
	}
	if inTunnel && !use.Token.Valid(sess.sbx.TokenIssuedAt, now) {
		// The token that opened the tunnel was replaced or has expired.
		return p.refuse(st, req, http.StatusProxyAuthRequired, ReasonTokenExpired)
	}
	removeHopHeaders(req.Header)
	// A client's Connection: close must not close the pooled upstream connection.
	req.Close = false

	s := &subst{p: p, st: st, ctx: req.Context(), sbx: &sess.sbx, host: host, tls: overTLS}
	st.sub = s
	substituteURL(req.URL, s)
	substituteHeaders(req.Header, s)
	if r := s.denied(); r != ReasonNone {
		return p.refuse(st, req, r.Status(), r)
	}
	if req.Body != nil && req.Body != http.NoBody {
		if r := p.substituteBody(req, s, use.Body && s.tls); r != ReasonNone {
			return p.refuse(st, req, r.Status(), r)
		}
	}
	if p.cfg.Redact {
		dropRanges(req.Header, s)
	}
	return st, nil
}

// dropRanges removes Range and If-Range from a request that carries a
// value (or may yet, in a streamed body): the whole answer comes back and
// is masked whole, where ranges could each hold a piece of an echoed
// value that no mask recognizes.
func dropRanges(h http.Header, s *subst) {
	if echoes, live := s.snapshot(); len(echoes) > 0 || live {
		delete(h, "Range")
		delete(h, "If-Range")
	}
}

func (p *Proxy) refuse(st *reqState, req *http.Request, status int, r Reason) (*reqState, *http.Response) {
	st.deny = r
	resp := errorResponse(req, status, r, "")
	if status == http.StatusProxyAuthRequired {
		// Wrong, expired or replaced credentials: the connection ends
		// with this answer (a missing one is asked for in challenge).
		resp.Header.Set("Connection", "close")
		resp.Close = true
	}
	return st, resp
}

func urlPort(u *url.URL) string {
	if port := u.Port(); port != "" {
		return port
	}
	if u.Scheme == "http" {
		return "80"
	}
	return "443"
}

func removeHopHeaders(h http.Header) {
	ws := isWebSocket(h)
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = strings.TrimSpace(name); name != "" && !(ws && strings.EqualFold(name, "Upgrade")) {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders { // canonical names: looked up as they are
		if _, ok := h[name]; !ok || ws && (name == "Connection" || name == "Upgrade") {
			continue
		}
		if name == "Te" && strings.EqualFold(strings.TrimSpace(h.Get("Te")), "trailers") {
			continue
		}
		delete(h, name)
	}
}

func isWebSocket(h http.Header) bool {
	return headerHas(h, "Connection", "upgrade") && headerHas(h, "Upgrade", "websocket")
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// substituteURL replaces placeholders in the escaped path and the raw query.
func substituteURL(u *url.URL, s *subst) {
	if ep := u.EscapedPath(); strings.Contains(ep, marker) {
		if out := Replace([]byte(ep), s.fn(vault.InPath, false)); string(out) != ep {
			if path, err := url.PathUnescape(string(out)); err == nil {
				u.Path, u.RawPath = path, string(out)
			}
		}
	}
	if strings.Contains(u.RawQuery, marker) {
		u.RawQuery = string(Replace([]byte(u.RawQuery), s.fn(vault.InQuery, false)))
	}
}

// substituteHeaders replaces placeholders in every header value, and inside
// Basic credentials after base64-decoding them.
func substituteHeaders(h http.Header, s *subst) {
	fn := s.fn(vault.InHeader, false)
	for name, vs := range h {
		for i, v := range vs {
			if (name == "Authorization" || name == "Proxy-Authorization") && len(v) > 6 && strings.EqualFold(v[:6], "basic ") {
				vs[i] = substituteBasic(v, fn)
				if vs[i] != v {
					// The re-encoded credentials are a form of the value too.
					s.mu.Lock()
					s.addEcho([]byte(strings.TrimSpace(vs[i][6:])), []byte(strings.TrimSpace(v[6:])))
					s.mu.Unlock()
				}
				continue
			}
			if strings.Contains(v, marker) {
				vs[i] = string(Replace([]byte(v), fn))
			}
		}
	}
}

func substituteBasic(v string, fn SubstFunc) string {
	enc := strings.TrimSpace(v[6:])
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		if strings.Contains(v, marker) {
			return string(Replace([]byte(v), fn))
		}
		return v
	}
	if !strings.Contains(string(raw), marker) {
		return v
	}
	out := Replace(raw, fn)
	return v[:6] + base64.StdEncoding.EncodeToString(out)
}

// roundTrip sends a plain proxy request upstream (goproxy's path).
func (p *Proxy) roundTrip(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
	resp, err := p.transport.RoundTrip(req)
	if err == nil {
		return resp, nil
	}
	st, _ := ctx.UserData.(*reqState)
	return p.upstreamError(st, req, err), nil
}

// upstreamError turns a failed round trip into a clear answer: 403 for a
// refused destination, 504 for a timeout, 502 otherwise; never a dropped
// connection.
func (p *Proxy) upstreamError(st *reqState, req *http.Request, err error) *http.Response {
	if r := denyReason(err); r != ReasonNone {
		if st != nil {
			st.deny = r
		}
		return errorResponse(req, http.StatusForbidden, r, "")
	}
	if st != nil {
		st.upstreamErr = true
	}
	p.metrics.upstreamErrs.Inc()
	status := http.StatusBadGateway
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	p.log.Debug("upstream error", "host", req.URL.Hostname(), "err", upstreamErrText(err))
	return errorResponse(req, status, ReasonNone, "upstream request failed: "+upstreamErrText(err))
}

// upstreamErrText says what failed in words of egressd's own: the error's
// text may carry bytes the upstream sent, or the request URL, whose query
// holds a value after substitution.
func upstreamErrText(err error) string {
	var ne net.Error
	var ce *tls.CertificateVerificationError
	var re tls.RecordHeaderError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.As(err, &ce):
		return "the upstream's TLS certificate did not verify"
	case errors.As(err, &re):
		return "the upstream did not speak TLS"
	case errors.As(err, &dnsErr):
		return "the upstream host name did not resolve"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the upstream closed the connection"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "could not connect"
	}
	return "the upstream's answer could not be read"
}

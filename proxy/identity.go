package proxy

import (
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/egressd/egressd/vault"
)

// session is what the proxy knows about the client of one request: the
// sandbox (from Proxy-Authorization on CONNECT or the plain request) and
// the tunnel it came through.
type session struct {
	sbx vault.Sandbox
	// host and port of the CONNECT; empty for plain HTTP.
	host, port string
	mitm       bool
}

// sandboxCredentials reads Proxy-Authorization: Basic base64(id:token).
func sandboxCredentials(h http.Header) (id, token string, ok bool) {
	v := h.Get("Proxy-Authorization")
	scheme, enc, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(scheme, "Basic") || len(enc) > 1024 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", "", false
	}
	id, token, ok = strings.Cut(string(raw), ":")
	return id, token, ok && id != "" && token != ""
}

// authenticate checks the request's proxy credentials against the vault
// (the token is compared to its stored hash in constant time). Failures
// (not a missing Proxy-Authorization, which is asked for) are counted per
// client address; past the address's bucket a failure is answered
// ReasonRateLimited (retry says when to come back) instead. Right
// credentials always pass: sandboxes behind one address (a node's NAT)
// cannot lock each other out.
func (p *Proxy) authenticate(r *http.Request) (sbx vault.Sandbox, reason Reason, retry time.Duration) {
	defer func() {
		if reason == ReasonNone || reason == ReasonNoCredentials {
			return
		}
		addr := clientHost(r)
		p.rates.failedAuth.Fail(addr)
		if blocked, wait := p.rates.failedAuth.Blocked(addr); blocked {
			reason, retry = ReasonRateLimited, wait
		}
	}()
	id, token, ok := sandboxCredentials(r.Header)
	if !ok {
		if r.Header.Get("Proxy-Authorization") == "" {
			return vault.Sandbox{}, ReasonNoCredentials, 0
		}
		return vault.Sandbox{}, ReasonBadCredentials, 0
	}
	sbx, err := p.cfg.Store.AuthenticateSandbox(id, token)
	if errors.Is(err, vault.ErrTokenExpired) {
		return vault.Sandbox{}, ReasonTokenExpired, 0
	}
	if err != nil {
		return vault.Sandbox{}, ReasonBadCredentials, 0
	}
	return sbx, ReasonNone, 0
}

// maxChallenges bounds the credential challenge: a connection may be asked
// for credentials this many times (and must send its next request within
// Config.ChallengeWait of each ask).
const maxChallenges = 3

// isProxyRequest: a CONNECT or an absolute-form request, the two that
// carry Proxy-Authorization (anything else gets not_a_proxy_request).
func isProxyRequest(r *http.Request) bool {
	return r.Method == http.MethodConnect || r.URL.IsAbs()
}

// challenge answers a proxy request that carried no credentials with 407
// and Proxy-Authenticate, and keeps the connection open for the
// credentialed retry, as clients that ask first expect (git and libcurl:
// RFC 9110 11.7.1). The wait for that retry is short and the asks are
// few; past them the answer closes the connection.
func (p *Proxy) challenge(w http.ResponseWriter, r *http.Request) {
	start := p.cfg.Now()
	host := r.URL.Hostname()
	if r.Method == http.MethodConnect {
		host = r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
	}
	ev := &Event{Time: start, Host: strings.ToLower(strings.TrimSuffix(host, ".")), Method: r.Method, Path: r.URL.Path,
		Status: http.StatusProxyAuthRequired, Outcome: OutcomeDenied, Reason: ReasonNoCredentials.String()}
	if r.Method == http.MethodConnect {
		ev.Path = ""
	}
	if c := connFrom(r.Context()); c != nil && !c.challenged(time.Now().Add(p.cfg.ChallengeWait)) {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Proxy-Authenticate", `Basic realm="egressd"`)
	w.Header().Set("X-Egress-Denied", ReasonNoCredentials.String())
	writeJSONError(w, http.StatusProxyAuthRequired, ReasonNoCredentials.String(), ReasonNoCredentials.Message())
	p.finish(r.Context(), ev, nil)
}

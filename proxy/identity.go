package proxy

import (
	"encoding/base64"
	"net/http"
	"strings"

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
// (the token is compared to its stored hash in constant time).
func (p *Proxy) authenticate(r *http.Request) (vault.Sandbox, Reason) {
	id, token, ok := sandboxCredentials(r.Header)
	if !ok {
		if r.Header.Get("Proxy-Authorization") == "" {
			return vault.Sandbox{}, ReasonNoCredentials
		}
		return vault.Sandbox{}, ReasonBadCredentials
	}
	sbx, err := p.cfg.Store.AuthenticateSandbox(id, token)
	if err != nil {
		return vault.Sandbox{}, ReasonBadCredentials
	}
	return sbx, ReasonNone
}

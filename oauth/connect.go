package oauth

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/egressd/egressd/vault"
)

// A flow on egressd's own callback has a connect link (PublicURL +
// ConnectPath + flow id). Its page shows what connecting does and a
// button; the button binds the flow to the browser that presses it first.
// The page gives each browser a random key (its BrowserKey) and its form
// carries FormToken of it, never the key. The press binds the flow under a
// key minted at that moment (it replaces the browser's, so a key planted
// in the browser beforehand never becomes the binding); the flow's nonce,
// whose hash the flow stores once and whose value the callback must bring
// back in its cookie, is derived from that key, so the browser that bound
// the flow is recognised when it comes back to the page (back button, a
// second press) and any other one is refused.

// BrowserKeyLen is the length of a browser key: 32 random bytes, URL-safe
// base64 without padding.
const BrowserKeyLen = 43

// NewBrowserKey is a fresh browser key.
func NewBrowserKey() string { return randomString(32) }

// ValidBrowserKey reports whether k has the form of a browser key.
func ValidBrowserKey(k string) bool {
	if len(k) != BrowserKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// FormToken is what the connect page's form carries for the browser with
// key k: a one-way function of the key, never the key itself, so the
// page's HTML tells whoever sees it neither the connect_token cookie nor
// the callback cookie derived from it. The button's POST must bring the
// form token of its own cookie's key.
func FormToken(k string) string {
	sum := sha256.Sum256([]byte("egressd/connect-form/v1\x00" + k))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// connectNonce is the flow nonce of the browser with key k: the value of
// its connect cookie on the callback path.
func connectNonce(k string) string {
	sum := sha256.Sum256([]byte("egressd/connect-nonce/v1\x00" + k))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func nonceHash(nonce string) []byte {
	sum := sha256.Sum256([]byte(nonce))
	return sum[:]
}

// Connected is a connect link looked at or opened: the flow, and when
// opened the browser's nonce (its cookie on the callback path) and the
// provider URL to send it to.
type Connected struct {
	Flow vault.OAuthFlow
	// Key is the browser's key once the flow is opened: the one it
	// presented when it is the browser the flow is bound to, else the
	// key minted as the flow was bound to it now (its new connect_token).
	Key         string
	Nonce       string
	ProviderURL string
	// Secure says the cookies must be Secure (PublicURL is https).
	Secure bool
	// MaxAge is the flow's remaining lifetime, at least 1 s.
	MaxAge time.Duration
}

// ConnectFlow answers the flow of a connect link and whether the browser
// with key k ("" for one without a key) could open it now (nil error),
// without changing anything: link previews fetch the page too. The errors
// are OpenConnect's; the flow is answered with them when known.
func (s *Service) ConnectFlow(flowID, k string) (Connected, error) {
	if len(flowID) > 64 {
		return Connected{}, fmt.Errorf("%w: no oauth flow", vault.ErrNotFound)
	}
	var h []byte
	if ValidBrowserKey(k) {
		h = nonceHash(connectNonce(k))
	}
	f, err := s.store.OAuthConnectFlow(flowID, h)
	return s.connected(f), err
}

// OpenConnect binds the flow of a connect link to the browser with key k
// (a valid browser key) if no browser is bound yet, and answers the
// browser's nonce and the provider's authorize URL. The flow is bound to
// a key minted now (Connected.Key, which the browser must keep from now
// on), never to k itself: k may have been planted in the browser by
// someone who would then be that browser too (session fixation). The
// browser that bound it gets the same answer again with its key; another
// one answers vault.ErrConnectOpened. See vault.BindOAuthConnect.
func (s *Service) OpenConnect(flowID, k string) (Connected, error) {
	if len(flowID) > 64 {
		return Connected{}, fmt.Errorf("%w: no oauth flow", vault.ErrNotFound)
	}
	if !ValidBrowserKey(k) {
		return Connected{}, fmt.Errorf("%w: browser key: want %d characters of [A-Za-z0-9_-]", ErrInvalid, BrowserKeyLen)
	}
	fresh := NewBrowserKey()
	f, u, bound, err := s.store.BindOAuthConnect(flowID, nonceHash(connectNonce(k)), nonceHash(connectNonce(fresh)))
	if err != nil {
		if f.ID != "" {
			s.log.Warn("oauth connect link refused", "tenant", f.TenantID, "flow", f.ID, "err", err.Error())
		}
		return s.connected(f), err
	}
	if bound {
		k = fresh
		s.log.Info("oauth connect link opened", "tenant", f.TenantID, "flow", f.ID, "provider", f.Provider)
	}
	c := s.connected(f)
	c.Key, c.Nonce, c.ProviderURL = k, connectNonce(k), u
	return c, nil
}

func (s *Service) connected(f vault.OAuthFlow) Connected {
	c := Connected{Flow: f, Secure: strings.HasPrefix(s.cfg.PublicURL, "https://")}
	if f.ID != "" {
		c.MaxAge = max(f.ExpiresAt.Sub(s.cfg.Now()), time.Second)
	}
	return c
}

// PublicURL is the base URL browsers reach egressd's public pages at
// (the connect links and the callback), without a trailing slash; empty
// if none is configured.
func (s *Service) PublicURL() string { return s.cfg.PublicURL }

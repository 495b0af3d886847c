package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/ui"
	"github.com/egressd/egressd/vault"
)

// The end-user Connect page of a flow on egressd's own callback (public,
// found by flow id alone):
//
//   - GET /connect/{id} shows the tenant's brand, what connecting does and
//     a button, and changes nothing (link previews fetch it too). It gives
//     the browser a random key in the connect_token cookie (HttpOnly,
//     SameSite=Lax, on this page's path, for the flow's lifetime); the
//     form carries oauth.FormToken of it, never the key itself (the HTML
//     must not tell whoever sees it the cookie, or the callback's cookie
//     derived from it).
//   - POST /connect/{id} (the button) is refused unless it comes from this
//     page: Sec-Fetch-Site and Origin, when sent, must say this origin, and
//     the form's token must be the cookie's (compared in constant time).
//     It then binds the flow to the browser (oauth.Service.OpenConnect)
//     under a key minted at that moment, which replaces the browser's
//     connect_token (a key planted in the browser beforehand never becomes
//     the binding); the nonce derives from that key, so the same browser
//     may press again, another one gets 409. It sets the nonce cookie on
//     the callback path and answers a page that sends the browser on to
//     the provider.
//
// Lax rather than Strict: the key also tells the page, on a top-level GET
// from another site (the app's link opened again, the back button from
// the provider), that this browser is the one that bound the flow; a
// cross-site POST never carries a Lax cookie.

const (
	connectTokenCookie = "connect_token"
	connectTokenField  = "token"
	// maxConnectForm caps the button's form body.
	maxConnectForm = 4 << 10
)

func (s *Server) connectRoutes() []route {
	return []route{
		{"GET", oauth.ConnectPath + "{id}", publicAccess, nil, s.needOAuthPage(s.connectPage)},
		{"POST", oauth.ConnectPath + "{id}", publicAccess, nil, s.needOAuthPage(s.connectSubmit)},
		{"GET", oauth.ConnectPath + ui.ConnectStylesheet, publicAccess, nil, s.connectStylesheet},
	}
}

// needOAuthPage is needOAuth for the end-user's pages: a connect link on
// a server without OAuth (restarted without it) answers 501 with a page
// that names no product, not the API's JSON.
func (s *Server) needOAuthPage(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if s.oauth != nil {
			return h(w, r, p)
		}
		if rec, ok := w.(*recorder); ok {
			rec.errCode = "not_implemented"
		}
		return ui.ConnectPage{Kind: ui.ConnectRefused, Stylesheet: ui.ConnectStylesheetFrom(""), Title: "This link cannot be used",
			Message: "This connect link cannot be used now. Start the connection again from the app."}.Serve(w, http.StatusNotImplemented)
	}
}

func (s *Server) connectStylesheet(w http.ResponseWriter, r *http.Request, _ *principal) error {
	ui.ServeConnectStylesheet(w, r)
	return nil
}

// connectPage is GET /connect/{id}: the page with the button, or why the
// link cannot be used. It writes nothing to the store.
func (s *Server) connectPage(w http.ResponseWriter, r *http.Request, _ *principal) error {
	id := r.PathValue("id")
	key := browserKey(r)
	c, err := s.oauth.ConnectFlow(id, key)
	brand := s.connectBrand(c.Flow)
	if err != nil {
		return s.connectRefused(w, brand, err, "")
	}
	if key == "" {
		key = oauth.NewBrowserKey()
	}
	s.setConnectCookie(w, c, connectTokenCookie, key, oauth.ConnectPath+c.Flow.ID)
	return ui.ConnectPage{Kind: ui.ConnectForm, Brand: brand, Stylesheet: ui.ConnectStylesheetFrom(""), Token: oauth.FormToken(key)}.Serve(w, http.StatusOK)
}

// connectSubmit is POST /connect/{id}, the page's button: it binds the
// flow to this browser and sends it on to the provider.
func (s *Server) connectSubmit(w http.ResponseWriter, r *http.Request, _ *principal) error {
	id := r.PathValue("id")
	refuse := func(status int, code, title, msg string, retry bool) error {
		c, _ := s.oauth.ConnectFlow(id, "") // read-only, for the brand
		brand := s.connectBrand(c.Flow)
		if rec, ok := w.(*recorder); ok {
			rec.errCode = code
		}
		p := ui.ConnectPage{Kind: ui.ConnectRefused, Brand: brand, Stylesheet: ui.ConnectStylesheetFrom(""),
			Title: title, Message: msg}
		if retry && c.Flow.ID != "" {
			p.Retry = url.PathEscape(c.Flow.ID) // this page's own URL, relative: a GET
		}
		return p.Serve(w, status)
	}
	if !s.sameOriginPost(r) {
		return refuse(http.StatusForbidden, "cross_site", "Request refused",
			"This request did not come from this page, so nothing was connected. Open the connect link you were given and press the button there.", false)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxConnectForm)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return refuse(http.StatusRequestEntityTooLarge, "payload_too_large", "Request refused", "This request was too large. Open the connect page again and press the button.", true)
		}
		return refuse(http.StatusBadRequest, "invalid_request", "Request refused", "This request could not be read. Open the connect page again and press the button.", true)
	}
	key, form := browserKey(r), r.PostForm.Get(connectTokenField)
	if key == "" || subtle.ConstantTimeCompare([]byte(oauth.FormToken(key)), []byte(form)) != 1 {
		return refuse(http.StatusForbidden, "connect_token", "This page has expired",
			"Nothing was connected: this page was not the one this browser last opened (or its cookies are off). Open the connect page again and press the button.", true)
	}
	c, err := s.oauth.OpenConnect(id, key)
	brand := s.connectBrand(c.Flow)
	if err != nil {
		retry := ""
		if errors.Is(err, vault.ErrConnectOpened) {
			// Maybe this browser's own other press (a double click) bound
			// it a moment ago, under the key its answer carried.
			retry = url.PathEscape(c.Flow.ID)
		}
		return s.connectRefused(w, brand, err, retry)
	}
	if c.Key != key { // bound now, to a key minted for it: the browser keeps that one
		s.setConnectCookie(w, c, connectTokenCookie, c.Key, oauth.ConnectPath+c.Flow.ID)
	}
	s.setConnectCookie(w, c, oauth.CookiePrefix+c.Flow.ID, c.Nonce, oauth.CallbackPath)
	return ui.ConnectPage{Kind: ui.ConnectContinue, Brand: brand, Stylesheet: ui.ConnectStylesheetFrom(""),
		ProviderURL: c.ProviderURL}.Serve(w, http.StatusOK)
}

// connectRefused answers a connect link that cannot be used, saying why,
// with the status of err (an expired link is 410), and a link to open the
// page again when retry (its relative URL) is not empty.
func (s *Server) connectRefused(w http.ResponseWriter, brand ui.ConnectBrand, err error, retry string) error {
	status, code := classify(err)
	rec, _ := w.(*recorder)
	if rec != nil {
		rec.errCode = code
	}
	from := appName(brand)
	title, msg := "This link cannot be used", "This connect link is not valid. Start the connection again from "+from+"."
	switch {
	case errors.Is(err, vault.ErrConnectOpened):
		title = "Already opened in another browser"
		msg = "This connect link was already opened in another browser. Finish there, or start the connection again from " + from + "."
	case errors.Is(err, vault.ErrStateExpired):
		status = http.StatusGone
		title, msg = "This link has expired", "This connect link has expired. Start the connection again from "+from+"."
	case errors.Is(err, vault.ErrStateUsed):
		title = "This link was already used"
		msg = "This connect link was already used. If your account is not connected, start the connection again from " + from + "."
	case status >= 500:
		title, msg = "Something went wrong", "Something went wrong, and nothing was connected. Start the connection again from "+from+"."
		if rec != nil {
			rec.cause = err
		}
	}
	return ui.ConnectPage{Kind: ui.ConnectRefused, Brand: brand, Stylesheet: ui.ConnectStylesheetFrom(""),
		Title: title, Message: msg, Retry: retry}.Serve(w, status)
}

// callbackPage is the callback's page: how the flow ended (or why the
// callback was refused), with the flow's brand; status is the answer's.
func (s *Server) callbackPage(w http.ResponseWriter, f vault.OAuthFlow, err error, pe *oauth.ProviderError, status int) error {
	brand := s.connectBrand(f)
	p := ui.ConnectPage{Kind: ui.ConnectResult, Brand: brand, Stylesheet: ui.ConnectStylesheetFrom("../../../../connect/"),
		Status: vault.FlowCompleted, Title: "Connected"}
	provider, from := brand.Provider, appName(brand)
	if provider == "" {
		provider = "the provider"
	}
	if err == nil {
		p.Message = "Your " + provider + " account is connected to " + from + ". You can close this window."
		return p.Serve(w, status)
	}
	again := " Start the connection again from " + from + "."
	p.Status, p.Title = vault.FlowFailed, "Not connected"
	switch {
	case errors.Is(err, vault.ErrWrongBrowser):
		p.Message = "This sign-in did not come back to the browser where the connection was started, so nothing was connected. " +
			"Finish in that browser, or start the connection again from " + from + "."
	case errors.Is(err, vault.ErrStateUsed):
		p.Message = "This sign-in was already used. If your account is not connected, start the connection again from " + from + "."
	case errors.Is(err, vault.ErrStateExpired):
		p.Message = "This sign-in took too long and has expired, so nothing was connected." + again
	case errors.Is(err, oauth.ErrExchange) && pe != nil && pe.Code == "access_denied":
		p.Message = "Access was not granted on " + provider + ", so nothing was connected." + again
	case errors.Is(err, oauth.ErrExchange):
		p.Message = capitalize(provider) + " did not complete the sign-in, so nothing was connected." + again
	case status < 500:
		p.Message = "This sign-in link is not valid, so nothing was connected." + again
	default:
		p.Message = "Something went wrong, and nothing was connected." + again
	}
	return p.Serve(w, status)
}

// connectBrand is the brand a flow's pages show: its tenant's override
// for the flow's provider (display_name, branding) over the tenant's name
// and the provider's defaults. A zero flow (no tenant known) shows none.
func (s *Server) connectBrand(f vault.OAuthFlow) ui.ConnectBrand {
	if f.TenantID == "" {
		return ui.ConnectBrand{}
	}
	b := ui.ConnectBrand{Provider: f.Provider}
	if p, err := s.oauth.Catalogue().Get(f.Provider); err == nil && p.DisplayName != "" {
		b.Provider = p.DisplayName
	}
	if t, err := s.store.Tenant(f.TenantID); err == nil {
		b.Name = t.Name
	}
	if o, err := s.store.OAuthOverride(f.TenantID, f.Provider); err == nil {
		if o.DisplayName != "" {
			b.Name = o.DisplayName
		}
		if l := o.Branding[vault.BrandingButtonLabel]; vault.ValidButtonLabel(l) {
			b.ButtonLabel = l
		}
		if c := o.Branding[vault.BrandingPrimaryColor]; vault.ValidColor(c) {
			b.Color = c
		}
	}
	return b
}

// capitalize is s with its first letter upper case.
func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// appName is how a page names where the end-user started.
func appName(b ui.ConnectBrand) string {
	if b.Name == "" {
		return "the app"
	}
	return b.Name
}

// browserKey is the browser's connect_token cookie if it holds a browser
// key, else "".
func browserKey(r *http.Request) string {
	for _, c := range r.CookiesNamed(connectTokenCookie) {
		if oauth.ValidBrowserKey(c.Value) {
			return c.Value
		}
	}
	return ""
}

// sameOriginPost reports whether a POST may come from this origin's own
// page: Sec-Fetch-Site, when sent, is same-origin (or none: the user's own
// action); Origin, when sent, is the public URL's origin ("null" only
// with Sec-Fetch-Site: same-origin). Browsers without either are left to
// the form's token.
func (s *Server) sameOriginPost(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	switch site {
	case "", "same-origin", "none":
	default:
		return false
	}
	origin := r.Header.Values("Origin")
	switch {
	case len(origin) == 0:
		return true
	case len(origin) > 1:
		return false
	case origin[0] == "null":
		return site == "same-origin"
	}
	return sameOrigin(origin[0], s.oauth.PublicURL())
}

// sameOrigin reports whether two URLs have the same scheme, host and port
// (a default port written or not).
func sameOrigin(a, b string) bool {
	ua, err := url.Parse(a)
	if err != nil {
		return false
	}
	ub, err := url.Parse(b)
	if err != nil || ub.Host == "" {
		return false
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		return map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub) &&
		(ua.Path == "" || ua.Path == "/") && ua.User == nil && ua.RawQuery == ""
}

// publicPath is path p as browsers see it: under the public URL's path,
// if the public URL has one (egressd behind a proxy's path prefix).
func (s *Server) publicPath(p string) string {
	u, err := url.Parse(s.oauth.PublicURL())
	if err != nil {
		return p
	}
	return strings.TrimRight(u.Path, "/") + p
}

// setConnectCookie sets a cookie of c's flow on path p (under the public
// URL's path): HttpOnly, SameSite=Lax, Secure as c says, for the flow's
// remaining lifetime (rounded up to a second).
func (s *Server) setConnectCookie(w http.ResponseWriter, c oauth.Connected, name, value, p string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: s.publicPath(p),
		MaxAge: int((c.MaxAge + time.Second - 1) / time.Second), HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteLaxMode})
}

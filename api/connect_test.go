package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/vault"
)

var eventAttr = regexp.MustCompile(`<[^>]*\son[a-z]+=`)

// checkConnectPage asserts what every Connect page holds: one h1, a
// viewport, a language, no script, no product name, and the headers.
func checkConnectPage(t *testing.T, what string, resp *http.Response, body string) {
	t.Helper()
	if n := strings.Count(body, "<h1"); n != 1 {
		t.Errorf("%s: %d h1", what, n)
	}
	for _, want := range []string{`<html lang="en">`, `<meta name="viewport" content="width=device-width, initial-scale=1">`, `<link rel="icon" href="data:,">`} {
		if !strings.Contains(body, want) {
			t.Errorf("%s: no %s", what, want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, " style=") || eventAttr.MatchString(body) {
		t.Errorf("%s: script or inline style: %s", what, body)
	}
	if strings.Contains(strings.ToLower(body), "egressd") {
		t.Errorf("%s: the page names the product: %s", what, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Frame-Options") != "DENY" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("%s: headers %v", what, resp.Header)
	}
}

// do is one request of a browser, no redirect followed: the response and
// its body.
func (b *webBrowser) do(method, u string, hdr http.Header) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	return b.send(req)
}

// send sends req from the browser, no redirect followed: the response and
// its body.
func (b *webBrowser) send(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	c := *b.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp, string(raw)
}

// formToken is the token of a connect page's form ("" if it has none).
func formToken(page string) string {
	if m := tokenField.FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return ""
}

// token is the browser's connect_token for a connect link.
func (b *webBrowser) token(link string) string {
	u, _ := url.Parse(link)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "connect_token" {
			return c.Value
		}
	}
	return ""
}

// unbound asserts the flow is pending and bound to no browser: a fresh
// browser can still press the button.
func (e *oauthEnv) unbound(t *testing.T, id string) {
	t.Helper()
	if _, err := e.store.OAuthConnectFlow(id, nil); err != nil {
		t.Fatalf("flow %s: %v (want pending, bound to no browser)", id, err)
	}
}

// Regression: GET /connect/{id} changes nothing (link previews fetch it):
// after any number of GETs and HEADs, by any browser, the flow is bound
// to none, and a second browser can still connect.
func TestConnectPageGETHasNoSideEffect(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	preview, user := e.newBrowser(), e.newBrowser()
	for range 3 {
		resp, body := preview.do("GET", conn.AuthorizeURL, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="connect-button"`) {
			t.Fatalf("GET: %d %s", resp.StatusCode, body)
		}
		checkConnectPage(t, "GET", resp, body)
		if got := resp.Header.Get("Content-Security-Policy"); got != pageCSP {
			t.Fatalf("CSP %q", got)
		}
		if resp.Header.Get("Referrer-Policy") != "same-origin" {
			t.Fatalf("Referrer-Policy %q", resp.Header.Get("Referrer-Policy"))
		}
		for _, c := range resp.Cookies() {
			if c.Name != "connect_token" {
				t.Fatalf("GET set %s", c.Name)
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/connect/"+conn.ID || c.Secure || c.MaxAge < 590 || c.MaxAge > 600 {
				t.Fatalf("token cookie %+v", c)
			}
		}
	}
	// The token is the browser's: a second GET keeps it.
	first := preview.token(conn.AuthorizeURL)
	if preview.do("GET", conn.AuthorizeURL, nil); first == "" || preview.token(conn.AuthorizeURL) != first {
		t.Fatal("the token changed between two GETs of one browser")
	}
	if resp, _ := preview.do("HEAD", conn.AuthorizeURL, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	e.unbound(t, conn.ID)
	if f, _ := e.admin.Flow(ctx, conn.ID, 0); f.Status != vault.FlowPending {
		t.Fatalf("flow %s after GETs", f.Status)
	}
	// Another browser connects; the previewer is then the second browser.
	if status, body := user.get(user.providerURL(conn.AuthorizeURL)); status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("user: %d %s", status, body)
	}
	if strings.Contains(e.logs.String(), first) {
		t.Fatal("a connect token was logged")
	}
}

// Regression: a press of the button that does not come from the page
// itself (another site's form, no token, a wrong one) is refused with a
// page saying so and binds nothing: no cookie, the flow open to the right
// browser, which then connects.
func TestConnectPostRefusedBindsNothing(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	victim := e.newBrowser()
	status, page := victim.page(conn.AuthorizeURL)
	tok := formToken(page)
	if status != 200 || tok == "" {
		t.Fatal(status)
	}
	other := strings.Repeat("A", 43)
	cases := []struct {
		name   string
		b      *webBrowser
		token  string
		hdr    map[string]string
		status int
		retry  bool
	}{
		{"cross-site", victim, tok, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://attacker.example"}, 403, false},
		{"same-site", victim, tok, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://sub.attacker.example"}, 403, false},
		{"cross-site, own origin claimed", victim, tok, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, false},
		{"other origin, no fetch metadata", victim, tok, map[string]string{"Sec-Fetch-Site": "", "Origin": "https://attacker.example"}, 403, false},
		{"other port", victim, tok, map[string]string{"Sec-Fetch-Site": "", "Origin": "http://127.0.0.1:1"}, 403, false},
		{"null origin, no fetch metadata", victim, tok, map[string]string{"Sec-Fetch-Site": "", "Origin": "null"}, 403, false},
		{"no token", victim, "", nil, 403, true},
		{"wrong token", victim, other, nil, 403, true},
		{"token without cookie", e.newBrowser(), tok, nil, 403, true},
		{"oversized form", victim, tok + "&pad=" + strings.Repeat("x", 5000), nil, 413, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body, provider := c.b.post(conn.AuthorizeURL, c.token, c.hdr)
			if resp.StatusCode != c.status || provider != "" {
				t.Fatalf("%d %q: want %d, no provider", resp.StatusCode, provider, c.status)
			}
			checkConnectPage(t, c.name, resp, body)
			if len(resp.Cookies()) != 0 {
				t.Fatalf("a refused press set %v", resp.Header["Set-Cookie"])
			}
			if !strings.Contains(body, `id="connect-error"`) || !strings.Contains(body, `id="connect-brand">acme<`) {
				t.Fatalf("refusal page: %s", body)
			}
			if got := strings.Contains(body, `<a id="connect-retry" href="`+conn.ID+`">`); got != c.retry {
				t.Fatalf("retry link %v: %s", got, body)
			}
			e.unbound(t, conn.ID)
		})
	}
	// A browser without fetch metadata nor Origin is left to the token.
	if resp, body, _ := victim.post(conn.AuthorizeURL, other, map[string]string{"Sec-Fetch-Site": "", "Origin": ""}); resp.StatusCode != 403 {
		t.Fatalf("no headers, wrong token: %d %s", resp.StatusCode, body)
	}
	e.unbound(t, conn.ID)
	// Sec-Fetch-Site: same-origin with Origin: null (a no-referrer page's
	// POST) and the right token is the page's own.
	resp, _, provider := victim.post(conn.AuthorizeURL, tok, map[string]string{"Origin": "null"})
	if resp.StatusCode != 200 || provider == "" {
		t.Fatalf("the right press: %d", resp.StatusCode)
	}
	if status, body := victim.get(provider); status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("victim: %d %s", status, body)
	}
}

// The browser that pressed the button is recognised when it comes back
// (back button, a second press): it gets the page and the same provider
// URL again, without binding anew; any other browser gets 409.
func TestConnectSameBrowserAgain(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	a := e.newBrowser()
	resp, _, first := a.press(conn.AuthorizeURL)
	nonce := connectCookie(t, resp, conn.ID).Value
	resp, body, again := a.press(conn.AuthorizeURL)
	if resp.StatusCode != 200 || again != first || connectCookie(t, resp, conn.ID).Value != nonce {
		t.Fatalf("second press: %d %s", resp.StatusCode, body)
	}
	// A double press posts the same token twice.
	_, page := a.page(conn.AuthorizeURL)
	if resp, _, third := a.post(conn.AuthorizeURL, formToken(page), nil); resp.StatusCode != 200 || third != first {
		t.Fatalf("third press: %d", resp.StatusCode)
	}
	b := e.newBrowser()
	if status, body := b.page(conn.AuthorizeURL); status != http.StatusConflict || !strings.Contains(body, "already opened in another browser") {
		t.Fatalf("other browser: %d %s", status, body)
	}
	// Even with a token of its own for this page (a forged cookie), it is refused.
	u, _ := url.Parse(conn.AuthorizeURL)
	forged := strings.Repeat("B", 43)
	b.jar.SetCookies(u, []*http.Cookie{{Name: "connect_token", Value: forged, Path: "/connect/" + conn.ID}})
	if resp, _, _ := b.post(conn.AuthorizeURL, oauth.FormToken(forged), nil); resp.StatusCode != http.StatusConflict || len(resp.Cookies()) != 0 {
		t.Fatalf("other browser's press: %d %v", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	if status, body := a.get(first); status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("a: %d %s", status, body)
	}
}

// The pages carry the tenant's override: its display_name, button_label
// and colour, escaped (markup in them shows as text); the colour reaches
// the page through a <style> allowed by its hash in an exact policy. The
// whole connect → provider → callback flow completes, and no page says
// anything but the tenant's brand.
func TestConnectBrandedFlow(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	if _, err := e.admin.PutOverride(ctx, "fake", client.OverrideInput{ClientID: "tenant-client-id", ClientSecret: "tenant-client-secret-value",
		DisplayName: `<b>Acme & "Co"</b>`, Branding: map[string]string{"button_label": `<script>alert(1)</script> Link <i>it</i>`, "primary_color": "#FFCC00"}}); err != nil {
		t.Fatal(err)
	}
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	b := e.newBrowser()
	resp, body := b.do("GET", conn.AuthorizeURL, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "branded page", resp, body)
	css := ":root{--brand:#FFCC00;--brand-text:#111111}"
	sum := sha256.Sum256([]byte(css))
	want := "default-src 'none'; style-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	if got := resp.Header.Get("Content-Security-Policy"); got != want {
		t.Fatalf("CSP\n got %s\nwant %s", got, want)
	}
	for _, s := range []string{
		`<p class="brand" id="connect-brand">&lt;b&gt;Acme &amp; &#34;Co&#34;&lt;/b&gt;</p>`,
		`<button type="submit" id="connect-button">&lt;script&gt;alert(1)&lt;/script&gt; Link &lt;i&gt;it&lt;/i&gt;</button>`,
		"<style>" + css + "</style>",
		`<form method="post">`,
		`<link rel="stylesheet" href="assets/connect.css?v=`,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %s:\n%s", s, body)
		}
	}
	if strings.Contains(body, "<b>") || strings.Contains(body, "<i>") {
		t.Fatalf("markup of the brand rendered: %s", body)
	}
	resp, body, provider := b.press(conn.AuthorizeURL)
	checkConnectPage(t, "continue page", resp, body)
	if resp.Header.Get("Content-Security-Policy") != want || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("continue page headers %v", resp.Header)
	}
	if !strings.Contains(body, `<meta http-equiv="refresh" content="0; url=`+e.fake.srv.URL+`/authorize?`) || !strings.HasPrefix(provider, e.fake.srv.URL+"/authorize?") {
		t.Fatalf("continue page: %s", body)
	}
	if pu, _ := url.Parse(provider); pu.Query().Get("client_id") != "tenant-client-id" {
		t.Fatalf("provider URL %s", provider)
	}
	// The provider redirects to the callback; the browser asks for HTML.
	resp, _ = b.do("GET", provider, nil)
	callback := resp.Header.Get("Location")
	resp, body = b.do("GET", callback, http.Header{"Accept": {"text/html"}})
	if resp.StatusCode != 200 || !strings.Contains(body, `<div id="connect-result" data-status="completed" role="status">`) ||
		!strings.Contains(body, `id="connect-brand">&lt;b&gt;Acme &amp; &#34;Co&#34;&lt;/b&gt;<`) ||
		!strings.Contains(body, `href="../../../../connect/assets/connect.css?v=`) {
		t.Fatalf("callback page: %d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "callback page", resp, body)
	if resp.Header.Get("Content-Security-Policy") != want {
		t.Fatalf("callback CSP %q", resp.Header.Get("Content-Security-Policy"))
	}
	f, err := e.admin.Flow(ctx, conn.ID, 0)
	if err != nil || f.Status != vault.FlowCompleted {
		t.Fatalf("%+v %v", f, err)
	}
	// The same callback again fails, branded.
	resp, body = b.do("GET", callback, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `data-status="failed"`) || !strings.Contains(body, "Acme") {
		t.Fatalf("used callback: %d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "used callback", resp, body)
	e.noLeak(t)
}

// Without an override the page shows the tenant's name, "Connect
// <provider>" and the default colour (no <style>); refusals and failed
// callbacks say what happened in words, with the status.
func TestConnectDefaultBrandAndRefusals(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	a, b := e.newBrowser(), e.newBrowser()
	resp, body := a.do("GET", conn.AuthorizeURL, nil)
	if !strings.Contains(body, `id="connect-brand">acme<`) || !strings.Contains(body, `id="connect-button">Connect Fake<`) ||
		!strings.Contains(body, "<title>Connect Fake · acme</title>") || strings.Contains(body, "<style") {
		t.Fatalf("default brand: %s", body)
	}
	checkConnectPage(t, "default page", resp, body)

	// A callback from another browser: 403, failed, branded.
	provider := a.providerURL(conn.AuthorizeURL)
	resp, _ = a.do("GET", provider, nil)
	callback := resp.Header.Get("Location")
	resp, body = b.do("GET", callback, nil)
	if resp.StatusCode != 403 || !strings.Contains(body, `data-status="failed"`) || !strings.Contains(body, "did not come back to the browser") ||
		!strings.Contains(body, `id="connect-brand">acme<`) {
		t.Fatalf("other browser's callback: %d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "wrong-browser callback", resp, body)
	// An unknown state: 400, no brand known, none shown.
	resp, body = b.do("GET", e.apiURL+"/api/v1/egress/oauth/callback?code=x&state=not-a-state", nil)
	if resp.StatusCode != 400 || !strings.Contains(body, `data-status="failed"`) || strings.Contains(body, "connect-brand") {
		t.Fatalf("unknown state: %d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "unknown state", resp, body)
	// The provider denied access: 502, failed.
	conn2, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu2"})
	_, state, _ := e.authorizeWithoutCallback(conn2.AuthorizeURL)
	resp, body = e.web().do("GET", e.apiURL+"/api/v1/egress/oauth/callback?error=access_denied&error_description=Call+555&state="+state, nil)
	if resp.StatusCode != 502 || !strings.Contains(body, "Access was not granted on Fake") || strings.Contains(body, "555") {
		t.Fatalf("denied: %d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "denied", resp, body)

	// Unknown link: 404, unbranded; a flow of the tenant's own callback
	// has no connect page either.
	resp, body = b.do("GET", e.apiURL+"/connect/oaf_doesnotexist", nil)
	if resp.StatusCode != 404 || strings.Contains(body, "connect-brand") || !strings.Contains(body, "not valid") {
		t.Fatalf("unknown link: %d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "unknown link", resp, body)
	if resp, _, _ := b.post(e.apiURL+"/connect/oaf_doesnotexist", strings.Repeat("A", 43), nil); resp.StatusCode != 403 {
		t.Fatalf("press on an unknown link without a token: %d", resp.StatusCode)
	}

	// Expired: 410, branded, and nothing to press.
	conn3, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu3"})
	c := e.newBrowser()
	_, page3 := c.page(conn3.AuthorizeURL)
	later := time.Now().Add(11 * time.Minute)
	e.now.Store(&later)
	resp, body = c.do("GET", conn3.AuthorizeURL, nil)
	if resp.StatusCode != http.StatusGone || !strings.Contains(body, "has expired") || !strings.Contains(body, `id="connect-brand">acme<`) ||
		strings.Contains(body, "connect-button") {
		t.Fatalf("expired: %d %s", resp.StatusCode, body)
	}
	checkConnectPage(t, "expired", resp, body)
	if resp, body, _ := c.post(conn3.AuthorizeURL, formToken(page3), nil); resp.StatusCode != http.StatusGone || len(resp.Cookies()) != 0 {
		t.Fatalf("expired press: %d %s", resp.StatusCode, body)
	}
}

// The stylesheet is served from the binary: CSS, nosniff, cached for good
// when asked for by its version, revalidated by ETag otherwise.
func TestConnectStylesheet(t *testing.T) {
	e := newOAuthEnv(t)
	b := e.newBrowser()
	conn, _ := e.admin.Connect(context.Background(), client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	_, page := b.page(conn.AuthorizeURL)
	m := regexp.MustCompile(`href="(assets/connect\.css\?v=[0-9a-f]{16})"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no stylesheet link: %s", page)
	}
	base, _ := url.Parse(conn.AuthorizeURL)
	ref, _ := url.Parse(m[1])
	u := base.ResolveReference(ref).String()
	if u != e.apiURL+"/connect/"+m[1] {
		t.Fatalf("stylesheet URL %s", u)
	}
	resp, css := b.do("GET", u, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/css; charset=utf-8" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
		resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || !strings.Contains(css, "--brand") || !strings.Contains(css, ":focus-visible") {
		t.Fatalf("stylesheet: %d %v", resp.StatusCode, resp.Header)
	}
	if strings.Contains(strings.ToLower(css), "egressd") {
		t.Fatal("the stylesheet names the product")
	}
	etag := resp.Header.Get("ETag")
	if resp, _ := b.do("GET", e.apiURL+"/connect/assets/connect.css", http.Header{"If-None-Match": {etag}}); resp.StatusCode != 304 || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("revalidation: %d %v", resp.StatusCode, resp.Header)
	}
}

// Branding is checked at the store: known keys only, a plain-text label
// of bounded length, a #rrggbb colour; the error names the field, and a
// refused write leaves the override as it was.
func TestOverrideBrandingValidated(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	good := client.OverrideInput{ClientID: "tenant-client-id", ClientSecret: "tenant-client-secret-value", DisplayName: "Acme",
		Branding: map[string]string{"button_label": "Link GitHub", "primary_color": "#0a7cff"}}
	if _, err := e.admin.PutOverride(ctx, "fake", good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		display  string
		branding map[string]string
		field    string
	}{
		{"unknown key", "", map[string]string{"logo_url": "https://x"}, "branding"},
		{"colour name", "", map[string]string{"primary_color": "red"}, "branding.primary_color"},
		{"colour with CSS", "", map[string]string{"primary_color": "#fff;}body{x:y"}, "branding.primary_color"},
		{"short colour", "", map[string]string{"primary_color": "#fff"}, "branding.primary_color"},
		{"blank label", "", map[string]string{"button_label": "   "}, "branding.button_label"},
		{"long label", "", map[string]string{"button_label": strings.Repeat("é", 65)}, "branding.button_label"},
		{"label with a line break", "", map[string]string{"button_label": "a\nb"}, "branding.button_label"},
		{"label with a bidi override", "", map[string]string{"button_label": "Connect \u202egnp.exe"}, "branding.button_label"},
		{"display name with a bidi override", "Acme \u202e", nil, "display_name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := good
			in.Branding, in.DisplayName = c.branding, c.display
			_, err := e.admin.PutOverride(ctx, "fake", in)
			if client.StatusOf(err) != 400 || !strings.HasPrefix(apiErr(err).Message, c.field+":") {
				t.Fatalf("%v (want 400 naming %s)", err, c.field)
			}
			if strings.Contains(err.Error(), "tenant-client-secret-value") {
				t.Fatal("the error shows the client secret")
			}
		})
	}
	o, err := e.admin.GetOverride(ctx, "fake")
	if err != nil || o.DisplayName != "Acme" || o.Branding["button_label"] != "Link GitHub" || o.Branding["primary_color"] != "#0a7cff" {
		t.Fatalf("override after refused writes: %+v %v", o, err)
	}
	if _, err := e.admin.PutOverride(ctx, "fake", client.OverrideInput{ClientID: "tenant-client-id",
		Branding: map[string]string{"button_label": strings.Repeat("é", 64)}}); err != nil {
		t.Fatalf("a 64-character label: %v", err)
	}
}

package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// connectCookie is the connect cookie a connect-link response set.
func connectCookie(t *testing.T, resp *http.Response, flowID string) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == "egressd_oauth_"+flowID {
			return c
		}
	}
	t.Fatalf("no connect cookie in %v", resp.Header["Set-Cookie"])
	return nil
}

// pageCSP is the Content-Security-Policy of a Connect page without a
// brand colour.
const pageCSP = "default-src 'none'; style-src 'self'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func checkPageHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.Header.Get("Content-Security-Policy") != pageCSP || resp.Header.Get("Cache-Control") != "no-store" ||
		resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("page headers %v", resp.Header)
	}
	if rp := resp.Header.Get("Referrer-Policy"); rp != "no-referrer" && rp != "same-origin" {
		t.Errorf("Referrer-Policy %q", rp)
	}
}

// The connect link binds the flow to the first browser that presses its
// button: its cookie is HttpOnly, SameSite=Lax, on the callback path, for
// the flow's lifetime; a second browser opening the same link gets 409;
// the first one finishes.
func TestOAuthConnectLinkOneBrowser(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	a, b := e.newBrowser(), e.newBrowser()
	resp, _, loc := a.press(conn.AuthorizeURL)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(loc, e.fake.srv.URL+"/authorize?") {
		t.Fatalf("connect link: %d %s", resp.StatusCode, loc)
	}
	checkPageHeaders(t, resp)
	c := connectCookie(t, resp, conn.ID)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/api/v1/egress/oauth/callback" || c.Secure ||
		c.MaxAge < 590 || c.MaxAge > 600 || len(c.Value) < 40 {
		t.Fatalf("cookie %+v", c)
	}
	status, _, resp := b.step(conn.AuthorizeURL)
	if status != http.StatusConflict {
		t.Fatalf("second browser: %d", status)
	}
	checkPageHeaders(t, resp)
	if len(resp.Cookies()) != 0 {
		t.Fatal("the second browser got a cookie")
	}
	if _, body := b.get(conn.AuthorizeURL); !strings.Contains(body, "already opened in another browser") {
		t.Fatalf("second browser page: %s", body)
	}
	if status, _, _ := b.step(e.apiURL + "/connect/oaf_doesnotexist"); status != http.StatusNotFound {
		t.Fatalf("unknown flow: %d", status)
	}
	if status, body := a.get(loc); status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("first browser: %d %s", status, body)
	}
	// The cookie is cleared on success, and the link is used up.
	cb, _ := url.Parse(e.apiURL + "/api/v1/egress/oauth/callback")
	if len(a.jar.Cookies(cb)) != 0 {
		t.Fatalf("cookie left after success: %v", a.jar.Cookies(cb))
	}
	if status, _, _ := e.newBrowser().step(conn.AuthorizeURL); status != http.StatusConflict {
		t.Fatalf("used link: %d", status)
	}
	if strings.Contains(e.logs.String(), c.Value) {
		t.Fatal("the connect cookie was logged")
	}
	e.noLeak(t)
}

// A callback without the connect cookie, or with another browser's, is
// refused (403) before the state is claimed: the flow stays pending and
// the browser that opened the link still finishes it.
func TestOAuthCallbackOtherBrowser(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	conn2, _ := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu2"})
	victim, attacker := e.newBrowser(), e.newBrowser()
	resp, _, provider := victim.press(conn.AuthorizeURL)
	nonce := connectCookie(t, resp, conn.ID).Value
	_, callback, _ := victim.step(provider)
	if !strings.HasPrefix(callback, e.apiURL+"/api/v1/egress/oauth/callback?") {
		t.Fatalf("provider redirect %s", callback)
	}
	// The attacker's browser has a connect cookie of its own flow, and
	// forges one for the victim's flow with that nonce.
	resp, _, _ = attacker.press(conn2.AuthorizeURL)
	own := connectCookie(t, resp, conn2.ID).Value
	refused := func(b *webBrowser, what string) {
		t.Helper()
		status, body := b.get(callback)
		if status != http.StatusForbidden || !strings.Contains(body, "did not come from the browser that started the connection") {
			t.Fatalf("%s: %d %s", what, status, body)
		}
		if f, _ := e.admin.Flow(ctx, conn.ID, 0); f.Status != vault.FlowPending {
			t.Fatalf("%s: flow %s", what, f.Status)
		}
	}
	refused(e.newBrowser(), "no cookie")
	refused(attacker, "another flow's cookie")
	cb, _ := url.Parse(callback)
	attacker.jar.SetCookies(cb, []*http.Cookie{{Name: "egressd_oauth_" + conn.ID, Value: own, Path: "/api/v1/egress/oauth/callback"}})
	refused(attacker, "another browser's nonce")
	attacker.jar.SetCookies(cb, []*http.Cookie{{Name: "egressd_oauth_" + conn.ID, Value: "", Path: "/api/v1/egress/oauth/callback"}})
	refused(attacker, "an empty cookie")
	if page, _ := e.admin.ListSecrets(ctx, client.SecretFilter{}); len(page.Secrets) != 0 {
		t.Fatal("a refused callback stored a secret")
	}
	if status, body := victim.get(callback); status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("the right browser: %d %s", status, body)
	}
	f, err := e.admin.Flow(ctx, conn.ID, 0)
	if err != nil || f.Status != vault.FlowCompleted || f.ExternalUserID != "eu1" {
		t.Fatalf("%+v %v", f, err)
	}
	logs := e.logs.String()
	if strings.Contains(logs, nonce) || strings.Contains(logs, own) {
		t.Fatal("a connect cookie was logged")
	}
	e.noLeak(t)
}

// A tenant forwarding code and state from its own callback asserts its
// session's end-user: a wrong or missing one is refused (403) and leaves
// the flow pending. Its flows have no connect link (authorize_url is the
// provider's), and egressd's callback refuses their state.
func TestOAuthCompleteAssertsEndUser(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	if _, err := e.admin.PutOverride(ctx, "fake", client.OverrideInput{ClientID: "tenant-client-id", ClientSecret: "tenant-client-secret-value",
		CallbackURL: "https://app.acme.test/oauth/cb"}); err != nil {
		t.Fatal(err)
	}
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil || !strings.HasPrefix(conn.AuthorizeURL, e.fake.srv.URL+"/authorize?") {
		t.Fatalf("tenant-callback flow: %+v %v", conn, err)
	}
	if status, _, _ := e.newBrowser().step(e.apiURL + "/connect/" + conn.ID); status != http.StatusNotFound {
		t.Fatalf("connect link of a tenant-callback flow: %d", status)
	}
	code, state, _ := e.authorizeWithoutCallback(conn.AuthorizeURL)
	pending := func(what string, err error) {
		t.Helper()
		if client.StatusOf(err) != 403 || apiErr(err).Code != "oauth_wrong_user" {
			t.Fatalf("%s: %v", what, err)
		}
		if f, _ := e.admin.Flow(ctx, conn.ID, 0); f.Status != vault.FlowPending {
			t.Fatalf("%s: flow %s", what, f.Status)
		}
	}
	_, err = e.admin.Complete(ctx, client.EndUser{}, code, state)
	pending("missing external_user_id", err)
	_, err = e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu2"}, code, state)
	pending("wrong external_user_id", err)
	_, err = e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1", OwnerUserID: "someone"}, code, state)
	pending("wrong owner_user_id", err)
	status, body := e.raw("POST", "/api/v1/egress/oauth/complete", strings.NewReader(`{"code":"`+code+`","state":"`+state+`","external_user_id":"eu3"}`))
	if status != 403 {
		t.Fatalf("raw wrong user: %d %s", status, body)
	}
	// egressd's own callback refuses a tenant-callback flow's state.
	if status, _ := e.newBrowser().get(e.apiURL + "/api/v1/egress/oauth/callback?" + url.Values{"code": {code}, "state": {state}}.Encode()); status != 403 {
		t.Fatalf("egressd callback for a tenant-callback flow: %d", status)
	}
	if page, _ := e.admin.ListSecrets(ctx, client.SecretFilter{}); len(page.Secrets) != 0 {
		t.Fatal("a refused completion stored a secret")
	}
	if f, err := e.admin.Complete(ctx, client.EndUser{ExternalUserID: "eu1"}, code, state); err != nil || f.Status != vault.FlowCompleted {
		t.Fatalf("right user: %+v %v", f, err)
	}
	// A user-scoped flow: the tenant asserts owner_user_id.
	if err := e.admin.DeleteOverride(ctx, "fake"); err != nil {
		t.Fatal(err)
	}
	conn2, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", OwnerUserID: "u9"})
	if err != nil {
		t.Fatal(err)
	}
	code2, state2, _ := e.authorizeWithoutCallback(conn2.AuthorizeURL)
	for _, u := range []client.EndUser{{}, {OwnerUserID: "u8"}, {OwnerUserID: "u9", ExternalUserID: "eu1"}} {
		if _, err := e.admin.Complete(ctx, u, code2, state2); client.StatusOf(err) != 403 {
			t.Fatalf("user-scoped flow, %+v: %v", u, err)
		}
	}
	if f, err := e.admin.Complete(ctx, client.EndUser{OwnerUserID: "u9"}, code2, state2); err != nil || f.Status != vault.FlowCompleted {
		t.Fatalf("right owner: %+v %v", f, err)
	}
	e.noLeak(t)
}

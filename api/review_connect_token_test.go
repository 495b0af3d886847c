package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// Review regression: the Connect page's HTML must not carry the browser's credential (the form token was the connect_token cookie itself, and the callback cookie a public hash of it).
func TestReviewConnectPageHTMLHoldsNoCredential(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	victim := e.newBrowser()
	_, page := victim.page(conn.AuthorizeURL)
	m := tokenField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form token: %s", page)
	}
	seen := m[1] // what someone who only sees the page's HTML knows
	resp, _, provider := victim.post(conn.AuthorizeURL, seen, nil)
	if resp.StatusCode != 200 || provider == "" {
		t.Fatalf("victim's press: %d", resp.StatusCode)
	}
	nonce := connectCookie(t, resp, conn.ID).Value
	if _, page := victim.page(conn.AuthorizeURL); strings.Contains(page, victim.token(conn.AuthorizeURL)) {
		t.Fatal("the page shows the browser's connect_token cookie")
	}
	if sum := sha256.Sum256([]byte("egressd/connect-nonce/v1\x00" + seen)); base64.RawURLEncoding.EncodeToString(sum[:]) == nonce || seen == nonce {
		t.Fatal("the callback cookie is derivable from the page")
	}
	// The observer replays what the page showed from its own browser:
	// it must not be taken for the victim's browser.
	observer := e.newBrowser()
	u, _ := url.Parse(conn.AuthorizeURL)
	observer.jar.SetCookies(u, []*http.Cookie{{Name: "connect_token", Value: seen, Path: "/connect/" + conn.ID}})
	if resp, _, got := observer.post(conn.AuthorizeURL, seen, nil); resp.StatusCode == 200 || got != "" || len(resp.Cookies()) != 0 {
		t.Fatalf("the page's token opened the flow in another browser: %d %v", resp.StatusCode, resp.Header["Set-Cookie"])
	}
	if status, body := victim.get(provider); status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("victim: %d %s", status, body)
	}
	if f, _ := e.admin.Flow(ctx, conn.ID, 0); f.Status != vault.FlowCompleted {
		t.Fatalf("flow %s", f.Status)
	}
}

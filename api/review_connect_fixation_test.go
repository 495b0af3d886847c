package api_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// Review regression: a connect_token planted in the victim's browser (cookie tossing, session fixation) must not let its planter press as the browser that bound the flow.
func TestReviewConnectPlantedKeyIsNotTheBinding(t *testing.T) {
	e := newOAuthEnv(t)
	ctx := context.Background()
	conn, err := e.admin.Connect(ctx, client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	attacker, victim := e.newBrowser(), e.newBrowser()
	if status, _ := attacker.page(conn.AuthorizeURL); status != 200 {
		t.Fatal(status)
	}
	planted := attacker.token(conn.AuthorizeURL)
	u, _ := url.Parse(conn.AuthorizeURL)
	victim.jar.SetCookies(u, []*http.Cookie{{Name: "connect_token", Value: planted, Path: "/connect/" + conn.ID}})

	resp, _, provider := victim.press(conn.AuthorizeURL)
	if resp.StatusCode != 200 || provider == "" {
		t.Fatalf("victim's press: %d", resp.StatusCode)
	}
	nonce := connectCookie(t, resp, conn.ID).Value
	if victim.token(conn.AuthorizeURL) == planted {
		t.Fatal("the bound browser keeps the planted key")
	}
	// The planter presses with the key it planted: another browser.
	status, page := attacker.page(conn.AuthorizeURL)
	if status != http.StatusConflict {
		t.Fatalf("planter's page: %d", status)
	}
	for _, tok := range []string{formToken(page), planted} {
		if resp, body, got := attacker.post(conn.AuthorizeURL, tok, nil); resp.StatusCode == 200 || got != "" || len(resp.Cookies()) != 0 {
			t.Fatalf("the planter pressed as the victim: %d %s", resp.StatusCode, body)
		}
	}
	// The victim is still its own browser: the page again, the same way on.
	resp, _, again := victim.press(conn.AuthorizeURL)
	if resp.StatusCode != 200 || again != provider || connectCookie(t, resp, conn.ID).Value != nonce {
		t.Fatalf("victim's second press: %d", resp.StatusCode)
	}
	if status, body := victim.get(provider); status != 200 || !strings.Contains(body, `"completed"`) {
		t.Fatalf("victim: %d %s", status, body)
	}
	if f, _ := e.admin.Flow(ctx, conn.ID, 0); f.Status != vault.FlowCompleted {
		t.Fatalf("flow %s", f.Status)
	}
}

// A double click posts the page's token twice with the key the page was
// opened with: the first press binds the flow under a new key; the second,
// which still carries the old one, is 409 with a link back to the page,
// where the browser (now holding the new key) is the bound one.
func TestReviewConnectDoublePressFindsItsWay(t *testing.T) {
	e := newOAuthEnv(t)
	conn, err := e.admin.Connect(context.Background(), client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	b := e.newBrowser()
	_, page := b.page(conn.AuthorizeURL)
	old, tok := b.token(conn.AuthorizeURL), formToken(page)
	resp, _, provider := b.post(conn.AuthorizeURL, tok, nil)
	if resp.StatusCode != 200 || provider == "" {
		t.Fatalf("first press: %d", resp.StatusCode)
	}
	// The second press left before the first one's answer came back.
	req, _ := http.NewRequest("POST", conn.AuthorizeURL, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.AddCookie(&http.Cookie{Name: "connect_token", Value: old})
	second, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(second.Body)
	second.Body.Close()
	if second.StatusCode != http.StatusConflict || len(second.Cookies()) != 0 || !strings.Contains(string(raw), `<a id="connect-retry" href="`+conn.ID+`">`) {
		t.Fatalf("second press: %d %v %s", second.StatusCode, second.Header["Set-Cookie"], raw)
	}
	resp, body, again := b.press(conn.AuthorizeURL)
	if resp.StatusCode != 200 || again != provider {
		t.Fatalf("the page again: %d %s", resp.StatusCode, body)
	}
}

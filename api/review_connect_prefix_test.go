package api_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// Review check: behind a proxy that serves egressd under a path prefix (the public URL's path), the Connect page, its stylesheet, its cookies, the button and the callback all stay under the prefix.
func TestReviewConnectBehindPathPrefix(t *testing.T) {
	var mu sync.Mutex
	var seen []string // the paths the proxy was asked for
	e := newOAuthEnvUnder(t, "/egress", func(srv http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.URL.Path)
			mu.Unlock()
			if !strings.HasPrefix(r.URL.Path, "/egress/") {
				http.NotFound(w, r)
				return
			}
			http.StripPrefix("/egress", srv).ServeHTTP(w, r)
		})
	})
	public, admin := e.apiURL, e.admin
	conn, err := admin.Connect(context.Background(), client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	if conn.AuthorizeURL != public+"/connect/"+conn.ID {
		t.Fatalf("connect link %s", conn.AuthorizeURL)
	}
	b := e.newBrowser()
	resp, page := b.do("GET", conn.AuthorizeURL, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("page: %d %s", resp.StatusCode, page)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "connect_token" && ck.Path != "/egress/connect/"+conn.ID {
			t.Fatalf("connect_token path %q", ck.Path)
		}
	}
	base, _ := url.Parse(conn.AuthorizeURL)
	m := regexp.MustCompile(`href="(assets/connect\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no stylesheet: %s", page)
	}
	ref, _ := url.Parse(m[1])
	if resp, _ := b.do("GET", base.ResolveReference(ref).String(), nil); resp.StatusCode != 200 {
		t.Fatalf("stylesheet under the prefix: %d", resp.StatusCode)
	}
	resp, body, provider := b.post(conn.AuthorizeURL, formToken(page), nil)
	if resp.StatusCode != 200 || provider == "" {
		t.Fatalf("press: %d %s", resp.StatusCode, body)
	}
	if ck := connectCookie(t, resp, conn.ID); ck.Path != "/egress/api/v1/egress/oauth/callback" {
		t.Fatalf("callback cookie path %q", ck.Path)
	}
	resp, _ = b.do("GET", provider, nil)
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, public+"/api/v1/egress/oauth/callback?") {
		t.Fatalf("callback %s", callback)
	}
	resp, body = b.do("GET", callback, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `data-status="completed"`) {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	cb, _ := url.Parse(callback)
	m = regexp.MustCompile(`href="([^"]*connect\.css[^"]*)"`).FindStringSubmatch(body)
	ref, _ = url.Parse(m[1])
	if u := cb.ResolveReference(ref); !strings.HasPrefix(u.Path, "/egress/connect/assets/") {
		t.Fatalf("callback's stylesheet %s", u)
	}
	if f, _ := admin.Flow(context.Background(), conn.ID, 0); f.Status != vault.FlowCompleted {
		t.Fatalf("flow %s", f.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range seen {
		if !strings.HasPrefix(p, "/egress/") {
			t.Fatalf("a request left the prefix: %s", p)
		}
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// Review check: behind a proxy that serves egressd under a path prefix (the public URL's path), the Connect page, its stylesheet, its cookies, the button and the callback all stay under the prefix.
func TestReviewConnectBehindPathPrefix(t *testing.T) {
	fake := newFakeProvider(t)
	dir := t.TempDir()
	store, err := vault.Open(vault.Config{Path: filepath.Join(dir, "v.db"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	res, err := resolver.New(resolver.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "providers.json")
	raw, _ := json.Marshal(map[string]any{"providers": []map[string]any{{
		"name": "fake", "display_name": "Fake", "auth_url": fake.srv.URL + "/authorize", "token_url": fake.srv.URL + "/token",
		"scopes": []string{"user"}, "allowed_hosts": []string{"example.com"}, "pkce": true,
		"client_id": "operator-client-id", "client_secret": "operator-client-secret-value",
	}}})
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := oauth.NewCatalogue(file)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(nil)
	public := "http://" + front.Listener.Addr().String() + "/egress"
	svc, err := oauth.New(oauth.Config{Store: store, Catalogue: cat, PublicURL: public, HTTPClient: fake.srv.Client(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Store: store, Resolver: res, OAuth: svc})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string // the paths the proxy was asked for
	front.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		if !strings.HasPrefix(r.URL.Path, "/egress/") {
			http.NotFound(w, r)
			return
		}
		http.StripPrefix("/egress", srv).ServeHTTP(w, r)
	})
	front.Start()
	t.Cleanup(front.Close)

	op, err := store.EnsureOperatorKey()
	if err != nil {
		t.Fatal(err)
	}
	oc, _ := client.New(front.URL+"/egress", op)
	tenant, err := oc.CreateTenant(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := client.New(front.URL+"/egress", tenant.APIKey)
	conn, err := admin.Connect(context.Background(), client.ConnectInput{Provider: "fake", ExternalUserID: "eu1"})
	if err != nil {
		t.Fatal(err)
	}
	if conn.AuthorizeURL != public+"/connect/"+conn.ID {
		t.Fatalf("connect link %s", conn.AuthorizeURL)
	}
	jar, _ := cookiejar.New(nil)
	c := *fake.srv.Client()
	c.Jar = jar
	b := &webBrowser{t: t, c: &c, jar: jar}
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

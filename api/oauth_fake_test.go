package api_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// fakeProvider is a local OAuth 2.0 server: /authorize redirects back with
// a code, /token takes authorization_code (checking PKCE) and
// refresh_token grants, /api/user is a protected API that checks the
// bearer token.
type fakeProvider struct {
	srv *httptest.Server

	mu         sync.Mutex
	codes      map[string]codeGrant
	access     map[string]bool // live access tokens
	refreshes  map[string]bool // live refresh tokens
	n          int
	authorize  []url.Values // every authorize request's query
	apiTokens  []string     // bearer tokens the API saw
	failToken  bool         // answer invalid_grant to every code exchange
	refreshCnt atomic.Int32
}

type codeGrant struct{ challenge, clientID, redirect string }

func newFakeProvider(t testing.TB) *fakeProvider {
	f := &fakeProvider{codes: map[string]codeGrant{}, access: map[string]bool{}, refreshes: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		f.authorize = append(f.authorize, q)
		f.n++
		code := fmt.Sprintf("code-%d", f.n)
		f.codes[code] = codeGrant{challenge: q.Get("code_challenge"), clientID: q.Get("client_id"), redirect: q.Get("redirect_uri")}
		f.mu.Unlock()
		u, _ := url.Parse(q.Get("redirect_uri"))
		back := u.Query()
		back.Set("code", code)
		back.Set("state", q.Get("state"))
		u.RawQuery = back.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f.mu.Lock()
		defer f.mu.Unlock()
		fail := func(code string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": code})
		}
		switch r.PostForm.Get("grant_type") {
		case "authorization_code":
			g, ok := f.codes[r.PostForm.Get("code")]
			delete(f.codes, r.PostForm.Get("code"))
			if !ok || f.failToken {
				fail("invalid_grant")
				return
			}
			if g.redirect != r.PostForm.Get("redirect_uri") || g.clientID != r.PostForm.Get("client_id") {
				fail("invalid_client")
				return
			}
			if g.challenge != "" {
				sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
				if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
					fail("invalid_grant") // PKCE verifier does not match
					return
				}
			}
		case "refresh_token":
			if !f.refreshes[r.PostForm.Get("refresh_token")] {
				fail("invalid_grant")
				return
			}
			f.refreshCnt.Add(1)
		default:
			fail("unsupported_grant_type")
			return
		}
		f.n++
		at, rt := fmt.Sprintf("real-access-token-%d-xyz", f.n), fmt.Sprintf("real-refresh-token-%d-xyz", f.n)
		f.access[at], f.refreshes[rt] = true, true
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": at, "refresh_token": rt, "token_type": "Bearer", "expires_in": 3600})
	})
	mux.HandleFunc("GET /api/user", func(w http.ResponseWriter, r *http.Request) {
		tok, _ := cutBearer(r.Header.Get("Authorization"))
		f.mu.Lock()
		f.apiTokens = append(f.apiTokens, tok)
		ok := f.access[tok]
		f.mu.Unlock()
		if !ok {
			w.WriteHeader(401)
			return
		}
		w.Write([]byte(`{"login":"octocat"}`))
	})
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func cutBearer(h string) (string, bool) {
	if len(h) > 7 && h[:7] == "Bearer " {
		return h[7:], true
	}
	return "", false
}

// latest is the newest access token issued.
func (f *fakeProvider) latest() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("real-access-token-%d-xyz", f.n)
}

// oauthEnv is the admin API with an OAuth service whose providers file
// names the fake provider, the real proxy in front of it, over one vault.
type oauthEnv struct {
	t      *testing.T
	fake   *fakeProvider
	store  *vault.Store
	svc    *oauth.Service
	apiURL string
	admin  *client.Client
	logs   *syncBuffer
	now    atomic.Pointer[time.Time]
	proxy  string
	ca     *certs.CA
	key    string
	op     string

	defaultBrowser *webBrowser
}

func newOAuthEnv(t *testing.T) *oauthEnv {
	t.Helper()
	return newOAuthEnvUnder(t, "", nil)
}

// newOAuthEnvUnder is newOAuthEnv with the API behind front (nil: none),
// which gets the API's handler and serves it under the path prefix of the
// public URL (and of apiURL).
func newOAuthEnvUnder(t *testing.T, prefix string, front func(api http.Handler) http.Handler) *oauthEnv {
	t.Helper()
	e := &oauthEnv{t: t, fake: newFakeProvider(t), logs: &syncBuffer{}}
	dir := t.TempDir()
	var err error
	e.store, err = vault.Open(vault.Config{Path: filepath.Join(dir, "v.db"), MasterKey: vault.NewMasterKey(), NoSync: true, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	reg := prometheus.NewRegistry()
	res, err := resolver.New(resolver.Config{Store: e.store, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "providers.json")
	pf := map[string]any{"providers": []map[string]any{{
		"name": "fake", "display_name": "Fake", "auth_url": e.fake.srv.URL + "/authorize", "token_url": e.fake.srv.URL + "/token",
		"scopes": []string{"user"}, "allowed_hosts": []string{"example.com"}, "refresh": true, "pkce": true,
		"client_id": "operator-client-id", "client_secret": "operator-client-secret-value",
	}}}
	raw, _ := json.Marshal(pf)
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := oauth.NewCatalogue(file)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(nil)
	e.apiURL = "http://" + hs.Listener.Addr().String() + prefix
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.svc, err = oauth.New(oauth.Config{Store: e.store, Catalogue: cat, PublicURL: e.apiURL, HTTPClient: e.fake.srv.Client(), Now: e.clock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Store: e.store, Resolver: res, Logger: log, Registerer: reg, ProxyURL: "http://egressd:8080", OAuth: e.svc})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = srv
	if front != nil {
		hs.Config.Handler = front(srv)
	}
	hs.Start()
	t.Cleanup(hs.Close)
	op, err := e.store.EnsureOperatorKey()
	if err != nil {
		t.Fatal(err)
	}
	e.op = op
	oc, _ := client.New(e.apiURL, op)
	out, err := oc.CreateTenant(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	e.key = out.APIKey
	e.admin, _ = client.New(e.apiURL, out.APIKey)

	// The real proxy, trusting the fake provider, refreshing through svc.
	e.ca, _, err = certs.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	leafs, err := certs.NewLeafCache(e.ca, certs.LeafConfig{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.fake.srv.Certificate())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Config{Store: e.store, Resolver: res, Leafs: leafs, Logger: log, UpstreamRoots: roots,
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Lookup: loopback{}, Refresher: e.svc, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Serve(l); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		<-done
	})
	e.proxy = l.Addr().String()
	return e
}

func (e *oauthEnv) clock() time.Time {
	if t := e.now.Load(); t != nil {
		return *t
	}
	return time.Now()
}

// sandboxClient is what a sandbox uses: HTTPS_PROXY with its credentials,
// trusting egressd's CA.
func (e *oauthEnv) sandboxClient(id, token string) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Certificate())
	pu := &url.URL{Scheme: "http", Host: e.proxy, User: url.UserPassword(id, token)}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 64}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// webBrowser is a user's browser: it keeps cookies (a cookiejar) and
// trusts the fake provider.
type webBrowser struct {
	t   *testing.T
	c   *http.Client
	jar *cookiejar.Jar
}

func (e *oauthEnv) newBrowser() *webBrowser {
	jar, _ := cookiejar.New(nil)
	c := *e.fake.srv.Client()
	c.Jar = jar
	return &webBrowser{t: e.t, c: &c, jar: jar}
}

// web is the env's default browser (the one e.browser uses).
func (e *oauthEnv) web() *webBrowser {
	if e.defaultBrowser == nil {
		e.defaultBrowser = e.newBrowser()
	}
	return e.defaultBrowser
}

// get follows u like the browser (redirects too) and answers the last
// response's status and body (JSON asked for).
func (b *webBrowser) get(u string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body)
}

// step is one GET without following a redirect: status, Location and the
// response (body read).
func (b *webBrowser) step(u string) (int, string, *http.Response) {
	b.t.Helper()
	resp, _ := b.do("GET", u, nil)
	return resp.StatusCode, resp.Header.Get("Location"), resp
}

// What press reads from a connect page: the form's token, and the link
// the button's page sends the browser on with.
var (
	tokenField   = regexp.MustCompile(`<input type="hidden" name="token" value="([A-Za-z0-9_-]+)">`)
	continueLink = regexp.MustCompile(`<a id="connect-continue" href="([^"]+)">`)
)

// press opens a connect link like a user: it GETs the page and presses
// its button (POSTs the form's token from the page, with the headers a
// browser sends), and answers the POST's response (body read into body)
// and the provider URL the page then sends the browser to ("" when the
// press was refused).
func (b *webBrowser) press(link string) (resp *http.Response, body, provider string) {
	b.t.Helper()
	status, page := b.page(link)
	m := tokenField.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil {
		b.t.Fatalf("connect page %s: %d %s", link, status, page)
	}
	return b.post(link, m[1], nil)
}

// page GETs a connect page (no redirect followed) and answers its status
// and body.
func (b *webBrowser) page(link string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(link)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body)
}

// post is the button's POST with token, headers like a browser's from the
// page itself unless hdr says otherwise (an empty value drops a header).
func (b *webBrowser) post(link, token string, hdr map[string]string) (*http.Response, string, string) {
	b.t.Helper()
	req, _ := http.NewRequest("POST", link, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	u, _ := url.Parse(link)
	req.Header.Set("Origin", u.Scheme+"://"+u.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, body := b.send(req)
	provider := ""
	if m := continueLink.FindStringSubmatch(body); resp.StatusCode == http.StatusOK && m != nil {
		provider = html.UnescapeString(m[1])
	}
	return resp, body, provider
}

// providerURL opens a connect link in the browser, presses its button and
// answers the provider URL it is sent to (an authorize URL that is not a
// connect link is answered as it is).
func (b *webBrowser) providerURL(authorizeURL string) string {
	b.t.Helper()
	if !strings.Contains(authorizeURL, "/connect/") {
		return authorizeURL
	}
	resp, body, provider := b.press(authorizeURL)
	if provider == "" {
		b.t.Fatalf("connect link %s: %d %s", authorizeURL, resp.StatusCode, body)
	}
	return provider
}

// browser follows an authorize URL like a user's browser: through the
// connect link (its page and button), to the fake provider, and its
// redirect back to the callback, with the default browser's cookies.
func (e *oauthEnv) browser(authorizeURL string) (int, string) {
	e.t.Helper()
	return e.web().get(e.web().providerURL(authorizeURL))
}

// authorizeWithoutCallback opens the authorize URL in the default browser
// (the connect link first, if it is one) and returns the code and state
// of the provider's redirect, without following it.
func (e *oauthEnv) authorizeWithoutCallback(authorizeURL string) (code, state, redirect string) {
	e.t.Helper()
	b := e.web()
	_, loc, _ := b.step(b.providerURL(authorizeURL))
	u, _ := url.Parse(loc)
	q := u.Query()
	u.RawQuery = ""
	return q.Get("code"), q.Get("state"), u.String()
}

type loopback struct{}

func (loopback) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

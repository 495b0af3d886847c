package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// realAPI serves api.New over a vault in t.TempDir() and returns an admin
// client of a fresh tenant.
func realAPI(t *testing.T) (*client.Client, string) {
	t.Helper()
	store, err := vault.Open(vault.Config{Path: filepath.Join(t.TempDir(), "v.db"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	res, err := resolver.New(resolver.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Store: store, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	_, key, err := store.CreateTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(hs.URL+"/", key)
	if err != nil {
		t.Fatal(err)
	}
	return c, hs.URL
}

func TestNewRefusesBadBaseURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:8081", "ftp://x", "http://", "http://u:p@x", "http://x/?q=1", "://x"} {
		if _, err := client.New(u, "t"); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	if _, err := client.New("https://egressd.internal:8081/admin", "t"); err != nil {
		t.Errorf("a base URL with a path: %v", err)
	}
}

func TestAgainstTheRealAPI(t *testing.T) {
	c, _ := realAPI(t)
	ctx := context.Background()
	sbx, err := c.CreateSandbox(ctx, client.SandboxInput{OwnerUserID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if sbx.ProxyToken == "" || sbx.Env["HTTPS_PROXY"] != sbx.ProxyURL || sbx.ProxyURL != "http://"+sbx.ID+":"+sbx.ProxyToken+"@localhost:8080" {
		t.Fatalf("sandbox: %+v", sbx)
	}
	up, err := c.UpsertSecret(ctx, client.SecretInput{Name: "k", Value: "v", Scope: vault.ScopeUser, OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}})
	if err != nil || !up.Created {
		t.Fatalf("upsert: %+v %v", up, err)
	}
	ex, err := c.Explain(ctx, sbx.ID, "k", "")
	if err != nil || ex.Level != resolver.LevelUser || ex.Steps[0].Level != resolver.LevelBinding {
		t.Fatalf("explain decodes levels: %+v %v", ex, err)
	}
	env, err := c.SandboxEnv(ctx, sbx.ID)
	if err != nil || env.Placeholders[0].Level != resolver.LevelUser || env.Env["K"] != env.Placeholders[0].Placeholder {
		t.Fatalf("env: %+v %v", env, err)
	}

	_, err = c.GetSecret(ctx, "sec_missing")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 404 || e.Code != "not_found" || !strings.Contains(e.Message, "sec_missing") {
		t.Fatalf("typed error: %#v", err)
	}
	if client.StatusOf(err) != 404 || client.StatusOf(errors.New("x")) != 0 {
		t.Fatal("StatusOf")
	}
	if !strings.Contains(err.Error(), "404") {
		t.Fatalf("Error(): %q", err.Error())
	}
}

func TestWrongTokenIs401(t *testing.T) {
	_, base := realAPI(t)
	c, _ := client.New(base, "egk_nope")
	_, err := c.ListSecrets(context.Background(), client.SecretFilter{})
	if client.StatusOf(err) != 401 {
		t.Fatalf("%v", err)
	}
}

// recordingServer answers every request with status and body, and keeps
// what it received.
type recordingServer struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *recordingServer) start(t *testing.T, status int, body string) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.mu.Unlock()
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

func (s *recordingServer) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[len(s.reqs)-1]
}

func TestRequestsOnTheWire(t *testing.T) {
	rs := &recordingServer{}
	base := rs.start(t, 200, `{}`)
	c, err := client.New(base+"/prefix/", "tok", client.WithUserAgent("test-agent/1"), client.WithHTTPClient(&http.Client{Timeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.GetSecret(ctx, "a/b?c"); err != nil {
		t.Fatal(err)
	}
	r := rs.last()
	if r.URL.EscapedPath() != "/prefix/api/v1/egress/secrets/a%2Fb%3Fc" || r.URL.RawQuery != "" {
		t.Fatalf("path %q query %q", r.URL.EscapedPath(), r.URL.RawQuery)
	}
	if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("User-Agent") != "test-agent/1" {
		t.Fatalf("headers: %v", r.Header)
	}
	if _, err := c.ListSecrets(ctx, client.SecretFilter{Scope: vault.ScopeTenant, ExternalUserID: "e 1"}); err != nil {
		t.Fatal(err)
	}
	if q := rs.last().URL.Query(); q.Get("scope") != "tenant" || q.Get("external_user_id") != "e 1" || len(q) != 2 {
		t.Fatalf("query: %v", q)
	}
	if _, err := c.Explain(ctx, "sbx_1", "n.a-me", "api.x.com"); err != nil {
		t.Fatal(err)
	}
	if r := rs.last(); r.URL.Path != "/prefix/api/v1/sandboxes/sbx_1/explain/n.a-me" || r.URL.Query().Get("host") != "api.x.com" {
		t.Fatalf("explain: %s", r.URL)
	}
	if _, err := c.CreateBrowserToken(ctx, "eu", 90*time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := rs.last(); r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("browser token request: %s %v", r.Method, r.Header)
	}
}

func TestNonJSONErrorAnswer(t *testing.T) {
	rs := &recordingServer{}
	c, _ := client.New(rs.start(t, 502, "upstream connect error\n"), "tok")
	_, err := c.GetSettings(context.Background())
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 502 || e.Code != "bad_gateway" || e.Message != "upstream connect error" {
		t.Fatalf("%#v", err)
	}
}

func TestContextIsHonoured(t *testing.T) {
	rs := &recordingServer{}
	c, _ := client.New(rs.start(t, 200, `{}`), "tok")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.GetSettings(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
}

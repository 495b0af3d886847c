package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

const testCAPEM = "-----BEGIN CERTIFICATE-----\nMIIBtestCAtestCAtestCA\n-----END CERTIFICATE-----\n"

// syncBuffer is a log sink the server's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a real API over a real vault in t.TempDir(), served by
// httptest, with one tenant and its admin client.
type harness struct {
	t        testing.TB
	path     string
	store    *vault.Store
	resolver *resolver.Resolver
	server   *api.Server
	http     *httptest.Server
	logs     *syncBuffer
	reg      *prometheus.Registry

	operatorKey string
	tenant      vault.Tenant
	adminKey    string
	admin       *client.Client
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessWith(t, nil)
}

// newHarnessWith is newHarness with cfg changed by edit (if not nil)
// before api.New, such as a fixed Now.
func newHarnessWith(t testing.TB, edit func(*api.Config)) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "egressd.db"), logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	var err error
	h.store, err = vault.Open(vault.Config{Path: h.path, MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	h.resolver, err = resolver.New(resolver.Config{Store: h.store, Registerer: h.reg})
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{
		Store:      h.store,
		Resolver:   h.resolver,
		Logger:     slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: h.reg,
		CACertPEM:  []byte(testCAPEM),
		ProxyURL:   "http://egressd:8080",
		// Tests send bursts no client would; TestRateLimits sets limits.
		RateLimits: &api.RateLimits{},
	}
	if edit != nil {
		edit(&cfg)
	}
	h.server, err = api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.http = httptest.NewServer(h.server)
	t.Cleanup(h.http.Close)
	if h.operatorKey, err = h.store.EnsureOperatorKey(); err != nil {
		t.Fatal(err)
	}
	h.tenant, h.adminKey, h.admin = h.newTenant("acme")
	return h
}

// newTenant creates a tenant through the API with the operator key.
func (h *harness) newTenant(name string) (vault.Tenant, string, *client.Client) {
	h.t.Helper()
	out, err := h.client(h.operatorKey).CreateTenant(context.Background(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	return out.Tenant, out.APIKey, h.client(out.APIKey)
}

func (h *harness) client(token string) *client.Client {
	h.t.Helper()
	c, err := client.New(h.http.URL, token)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// do sends a raw request and returns status and body.
func (h *harness) do(method, path, token string, body io.Reader) (int, string) {
	h.t.Helper()
	resp, b := h.send(method, path, token, body)
	return resp.StatusCode, b
}

// get sends a GET with token and returns the response (for its headers)
// and its body.
func (h *harness) get(path, token string) (*http.Response, string) {
	h.t.Helper()
	return h.send("GET", path, token, nil)
}

// send sends a raw request and returns the response with its body read.
func (h *harness) send(method, path, token string, body io.Reader) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, string(b)
}

// metrics is the /metrics page of the harness's registry.
func (h *harness) metrics() string {
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// snapshot is everything of a tenant that a write could change.
type snapshot struct {
	secrets   []vault.Secret
	bindings  []vault.Binding
	sandboxes []vault.Sandbox
	tenant    vault.Tenant
}

func (h *harness) snapshot(tenantID string) snapshot {
	h.t.Helper()
	var s snapshot
	var err error
	if s.secrets, err = h.store.ListSecrets(tenantID, vault.SecretFilter{}); err != nil {
		h.t.Fatal(err)
	}
	if s.bindings, err = h.store.ListBindings(tenantID, vault.BindingFilter{}); err != nil {
		h.t.Fatal(err)
	}
	if s.sandboxes, err = h.store.ListSandboxes(tenantID, vault.SandboxFilter{}); err != nil {
		h.t.Fatal(err)
	}
	if s.tenant, err = h.store.Tenant(tenantID); err != nil {
		h.t.Fatal(err)
	}
	return s
}

func mustStatus(t testing.TB, err error, want int) {
	t.Helper()
	if got := client.StatusOf(err); got != want {
		t.Fatalf("status %d (err %v), want %d", got, err, want)
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func apiErr(err error) *client.Error {
	var e *client.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

func contains(hay, needle string) bool { return needle != "" && strings.Contains(hay, needle) }

// queryRefusal is a query an endpoint must refuse: the status and a part
// of the error's message.
type queryRefusal struct {
	name, query string
	status      int
	msg         string
}

// checkQueryRefusals sends GET path?query with the admin key for each
// case, in its own subtest, and checks the refusal.
func (h *harness) checkQueryRefusals(t *testing.T, path string, cases []queryRefusal) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := h.do("GET", path+"?"+c.query, h.adminKey, nil)
			checkRefusal(t, code, body, c.status, c.msg)
		})
	}
}

// checkRefusal checks a refusal: the status and a JSON error whose message
// says what is wrong.
func checkRefusal(t *testing.T, code int, body string, status int, msg string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("%d, not a JSON error: %.200s", code, body)
	}
	if code != status || !strings.Contains(e.Error.Message, msg) || e.Error.Code == "" {
		t.Errorf("got %d %q (%s), want %d with %q", code, e.Error.Message, e.Error.Code, status, msg)
	}
}

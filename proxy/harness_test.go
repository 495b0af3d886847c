package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/boltstore"
	"github.com/egressd/egressd/vault/storage"
)

// seen is one request as the upstream received it.
type seen struct {
	Method string
	Host   string
	URI    string
	Header http.Header
	Body   []byte
}

// upstream is an HTTPS server for any *.test name, signed by its own CA,
// recording what arrives.
type upstream struct {
	srv   *httptest.Server
	port  string
	roots *x509.CertPool
	mu    sync.Mutex
	got   []seen
	reply func(w http.ResponseWriter, r *http.Request, body []byte)
}

// upstreamCA makes a CA of an upstream's own: its leaf cache, and the
// roots that trust it.
func upstreamCA(t testing.TB) (*certs.LeafCache, *x509.CertPool) {
	t.Helper()
	ca, _, err := certs.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leafs, err := certs.NewLeafCache(ca, certs.LeafConfig{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	return leafs, roots
}

func newUpstream(t testing.TB) *upstream { t.Helper(); return newUpstreamOn(t, nil) }

// newUpstreamOn is newUpstream listening on l (nil: a loopback port).
func newUpstreamOn(t testing.TB, l net.Listener) *upstream {
	t.Helper()
	leafs, roots := upstreamCA(t)
	u := &upstream{roots: roots}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.got = append(u.got, seen{Method: r.Method, Host: r.Host, URI: r.RequestURI, Header: r.Header.Clone(), Body: body})
		reply := u.reply
		u.mu.Unlock()
		if reply != nil {
			reply(w, r, body)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	}))
	if l != nil {
		u.srv.Listener.Close()
		u.srv.Listener = l
	}
	u.srv.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := h.ServerName
		if name == "" {
			name = "127.0.0.1"
		}
		return leafs.Get(name)
	}}
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	_, u.port, _ = net.SplitHostPort(u.srv.Listener.Addr().String())
	return u
}

func (u *upstream) last(t testing.TB) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		t.Fatal("upstream received nothing")
	}
	return u.got[len(u.got)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

// loopbackLookup resolves every name to 127.0.0.1, except names in deny
// which resolve to the given address.
type loopbackLookup map[string]netip.Addr

func (l loopbackLookup) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := l[host]; ok {
		return []netip.Addr{a}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

type env struct {
	t     testing.TB
	store *vault.Store
	// backend is the store's bbolt, for a test that writes what no
	// vault write would (a record from an older version).
	backend  storage.Backend
	res      *resolver.Resolver
	ca       *certs.CA
	proxy    *Proxy
	addr     string
	up       *upstream
	tenant   string
	events   chan *Event
	logs     *bytes.Buffer
	logMu    *sync.Mutex
	registry *prometheus.Registry
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	backend, err := boltstore.Open(filepath.Join(dir, "v.db"), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	store, err := vault.Open(vault.Config{Path: filepath.Join(dir, "v.db"), Backend: backend, MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		backend.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := prometheus.NewRegistry()
	res, err := resolver.New(resolver.Config{Store: store, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := certs.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	leafs, err := certs.NewLeafCache(ca, certs.LeafConfig{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, backend: backend, res: res, ca: ca, up: newUpstream(t), events: make(chan *Event, 1000), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}, registry: reg}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store: store, Resolver: res, Leafs: leafs, Registerer: reg,
		Logger:        slog.New(slog.NewJSONHandler(syncWriter{e.logMu, e.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Sink:          SinkFunc(func(_ context.Context, ev *Event) error { e.events <- ev; return nil }),
		AllowPrivate:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		OwnListeners:  []netip.AddrPort{netip.MustParseAddrPort(l.Addr().String())},
		UpstreamRoots: e.up.roots,
		Redact:        true,
		// Tests send bursts no sandbox would; the rate tests set limits.
		RateLimits: &RateLimits{},
		Lookup:     loopbackLookup{"metadata.test": netip.MustParseAddr("169.254.169.254"), "private.test": netip.MustParseAddr("10.1.2.3")},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = p
	e.addr = l.Addr().String()
	t.Cleanup(func() {
		if t.Failed() {
			e.logMu.Lock()
			t.Log("proxy log:\n" + e.logs.String())
			e.logMu.Unlock()
		}
	})
	done := make(chan struct{})
	go func() { p.Serve(l); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		<-done
	})
	tn, _, err := store.EnsureTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	e.tenant = tn.ID
	// For the tests whose secrets name no hosts: see secret.
	on := true
	if _, err := store.UpdateSettings(tn.ID, vault.SettingsPatch{AllowAnyHostSecrets: &on}); err != nil {
		t.Fatal(err)
	}
	return e
}

// sandbox registers a sandbox and returns it with its token.
func (e *env) sandbox(in vault.SandboxInput) (vault.Sandbox, string) {
	e.t.Helper()
	sbx, token, err := e.store.CreateSandbox(e.tenant, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return sbx, token
}

// secret stores in in the harness's tenant. A test that names no
// allowed_hosts is about something else than hosts and gets ["*"] (the
// tenant allows it), what no hosts meant before hosts were required.
func (e *env) secret(in vault.SecretInput) vault.Secret {
	e.t.Helper()
	if len(in.AllowedHosts) == 0 {
		in.AllowedHosts = []string{vault.AnyHost}
	}
	res, err := e.store.UpsertSecret(e.tenant, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Secret
}

// placeholder issues (or returns) the sandbox's placeholder for name.
func (e *env) placeholder(sbx vault.Sandbox, name string) string {
	e.t.Helper()
	env, err := e.res.Env(context.Background(), e.tenant, sbx.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, v := range env {
		if v.Name == name {
			return v.Placeholder
		}
	}
	e.t.Fatalf("no placeholder for %s in %+v", name, env)
	return ""
}

// client is what a sandbox uses: HTTPS_PROXY with its credentials, trusting
// egressd's CA.
func (e *env) client(id, token string) *http.Client {
	pu := &url.URL{Scheme: "http", Host: e.addr}
	if id != "" {
		pu.User = url.UserPassword(id, token)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Certificate())
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}, DisableCompression: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// url builds an upstream URL on host (a *.test name).
func (e *env) url(scheme, host, pathQuery string) string {
	return scheme + "://" + net.JoinHostPort(host, e.up.port) + pathQuery
}

// event returns the next final event (the records written before a value
// left are skipped; auditRecords tests them).
func (e *env) event(t testing.TB) *Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-e.events:
			if ev.Final {
				return ev
			}
		case <-deadline:
			t.Fatal("no audit event")
			return nil
		}
	}
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func do(t testing.TB, c *http.Client, method, u string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		if e, ok := t.(interface{ Log(...any) }); ok {
			e.Log("request failed")
		}
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Package api is egressd's admin REST API: JSON over HTTP on its own
// listener, authenticated with tenant API keys (Authorization: Bearer),
// read-only browser tokens scoped to one external user, and the operator
// key that creates tenants. It manages secrets, bindings, sandboxes and
// computers, tenant settings and browser tokens on top of the vault,
// explains the resolver's walk, and answers the audit log. Every write is
// made as the calling key (vault.Store.As), so its audit row commits with
// it. No answer, log line or metric ever carries a stored value.
package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/ui"
	"github.com/egressd/egressd/vault"
)

// Defaults of Config.
const (
	DefaultProxyURL     = "http://localhost:8080"
	DefaultCABundlePath = "/etc/egressd/ca.pem"
)

// Config configures New.
type Config struct {
	// Store is the vault. Required.
	Store *vault.Store
	// Resolver answers env and explain. Required; it must be built over
	// Store so that every write invalidates it before the API answers.
	Resolver *resolver.Resolver
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
	// Registerer receives the request metrics; nil registers none.
	Registerer prometheus.Registerer
	// CACertPEM is the CA certificate sandboxes must trust, returned with
	// every sandbox; nil returns an empty ca_cert_pem.
	CACertPEM []byte
	// ProxyURL is the proxy's base URL as sandboxes reach it, such as
	// "http://egressd:8080"; sandbox proxy URLs put their credentials in
	// it. Empty means DefaultProxyURL.
	ProxyURL string
	// CABundlePath is where the platform places the CA bundle inside a
	// sandbox; the CA-trust variables point at it. Empty means
	// DefaultCABundlePath. A tenant's ca_bundle_path setting overrides it.
	CABundlePath string
	// Now is the clock that times requests; nil means time.Now.
	Now func() time.Time
	// OAuth runs the /api/v1/egress/oauth/* endpoints; nil answers them
	// 501 (OAuth not configured on this server).
	OAuth *oauth.Service
	// NoProxy lists extra NO_PROXY entries (hosts, domains, CIDRs) that a
	// sandbox's env sends around the proxy, after localhost, 127.0.0.1
	// and ::1, which are always there. Nil adds none.
	NoProxy []string
	// SystemRootsFile is the PEM file of system roots that GET
	// /api/v1/ca.pem?bundle=system puts before egressd's CA; empty means
	// the first that exists of the files crypto/x509 reads on Linux.
	SystemRootsFile string
	// RateLimits shape the per-key, per-client and failed-authentication
	// buckets; nil means DefaultRateLimits.
	RateLimits *RateLimits
}

// Server is the admin API. It is an http.Handler, safe for concurrent use.
type Server struct {
	store    *vault.Store
	resolver *resolver.Resolver
	log      *slog.Logger
	metrics  *metrics
	caPEM    string
	proxy    *url.URL
	caPath   string
	noProxy  string
	roots    *systemRoots
	limits   *limiters
	now      func() time.Time
	mux      *http.ServeMux
	public   *http.ServeMux
	oauth    *oauth.Service
	ui       http.Handler
}

// handlerFunc is an endpoint: it writes its answer on success, or returns
// the error that writeError turns into one.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *principal) error

// route is one endpoint: method, path pattern, who may call it, and the
// query parameters it accepts.
type route struct {
	method, path string
	access       access
	params       []string
	h            handlerFunc
}

// New checks cfg and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: no store")
	}
	if cfg.Resolver == nil {
		return nil, errors.New("api: no resolver")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ProxyURL == "" {
		cfg.ProxyURL = DefaultProxyURL
	}
	proxy, err := url.Parse(cfg.ProxyURL)
	if err != nil || (proxy.Scheme != "http" && proxy.Scheme != "https") || proxy.Host == "" || proxy.User != nil {
		return nil, fmt.Errorf("api: ProxyURL %q: want http(s)://host:port without credentials", cfg.ProxyURL)
	}
	if cfg.CABundlePath == "" {
		cfg.CABundlePath = DefaultCABundlePath
	}
	if !strings.HasPrefix(cfg.CABundlePath, "/") {
		return nil, fmt.Errorf("api: CABundlePath %q: want an absolute path", cfg.CABundlePath)
	}
	noProxy, err := noProxyList(cfg.NoProxy)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if cfg.RateLimits == nil {
		cfg.RateLimits = &DefaultRateLimits
	}
	lim, err := newLimiters(*cfg.RateLimits, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	dash, err := ui.New(ui.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s := &Server{
		store: cfg.Store, resolver: cfg.Resolver, log: cfg.Logger, metrics: m,
		caPEM: string(cfg.CACertPEM), proxy: proxy, caPath: cfg.CABundlePath, noProxy: noProxy, now: cfg.Now,
		roots: &systemRoots{file: cfg.SystemRootsFile}, limits: lim,
		mux: http.NewServeMux(), public: http.NewServeMux(), oauth: cfg.OAuth, ui: dash,
	}
	s.register(s.routes())
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Public is the end users' part of the server alone, for a listener that
// faces them (--public-listen): the OAuth callback, the Connect page and
// its stylesheet. Everything else, the API and the dashboard included,
// answers 404 there. The same pages stay on ServeHTTP too.
func (s *Server) Public() http.Handler { return s.public }

// endUserPage reports whether a route belongs on the public listener.
func endUserPage(rt route) bool {
	return rt.access == publicAccess && (strings.HasPrefix(rt.path, oauth.ConnectPath) || rt.path == oauth.CallbackPath)
}

// routes is the API's table of endpoints.
func (s *Server) routes() []route {
	secretFilters := append([]string{"resource_id", "resource_type", "scope", "type", "workspace_id", "owner_user_id", "external_user_id", "external_workspace_id", "name"}, listPageParams...)
	bindingFilters := append([]string{"resource_id", "resource_type", "secret_id"}, listPageParams...)
	sandboxFilters := append([]string{"resource_type", "owner_user_id", "workspace_id", "external_user_id", "external_workspace_id", "external_project_id"}, listPageParams...)
	rs := []route{
		{"POST", "/api/v1/egress/secrets", adminAccess, nil, s.upsertSecret},
		{"GET", "/api/v1/egress/secrets", readAccess, secretFilters, s.listSecrets},
		{"GET", "/api/v1/egress/secrets/{id}", readAccess, nil, s.getSecret},
		{"DELETE", "/api/v1/egress/secrets/{id}", adminAccess, nil, s.deleteSecret},
		{"POST", "/api/v1/egress/secrets/{id}/rotate", adminAccess, nil, s.rotateSecret},
		{"POST", "/api/v1/egress/secrets/{id}/disable", adminAccess, nil, s.setDisabled(true)},
		{"POST", "/api/v1/egress/secrets/{id}/enable", adminAccess, nil, s.setDisabled(false)},

		{"POST", "/api/v1/egress/bindings", adminAccess, nil, s.createBinding},
		{"GET", "/api/v1/egress/bindings", readAccess, bindingFilters, s.listBindings},
		{"GET", "/api/v1/egress/bindings/{id}", readAccess, nil, s.getBinding},
		{"DELETE", "/api/v1/egress/bindings/{id}", adminAccess, nil, s.deleteBinding},

		{"POST", "/api/v1/tenants", operatorAccess, nil, s.createTenant},
		{"PUT", "/api/v1/tenants/{id}/source_prefixes", operatorAccess, nil, s.setSourcePrefixes},
		{"GET", "/api/v1/tenant/settings", adminAccess, nil, s.getSettings},
		{"PATCH", "/api/v1/tenant/settings", adminAccess, nil, s.patchSettings},
		{"POST", "/api/v1/browser_tokens", adminAccess, nil, s.createBrowserToken},

		{"GET", "/api/v1/audit", readAccess, auditParams, s.listAudit},
		{"GET", "/api/v1/audit/export", readAccess, auditExportParams, s.exportAudit},
		{"GET", "/api/v1/audit/summary", readAccess, auditSummaryParams, s.summarizeAudit},
		{"GET", "/api/v1/whoami", anyAccess, nil, s.whoami},
		{"GET", "/api/v1/ca.pem", publicAccess, []string{"bundle"}, s.caBundle},
	}
	rs = append(rs, s.oauthRoutes()...)
	// Sandboxes and computers are one model; /computers only ever shows
	// and creates computers.
	for _, kind := range []struct {
		base string
		rt   vault.ResourceType
	}{{"/api/v1/sandboxes", ""}, {"/api/v1/computers", vault.ResourceComputer}} {
		rs = append(rs,
			route{"POST", kind.base, adminAccess, []string{"format"}, s.createSandbox(kind.rt)},
			route{"GET", kind.base, readAccess, sandboxFilters, s.listSandboxes(kind.rt)},
			route{"GET", kind.base + "/{id}", readAccess, nil, s.getSandbox(kind.rt)},
			route{"PATCH", kind.base + "/{id}", adminAccess, nil, s.updateSandbox(kind.rt)},
			route{"DELETE", kind.base + "/{id}", adminAccess, nil, s.deleteSandbox(kind.rt)},
			route{"GET", kind.base + "/{id}/env", readAccess, []string{"format"}, s.sandboxEnv(kind.rt)},
			route{"POST", kind.base + "/{id}/token", adminAccess, []string{"format"}, s.reissueToken(kind.rt)},
			route{"GET", kind.base + "/{id}/explain/{name}", readAccess, []string{"host"}, s.explain(kind.rt)},
		)
	}
	return rs
}

// register puts the routes on the mux, each path with a fallback that
// answers 405 for the other methods, and a JSON 404 for everything else.
func (s *Server) register(rs []route) {
	allow := map[string][]string{}
	var paths []string
	for _, rt := range rs {
		pattern := rt.method + " " + rt.path
		h := s.wrap(pattern, rt.access, rt.params, rt.h)
		s.mux.Handle(pattern, h)
		if endUserPage(rt) {
			s.public.Handle(pattern, h)
		}
		if _, ok := allow[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		allow[rt.path] = append(allow[rt.path], rt.method)
	}
	for _, path := range paths {
		methods := strings.Join(allow[path], ", ")
		if strings.Contains(methods, "GET") {
			methods += ", HEAD"
		}
		s.mux.Handle(path, s.unrouted(path, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", methods)
			return errorf(ErrMethodNotAllowed, "method %s not allowed here; use %s", r.Method, methods)
		}))
	}
	// The dashboard (ui.DashboardPath): its page and assets. It calls
	// this API like any client; /ui redirects to /ui/.
	s.mux.Handle(ui.DashboardPath, s.ui)
	s.mux.Handle("/", s.unrouted("unmatched", func(_ http.ResponseWriter, r *http.Request) error {
		return errorf(ErrNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}))
	s.public.Handle("/", s.unrouted("public_unmatched", func(_ http.ResponseWriter, r *http.Request) error {
		return errorf(ErrNotFound, "not found")
	}))
}

// wrap runs an endpoint: authentication, the key-kind check, the query
// check, then the handler; errors become JSON; every request is logged and
// counted under its route pattern.
func (s *Server) wrap(pattern string, a access, params []string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		rec := &recorder{ResponseWriter: w}
		var p *principal
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				writeError(rec, errorf(ErrInternal, "panic: %v", v))
			}
			s.observe(r, pattern, rec, p, start)
		}()
		err := func() error {
			addr := clientAddr(r)
			if a == publicAccess {
				if ok, retry := s.limits.perClient.Allow(addr); !ok {
					return s.limits.refuse(rec, "per_client", retry)
				}
				return h(rec, r, nil)
			}
			var err error
			if p, err = s.authenticate(r); err != nil {
				// Failures count per address; past its bucket they get 429.
				// A right key always passes: one address (an office's NAT)
				// cannot lock the others behind it out.
				if errors.Is(err, ErrUnauthorized) {
					s.limits.failedAuth.Fail(addr)
					if blocked, retry := s.limits.failedAuth.Blocked(addr); blocked {
						return s.limits.refuse(rec, "failed_auth", retry)
					}
				}
				return err
			}
			if ok, retry := s.limits.perKey.Allow(p.key.ID); !ok {
				return s.limits.refuse(rec, "per_key", retry)
			}
			if err := p.allow(a); err != nil {
				return err
			}
			if err := checkQuery(r, params); err != nil {
				return err
			}
			return h(rec, r, p)
		}()
		if err != nil {
			writeError(rec, err)
		}
	})
}

// unrouted answers a request that matches no endpoint, without looking at
// its credentials.
func (s *Server) unrouted(label string, fail func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		rec := &recorder{ResponseWriter: w}
		writeError(rec, fail(rec, r))
		s.observe(r, label, rec, nil, start)
	})
}

// Package server runs egressd serve: it checks every setting, file and
// listen address before it creates anything, opens the data dir (creating
// it on first run and showing the first keys once), builds the resolver,
// the admin API and the proxy, serves the admin listener (API, /healthz,
// /readyz), the metrics listener and the proxy, and shuts them down cleanly
// before closing the vault.
package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/pgstore"
)

// Deps are the parts the admin API is built from.
type Deps struct {
	Store      *vault.Store
	Resolver   *resolver.Resolver
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	CACertPEM  []byte
	ProxyURL   string
	// CABundlePath is where sandboxes find the CA bundle.
	CABundlePath string
	// OAuth runs the OAuth connect flows; the proxy refreshes tokens
	// through it.
	OAuth *oauth.Service
	// NoProxy are the extra NO_PROXY entries of the sandboxes' env
	// (--sandbox-no-proxy, checked); nil adds none.
	NoProxy []string
}

// Config configures Run.
type Config struct {
	// Serve are the settings; Prepare calls Serve.Check.
	Serve config.Serve
	// KeySource is where the master key comes from. Required.
	KeySource datadir.KeySource
	// AdminAPI builds the handler of the admin API. Required.
	AdminAPI func(Deps) (http.Handler, error)
	// Logger receives the log; nil discards it.
	Logger *slog.Logger
	// Stdout receives, on a first run only, one JSON line with the default
	// tenant's admin key and the operator key; nil discards it.
	Stdout io.Writer
}

// Run is Prepare followed by Server.Run.
func Run(ctx context.Context, cfg Config) error {
	srv, err := Prepare(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// Server is an egressd that passed every check of Prepare: it holds the
// bound listeners and the open data dir, and serves with Run.
type Server struct {
	cfg   Config
	s     config.Serve
	log   *slog.Logger
	out   io.Writer
	dir   datadir.Dir
	socks *sockets
	roots *x509.CertPool
	cat   *oauth.Catalogue
	o     *datadir.Opened
	// shared is the PostgreSQL store of --store (nil on bbolt): its change
	// listener's metrics are served with the others.
	shared *pgstore.Store
	once   sync.Once
}

// Run serves until ctx is done, then shuts down gracefully (bounded by
// Serve.ShutdownTimeout) and closes the vault. On a first run it prints the
// first keys once everything else is built, just before it serves. It
// returns nil after a clean shutdown and the first error otherwise.
func (srv *Server) Run(ctx context.Context) error {
	defer srv.Close()
	s, log, dir, o := srv.s, srv.log, srv.dir, srv.o
	logOpened(log, dir, srv.cfg.KeySource, o)
	o.Store.OnKeyChange(func(id string, held bool) {
		if held {
			log.Info("the vault was rekeyed: new values are sealed with master key "+id, "master_key_id", id)
			return
		}
		log.Error("the vault was rekeyed to a master key this replica does not hold: it refuses writes that seal a value and is not ready; give it the new key and restart it",
			"master_key_id", id, "master_key_ids_held", o.Store.MasterKeyIDs())
	})
	warnHostlessSecrets(log, o.Store)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	if srv.shared != nil {
		reg.MustRegister(srv.shared.Collectors()...)
	}
	reg.MustRegister(auditCollectors(o.Store)...)
	o.Store.SetAuditSpoolMax(s.AuditSpoolMax)
	res, err := resolver.New(resolver.Config{Store: o.Store, Registerer: reg, Fresh: o.Store.ChangesHealthy})
	if err != nil {
		return err
	}
	socks := srv.socks
	if s.ProxyURLDerived {
		_, port, _ := net.SplitHostPort(socks.proxy.Addr().String())
		s.ProxyURL = "http://localhost:" + port
	}
	pages := socks.admin.Addr() // where end users reach the Connect page
	if socks.public != nil {
		pages = socks.public.Addr()
	}
	oa, err := newOAuth(s, srv.cat, o.Store, pages, log)
	if err != nil {
		return err
	}
	api, err := srv.cfg.AdminAPI(Deps{
		Store: o.Store, Resolver: res, Registerer: reg, Logger: log,
		CACertPEM: o.CA.CertPEM(), ProxyURL: s.ProxyURL, CABundlePath: s.CABundlePath, OAuth: oa,
		NoProxy: s.NoProxy,
	})
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}

	h := &health{checks: readyChecks(o.Store)}
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", h.healthz)
	admin.HandleFunc("GET /readyz", h.readyz)
	admin.Handle("/", api)
	metrics := http.NewServeMux()
	metrics.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))

	sink, err := proxy.NewVaultSink(o.Store, proxy.SinkConfig{Async: s.Audit == "async", Journal: s.Audit == "journal", Logger: log.With("component", "audit"), Registerer: reg})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	// Stopped after the servers, before the vault closes (defers run last
	// first): queued rows are written.
	defer sink.Close()
	stopPrune := startRetention(o.Store, s.AuditRetention, log.With("component", "audit"))
	defer stopPrune()
	if srv.shared != nil {
		defer startAnnounce(o.Store, log)()
	}
	own := []net.Addr{socks.admin.Addr(), socks.metrics.Addr(), socks.proxy.Addr()}
	if socks.public != nil {
		own = append(own, socks.public.Addr())
	}
	if socks.transparent != nil {
		own = append(own, socks.transparent.Addr())
	}
	p, err := newProxy(s, o, res, reg, log, sink, oa, srv.roots, newLookup(s.Hosts), own...)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}

	if err := srv.bootstrap(); err != nil {
		return err
	}

	g := newGroup(log, s.ShutdownTimeout)
	defer g.removeAddrFiles()
	type served struct {
		name     string
		ln       net.Listener
		served   net.Listener
		addrFile string
		srv      *http.Server
	}
	listeners := []served{
		{"admin", socks.admin, socks.admin, datadir.AdminAddrFile, httpServer(admin, log.With("listener", "admin"))},
		{"metrics", socks.metrics, socks.metrics, datadir.MetricsAddrFile, httpServer(metrics, log.With("listener", "metrics"))},
		{"proxy", socks.proxy, p.Listener(socks.proxy), datadir.ProxyAddrFile, p.Server()},
	}
	if socks.public != nil {
		pub, ok := api.(interface{ Public() http.Handler })
		if !ok {
			g.closeAll()
			return fmt.Errorf("--public-listen: the admin API has no public pages")
		}
		public := http.NewServeMux()
		public.HandleFunc("GET /healthz", h.healthz)
		public.Handle("/", pub.Public())
		listeners = append(listeners, served{"public", socks.public, socks.public, datadir.PublicAddrFile, httpServer(public, log.With("listener", "public"))})
	}
	for _, l := range listeners {
		if err := g.serve(l.name, l.ln, l.served, dir.Path(l.addrFile), l.srv); err != nil {
			g.closeAll()
			return err
		}
	}
	if socks.transparent != nil {
		if err := g.run("transparent", socks.transparent, dir.Path(datadir.TransparentAddrFile), func() error { return p.ServeTransparent(socks.transparent) }); err != nil {
			g.closeAll()
			return err
		}
	}
	log.Info("proxy serving", "proxy_url", s.ProxyURL, "mitm", s.MITM, "allow_private_destinations", s.AllowPrivateDestinations,
		"static_hosts", len(s.Hosts), "redact_responses", s.RedactResponses, "max_buffered_body", s.MaxBufferedBody)
	h.ready.Store(true)
	log.Info("egressd serving", "data_dir", dir, "master_key_id", o.MasterKeyID)

	err = g.wait(ctx)
	h.ready.Store(false)
	g.shutdown()
	return err
}

// bootstrap creates the default tenant on a vault that has none and prints
// its admin key and the operator key, once, as one JSON line.
func (srv *Server) bootstrap() error {
	creds, first, err := datadir.Bootstrap(srv.o.Store)
	if err != nil {
		return fmt.Errorf("first-run setup: %w", err)
	}
	if !first {
		return nil
	}
	if err := json.NewEncoder(srv.out).Encode(creds); err != nil {
		return fmt.Errorf("print first-run keys: %w (the default tenant exists now: stop egressd and run egressd init --tenant %s for a new admin key)", err, datadir.DefaultTenant)
	}
	srv.log.Warn("first run: created the default tenant and printed its admin key and the operator key to stdout; they are not shown again",
		"tenant", creds)
	return nil
}

// Close releases what Prepare took: the listeners and the vault. Run calls
// it; call it yourself only when Run is not called. Calling it again does
// nothing.
func (srv *Server) Close() {
	srv.once.Do(func() {
		srv.socks.close()
		if err := srv.o.Store.Close(); err != nil {
			srv.log.Error("close vault", "err", err)
			return
		}
		srv.log.Info("vault closed", "store", srv.o.Where)
	})
}

func logOpened(log *slog.Logger, dir datadir.Dir, src datadir.KeySource, o *datadir.Opened) {
	if o.MasterKeyCreated {
		log.Warn("created a new master key; back it up: without it the vault cannot be opened",
			"master_key_file", src.String(), "master_key_id", o.MasterKeyID)
	}
	if o.Shared {
		if o.CACreated {
			log.Info("created the shared CA in the store (sealed by the master key); every replica presents it", "store", o.Where, "ca", o.CA)
		} else {
			log.Info("shared CA loaded from the store", "store", o.Where, "ca", o.CA)
		}
		log.Info("vault open", "store", o.Where, "node_id", o.NodeID, "audit_journal", dir.Path(datadir.AuditJournalFile),
			"master_key_source", src.String(), "master_key_id", o.MasterKeyID, "master_key_ids_held", o.Store.MasterKeyIDs())
		return
	}
	if o.CACreated {
		log.Info("created a new CA", "ca_cert_file", dir.CACert(), "ca", o.CA)
	}
	if o.VaultCreated {
		log.Info("created a new vault", "path", dir.DB())
	}
	log.Info("vault open", "store", "bolt", "path", dir.DB(), "node_id", o.NodeID, "master_key_source", src.String(), "master_key_id", o.MasterKeyID)
}

// httpServer returns a server with timeouts suited to an admin API.
func httpServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Package server runs egressd serve: it opens the data dir (creating it on
// first run and showing the first keys once), builds the resolver and the
// admin API, serves the admin listener (API, /healthz, /readyz) and the
// metrics listener, and shuts both down cleanly before closing the vault.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
}

// Config configures Run.
type Config struct {
	// Serve are the settings; Run calls Serve.Check.
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

// Run serves until ctx is done, then shuts down gracefully (bounded by
// Serve.ShutdownTimeout) and closes the vault. It returns nil after a clean
// shutdown and the first error otherwise.
func Run(ctx context.Context, cfg Config) error {
	if cfg.AdminAPI == nil {
		return errors.New("server: no admin API")
	}
	if err := cfg.Serve.Check(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := cfg.Stdout
	if out == nil {
		out = io.Discard
	}
	s := cfg.Serve
	dir := datadir.Dir(s.DataDir)

	o, err := datadir.Open(dir, cfg.KeySource)
	if err != nil {
		return err
	}
	defer func() {
		if err := o.Store.Close(); err != nil {
			log.Error("close vault", "err", err)
			return
		}
		log.Info("vault closed", "path", dir.DB())
	}()
	logOpened(log, dir, cfg.KeySource, o)

	creds, first, err := datadir.Bootstrap(o.Store)
	if err != nil {
		return fmt.Errorf("first-run setup: %w", err)
	}
	if first {
		if err := json.NewEncoder(out).Encode(creds); err != nil {
			return fmt.Errorf("print first-run keys: %w (the default tenant exists now: stop egressd and run egressd init --tenant %s for a new admin key)", err, datadir.DefaultTenant)
		}
		log.Warn("first run: created the default tenant and printed its admin key and the operator key to stdout; they are not shown again",
			"tenant", creds)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	res, err := resolver.New(resolver.Config{Store: o.Store, Registerer: reg})
	if err != nil {
		return err
	}
	proxyLn, err := bind("proxy", s.ProxyListen, dir.Path(datadir.ProxyAddrFile))
	if err != nil {
		return err
	}
	defer proxyLn.Close()
	if s.ProxyURLDerived {
		_, port, _ := net.SplitHostPort(proxyLn.Addr().String())
		s.ProxyURL = "http://localhost:" + port
	}
	adminLn, err := bind("admin", s.AdminListen, dir.Path(datadir.AdminAddrFile))
	if err != nil {
		return err
	}
	defer adminLn.Close()
	oa, err := newOAuth(s, o.Store, adminLn.Addr(), log)
	if err != nil {
		return err
	}
	api, err := cfg.AdminAPI(Deps{
		Store: o.Store, Resolver: res, Registerer: reg, Logger: log,
		CACertPEM: o.CA.CertPEM(), ProxyURL: s.ProxyURL, CABundlePath: s.CABundlePath, OAuth: oa,
	})
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}

	h := &health{store: o.Store}
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", h.healthz)
	admin.HandleFunc("GET /readyz", h.readyz)
	admin.Handle("/", api)
	metrics := http.NewServeMux()
	metrics.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))

	g := newGroup(log, s.ShutdownTimeout)
	defer g.removeAddrFiles()
	adminAddr := adminLn.Addr()
	if err := g.serve("admin", adminLn, adminLn, dir.Path(datadir.AdminAddrFile), httpServer(admin, log.With("listener", "admin"))); err != nil {
		g.closeAll()
		return err
	}
	metricsAddr, err := g.listen("metrics", s.MetricsListen, dir.Path(datadir.MetricsAddrFile), metrics)
	if err != nil {
		g.closeAll()
		return err
	}
	sink, err := proxy.NewVaultSink(o.Store, proxy.SinkConfig{Async: s.Audit == "async", Journal: s.Audit == "journal", Logger: log.With("component", "audit"), Registerer: reg})
	if err != nil {
		g.closeAll()
		return fmt.Errorf("audit: %w", err)
	}
	// Stopped after the servers, before the vault closes (defers run last
	// first): queued rows are written.
	defer sink.Close()
	stopPrune := startRetention(o.Store, s.AuditRetention, log.With("component", "audit"))
	defer stopPrune()
	p, err := newProxy(s, o, res, reg, log, sink, oa, adminAddr, metricsAddr, proxyLn.Addr())
	if err != nil {
		g.closeAll()
		return fmt.Errorf("proxy: %w", err)
	}
	if err := g.serve("proxy", proxyLn, p.Listener(proxyLn), dir.Path(datadir.ProxyAddrFile), p.Server()); err != nil {
		g.closeAll()
		return err
	}
	log.Info("proxy serving", "proxy_url", s.ProxyURL, "mitm", s.MITM, "allow_private_destinations", s.AllowPrivateDestinations,
		"redact_responses", s.RedactResponses, "max_buffered_body", s.MaxBufferedBody)
	h.ready.Store(true)
	log.Info("egressd serving", "data_dir", dir, "master_key_id", o.MasterKeyID)

	err = g.wait(ctx)
	h.ready.Store(false)
	g.shutdown()
	return err
}

func logOpened(log *slog.Logger, dir datadir.Dir, src datadir.KeySource, o *datadir.Opened) {
	if o.MasterKeyCreated {
		log.Warn("created a new master key; back it up: without it the vault cannot be opened",
			"master_key_file", src.String(), "master_key_id", o.MasterKeyID)
	}
	if o.CACreated {
		log.Info("created a new CA", "ca_cert_file", dir.CACert(), "ca", o.CA)
	}
	if o.VaultCreated {
		log.Info("created a new vault", "path", dir.DB())
	}
	log.Info("vault open", "path", dir.DB(), "master_key_source", src.String(), "master_key_id", o.MasterKeyID)
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

package main

import (
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/internal/server"
)

func runServe(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var s config.Serve
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&s.DataDir, "data-dir", config.DefaultDataDir, "data directory (master key, CA, vault; with a PostgreSQL --store only this node's node id and audit journal)")
	fs.Var(&s.Store, "store", "where the vault lives: bolt (the bbolt file in the data dir) or a PostgreSQL `DSN` that every replica shares (postgres://user@host/db or host=... dbname=...; printed with its password masked); the master key must then exist, the same on every replica (default bolt)")
	fs.StringVar(&s.StoreSchema, "store-schema", config.DefaultStoreSchema, "PostgreSQL schema of a PostgreSQL --store")
	fs.StringVar(&s.AdminListen, "admin-listen", config.DefaultAdminListen, "admin API address; port 0 picks one, written to DATA/admin.addr")
	fs.StringVar(&s.ProxyListen, "proxy-listen", config.DefaultProxyListen, "proxy address (HTTPS_PROXY of the sandboxes); port 0 picks one, written to DATA/proxy.addr")
	fs.StringVar(&s.PublicListen, "public-listen", "", "end users' listener: only the OAuth callback and the Connect page, so the admin listener can stay private; port 0 picks one, written to DATA/public.addr (default: none, the admin listener serves them)")
	fs.StringVar(&s.TransparentListen, "transparent-listen", "", "transparent listener (Linux): takes connections an nftables redirect rule sends it, identifies the sandbox by source address (source_addrs) and the host by TLS SNI; port 0 picks one, written to DATA/transparent.addr (default: none; docs/transparent.md)")
	fs.StringVar(&s.MetricsListen, "metrics-listen", config.DefaultMetricsListen, "Prometheus /metrics address; port 0 picks one, written to DATA/metrics.addr")
	fs.StringVar(&s.MasterKeyFile, "master-key-file", "", "master key file (default DATA/master.key; "+config.MasterKeyEnv+" holds the key itself instead)")
	fs.StringVar(&s.ProxyURL, "proxy-url", "", "URL sandboxes use to reach the proxy (default http://localhost:<proxy port>)")
	fs.StringVar(&s.CABundlePath, "ca-bundle-path", config.DefaultCABundlePath, "path of the CA bundle inside sandboxes")
	fs.StringVar(&s.LogLevel, "log-level", config.DefaultLogLevel, "debug, info, warn or error")
	fs.StringVar(&s.LogFormat, "log-format", config.DefaultLogFormat, "json or text")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", config.DefaultShutdownTimeout, "how long a graceful shutdown may take")
	fs.StringVar(&s.AllowPrivateDestinations, "allow-private-destinations", "", "comma-separated CIDRs the proxy may dial although they are private, loopback or link-local")
	fs.StringVar(&s.MITM, "mitm", "auto", "auto: terminate TLS only for hosts where a secret may be used, tunnel the rest; all: every CONNECT")
	fs.StringVar(&s.UpstreamCA, "upstream-ca", "", "PEM file of extra roots for verifying upstream servers (on top of the system roots)")
	fs.Int64Var(&s.MaxBufferedBody, "max-buffered-body", 1<<20, "largest request body substituted in memory; larger ones stream chunked")
	fs.BoolVar(&s.RedactResponses, "redact-responses", true, "mask real values echoed in text-like responses back to their placeholders")
	fs.IntVar(&s.MaxConnsPerSandbox, "max-conns-per-sandbox", 256, "open proxy connections one sandbox may hold")
	fs.DurationVar(&s.ProxyIdleTimeout, "proxy-idle-timeout", 5*time.Minute, "close a proxy connection (or tunnel) with no traffic for this long")
	fs.DurationVar(&s.ProxyHandshakeTimeout, "proxy-handshake-timeout", 10*time.Second, "how long a tunnel may take to send its TLS ClientHello (or first byte), and a MITM'd TLS handshake to finish")
	fs.IntVar(&s.SandboxRequestRate, "sandbox-request-rate", 1000, "proxy requests a second one sandbox may send (bursts of twice as many; 429 past it); a tenant's sandbox_request_rate overrides it; 0: no limit")
	fs.IntVar(&s.SandboxConnectionRate, "sandbox-connection-rate", 100, "new proxy connections (CONNECTs) a second one sandbox may open (bursts of twice as many); a tenant's sandbox_connection_rate overrides it; 0: no limit")
	fs.StringVar(&s.Audit, "audit", "journal", "journal: a substituted request goes out only after its audit row is written to the audit journal (fail closed; an egressd crash or kill -9 loses none, a power loss the rows of about the last 50 ms); sync: only after its row is on disk (fdatasync: a power loss loses none); async: rows are queued (a crash may lose some)")
	fs.DurationVar(&s.AuditRetention, "audit-retention", 90*24*time.Hour, "how long audit rows are kept; older ones are pruned in the background")
	fs.IntVar(&s.AuditSpoolMax, "audit-spool-max", audit.DefaultSpoolMax, "audit rows this node journals while it cannot ship them to the store (PostgreSQL down); past it requests that need an audit row get 503 audit_unavailable")
	fs.StringVar(&s.OAuthProviders, "oauth-providers", "", "JSON file of OAuth providers: custom ones and the operator's client_id/client_secret per provider")
	fs.StringVar(&s.PublicURL, "public-url", "", "URL browsers reach the admin listener at, for the OAuth callback (default http://<admin listen address>)")
	fs.StringVar(&s.StaticHosts, "static-hosts", "", "NAME=ADDR[,NAME=ADDR...]: names the proxy resolves to fixed IPv4 or IPv6 addresses instead of asking DNS (the deny table still applies)")
	fs.StringVar(&s.SandboxNoProxy, "sandbox-no-proxy", "", "comma-separated extra NO_PROXY entries of the sandboxes' env: host names, .domains, IP addresses or CIDRs")
	if code, done := parseFlags(fs, args, stderr, getenv); done {
		return code
	}
	if err := s.Check(); err != nil {
		return fail(stderr, "serve", err)
	}
	config.TuneGC(getenv)
	log, err := config.NewLogger(stderr, s.LogLevel, s.LogFormat)
	if err != nil {
		return fail(stderr, "serve", err)
	}
	src, err := datadir.NewKeySource(datadir.Dir(s.DataDir), s.MasterKeyFile, config.IsSet(fs, "master-key-file"), getenv(config.MasterKeyEnv))
	if err != nil {
		return fail(stderr, "serve", err)
	}
	// Every flag, file and listen address is checked before anything is
	// created or printed; a refusal is one line on stderr.
	srv, err := server.Prepare(server.Config{
		Serve:     s,
		KeySource: src,
		Logger:    log,
		Stdout:    stdout,
		AdminAPI: func(d server.Deps) (http.Handler, error) {
			return api.New(api.Config{
				Store: d.Store, Resolver: d.Resolver, Logger: d.Logger, Registerer: d.Registerer,
				CACertPEM: d.CACertPEM, ProxyURL: d.ProxyURL, CABundlePath: d.CABundlePath, Now: time.Now,
				OAuth: d.OAuth, NoProxy: d.NoProxy,
			})
		},
	})
	if err != nil {
		return fail(stderr, "serve", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()
	log.Info("egressd starting", "version", versionString())
	err = srv.Run(ctx)
	if err != nil {
		log.Error("egressd stopped with an error", "err", err)
		return 1
	}
	log.Info("egressd stopped")
	return 0
}

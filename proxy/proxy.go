package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// Config configures New.
type Config struct {
	// Store authenticates sandboxes and finds placeholders. Required.
	Store *vault.Store
	// Resolver resolves placeholders to values. Required.
	Resolver *resolver.Resolver
	// Leafs mints the certificates of MITM'd hosts. Required.
	Leafs *certs.LeafCache
	// Logger gets one decision line per request; nil discards.
	Logger *slog.Logger
	// Registerer receives the proxy metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Sink receives one event per request that carried a placeholder or was
	// refused (see Sink for when); nil drops them.
	Sink Sink
	// AuditAsync forwards a substituted request without waiting for its
	// record to be stored first: lower latency, but a crash may lose the
	// records of requests that went out.
	AuditAsync bool
	// AllowPrivate opens destination ranges that the deny table refuses
	// (tests open 127.0.0.0/8). Nil opens none.
	AllowPrivate []netip.Prefix
	// OwnListeners are egressd's own addresses (admin, metrics, proxy); they
	// are never a destination, whatever AllowPrivate says.
	OwnListeners []netip.AddrPort
	// MITMAll terminates TLS on every CONNECT, not only where a secret of the
	// sandbox may be used.
	MITMAll bool
	// UpstreamRoots verifies upstream servers; nil means the system roots.
	UpstreamRoots *x509.CertPool
	// MaxBufferedBody is the largest request body substituted in memory
	// (Content-Length kept exact); larger ones stream chunked. Zero means 1 MiB.
	MaxBufferedBody int64
	// Redact masks real values that an upstream echoes in a text-like
	// response back to their placeholders.
	Redact bool
	// Lookup resolves destination names; nil means net.DefaultResolver.
	Lookup Lookuper
	// DialTimeout bounds an upstream dial; zero means 10s.
	DialTimeout time.Duration
	// IdleTimeout closes a client connection with no traffic for this long,
	// tunnels included; zero means 5 minutes.
	IdleTimeout time.Duration
	// HeaderTimeout bounds reading a request's headers; zero means 10s.
	HeaderTimeout time.Duration
	// HandshakeTimeout bounds the start of a CONNECT tunnel once its 200 is
	// sent: the TLS handshake of a MITM'd tunnel, the ClientHello of a
	// pass-through tunnel under host rules, the first bytes of any other;
	// zero means 10s.
	HandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an upstream's response
	// headers; zero means 2 minutes.
	ResponseHeaderTimeout time.Duration
	// RateLimits shape the per-sandbox and failed-authentication buckets;
	// nil means DefaultRateLimits.
	RateLimits *RateLimits
	// ChallengeWait bounds the wait for the credentialed retry after a 407
	// that asked for proxy credentials; zero means 10s.
	ChallengeWait time.Duration
	// MaxHeaderBytes bounds a request's headers; zero means 64 KiB.
	MaxHeaderBytes int
	// MaxConnsPerSandbox bounds a sandbox's open connections; zero means 256.
	MaxConnsPerSandbox int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Refresher renews an oauth_token secret whose access token expires
	// within RefreshWindow before it is used; nil sends tokens as stored.
	Refresher Refresher
}

// RefreshWindow is how close to its expiry an oauth_token is refreshed
// before it is sent.
const RefreshWindow = 60 * time.Second

// maxResponseHeader bounds an upstream answer's header, in bytes, on both
// upstream paths (the transport's and forward.go's): an upstream that
// sends one without end is cut off (502) at this size.
const maxResponseHeader = 1 << 20

// Refresher renews OAuth access tokens (the oauth package implements it).
// Refresh returns the secret's metadata as stored after the refresh and
// the live token; it runs one refresh per secret at a time.
type Refresher interface {
	Refresh(ctx context.Context, sec vault.Secret) (vault.Secret, vault.Value, error)
}

// Proxy is the forward proxy. It is an http.Handler for the proxy listener.
type Proxy struct {
	cfg       Config
	gp        *goproxy.ProxyHttpServer
	transport *upstreams
	dialer    *dialer
	log       *slog.Logger
	metrics   *metrics
	limits    *limits
	phs       *lru.Cache[string, vault.Placeholder]
	phMiss    *lru.Cache[string, struct{}]
	server    *http.Server
	tunnels   tunnelSet
	rates     *rateLimiter
	// sources finds the sandbox of a transparent connection by its source
	// address, made by the first ServeTransparent.
	sourcesOnce sync.Once
	sources     *vault.SourceIndex
}

// New builds a proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Store == nil || cfg.Resolver == nil || cfg.Leafs == nil {
		return nil, errors.New("proxy: Store, Resolver and Leafs are required")
	}
	if cfg.MaxBufferedBody == 0 {
		cfg.MaxBufferedBody = 1 << 20
	}
	if cfg.Lookup == nil {
		cfg.Lookup = net.DefaultResolver
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = 10 * time.Second
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.ResponseHeaderTimeout == 0 {
		cfg.ResponseHeaderTimeout = 2 * time.Minute
	}
	if cfg.RateLimits == nil {
		cfg.RateLimits = &DefaultRateLimits
	}
	if cfg.ChallengeWait == 0 {
		cfg.ChallengeWait = 10 * time.Second
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	if cfg.MaxConnsPerSandbox == 0 {
		cfg.MaxConnsPerSandbox = 256
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer, func() float64 { return float64(cfg.Leafs.Len()) })
	if err != nil {
		return nil, fmt.Errorf("proxy: metrics: %w", err)
	}
	phs, err := lru.New[string, vault.Placeholder](1 << 16)
	if err != nil {
		return nil, err
	}
	phMiss, err := lru.New[string, struct{}](1 << 14)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg: cfg, log: cfg.Logger, metrics: m, phs: phs, phMiss: phMiss,
		limits: &limits{max: cfg.MaxConnsPerSandbox, n: map[string]int{}},
		rates:  newRateLimiter(*cfg.RateLimits),
		dialer: &dialer{policy: &policy{allow: cfg.AllowPrivate, own: cfg.OwnListeners, local: localAddrs()}, lookup: cfg.Lookup, timeout: cfg.DialTimeout},
	}
	// Our own transport: verification on, our dialer, no proxy from the
	// environment, a bounded answer header, keep-alive on with a generous
	// idle pool.
	base := &http.Transport{
		Proxy:                  nil,
		DialContext:            p.dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: cfg.UpstreamRoots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.DialTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: maxResponseHeader,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
	}
	p.transport = newUpstreams(base, cfg.Store, cfg.Resolver.Settings)
	p.dialer.tenant = p.transport.addrRule
	gp := goproxy.NewProxyHttpServer()
	gp.Verbose = false
	gp.Logger = log.New(io.Discard, "", 0)
	if os.Getenv("EGRESSD_GOPROXY_DEBUG") != "" {
		gp.Verbose, gp.Logger = true, log.New(os.Stderr, "goproxy ", 0)
	}
	gp.Tr = base
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		return p.dialer.DialContext(req.Context(), network, addr)
	}
	gp.AllowHTTP2 = false
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusBadRequest, "not_a_proxy_request", "this is egressd's proxy port: send proxy requests (absolute URL or CONNECT)")
	})
	gp.ConnectionErrHandler = func(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
		status, reason := http.StatusBadGateway, denyReason(err)
		if reason != ReasonNone {
			status = http.StatusForbidden
		}
		resp := errorResponse(ctx.Req, status, reason, "upstream connection failed")
		resp.Write(w)
	}
	gp.OnRequest().HandleConnectFunc(p.onConnect)
	gp.OnRequest().DoFunc(p.onRequest)
	gp.OnResponse().DoFunc(p.onResponse)
	p.gp = gp
	p.server = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ConnContext:       withConn,
	}
	p.server.RegisterOnShutdown(p.transport.CloseIdleConnections)
	p.server.RegisterOnShutdown(p.tunnels.closeAll)
	return p, nil
}

// ServeHTTP makes the proxy an http.Handler. A proxy request without
// credentials is challenged here, where the connection can stay open for
// the retry (goproxy closes a refused CONNECT).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isProxyRequest(r) && r.Header.Get("Proxy-Authorization") == "" {
		p.challenge(w, r)
		return
	}
	p.gp.ServeHTTP(w, r)
}

// Server returns the http.Server for the proxy listener, with the header
// and idle timeouts and the header size limit of the Config. Serve it on
// Listener(l), not on l itself.
func (p *Proxy) Server() *http.Server { return p.server }

// Listener wraps l so that every connection has an idle deadline and counts
// against its sandbox's connection limit.
func (p *Proxy) Listener(l net.Listener) net.Listener { return &listener{Listener: l, p: p} }

// Serve accepts proxy connections on l until Shutdown.
func (p *Proxy) Serve(l net.Listener) error {
	err := p.Server().Serve(p.Listener(l))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, closes the idle upstream pool and
// closes MITM'd tunnels (their requests in flight are cancelled).
// Pass-through tunnels end when their idle timeout passes or their peers
// close.
func (p *Proxy) Shutdown(ctx context.Context) error {
	return p.Server().Shutdown(ctx)
}

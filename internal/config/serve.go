package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Defaults of egressd serve.
const (
	DefaultDataDir         = "./egressd-data"
	DefaultAdminListen     = "127.0.0.1:8081"
	DefaultProxyListen     = ":8080"
	DefaultMetricsListen   = "127.0.0.1:9090"
	DefaultCABundlePath    = "/etc/egressd/ca.pem"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "json"
	DefaultShutdownTimeout = 10 * time.Second
)

// Serve holds the settings of egressd serve. Zero strings are replaced by
// the defaults above (and the derived ones documented per field) in Check.
type Serve struct {
	// DataDir holds the vault, the master key (by default) and the CA.
	// With a PostgreSQL Store it holds only this node's files: its node id,
	// its audit journal, the address files (and the master key by default).
	DataDir string
	// Store is where the vault lives: empty or "bolt" for the bbolt file
	// in DataDir, or a PostgreSQL DSN shared by every replica, which also
	// keeps their one CA (see Store).
	Store Store
	// StoreSchema is the PostgreSQL schema of a PostgreSQL Store; empty
	// means DefaultStoreSchema.
	StoreSchema string
	// AdminListen is the address of the admin API, /healthz and /readyz.
	// Port 0 picks a free port; the bound address is logged and written to
	// DataDir/admin.addr.
	AdminListen string
	// ProxyListen is the address of the proxy, the sandboxes' HTTPS_PROXY.
	// Port 0 picks a free port, written to DataDir/proxy.addr.
	ProxyListen string
	// PublicListen, if set, is the address of the end users' listener: the
	// OAuth callback, the Connect page and its stylesheet, and nothing
	// else, so that the admin listener can stay private. Port 0 picks a
	// free port, written to DataDir/public.addr. Empty: those pages are
	// served by the admin listener only.
	PublicListen string
	// TransparentListen, if set, is the address of the transparent
	// listener: connections the kernel redirected to egressd (nftables
	// redirect), identified by source address and TLS server name
	// (docs/transparent.md). Linux only. Port 0 picks a free port, written
	// to DataDir/transparent.addr. Empty: none.
	TransparentListen string
	// MetricsListen is the address of /metrics. Port 0 picks a free port,
	// written to DataDir/metrics.addr.
	MetricsListen string
	// MasterKeyFile is the master key file; empty means DataDir/master.key.
	MasterKeyFile string
	// ProxyURL is the URL sandboxes use to reach the proxy; empty means
	// http://localhost:<port of ProxyListen> (the bound port when it is 0).
	ProxyURL string
	// ProxyURLDerived is set by Check when ProxyURL was derived from
	// ProxyListen rather than given.
	ProxyURLDerived bool
	// CABundlePath is where platforms place the CA bundle inside a sandbox.
	CABundlePath string
	// LogLevel and LogFormat configure the logger (see NewLogger).
	LogLevel, LogFormat string
	// ShutdownTimeout bounds the graceful shutdown; zero means 10s.
	ShutdownTimeout time.Duration

	// AllowPrivateDestinations is a comma-separated list of CIDRs the proxy
	// may dial although the deny table refuses them; empty opens none.
	AllowPrivateDestinations string
	// AllowPrivate is AllowPrivateDestinations parsed by Check.
	AllowPrivate []netip.Prefix
	// MITM is "auto" (terminate TLS only where a secret of the sandbox may
	// be used; tunnel the rest) or "all"; empty means auto.
	MITM string
	// UpstreamCA is a PEM file of extra roots to verify upstreams with, on
	// top of the system roots; empty adds none.
	UpstreamCA string
	// MaxBufferedBody is the largest request body substituted in memory;
	// zero means 1 MiB.
	MaxBufferedBody int64
	// RedactResponses masks values echoed in text-like responses.
	RedactResponses bool
	// MaxConnsPerSandbox bounds a sandbox's open proxy connections; zero
	// means 256.
	MaxConnsPerSandbox int
	// ProxyIdleTimeout closes a quiet proxy connection (tunnels included);
	// zero means 5 minutes.
	ProxyIdleTimeout time.Duration
	// ProxyHandshakeTimeout bounds a tunnel's TLS ClientHello (or first
	// byte) and a MITM'd TLS handshake; zero means 10s.
	ProxyHandshakeTimeout time.Duration
	// SandboxRequestRate and SandboxConnectionRate bound one sandbox's
	// proxy requests and new connections a second (bursts of twice as
	// many); a tenant's own setting overrides them. Zero: no limit.
	SandboxRequestRate, SandboxConnectionRate int
	// Audit is "journal" (a substituted request is forwarded only after
	// its audit row is written to the audit journal; a failing log refuses
	// it: an egressd crash loses no row, a power loss those the indexer
	// had not committed, about the last 50 ms), "sync" (only after its row
	// is on disk, fdatasync'd: a power loss loses none) or "async" (rows
	// are queued: a crash may lose some); empty means journal.
	Audit string
	// AuditRetention is how long audit rows are kept; zero means 90 days.
	AuditRetention time.Duration
	// AuditSpoolMax is how many request rows the node journals while it
	// cannot ship them to the store, before it refuses new ones (503
	// audit_unavailable); zero means audit.DefaultSpoolMax.
	AuditSpoolMax int
	// OAuthProviders is the OAuth providers file (custom providers and the
	// operator's client id and secret per provider); empty means the
	// built-in providers without configured apps.
	OAuthProviders string
	// PublicURL is the base URL browsers reach the admin listener at, for
	// the OAuth callback; empty means http://<admin listener address>.
	PublicURL string
	// StaticHosts is a comma-separated list of NAME=ADDR entries the proxy
	// resolves to ADDR instead of asking DNS (see ParseStaticHosts); the
	// addresses still pass the deny table. Empty means DNS for every name.
	StaticHosts string
	// Hosts is StaticHosts parsed by Check: lower-case name to address.
	Hosts map[string]netip.Addr
	// SandboxNoProxy is a comma-separated list of extra NO_PROXY entries
	// for the sandboxes' env (see ParseNoProxy); empty adds none.
	SandboxNoProxy string
	// NoProxy is SandboxNoProxy parsed by Check.
	NoProxy []string
}

// Check fills in the defaults and refuses settings that cannot work, with
// a message naming the flag.
func (s *Serve) Check() error {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&s.DataDir, DefaultDataDir)
	def(&s.AdminListen, DefaultAdminListen)
	def(&s.ProxyListen, DefaultProxyListen)
	def(&s.MetricsListen, DefaultMetricsListen)
	def(&s.CABundlePath, DefaultCABundlePath)
	def(&s.LogLevel, DefaultLogLevel)
	def(&s.LogFormat, DefaultLogFormat)
	if s.ShutdownTimeout == 0 {
		s.ShutdownTimeout = DefaultShutdownTimeout
	}
	if s.ShutdownTimeout < 0 {
		return errors.New("--shutdown-timeout must not be negative")
	}
	def(&s.MasterKeyFile, filepath.Join(s.DataDir, "master.key"))
	if err := s.Store.Check(); err != nil {
		return err
	}
	def(&s.StoreSchema, DefaultStoreSchema)
	for _, l := range []struct{ flag, addr string }{
		{"--admin-listen", s.AdminListen},
		{"--proxy-listen", s.ProxyListen},
		{"--metrics-listen", s.MetricsListen},
		{"--public-listen", s.PublicListen},
		{"--transparent-listen", s.TransparentListen},
	} {
		if l.addr == "" && (l.flag == "--public-listen" || l.flag == "--transparent-listen") {
			continue
		}
		if err := checkListen(l.addr); err != nil {
			return fmt.Errorf("%s %q: %w", l.flag, l.addr, err)
		}
	}
	if s.TransparentListen != "" && runtime.GOOS != "linux" {
		return fmt.Errorf("--transparent-listen %q: transparent mode needs Linux (it reads a redirected connection's original destination from conntrack), this is %s", s.TransparentListen, runtime.GOOS)
	}
	if s.ProxyURL == "" || s.ProxyURLDerived {
		_, port, _ := net.SplitHostPort(s.ProxyListen)
		s.ProxyURL, s.ProxyURLDerived = "http://localhost:"+port, true
	}
	if err := checkProxyURL(s.ProxyURL); err != nil {
		return fmt.Errorf("--proxy-url %q: %w", s.ProxyURL, err)
	}
	if !strings.HasPrefix(s.CABundlePath, "/") || strings.ContainsAny(s.CABundlePath, "\x00\n\r") {
		return fmt.Errorf("--ca-bundle-path %q: must be an absolute path", s.CABundlePath)
	}
	if _, err := NewLogger(nil, s.LogLevel, s.LogFormat); err != nil {
		return err
	}
	s.AllowPrivate = nil
	for _, c := range strings.Split(s.AllowPrivateDestinations, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		pre, err := netip.ParsePrefix(c)
		if err != nil {
			if a, aerr := netip.ParseAddr(c); aerr == nil {
				pre, err = netip.PrefixFrom(a, a.BitLen()), nil
			}
		}
		if err != nil {
			return fmt.Errorf("--allow-private-destinations %q: want CIDRs such as 127.0.0.1/32,10.0.0.0/8", c)
		}
		s.AllowPrivate = append(s.AllowPrivate, pre.Masked())
	}
	switch s.Audit {
	case "":
		s.Audit = "journal"
	case "sync", "journal", "async":
	default:
		return fmt.Errorf("--audit %q: want sync, journal or async", s.Audit)
	}
	if s.AuditRetention == 0 {
		s.AuditRetention = 90 * 24 * time.Hour
	}
	if s.AuditRetention < time.Hour {
		return errors.New("--audit-retention must be at least 1h")
	}
	if s.AuditSpoolMax < 0 {
		return errors.New("--audit-spool-max must not be negative")
	}
	switch s.MITM {
	case "":
		s.MITM = "auto"
	case "auto", "all":
	default:
		return fmt.Errorf("--mitm %q: want auto or all", s.MITM)
	}
	if s.PublicURL != "" {
		if err := checkPublicURL(s.PublicURL); err != nil {
			return fmt.Errorf("--public-url %q: %w", s.PublicURL, err)
		}
	}
	var err error
	if s.Hosts, err = ParseStaticHosts(s.StaticHosts); err != nil {
		return err
	}
	if s.NoProxy, err = ParseNoProxy(s.SandboxNoProxy); err != nil {
		return err
	}
	if s.MaxBufferedBody < 0 || s.MaxConnsPerSandbox < 0 || s.ProxyIdleTimeout < 0 || s.ProxyHandshakeTimeout < 0 ||
		s.SandboxRequestRate < 0 || s.SandboxConnectionRate < 0 {
		return errors.New("--max-buffered-body, --max-conns-per-sandbox, --proxy-idle-timeout, --proxy-handshake-timeout, --sandbox-request-rate and --sandbox-connection-rate must not be negative")
	}
	return nil
}

// checkListen accepts host:port with a numeric port (0 to 65535) and an
// empty host, an IP literal or a name.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, for example 127.0.0.1:8081 or :8080")
	}
	if strings.ContainsAny(host, " /") {
		return errors.New("bad host")
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" || strings.Trim(port, "0123456789") != "" {
		return errors.New("want a numeric port from 0 to 65535")
	}
	return nil
}

// checkPublicURL accepts what checkProxyURL does, and also a path prefix
// (egressd behind a proxy that serves it under a path and strips it): plain
// segments of [A-Za-z0-9._~-], no "." or ".." and no %-escapes, so the
// paths the Connect page scopes its cookies to are the ones browsers send.
func checkPublicURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	if prefix == "" {
		return checkProxyURL(raw)
	}
	if u.RawPath != "" || !strings.HasPrefix(prefix, "/") {
		return errors.New("its path must be plain segments of letters, digits and ._~- (no escapes)")
	}
	for _, seg := range strings.Split(prefix[1:], "/") {
		if seg == "" || seg == "." || seg == ".." || strings.Trim(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-") != "" {
			return errors.New("its path must be plain segments of letters, digits and ._~- (no escapes, no . or ..)")
		}
	}
	u.Path, u.RawPath = "", ""
	return checkProxyURL(u.String())
}

// checkProxyURL accepts an absolute http or https URL with a host and no
// path, query or credentials.
func checkProxyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want an http:// or https:// URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("no host")
	}
	if u.User != nil {
		return errors.New("must not carry credentials (each sandbox gets its own)")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must not have a path, query or fragment")
	}
	return nil
}

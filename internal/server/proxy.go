package server

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/internal/ratelimit"
	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
)

// newProxy builds the proxy from the serve settings, with roots (nil: the
// system's) to verify upstreams and lookup (nil: DNS) to resolve their
// names. Every listener of this egressd is passed as a destination the
// proxy must never dial.
func newProxy(s config.Serve, o *datadir.Opened, res *resolver.Resolver, reg prometheus.Registerer, log *slog.Logger, sink proxy.Sink, oa *oauth.Service,
	roots *x509.CertPool, lookup proxy.Lookuper, own ...net.Addr) (*proxy.Proxy, error) {
	leafs, err := certs.NewLeafCache(o.CA, certs.LeafConfig{})
	if err != nil {
		return nil, err
	}
	var owns []netip.AddrPort
	for _, a := range own {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return nil, fmt.Errorf("listener address %s: %w", a, err)
		}
		owns = append(owns, ap)
	}
	return proxy.New(proxy.Config{
		Store: o.Store, Resolver: res, Leafs: leafs,
		Logger: log.With("component", "proxy"), Registerer: reg,
		AllowPrivate: s.AllowPrivate, OwnListeners: owns,
		MITMAll: s.MITM == "all", UpstreamRoots: roots,
		MaxBufferedBody: s.MaxBufferedBody, Redact: s.RedactResponses,
		MaxConnsPerSandbox: s.MaxConnsPerSandbox, IdleTimeout: s.ProxyIdleTimeout,
		Sink: sink, AuditAsync: s.Audit == "async", Refresher: oa, Lookup: lookup,
		HandshakeTimeout: s.ProxyHandshakeTimeout,
		RateLimits: &proxy.RateLimits{
			SandboxRequests:    perSecond(s.SandboxRequestRate),
			SandboxConnections: perSecond(s.SandboxConnectionRate),
			FailedAuth:         proxy.DefaultRateLimits.FailedAuth,
		},
	})
}

// perSecond is a bucket of n a second with bursts of 2n (none for 0).
func perSecond(n int) ratelimit.Limit {
	return ratelimit.Limit{Rate: float64(n), Burst: 2 * n}
}

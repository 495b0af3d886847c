package server

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/datadir"
	"github.com/egressd/egressd/oauth"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
)

// newProxy builds the proxy from the serve settings. Every listener of this
// egressd is passed as a destination the proxy must never dial.
func newProxy(s config.Serve, o *datadir.Opened, res *resolver.Resolver, reg prometheus.Registerer, log *slog.Logger, sink proxy.Sink, oa *oauth.Service, own ...net.Addr) (*proxy.Proxy, error) {
	leafs, err := certs.NewLeafCache(o.CA, certs.LeafConfig{})
	if err != nil {
		return nil, err
	}
	roots, err := upstreamRoots(s.UpstreamCA)
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
		Sink: sink, AuditAsync: s.Audit == "async", Refresher: oa,
	})
}

// upstreamRoots is the system pool plus the PEM certificates in file.
func upstreamRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--upstream-ca: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--upstream-ca %s: no PEM certificate in it", file)
	}
	return pool, nil
}

package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/certs"
	serveconfig "github.com/egressd/egressd/internal/config"
	"github.com/egressd/egressd/internal/ratelimit"
	"github.com/egressd/egressd/proxy"
	"github.com/egressd/egressd/resolver"
)

// serveEgressd runs egressd's proxy on l, wired as `egressd serve` wires it
// (the vault opened as serve opens it, in the bbolt file or in
// PostgreSQL, vault audit sink, metrics registry, redaction on, MITM only
// where a secret may be used), with the benchmark's names resolving to 127.0.0.1
// and 127.0.0.0/8 opened as a destination.
func serveEgressd(spec childSpec, l net.Listener) (served, error) {
	store, err := openVault(spec)
	if err != nil {
		return nil, err
	}
	closeStore := func() { store.Close() }
	reg := prometheus.NewRegistry()
	res, err := resolver.New(resolver.Config{Store: store, Registerer: reg, Fresh: store.ChangesHealthy})
	if err != nil {
		closeStore()
		return nil, err
	}
	ca, _, err := certs.LoadOrCreateCA(filepath.Join(spec.Dir, egressdCADir))
	if err != nil {
		closeStore()
		return nil, err
	}
	leafs, err := certs.NewLeafCache(ca, certs.LeafConfig{})
	if err != nil {
		closeStore()
		return nil, err
	}
	roots, err := loadPool(caPEMPath(spec.Dir, upstreamCADir))
	if err != nil {
		closeStore()
		return nil, err
	}
	logger := slog.New(slog.DiscardHandler)
	if spec.ProxyLog == "json" {
		// Encoded as serve encodes them (serve's logger, with the
		// component each part's logger carries), then dropped: the cost of
		// the decision line without the cost of a terminal.
		if logger, err = serveconfig.NewLogger(io.Discard, "info", "json"); err != nil {
			closeStore()
			return nil, err
		}
	}
	sink, err := proxy.NewVaultSink(store, proxy.SinkConfig{Async: spec.Audit == "async", Journal: spec.Audit == "journal", Logger: logger.With("component", "audit"), Registerer: reg})
	if err != nil {
		closeStore()
		return nil, err
	}
	own, err := netip.ParseAddrPort(l.Addr().String())
	if err != nil {
		closeStore()
		return nil, err
	}
	p, err := proxy.New(proxy.Config{
		Store: store, Resolver: res, Leafs: leafs, Logger: logger.With("component", "proxy"), Registerer: reg,
		Sink: sink, AuditAsync: spec.Audit == "async",
		AllowPrivate:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		OwnListeners:  []netip.AddrPort{own},
		UpstreamRoots: roots,
		Redact:        spec.Redact,
		Lookup:        benchLookup{},
		// The limits' code runs, their buckets never empty: the benchmark
		// puts all its load on one sandbox.
		RateLimits: &proxy.RateLimits{
			SandboxRequests:    ratelimit.Limit{Rate: 1e9, Burst: 1e9},
			SandboxConnections: ratelimit.Limit{Rate: 1e9, Burst: 1e9},
			FailedAuth:         ratelimit.Limit{Rate: 1e9, Burst: 1e9},
		},
	})
	if err != nil {
		sink.Close()
		closeStore()
		return nil, err
	}
	h := &httpServed{srv: p.Server(), done: make(chan struct{}), also: []func(){sink.Close, closeStore}}
	go func() {
		defer close(h.done)
		if err := p.Serve(l); err != nil {
			fmt.Fprintln(os.Stderr, "egress-bench child: serve:", err)
		}
	}()
	return h, nil
}

func loadPool(pemFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(pemFile)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", pemFile)
	}
	return p, nil
}

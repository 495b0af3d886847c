package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/egressd/egressd/vault"
)

// A tenant's address rules (the CIDRs and IP addresses of its
// egress_allow_hosts and egress_deny_hosts; vault/hostrules.go says what
// they stop that name rules cannot) are applied by the dialer to the
// address it is about to connect to, after DNS, beside the deny table.
// The dialer learns the tenant from the context of the dial: withTenant
// marks the CONNECT's checks, its pass-through tunnel and every request
// of a MITM'd tunnel; a plain proxy request's context holds the client
// connection, which the request's sandbox has claimed.
//
// Connections are pooled by host and port, not by tenant: a connection
// dialed for one tenant would serve another's request without a new dial
// and so without that tenant's check. A tenant with address rules
// therefore gets upstream connections of its own (upstreams), made anew
// when its rules change; tenants without share one pool.

type tenantKey struct{}

// dialFor is whom the dials under a context are for.
type dialFor struct {
	tenant string
	// host, if set, is the name the sandbox asked for, where the dial is
	// to an address already resolved from it (a pass-through tunnel).
	host string
}

// withTenant marks ctx as work for tenantID: the dials under it apply the
// tenant's address rules.
func withTenant(ctx context.Context, tenantID string) context.Context {
	return context.WithValue(ctx, tenantKey{}, dialFor{tenant: tenantID})
}

// withTunnelHost marks ctx as the dial of a tunnel of tenantID to an
// address resolved from host.
func withTunnelHost(ctx context.Context, tenantID, host string) context.Context {
	return context.WithValue(ctx, tenantKey{}, dialFor{tenant: tenantID, host: host})
}

// upstreams is the proxy's http.RoundTripper to upstream servers: one
// shared pool, and one of its own for each tenant with address rules.
type upstreams struct {
	base     *upstreamPool
	settings func(ctx context.Context, tenantID string) (vault.Settings, error)
	store    *vault.Store
	// sbxTenant maps sandbox ids to their tenants (it never changes), for
	// plain proxy requests, whose context names only the sandbox.
	sbxTenant *lru.Cache[string, string]

	mu       sync.RWMutex
	byTenant map[string]*tenantTransport
}

// tenantTransport is a tenant's pool, for one set of its address rules.
type tenantTransport struct {
	key string
	*upstreamPool
}

// upstreamPool is one pool of upstream connections: net/http's
// transport's, and beside it the direct path's (forward.go).
type upstreamPool struct {
	tr     *http.Transport
	direct *directPool
}

func newUpstreamPool(tr *http.Transport) *upstreamPool {
	return &upstreamPool{tr: tr, direct: newDirectPool(tr)}
}

// closeIdle closes the pool's idle connections; with stop, the direct
// path keeps none from now on.
func (p *upstreamPool) closeIdle(stop bool) {
	p.tr.CloseIdleConnections()
	p.direct.closeIdle(stop)
}

func newUpstreams(base *http.Transport, store *vault.Store, settings func(context.Context, string) (vault.Settings, error)) *upstreams {
	c, _ := lru.New[string, string](1 << 16)
	return &upstreams{base: newUpstreamPool(base), store: store, settings: settings, sbxTenant: c, byTenant: map[string]*tenantTransport{}}
}

// noteSandbox remembers a sandbox's tenant.
func (u *upstreams) noteSandbox(sbx *vault.Sandbox) {
	if sbx.ID != "" && sbx.TenantID != "" {
		u.sbxTenant.Add(sbx.ID, sbx.TenantID)
	}
}

// tenantOf is the tenant the work in ctx is for; "" when nothing says.
func (u *upstreams) tenantOf(ctx context.Context) (string, error) {
	if f, ok := ctx.Value(tenantKey{}).(dialFor); ok && f.tenant != "" {
		return f.tenant, nil
	}
	c := connFrom(ctx)
	if c == nil {
		return "", nil
	}
	c.mu.Lock()
	sbx := c.sandbox
	c.mu.Unlock()
	if sbx == "" {
		return "", nil
	}
	if t, ok := u.sbxTenant.Get(sbx); ok {
		return t, nil
	}
	var t string
	err := u.store.Read(func(rd *vault.Reader) error {
		var err error
		t, err = rd.SandboxTenant(sbx)
		return err
	})
	if err != nil {
		return "", err
	}
	u.sbxTenant.Add(sbx, t)
	return t, nil
}

// addrRule applies the address rules of the tenant in ctx to a dial for
// host (as the sandbox named it) to addr.
func (u *upstreams) addrRule(ctx context.Context, host string, addr netip.Addr) Reason {
	tenant, err := u.tenantOf(ctx)
	if err != nil {
		return ReasonResolveError
	}
	if tenant == "" {
		return ReasonNone
	}
	st, err := u.settings(ctx, tenant)
	if err != nil {
		return ReasonResolveError
	}
	if f, ok := ctx.Value(tenantKey{}).(dialFor); ok && f.host != "" {
		host = f.host
	}
	if !st.EgressAddrAllowed(host, addr) {
		return ReasonHostDenied
	}
	return ReasonNone
}

// RoundTrip sends req through the pool of its tenant.
func (u *upstreams) RoundTrip(req *http.Request) (*http.Response, error) {
	pool, err := u.transport(req.Context())
	if err != nil {
		return nil, err
	}
	return pool.tr.RoundTrip(req)
}

// forward sends a request of a MITM'd tunnel through the pool of its
// tenant: directly when it has no body and may be sent again
// (forward.go; the tunnel's slot ends it early), through the transport
// otherwise.
func (u *upstreams) forward(req *http.Request, slot *upstreamSlot) (*http.Response, error) {
	pool, err := u.transport(req.Context())
	if err != nil {
		return nil, err
	}
	if directPath && directEligible(req) {
		return pool.direct.roundTrip(req, slot)
	}
	return pool.tr.RoundTrip(req)
}

// transport picks the pool for the work in ctx.
func (u *upstreams) transport(ctx context.Context) (*upstreamPool, error) {
	tenant, err := u.tenantOf(ctx)
	if err != nil || tenant == "" {
		return u.base, nil // the dial, if any, refuses what it must
	}
	st, err := u.settings(ctx, tenant)
	if err != nil {
		return nil, &DenyError{Reason: ReasonResolveError, Addr: tenant}
	}
	key := st.AddressRulesKey()
	u.mu.RLock()
	tt := u.byTenant[tenant]
	u.mu.RUnlock()
	if tt != nil && tt.key == key {
		return tt.upstreamPool, nil
	}
	if tt == nil && key == "" {
		return u.base, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	tt = u.byTenant[tenant]
	if tt != nil && tt.key == key {
		return tt.upstreamPool, nil
	}
	if tt != nil {
		// The rules changed: connections dialed under the old ones go,
		// and the old pool keeps none that a request in flight gives back.
		tt.closeIdle(true)
		delete(u.byTenant, tenant)
	}
	if key == "" {
		return u.base, nil
	}
	tt = &tenantTransport{key: key, upstreamPool: newUpstreamPool(u.base.tr.Clone())}
	u.byTenant[tenant] = tt
	return tt.upstreamPool, nil
}

// CloseIdleConnections closes the idle connections of every pool (at
// shutdown: the direct path keeps none from then on).
func (u *upstreams) CloseIdleConnections() {
	u.base.closeIdle(true)
	u.mu.RLock()
	defer u.mu.RUnlock()
	for _, tt := range u.byTenant {
		tt.closeIdle(true)
	}
}

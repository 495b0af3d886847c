package proxy

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/egressd/egressd/internal/ratelimit"
	"github.com/egressd/egressd/vault"
)

// RateLimits shape the proxy's token buckets. A zero Limit limits nothing.
type RateLimits struct {
	// SandboxRequests bounds the requests of one sandbox (plain proxy
	// requests and requests inside MITM'd tunnels); a tenant's
	// sandbox_request_rate overrides it.
	SandboxRequests ratelimit.Limit
	// SandboxConnections bounds the CONNECTs of one sandbox; a tenant's
	// sandbox_connection_rate overrides it.
	SandboxConnections ratelimit.Limit
	// FailedAuth bounds the failed proxy authentications (wrong, expired
	// or replaced credentials; not the 407 that asks for missing ones)
	// from one client address: once its bucket is empty the address's
	// failures get 429 instead of 407, until it refills. Right credentials
	// always pass.
	FailedAuth ratelimit.Limit
}

// DefaultRateLimits are generous: an agent's busiest burst stays far
// below them, a runaway loop or a token-guessing script does not.
var DefaultRateLimits = RateLimits{
	SandboxRequests:    ratelimit.Limit{Rate: 500, Burst: 1000},
	SandboxConnections: ratelimit.Limit{Rate: 100, Burst: 200},
	FailedAuth:         ratelimit.Limit{Rate: 2, Burst: 30},
}

// rateLimiter holds the proxy's buckets.
type rateLimiter struct {
	cfg                   RateLimits
	requests, connections *ratelimit.Limiter
	failedAuth            *ratelimit.Limiter
}

func newRateLimiter(cfg RateLimits) *rateLimiter {
	return &rateLimiter{
		cfg:         cfg,
		requests:    ratelimit.New(ratelimit.Config{Limit: cfg.SandboxRequests}),
		connections: ratelimit.New(ratelimit.Config{Limit: cfg.SandboxConnections}),
		failedAuth:  ratelimit.New(ratelimit.Config{Limit: cfg.FailedAuth}),
	}
}

// tenantLimit is def, or rate a second with bursts of twice as many when
// the tenant set one.
func tenantLimit(def ratelimit.Limit, rate int) ratelimit.Limit {
	if rate <= 0 {
		return def
	}
	return ratelimit.Limit{Rate: float64(rate), Burst: 2 * rate}
}

// allowSandbox takes a token from the sandbox's request bucket (conn
// false) or connection bucket (conn true), shaped by its tenant's setting.
func (p *Proxy) allowSandbox(ctx context.Context, sbx *vault.Sandbox, conn bool) (bool, time.Duration) {
	st, err := p.cfg.Resolver.Settings(ctx, sbx.TenantID)
	if err != nil {
		st = vault.Settings{}
	}
	if conn {
		return p.rates.connections.AllowWith(sbx.ID, tenantLimit(p.rates.cfg.SandboxConnections, st.SandboxConnectionRate))
	}
	return p.rates.requests.AllowWith(sbx.ID, tenantLimit(p.rates.cfg.SandboxRequests, st.SandboxRequestRate))
}

// clientHost is the address a proxy request's connection came from.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// withRetryAfter adds Retry-After to a 429.
func withRetryAfter(resp *http.Response, retry time.Duration) *http.Response {
	resp.Header.Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(retry)))
	return resp
}

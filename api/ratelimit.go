package api

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/internal/ratelimit"
)

// RateLimits shape the API's token buckets. A zero Limit limits nothing.
type RateLimits struct {
	// PerKey bounds the requests of one API key or browser token.
	PerKey ratelimit.Limit
	// PerClient bounds the requests to the routes that take no key (the
	// Connect page, the OAuth callback, the CA certificate) from one
	// client address.
	PerClient ratelimit.Limit
	// FailedAuth bounds failed authentications (401) from one client
	// address: once its bucket is empty, the address's failures get 429
	// instead of 401, until the bucket refills. A right key always passes.
	FailedAuth ratelimit.Limit
}

// DefaultRateLimits are generous: no person or well-behaved platform
// reaches them; a script guessing keys or hammering the Connect page does.
var DefaultRateLimits = RateLimits{
	PerKey:     ratelimit.Limit{Rate: 1000, Burst: 2000},
	PerClient:  ratelimit.Limit{Rate: 20, Burst: 100},
	FailedAuth: ratelimit.Limit{Rate: 1, Burst: 30},
}

// ErrRateLimited is a request over one of the rate limits; its answer
// carries Retry-After.
var ErrRateLimited = errors.New("rate limited")

// limiters are the API's buckets and the count of what they refused.
type limiters struct {
	perKey, perClient, failedAuth *ratelimit.Limiter
	refused                       *prometheus.CounterVec
}

func newLimiters(l RateLimits, reg prometheus.Registerer) (*limiters, error) {
	out := &limiters{
		perKey:     ratelimit.New(ratelimit.Config{Limit: l.PerKey}),
		perClient:  ratelimit.New(ratelimit.Config{Limit: l.PerClient}),
		failedAuth: ratelimit.New(ratelimit.Config{Limit: l.FailedAuth}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_api_rate_limited_total",
			Help: "Admin API requests refused with 429, by limit (per_key, per_client, failed_auth).",
		}, []string{"limit"}),
	}
	for _, name := range []string{"per_key", "per_client", "failed_auth"} {
		out.refused.WithLabelValues(name)
	}
	if reg != nil {
		if err := reg.Register(out.refused); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// refuse answers 429 with Retry-After and counts it under limit.
func (l *limiters) refuse(w http.ResponseWriter, limit string, retry time.Duration) error {
	l.refused.WithLabelValues(limit).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(retry)))
	return errorf(ErrRateLimited, "too many requests (%s); retry after %ds", limit, ratelimit.RetryAfterSeconds(retry))
}

// clientAddr is the address a request came from: its TCP peer. (Behind a
// proxy every client shares the proxy's address; the limits per client
// are then per proxy.)
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

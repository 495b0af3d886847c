package api_test

import (
	"strings"
	"testing"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/internal/ratelimit"
)

// TestRateLimits: a key over its bucket, an address that failed to
// authenticate too often (even with a good key afterwards) and an address
// hammering a route without a key each get 429 with Retry-After, counted
// in the metrics; other keys and addresses are not affected.
func TestRateLimits(t *testing.T) {
	slow := ratelimit.Limit{Rate: 0.001, Burst: 3}
	h := newHarnessWith(t, func(c *api.Config) {
		c.RateLimits = &api.RateLimits{PerKey: slow, PerClient: slow, FailedAuth: slow}
	})
	_, otherKey, _ := h.newTenant("other") // the operator key's own bucket

	for i := range 3 {
		if code, _ := h.do("GET", "/api/v1/whoami", h.adminKey, nil); code != 200 {
			t.Fatalf("request %d of the burst: %d", i, code)
		}
	}
	resp, body := h.get("/api/v1/whoami", h.adminKey)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"rate_limited"`) {
		t.Fatalf("past the burst: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if code, _ := h.do("GET", "/api/v1/whoami", otherKey, nil); code != 200 {
		t.Fatalf("another key was limited: %d", code)
	}

	for i := range 2 {
		if code, _ := h.do("GET", "/api/v1/whoami", "egk_wrong"+strings.Repeat("x", i), nil); code != 401 {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	for range 2 {
		if code, body := h.do("GET", "/api/v1/whoami", "egk_wrong", nil); code != 429 || !strings.Contains(body, "failed_auth") {
			t.Fatalf("failures past the bucket: %d %s", code, body)
		}
	}
	// A right key from that address still passes.
	if code, _ := h.do("GET", "/api/v1/whoami", otherKey, nil); code != 200 {
		t.Fatalf("a good key from a blocked address: %d", code)
	}

	pub := newHarnessWith(t, func(c *api.Config) { c.RateLimits = &api.RateLimits{PerClient: slow} })
	for i := range 3 {
		if code, _ := pub.do("GET", "/api/v1/ca.pem", "", nil); code != 200 {
			t.Fatalf("public request %d: %d", i, code)
		}
	}
	if resp, _ := pub.get("/api/v1/ca.pem", ""); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("public route past the burst: %d", resp.StatusCode)
	}
	m := h.metrics()
	for _, want := range []string{`egressd_api_rate_limited_total{limit="per_key"} 1`, `egressd_api_rate_limited_total{limit="failed_auth"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

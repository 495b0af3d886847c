package proxy

import (
	"net/http"
	"testing"

	"github.com/egressd/egressd/internal/ratelimit"
	"github.com/egressd/egressd/vault"
)

// TestSandboxRequestRate: a sandbox over its request bucket gets 429 with
// Retry-After and rate_limited, another sandbox does not, and the
// tenant's sandbox_request_rate replaces the server's limit.
func TestSandboxRequestRate(t *testing.T) {
	slow := ratelimit.Limit{Rate: 0.001, Burst: 2}
	e := newEnv(t, func(c *Config) { c.RateLimits = &RateLimits{SandboxRequests: slow} })
	e.secret(vault.SecretInput{Name: "key", Value: "real-value", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	busy, busyToken := e.sandbox(vault.SandboxInput{})
	calm, calmToken := e.sandbox(vault.SandboxInput{})
	get := func(c *http.Client) *http.Response {
		t.Helper()
		resp, _ := do(t, c, "GET", e.url("https", "api.test", "/x"), nil, nil)
		return resp
	}
	c := e.client(busy.ID, busyToken)
	for i := range 2 {
		if resp := get(c); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp := get(c)
	if resp.StatusCode != 429 || resp.Header.Get("X-Egress-Denied") != "rate_limited" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the burst: %d %q retry %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"), resp.Header.Get("Retry-After"))
	}
	if resp := get(e.client(calm.ID, calmToken)); resp.StatusCode != 200 {
		t.Fatalf("another sandbox: %d", resp.StatusCode)
	}
	rate := 50
	if _, err := e.store.UpdateSettings(e.tenant, vault.SettingsPatch{SandboxRequestRate: &rate}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if resp := get(c); resp.StatusCode != 200 {
			t.Fatalf("under the tenant's own rate, request %d: %d", i, resp.StatusCode)
		}
	}
}

// TestSandboxConnectionRate: CONNECTs over the sandbox's connection bucket
// get 429 before anything is dialed.
func TestSandboxConnectionRate(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RateLimits = &RateLimits{SandboxConnections: ratelimit.Limit{Rate: 0.001, Burst: 1}}
	})
	sbx, token := e.sandbox(vault.SandboxInput{})
	target := "api.test:" + e.up.port
	if resp := rawConnect(t, e.addr, target, basicAuth(sbx.ID, token)); resp.StatusCode != 200 {
		t.Fatalf("first CONNECT: %d", resp.StatusCode)
	}
	resp := rawConnect(t, e.addr, target, basicAuth(sbx.ID, token))
	if resp.StatusCode != 429 || resp.Header.Get("X-Egress-Denied") != "rate_limited" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second CONNECT: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
}

// TestFailedProxyAuthRate: an address whose credentials failed too often
// gets 429 for its next failures, while right credentials from it still
// pass (sandboxes behind one NAT cannot lock each other out); asking for
// missing credentials (the 407 challenge) does not count.
func TestFailedProxyAuthRate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimits = &RateLimits{FailedAuth: ratelimit.Limit{Rate: 0.001, Burst: 2}} })
	sbx, token := e.sandbox(vault.SandboxInput{})
	target := "api.test:" + e.up.port
	for range 3 {
		if resp := rawConnect(t, e.addr, target, ""); resp.StatusCode != 407 {
			t.Fatalf("challenge: %d", resp.StatusCode)
		}
	}
	if resp := rawConnect(t, e.addr, target, basicAuth(sbx.ID, token+"x")); resp.StatusCode != 407 {
		t.Fatalf("first failure: %d", resp.StatusCode)
	}
	resp := rawConnect(t, e.addr, target, basicAuth(sbx.ID, token+"x"))
	if resp.StatusCode != 429 || resp.Header.Get("X-Egress-Denied") != "rate_limited" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("failure past the bucket: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	if resp, _ := do(t, e.client(sbx.ID, token+"y"), "GET", e.url("http", "api.test", "/plain"), nil, nil); resp.StatusCode != 429 {
		t.Fatalf("a plain request with wrong credentials from a blocked address: %d", resp.StatusCode)
	}
	if resp := rawConnect(t, e.addr, target, basicAuth(sbx.ID, token)); resp.StatusCode != 200 {
		t.Fatalf("right credentials from a blocked address: %d", resp.StatusCode)
	}
}

package proxy

import (
	"io"
	"net/http"
	"testing"

	"github.com/egressd/egressd/internal/ratelimit"
	"github.com/egressd/egressd/vault"
)

// One MITM'd request with a header placeholder, end to end: a keep-alive
// client, the real proxy, a TLS upstream, all on loopback.
func BenchmarkMITMHeaderSubstitution(b *testing.B) {
	// The limits' code runs, their buckets never empty.
	e := newEnv(b, func(c *Config) {
		huge := ratelimit.Limit{Rate: 1e9, Burst: 1e9}
		c.RateLimits = &RateLimits{SandboxRequests: huge, SandboxConnections: huge, FailedAuth: huge}
	})
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "sk-real-value", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "openai")
	e.events = make(chan *Event, 1<<20)
	c := e.client(sbx.ID, token)
	u := e.url("https", "api.test", "/v1/models")
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+ph)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
		select {
		case <-e.events:
		default:
		}
	}
}

// The same request through a tunnel (no secret applies to the host).
func BenchmarkTunnel(b *testing.B) {
	e := newEnv(b, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	c := e.client(sbx.ID, token)
	c.Transport.(*http.Transport).TLSClientConfig.RootCAs = e.up.roots
	u := e.url("https", "api.test", "/v1/models")
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

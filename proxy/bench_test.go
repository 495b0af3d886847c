package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime"
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

// The same request from 50 keep-alive clients at once, as
// egress-bench sends it; cpu-µs/op is the CPU of the whole process a
// request: clients, proxy and upstream (the sink is a channel).
func BenchmarkMITMHeaderParallel(b *testing.B) {
	e := newEnv(b, func(c *Config) {
		huge := ratelimit.Limit{Rate: 1e9, Burst: 1e9}
		c.RateLimits = &RateLimits{SandboxRequests: huge, SandboxConnections: huge, FailedAuth: huge}
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
		c.Sink = SinkFunc(func(context.Context, *Event) error { return nil })
	})
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "sk-real-value", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "openai")
	u := e.url("https", "api.test", "/v1/models")
	send := func(c *http.Client) bool {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Authorization", "Bearer "+ph)
		resp, err := c.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Error(resp.Status)
			return false
		}
		return true
	}
	// The connections (and their TLS handshakes) are made before the
	// measurement, one a client.
	clients := make(chan *http.Client, 50)
	for range cap(clients) {
		c := e.client(sbx.ID, token)
		if !send(c) {
			return
		}
		clients <- c
	}
	b.ReportAllocs()
	b.SetParallelism(cap(clients) / runtime.GOMAXPROCS(0))
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := <-clients
		for pb.Next() && send(c) {
		}
	})
	b.StopTimer()
	if used := processCPU() - cpu; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
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

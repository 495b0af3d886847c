package proxy

import (
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// A tunnel with no traffic for the idle timeout is closed; one with
// traffic more often than that stays open however long it lasts.
func TestTunnelIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.IdleTimeout = idle })
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant})

	busy := e.rawTunnel(t, sbx.ID, token, "api.test")
	for start := time.Now(); time.Since(start) < 3*idle; time.Sleep(idle / 4) {
		busy.send("GET /busy HTTP/1.1\r\nHost: api.test\r\n\r\n")
		if resp, body := busy.read("GET"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}

	quiet := e.rawTunnel(t, sbx.ID, token, "api.test")
	quiet.send("GET /quiet HTTP/1.1\r\nHost: api.test\r\n\r\n")
	quiet.read("GET")
	start := time.Now()
	quiet.conn.SetReadDeadline(time.Now().Add(10 * idle))
	if !quiet.closed() {
		t.Fatal("an idle tunnel was not closed")
	}
	if waited := time.Since(start); waited < idle*9/10 || waited > 5*idle {
		t.Fatalf("closed after %v, idle timeout %v", waited, idle)
	}
}

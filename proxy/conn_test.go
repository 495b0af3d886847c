package proxy

import (
	"testing"
	"time"
)

// A tunnel with no traffic for the idle timeout is closed; one with
// traffic more often than that stays open however long it lasts.
func TestTunnelIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	e, sbx, token, _ := oneSecretEnv(t, func(c *Config) { c.IdleTimeout = idle })

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

// A request header that does not arrive whole within the header timeout
// ends the tunnel (long before the idle timeout); one that arrives whole
// is answered.
func TestTunnelHeaderTimeout(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	e, sbx, token, _ := oneSecretEnv(t, func(c *Config) { c.HeaderTimeout = headerTimeout })
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
	if resp, body := tn.read("GET"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	tn.send("GET /slow HTTP/1.1\r\nHost: api.test\r\n") // and no end of header
	start := time.Now()
	tn.conn.SetReadDeadline(time.Now().Add(20 * headerTimeout))
	if !tn.closed() {
		t.Fatal("a header that never ended kept the tunnel open")
	}
	if waited := time.Since(start); waited > 10*headerTimeout {
		t.Fatalf("closed after %v, header timeout %v", waited, headerTimeout)
	}
}

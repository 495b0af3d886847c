package proxy

// Regression test from the security review: the per-sandbox connection
// count is released on every path a connection can end by (refused CONNECT,
// byte tunnel, MITM'd tunnel, plain request). It passed on the reviewed
// code too.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

func TestReviewConnectionCountsReleased(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnsPerSandbox = 1 })
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	ph := e.placeholder(sbx, "k")
	auth := basicAuth(sbx.ID, token)
	released := func(step string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			e.proxy.limits.mu.Lock()
			n := e.proxy.limits.n[sbx.ID]
			e.proxy.limits.mu.Unlock()
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %d connections still counted", step, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	connect := func(target string) (net.Conn, *bufio.Reader, *http.Response) {
		conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auth)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		return conn, br, resp
	}

	// Refused CONNECT.
	conn, _, resp := connect("private.test:443")
	if resp.StatusCode != 403 {
		t.Fatalf("private: %d", resp.StatusCode)
	}
	conn.Close()
	released("refused CONNECT")

	// Byte tunnel, closed by the client.
	conn, br, resp := connect("elsewhere.test:" + e.up.port)
	if resp.StatusCode != 200 {
		t.Fatalf("tunnel: %d", resp.StatusCode)
	}
	tc := tls.Client(&bufConn{Conn: conn, r: br}, &tls.Config{ServerName: "elsewhere.test", RootCAs: e.up.roots})
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("through tunnel: %v %v", resp, err)
	}
	conn.Close()
	released("byte tunnel")

	// MITM'd tunnel with a substituted request; the limit of 1 holds while
	// it is open and is released when it closes.
	c := e.client(sbx.ID, token)
	if resp, _ := do(t, c, "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-Key": ph}); resp.StatusCode != 200 {
		t.Fatalf("mitm: %d", resp.StatusCode)
	}
	second, _, resp := connect("api.test:" + e.up.port)
	if resp.StatusCode != 429 {
		t.Fatalf("second connection while the first is open: %d", resp.StatusCode)
	}
	second.Close()
	c.Transport.(*http.Transport).CloseIdleConnections()
	released("MITM'd tunnel")

	// Plain request.
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET http://api.test:%s/ HTTP/1.1\r\nHost: api.test\r\nProxy-Authorization: %s\r\n\r\n", e.up.port, auth)
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	conn.Close()
	released("plain request")
}

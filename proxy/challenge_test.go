package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// proxyConn is one raw client connection to the proxy.
type proxyConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialProxy(t *testing.T, addr string) *proxyConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	return &proxyConn{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// send writes one request head (auth empty: no Proxy-Authorization) and
// reads its answer, body included.
func (c *proxyConn) send(method, target, auth string) *http.Response {
	c.t.Helper()
	host := target
	if u, ok := strings.CutPrefix(target, "http://"); ok {
		host, _, _ = strings.Cut(u, "/")
	}
	fmt.Fprintf(c.conn, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	if auth != "" {
		fmt.Fprintf(c.conn, "Proxy-Authorization: %s\r\n", auth)
	}
	if _, err := io.WriteString(c.conn, "\r\n"); err != nil {
		c.t.Fatalf("the proxy closed the connection before %s: %v", method, err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, target, err)
	}
	if method != http.MethodConnect || resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp
}

// closed reports whether the proxy closed the connection (EOF or reset)
// before deadline passed on this side.
func (c *proxyConn) closed() bool {
	c.t.Helper()
	_, err := c.br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestChallengeKeepsConnection: a CONNECT or absolute-form request without
// credentials gets 407 with a Basic challenge, and the credentialed retry
// on the same connection goes through (git and libcurl ask this way).
func TestChallengeKeepsConnection(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	good := basicAuth(sbx.ID, token)
	target := "api.test:" + e.up.port

	t.Run("connect", func(t *testing.T) {
		c := dialProxy(t, e.addr)
		resp := c.send(http.MethodConnect, target, "")
		if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") != `Basic realm="egressd"` || resp.Close || resp.Header.Get("X-Egress-Denied") != "no_credentials" {
			t.Fatalf("challenge: %d %v close=%v", resp.StatusCode, resp.Header, resp.Close)
		}
		if resp = c.send(http.MethodConnect, target, good); resp.StatusCode != 200 {
			t.Fatalf("retry: %d", resp.StatusCode)
		}
		// The tunnel works: a TLS request to the upstream through it.
		roots := x509.NewCertPool()
		roots.AddCert(e.ca.Certificate())
		tc := tls.Client(&bufConn{Conn: c.conn, r: c.br}, &tls.Config{ServerName: "api.test", RootCAs: e.up.roots})
		if e.proxy.cfg.MITMAll {
			tc = tls.Client(&bufConn{Conn: c.conn, r: c.br}, &tls.Config{ServerName: "api.test", RootCAs: roots})
		}
		fmt.Fprintf(tc, "GET /through HTTP/1.1\r\nHost: %s\r\n\r\n", target)
		up, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil || up.StatusCode != 200 {
			t.Fatalf("through the tunnel: %v %v", up, err)
		}
		if got := e.up.last(t); got.URI != "/through" {
			t.Fatalf("upstream saw %q", got.URI)
		}
	})
	t.Run("absolute form", func(t *testing.T) {
		c := dialProxy(t, e.addr)
		u := "http://api.test:" + e.up.port + "/plain"
		resp := c.send(http.MethodGet, u, "")
		if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") == "" || resp.Close {
			t.Fatalf("challenge: %d close=%v", resp.StatusCode, resp.Close)
		}
		if resp = c.send(http.MethodGet, u, good); resp.StatusCode == 407 {
			t.Fatalf("retry: %d", resp.StatusCode)
		}
	})
}

// TestChallengeBounded: a connection is asked for credentials at most
// three times; the fourth answer closes it, and so does a connection that
// does not retry within ChallengeWait.
func TestChallengeBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ChallengeWait = 300 * time.Millisecond })
	target := "api.test:" + e.up.port
	c := dialProxy(t, e.addr)
	for i := 1; i <= maxChallenges; i++ {
		if resp := c.send(http.MethodConnect, target, ""); resp.StatusCode != 407 || resp.Close {
			t.Fatalf("ask %d: %d close=%v", i, resp.StatusCode, resp.Close)
		}
	}
	if resp := c.send(http.MethodConnect, target, ""); resp.StatusCode != 407 || !resp.Close {
		t.Fatalf("ask %d: %d close=%v", maxChallenges+1, resp.StatusCode, resp.Close)
	}
	if !c.closed() {
		t.Fatal("the connection stayed open past its asks")
	}

	quiet := dialProxy(t, e.addr)
	if resp := quiet.send(http.MethodConnect, target, ""); resp.StatusCode != 407 {
		t.Fatalf("challenge: %d", resp.StatusCode)
	}
	start := time.Now()
	if !quiet.closed() {
		t.Fatal("a connection that never retried stayed open")
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Fatalf("closed after %v, the idle timeout rather than ChallengeWait", waited)
	}
}

// TestBadCredentialsClose: wrong credentials get 407 and the connection
// ends with the answer, for CONNECT and for absolute-form requests.
func TestBadCredentialsClose(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	bad := basicAuth(sbx.ID, token+"x")
	for _, c := range []struct{ method, target string }{
		{http.MethodConnect, "api.test:" + e.up.port},
		{http.MethodGet, "http://api.test:" + e.up.port + "/x"},
	} {
		pc := dialProxy(t, e.addr)
		resp := pc.send(c.method, c.target, bad)
		if resp.StatusCode != 407 || resp.Header.Get("X-Egress-Denied") != "bad_credentials" {
			t.Fatalf("%s: %d %q", c.method, resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
		}
		if !pc.closed() {
			t.Fatalf("%s: the connection stayed open after wrong credentials", c.method)
		}
	}
}

// TestReissuedTokenStopsTunnel: a MITM'd tunnel opened with a token that is
// then re-issued is refused (407 token_expired) at its next request.
func TestReissuedTokenStopsTunnel(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "key", Value: "real-value", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	ph := e.placeholder(sbx, "key")
	c := e.client(sbx.ID, token)
	hdr := map[string]string{"Authorization": "Bearer " + ph}
	if resp, _ := do(t, c, "GET", e.url("https", "api.test", "/one"), nil, hdr); resp.StatusCode != 200 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	e.event(t)
	if _, _, err := e.store.ReissueSandboxToken(e.tenant, sbx.ID, 0); err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, c, "GET", e.url("https", "api.test", "/two"), nil, hdr)
	if resp.StatusCode != 407 || resp.Header.Get("X-Egress-Denied") != "token_expired" || !resp.Close {
		t.Fatalf("after re-issue: %d %q close=%v", resp.StatusCode, resp.Header.Get("X-Egress-Denied"), resp.Close)
	}
	if got := e.up.last(t); got.URI != "/one" {
		t.Fatalf("the upstream saw %q after the re-issue", got.URI)
	}
}

package proxy

// Regression tests from the review of the MITM request loop (mitmconn.go).

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// rawUpstream is a TLS server for any *.test name that speaks raw bytes:
// each accepted connection goes to serve, so a test can play a hostile or
// odd upstream byte for byte.
type rawUpstream struct {
	port  string
	roots *x509.CertPool
}

func newRawUpstream(t testing.TB, serve func(net.Conn)) *rawUpstream {
	t.Helper()
	leafs, roots := upstreamCA(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return leafs.Get(h.ServerName)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := false
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		done = true
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			late := done
			mu.Unlock()
			if late {
				c.Close()
				return
			}
			go serve(c)
		}
	}()
	u := &rawUpstream{roots: roots}
	_, u.port, _ = net.SplitHostPort(l.Addr().String())
	return u
}

// rawEnv is an env whose tunnels to *.test reach up instead of the
// recording upstream, with a secret whose placeholder may go to api.test.
func rawEnv(t *testing.T, up *rawUpstream) (e *env, sbx vault.Sandbox, token, ph string) {
	t.Helper()
	e = newEnv(t, func(c *Config) { c.UpstreamRoots = up.roots })
	e.up.port = up.port // rawTunnel dials the upstream's port
	sbx, token = e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant})
	return e, sbx, token, e.placeholder(sbx, "k")
}

// readHead reads a request's or answer's header block.
func readHead(br *bufio.Reader) (string, error) {
	var head string
	for {
		line, err := br.ReadString('\n')
		head += line
		if err != nil || line == "\r\n" {
			return head, err
		}
	}
}

// Regression: a WebSocket handshake that carries a body is not upgraded.
// The transport may still be reading that body from the tunnel when the
// upstream's 101 arrives (an upstream need not read a GET's body first);
// the upgrade's copy then read the same bufio.Reader at once: a data race
// that panicked egressd (slice bounds out of range in bufio) for every
// tenant, or passed body bytes off as WebSocket data.
func TestReviewUpgradeWithBodyNotUpgraded(t *testing.T) {
	up := newRawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		// Switch at once, before the body.
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, br)
	})
	e, sbx, token, ph := rawEnv(t, up)
	for range 3 {
		tn := e.rawTunnel(t, sbx.ID, token, "api.test")
		// Half the body: more than the transport buffers before the header
		// leaves, so the upstream answers while the body is being read.
		// egressd may answer 502 and close while this is still being
		// written (the transport was reading the body): a write error here
		// and a reset instead of the answer are refusals too.
		io.WriteString(tn.conn, strings.ReplaceAll("GET /ws HTTP/1.1\r\nHost: api.test\r\n", "api.test", tn.host)+
			"Connection: Upgrade\r\nUpgrade: websocket\r\nX-Key: "+ph+
			"\r\nContent-Length: 20000\r\n\r\n"+strings.Repeat("A", 10000))
		resp, err := http.ReadResponse(tn.br, &http.Request{Method: "GET"})
		if err != nil {
			if !strings.Contains(err.Error(), "reset") && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatal(err)
			}
			tn.conn.Close()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// What the client sends now is read by the transport (the body)
			// and by the upgrade (the WebSocket stream) at once.
			for range 50 {
				io.WriteString(tn.conn, strings.Repeat("B", 200))
			}
			t.Fatal("a handshake with a body was upgraded")
		}
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d", resp.StatusCode)
		}
		// The rest of the body: drained, or the tunnel is closed.
		io.WriteString(tn.conn, strings.Repeat("B", 10000))
		tn.conn.Close()
	}
}

// Regression: an upgraded tunnel whose client side fails (the idle
// timeout, a reset) or is closed on shutdown closes the upstream
// connection too, as ReverseProxy did. Only a clean end of the client's
// stream is passed on as a half-close; otherwise an upstream that ignores
// the close_notify held the tunnel's goroutines, the upstream connection
// and the sandbox's connection slot for as long as it liked.
func TestReviewUpgradeClosesUpstreamWhenClientFails(t *testing.T) {
	for _, how := range []string{"idle timeout", "shutdown"} {
		t.Run(how, func(t *testing.T) {
			closed := make(chan struct{})
			up := newRawUpstream(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, err := readHead(br); err != nil {
					return
				}
				c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
				// A quiet upstream that takes no hint: it ignores the
				// close_notify and waits for the TCP connection to end.
				io.Copy(io.Discard, br)
				raw := c.(*tls.Conn).NetConn()
				raw.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.Copy(io.Discard, raw); err == nil {
					close(closed)
				}
			})
			e := newEnv(t, func(c *Config) {
				c.UpstreamRoots = up.roots
				if how == "idle timeout" {
					c.IdleTimeout = 300 * time.Millisecond
				}
			})
			e.up.port = up.port
			sbx, token := e.sandbox(vault.SandboxInput{})
			e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant})
			ph := e.placeholder(sbx, "k")
			tn := e.rawTunnel(t, sbx.ID, token, "api.test")
			tn.send("GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Key: " + ph + "\r\n\r\n")
			resp, err := http.ReadResponse(tn.br, &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			if how == "shutdown" {
				e.proxy.tunnels.closeAll()
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream connection stayed open after the tunnel's client side ended")
			}
		})
	}
}

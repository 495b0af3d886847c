package proxy

import (
	"bufio"
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

// FuzzTunnelRequests sends arbitrary bytes as the requests of a MITM'd
// (plain HTTP) tunnel. Whatever they are, egressd answers with well-formed
// HTTP/1.1 (or nothing) and ends the tunnel, never hangs and never
// crashes: the request loop's own parts (blank lines, the header limit,
// the checks after parsing, body draining, Expect, framing of answers) run
// on hostile input. A sandbox that sends a placeholder may get the value
// upstream, never back: no answer carries it.
func FuzzTunnelRequests(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: api.test\r\nX-Key: {{ph}}\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: api.test\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
		"GET / HTTP/1.0\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: api.test\r\n\r\n",
		"G\x00T / HTTP/1.1\r\n\r\n",
	} {
		f.Add(seed)
	}
	e := newEnv(f, func(c *Config) { c.MaxHeaderBytes = 4 << 10; c.HeaderTimeout = time.Second })
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "fuzz-real-value", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "k")
	target := net.JoinHostPort("api.test", e.up.port)
	f.Fuzz(func(t *testing.T, in string) {
		in = strings.ReplaceAll(in, "{{ph}}", ph)
		in = strings.ReplaceAll(in, "Host: api.test\r\n", "Host: "+target+"\r\n")
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(nc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basicAuth(sbx.ID, token))
		br := bufio.NewReader(nc)
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		io.WriteString(nc, in)
		nc.(*net.TCPConn).CloseWrite()
		if strings.HasPrefix(in, "\x16") {
			// A TLS handshake record first: egressd speaks TLS (an alert,
			// for bytes that are no handshake) and ends the tunnel.
			if _, err := io.ReadAll(br); err != nil && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("TLS-looking input: %v", err)
			}
			return
		}
		// Every answer up to the end parses; the end comes (no hang).
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				var ne net.Error
				switch {
				case errors.As(err, &ne) && ne.Timeout():
					t.Fatal("the tunnel neither answered nor ended")
				case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(err.Error(), "reset"):
					return
				default:
					rest, _ := io.ReadAll(br)
					t.Fatalf("not an answer: %v, then %q", err, rest)
				}
			}
			body, err := io.ReadAll(resp.Body)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("an answer's body neither ended nor broke off")
			}
			if strings.Contains(string(body), "fuzz-real-value") {
				t.Fatal("an answer carried the value")
			}
			for k, vs := range resp.Header {
				if strings.Contains(k+strings.Join(vs, ","), "fuzz-real-value") {
					t.Fatal("an answer's header carried the value")
				}
			}
		}
	})
}

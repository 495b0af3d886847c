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
	// The harness's sink hands every event to a bounded channel nobody
	// reads here: drain it, or after a thousand inputs the proxy would
	// block recording one (and the fuzzer report a hang).
	stop := make(chan struct{})
	f.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-e.events:
			case <-stop:
				return
			}
		}
	}()
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
		// Every answer up to the end parses; the end comes (no hang). An
		// answer's framing depends on its request's method (a HEAD answer
		// announces a length and sends no body): read the requests as
		// egressd does to know which answer is to which method.
		methods := requestMethods(in)
		for {
			method := http.MethodGet
			if len(methods) > 0 {
				method = methods[0]
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
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
			if resp.StatusCode >= 200 && len(methods) > 0 {
				methods = methods[1:] // an interim 1xx answers nothing yet
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
			if resp.Close {
				// The tunnel's last answer. (One to a request egressd could
				// not read is framed as to a GET, whatever the method this
				// test's reading found.)
				return
			}
		}
	})
}

// requestMethods reads in as the tunnel's loop does (a few blank lines
// skipped before each request, each body read through) and returns the
// methods of the requests it can read.
func requestMethods(in string) []string {
	br := bufio.NewReader(strings.NewReader(in))
	var methods []string
	for {
		for range 4 {
			if b, err := br.Peek(1); err != nil || b[0] != '\r' && b[0] != '\n' {
				break
			}
			br.Discard(1)
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return methods
		}
		methods = append(methods, req.Method)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return methods
		}
	}
}

package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// fwdUpstream is a rawUpstream (review_mitmloop_test.go) that numbers
// its connections from 1 and hands serve the reader of their requests.
type fwdUpstream struct {
	*rawUpstream
	conns atomic.Int32
}

// forwardEnv is a proxy in front of a fwdUpstream, MITM'ing every host,
// and a sandbox's client.
func forwardEnv(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader), mod func(*Config)) (*env, *fwdUpstream, *http.Client) {
	t.Helper()
	u := &fwdUpstream{}
	u.rawUpstream = newRawUpstream(t, func(c net.Conn) {
		defer c.Close()
		serve(int(u.conns.Add(1)), c, bufio.NewReader(c))
	})
	e := newEnv(t, func(c *Config) {
		c.MITMAll = true
		c.UpstreamRoots = u.roots
		if mod != nil {
			mod(c)
		}
	})
	sbx, token := e.sandbox(vault.SandboxInput{})
	return e, u, e.client(sbx.ID, token)
}

func answer(c net.Conn, body string) error {
	_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return err
}

// get sends GET path to the raw upstream and returns status and body.
func (u *fwdUpstream) get(t *testing.T, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, b := do(t, c, "GET", "https://api.test:"+u.port+path, nil, nil)
	return resp.StatusCode, string(b)
}

// Bodyless requests reuse one upstream connection, one after another.
func TestForwardReusesConnection(t *testing.T) {
	_, u, c := forwardEnv(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if answer(c, req.URL.Path) != nil {
				return
			}
		}
	}, nil)
	for i := range 5 {
		path := fmt.Sprintf("/r%d", i)
		if status, body := u.get(t, c, path); status != 200 || body != path {
			t.Fatalf("GET %s: %d %q", path, status, body)
		}
	}
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections for 5 requests, want 1", n)
	}
}

// An upstream that sends more than its answer (a second answer, unasked)
// never has it read as the answer to the next request, which may be
// another sandbox's: the connection is dropped, whether the bytes came
// with the answer or later, while it was idle.
func TestForwardUnsolicitedAnswerIsNotReused(t *testing.T) {
	for _, later := range []bool{false, true} {
		t.Run(fmt.Sprintf("later=%v", later), func(t *testing.T) {
			const unasked = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nunsent"
			sent := make(chan struct{})
			_, u, c := forwardEnv(t, func(_ int, c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path != "/first" {
						answer(c, "second")
						continue
					}
					if !later {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"+unasked)
						continue
					}
					answer(c, "first")
					// Once the proxy has read the answer to its end (the
					// client has it), the connection is idle in its pool.
					<-sent
					io.WriteString(c, unasked)
					sent <- struct{}{}
				}
			}, nil)
			if status, body := u.get(t, c, "/first"); status != 200 || body != "first" {
				t.Fatalf("first: %d %q", status, body)
			}
			if later {
				sent <- struct{}{}
				<-sent
			}
			if status, body := u.get(t, c, "/second"); status != 200 || body != "second" {
				t.Fatalf("second: %d %q, want the answer to the second request", status, body)
			}
			if n := u.conns.Load(); n != 2 {
				t.Fatalf("%d upstream connections, want 2 (the first dropped)", n)
			}
		})
	}
}

// The first bytes of a TLS record that an upstream sends unasked while
// its connection is idle (a record not whole, which TLS would hold and
// complete with the next answer's bytes) make the connection not reusable,
// as whole records do.
func TestForwardPartialRecordIsNotReused(t *testing.T) {
	sent := make(chan struct{})
	_, u, c := forwardEnv(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			answer(c, req.URL.Path)
			if n == 1 {
				<-sent
				// An application data record's header, no more.
				c.(*tls.Conn).NetConn().Write([]byte{0x17, 0x03, 0x03})
				sent <- struct{}{}
			}
		}
	}, nil)
	if status, body := u.get(t, c, "/first"); status != 200 || body != "/first" {
		t.Fatalf("first: %d %q", status, body)
	}
	sent <- struct{}{}
	<-sent
	if status, body := u.get(t, c, "/second"); status != 200 || body != "/second" {
		t.Fatalf("second: %d %q, want its own answer", status, body)
	}
	if n := u.conns.Load(); n != 2 {
		t.Fatalf("%d upstream connections, want 2 (the first dropped)", n)
	}
}

// An idle connection the upstream closed is not used: the next request
// goes on a new one and is answered.
func TestForwardUpstreamClosedIdle(t *testing.T) {
	closed := make(chan struct{})
	_, u, c := forwardEnv(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			answer(c, req.URL.Path)
			if n == 1 {
				c.Close()
				close(closed)
				return
			}
		}
	}, nil)
	if status, body := u.get(t, c, "/a"); status != 200 || body != "/a" {
		t.Fatalf("a: %d %q", status, body)
	}
	<-closed
	if status, body := u.get(t, c, "/b"); status != 200 || body != "/b" {
		t.Fatalf("b: %d %q", status, body)
	}
}

// An upstream that never answers gets the response header timeout: 504.
func TestForwardHeaderTimeout(t *testing.T) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	_, u, c := forwardEnv(t, func(_ int, c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		<-done
	}, func(c *Config) { c.ResponseHeaderTimeout = 100 * time.Millisecond })
	status, body := u.get(t, c, "/slow")
	if status != http.StatusGatewayTimeout || !strings.Contains(body, "timed out") {
		t.Fatalf("%d %q, want 504 timed out", status, body)
	}
}

// The response header timeout bounds the header only: a body that pauses
// past it after the header (declared or chunked) still arrives whole.
// Regression guard for the header's deadline, which is lifted only before
// the body's first read that may wait on the socket.
func TestForwardSlowBodyOutlivesHeaderTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	_, u, c := forwardEnv(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/chunked" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
				time.Sleep(3 * timeout) // the upstream is slow, past the header's timeout
				io.WriteString(c, "4\r\nlast\r\n0\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nfirst")
			time.Sleep(3 * timeout)
			io.WriteString(c, "last")
		}
	}, func(c *Config) { c.ResponseHeaderTimeout = timeout })
	for _, path := range []string{"/declared", "/chunked", "/declared"} {
		if status, body := u.get(t, c, path); status != 200 || body != "firstlast" {
			t.Fatalf("%s: %d %q, want the whole body", path, status, body)
		}
	}
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections, want 1", n)
	}
}

// An answer broken off before its declared end reaches the client cut
// short, and its connection is not reused.
func TestForwardAnswerCutShort(t *testing.T) {
	_, u, c := forwardEnv(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/cut" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
				return
			}
			answer(c, req.URL.Path)
		}
	}, func(c *Config) { c.Redact = false })
	req, _ := http.NewRequest("GET", "https://api.test:"+u.port+"/cut", nil)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := c.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a cut answer read as whole")
	}
	if status, body := u.get(t, c, "/after"); status != 200 || body != "/after" {
		t.Fatalf("after: %d %q", status, body)
	}
}

// A HEAD's answer, a chunked answer with a trailer and an answer after an
// interim 103 each arrive as sent, and the connection carries them all.
func TestForwardFramings(t *testing.T) {
	_, u, c := forwardEnv(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/head":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
			case "/chunked":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 6\r\n\r\n")
			case "/early":
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
				answer(c, "after hints")
			}
		}
	}, nil)
	base := "https://api.test:" + u.port
	resp, body := do(t, c, "HEAD", base+"/head", nil, nil)
	if resp.StatusCode != 200 || resp.ContentLength != 10 || len(body) != 0 {
		t.Fatalf("HEAD: %d, length %d, body %q", resp.StatusCode, resp.ContentLength, body)
	}
	resp, body = do(t, c, "GET", base+"/chunked", nil, nil)
	if string(body) != "abc" || resp.Trailer.Get("X-Sum") != "6" {
		t.Fatalf("chunked: %q, trailer %q", body, resp.Trailer.Get("X-Sum"))
	}
	if status, body := u.get(t, c, "/early"); status != 200 || body != "after hints" {
		t.Fatalf("early: %d %q", status, body)
	}
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("%d upstream connections, want 1", n)
	}
}

// An idle connection left longer than the idle timeout is closed by the
// pool's sweep, and the sweep stops when none is left.
func TestForwardIdleTimeout(t *testing.T) {
	p := newDirectPool(&http.Transport{IdleConnTimeout: 20 * time.Millisecond})
	a, b := net.Pipe()
	defer b.Close()
	p.put(&directConn{pool: p, key: directKey{addr: "api.test:443"}, conn: a})
	closed := make(chan struct{})
	go func() {
		b.Read(make([]byte, 1)) // ends when a is closed
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n, janitor := p.n, p.janitor
		p.mu.Unlock()
		if n == 0 && janitor == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle, janitor %v after the sweep", n, janitor != nil)
		}
		time.Sleep(time.Millisecond)
	}
}

// An answer whose header runs past maxResponseHeader is refused (502),
// with the buffer bounded, and its connection is not reused.
func TestForwardHeaderTooLarge(t *testing.T) {
	_, u, c := forwardEnv(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/huge" {
				// Whole and well-formed: only the bound refuses it.
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok", strings.Repeat("a", maxResponseHeader))
				continue
			}
			if answer(c, fmt.Sprintf("conn %d", n)) != nil {
				return
			}
		}
	}, nil)
	if status, body := u.get(t, c, "/huge"); status != http.StatusBadGateway {
		t.Fatalf("a header past the bound: %d %q, want 502", status, body)
	}
	if status, body := u.get(t, c, "/next"); status != http.StatusOK || body != "conn 2" {
		t.Fatalf("after the refused answer: %d %q, want 200 on a new connection", status, body)
	}
}

// One bodyless exchange over a pooled upstream connection, as a MITM'd
// request makes it: the idle connection checked (quiet), the request
// written, the answer's header and body read, the connection given back.
// The upstream (a goroutine of this process) answers each request at once.
func BenchmarkDirectRoundTrip(b *testing.B) {
	u := newRawUpstream(b, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if answer(c, `{"ok":true}`) != nil {
				return
			}
		}
	})
	p := newDirectPool(&http.Transport{
		DialContext:           (&net.Dialer{}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: u.roots, ServerName: "api.test"},
		ResponseHeaderTimeout: time.Minute,
	})
	b.Cleanup(func() { p.closeIdle(true) })
	req, _ := http.NewRequest("GET", "https://127.0.0.1:"+u.port+"/v1/models", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	exchange := func() {
		resp, err := p.roundTrip(req, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	exchange() // the connection and its handshake
	b.ReportAllocs()
	cpu := processCPU()
	b.ResetTimer()
	for b.Loop() {
		exchange()
	}
	b.StopTimer()
	if used := processCPU() - cpu; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
	}
	if p.n != 1 {
		b.Fatalf("%d idle connections, want the one reused", p.n)
	}
}

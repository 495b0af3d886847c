package proxy

import (
	"bufio"
	"bytes"
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

// tunnel is a raw client connection through a MITM'd CONNECT tunnel:
// bytes written are the HTTP/1.1 the sandbox sends, byte for byte.
type tunnel struct {
	t    *testing.T
	host string // host:port, as the Host header must name it
	conn *tls.Conn
	br   *bufio.Reader
}

// rawTunnel opens a CONNECT tunnel to host (on the upstream's port) as
// the sandbox and completes TLS with egressd's leaf.
func (e *env) rawTunnel(t *testing.T, id, token, host string) *tunnel {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	target := net.JoinHostPort(host, e.up.port)
	fmt.Fprintf(nc, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basicAuth(id, token))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Certificate())
	tc := tls.Client(nc, &tls.Config{RootCAs: roots, ServerName: host})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return &tunnel{t: t, conn: tc, br: bufio.NewReader(tc), host: target}
}

// send writes s, with "Host: api.test" naming the tunnel's host:port.
func (tn *tunnel) send(s string) {
	tn.t.Helper()
	s = strings.ReplaceAll(s, "Host: api.test\r\n", "Host: "+tn.host+"\r\n")
	if _, err := io.WriteString(tn.conn, s); err != nil {
		tn.t.Fatal(err)
	}
}

// read reads one answer to a request of method, body included.
func (tn *tunnel) read(method string) (*http.Response, string) {
	tn.t.Helper()
	resp, err := http.ReadResponse(tn.br, &http.Request{Method: method})
	if err != nil {
		tn.t.Fatalf("reading an answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tn.t.Fatalf("reading an answer's body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether egressd closed the connection (nothing more comes).
func (tn *tunnel) closed() bool {
	_, err := tn.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(fmt.Sprint(err), "reset")
}

// oneSecretEnv is an env (configured by mod, if not nil) with a sandbox and one tenant secret, k (value
// real-k, any host), and the sandbox's placeholder for it.
func oneSecretEnv(t *testing.T, mod func(*Config)) (e *env, sbx vault.Sandbox, token, ph string) {
	t.Helper()
	e = newEnv(t, mod)
	sbx, token = e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant})
	return e, sbx, token, e.placeholder(sbx, "k")
}

func (e *env) uris() []string {
	e.up.mu.Lock()
	defer e.up.mu.Unlock()
	var out []string
	for _, s := range e.up.got {
		out = append(out, s.URI)
	}
	return out
}

// Requests sent back to back in one write are answered in order, each
// substituted.
func TestTunnelPipelinedRequests(t *testing.T) {
	e, sbx, token, ph := oneSecretEnv(t, nil)
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("GET /one HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nX-Key: " + ph + "\r\n\r\nhello" +
		"GET /three HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\n\r\n")
	for _, m := range []string{"GET", "POST", "GET"} {
		if resp, body := tn.read(m); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if got := strings.Join(e.uris(), " "); got != "/one /two /three" {
		t.Fatalf("upstream got %s", got)
	}
	e.up.mu.Lock()
	defer e.up.mu.Unlock()
	for _, s := range e.up.got {
		if s.Header.Get("X-Key") != "real-k" {
			t.Fatalf("%s: X-Key %q", s.URI, s.Header.Get("X-Key"))
		}
	}
	if string(e.up.got[1].Body) != "hello" {
		t.Fatalf("body %q", e.up.got[1].Body)
	}
}

// A refused request's body is never read as a request of its own: it is
// drained (or the connection closed), so a request hidden in it cannot
// reach the upstream.
func TestTunnelRefusedBodyIsNotARequest(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant, AllowedHosts: []string{"other.test"}})
	e.secret(vault.SecretInput{Name: "ok", Value: "real-ok", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "k")
	hidden := "GET /smuggled HTTP/1.1\r\nHost: smuggled.test\r\n\r\n"
	for _, tc := range []struct{ name, framing, body string }{
		{"content-length", "Content-Length: " + fmt.Sprint(len(hidden)), hidden},
		{"chunked", "Transfer-Encoding: chunked", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(hidden), hidden)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			tn := e.rawTunnel(t, sbx.ID, token, "api.test")
			tn.send("POST /refused HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer " + ph + "\r\n" + tc.framing + "\r\n\r\n" + tc.body +
				"GET /after HTTP/1.1\r\nHost: api.test\r\n\r\n")
			resp, _ := tn.read("POST")
			if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "host_not_allowed" {
				t.Fatalf("status %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
			}
			if resp, body := tn.read("GET"); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("second request: %d %q", resp.StatusCode, body)
			}
			got := e.uris()[before:]
			if len(got) != 1 || got[0] != "/after" {
				t.Fatalf("upstream got %v", got)
			}
		})
	}
}

// Expect: 100-continue: the interim answer comes when the body is
// wanted; a request refused before its body gets no 100, and the
// connection ends (the body was never sent).
func TestTunnelExpectContinue(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant, SubstituteIn: []vault.Location{vault.InHeader, vault.InBody}})
	e.secret(vault.SecretInput{Name: "far", Value: "real-far", Scope: vault.ScopeTenant, AllowedHosts: []string{"other.test"}})
	ph, far := e.placeholder(sbx, "k"), e.placeholder(sbx, "far")

	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	body := `{"key":"` + ph + `"}`
	tn.send(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(body)))
	line, err := tn.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim %q %v", line, err)
	}
	if blank, _ := tn.br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100: %q", blank)
	}
	tn.send(body)
	if resp, got := tn.read("POST"); resp.StatusCode != 200 || got != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, got)
	}
	if b := string(e.up.last(t).Body); b != `{"key":"real-k"}` {
		t.Fatalf("upstream body %q", b)
	}

	tn = e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("POST /no HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nAuthorization: Bearer " + far + "\r\nContent-Length: 10\r\n\r\n")
	resp, _ := tn.read("POST")
	if resp.StatusCode != 403 || !resp.Close {
		t.Fatalf("status %d, Connection: close %v", resp.StatusCode, resp.Close)
	}
	if !tn.closed() {
		t.Fatal("the connection stayed open with a body the client was told not to send")
	}
}

// HTTP/1.0 and Connection: close end the tunnel after the answer, which
// says so.
func TestTunnelCloses(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant})
	for _, req := range []string{
		"GET /a HTTP/1.0\r\nHost: api.test\r\n\r\n",
		"GET /b HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
	} {
		tn := e.rawTunnel(t, sbx.ID, token, "api.test")
		tn.send(req)
		resp, body := tn.read("GET")
		if resp.StatusCode != 200 || body != "ok" || !resp.Close {
			t.Fatalf("%q: %d %q close=%v", req, resp.StatusCode, body, resp.Close)
		}
		if !tn.closed() {
			t.Fatalf("%q: the connection stayed open", req)
		}
	}
}

// What cannot be read as a request gets a clear 400 and the tunnel ends;
// nothing goes upstream.
func TestTunnelUnreadableRequests(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant})
	for _, tc := range []struct {
		req    string
		status int
	}{
		{"NONSENSE\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n\r\n", 400},                                                                      // no Host
		{"GET / HTTP/1.1\r\nHost: api.test\r\nBad Name: x\r\n\r\n", 400},                                     // space in a name
		{"GET / HTTP/1.1\r\nHost: api.test\r\nHost: api.test\r\n\r\n", 400},                                  // two Hosts
		{"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400},       // two lengths
		{"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},               // not chunked alone
		{"GET / HTTP/1.1\r\nHost: api.test\r\nExpect: something-else\r\n\r\n", http.StatusExpectationFailed}, // unknown expectation
		{"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n", http.StatusMethodNotAllowed},
		{"GET / HTTP/2.0\r\nHost: api.test\r\n\r\n", 505},
	} {
		tn := e.rawTunnel(t, sbx.ID, token, "api.test")
		tn.send(tc.req)
		resp, body := tn.read("GET")
		if resp.StatusCode != tc.status || resp.Header.Get("X-Egress-Denied") != "bad_request" || !strings.Contains(body, `"code":"bad_request"`) {
			t.Fatalf("%q: %d %q %s", tc.req, resp.StatusCode, resp.Header.Get("X-Egress-Denied"), body)
		}
		if !tn.closed() {
			t.Fatalf("%q: the connection stayed open", tc.req)
		}
	}
	if n := e.up.count(); n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}
}

// An answer without a known end is streamed: each part reaches the
// client as the upstream sends it, not when the answer is complete.
func TestTunnelStreamsAnswers(t *testing.T) {
	e, sbx, token, ph := oneSecretEnv(t, nil)
	firstSeen := make(chan struct{})
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-firstSeen:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "data: two\n\n")
	}
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("GET /events HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\n\r\n")
	resp, err := http.ReadResponse(tn.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	start := time.Now()
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("%q %v", line, err)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("the first event waited for the whole answer")
	}
	close(firstSeen)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Fatalf("%q %v", rest, err)
	}
}

// An upstream answer that breaks off is never passed on as complete.
func TestTunnelCutAnswerIsNotWhole(t *testing.T) {
	e, sbx, token, ph := oneSecretEnv(t, nil)
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only ten b")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	for _, redact := range []bool{false, true} {
		hdr := "X-Key: " + ph
		if !redact {
			hdr = "X-Nothing: 1" // no value sent: the body passes unscanned
		}
		tn := e.rawTunnel(t, sbx.ID, token, "api.test")
		tn.send("GET / HTTP/1.1\r\nHost: api.test\r\n" + hdr + "\r\n\r\n")
		resp, err := http.ReadResponse(tn.br, &http.Request{Method: "GET"})
		if err != nil {
			continue // broke off before the header: fine
		}
		_, err = io.ReadAll(resp.Body)
		switch {
		case redact && resp.StatusCode == http.StatusBadGateway && err == nil:
			// Masked whole, so found short before anything was sent: a
			// complete 502 of egressd's own.
		case err == nil:
			t.Fatalf("redact=%v: a cut answer read as whole (status %d)", redact, resp.StatusCode)
		}
	}
}

// Trailers pass; a HEAD answer keeps its Content-Length and no body, and
// the connection carries on.
func TestTunnelTrailersAndHead(t *testing.T) {
	e, sbx, token, ph := oneSecretEnv(t, nil)
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.Method == "HEAD" {
			w.Header().Set("Content-Length", "1234")
			return
		}
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
	}
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("HEAD /h HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\n\r\n")
	resp, body := tn.read("HEAD")
	if resp.StatusCode != 200 || resp.ContentLength != 1234 || body != "" {
		t.Fatalf("HEAD: %d %d %q", resp.StatusCode, resp.ContentLength, body)
	}
	tn.send("GET /t HTTP/1.1\r\nHost: api.test\r\nTE: trailers\r\nX-Key: " + ph + "\r\n\r\n")
	resp, body = tn.read("GET")
	if resp.StatusCode != 200 || body != "body" || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Fatalf("GET: %d %q trailer %v", resp.StatusCode, body, resp.Trailer)
	}
}

// Once a request is on record (its final row written), a body still
// streaming to the upstream gets no more values: a value would leave
// that no row mentions.
func TestNoSubstitutionAfterRecord(t *testing.T) {
	e := newEnv(t, nil)
	sbx, _ := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "real-k", Scope: vault.ScopeTenant, SubstituteIn: []vault.Location{vault.InBody}})
	ph := e.placeholder(sbx, "k")
	st := &reqState{id: "req1", sess: &session{sbx: sbx, host: "api.test", port: e.up.port}, host: "api.test", ctx: t.Context(), start: time.Now()}
	s := &subst{p: e.proxy, st: st, ctx: t.Context(), sbx: &sbx, host: "api.test", tls: true}
	st.sub = s
	fn := s.fn(vault.InBody, false)
	in := []byte(`{"a":"` + ph + `","b":"` + ph + `"}`)
	half := bytes.Index(in, []byte(`,"b"`))
	if out := Replace(in[:half], fn); !bytes.Contains(out, []byte("real-k")) {
		t.Fatalf("before the record: %q", out)
	}
	e.proxy.finalize(st)
	if out := Replace(in[half:], fn); bytes.Contains(out, []byte("real-k")) || !bytes.Contains(out, []byte(ph)) {
		t.Fatalf("after the record: %q", out)
	}
	if ev := e.event(t); len(ev.Uses) != 1 || ev.Uses[0].Action != ActionSubstituted {
		t.Fatalf("row uses %+v", ev.Uses)
	}
}

// A value the upstream echoes as a header's or a trailer's name (in
// whatever case) reaches the sandbox as its placeholder, announcement
// included.
func TestEchoInHeaderNamesMasked(t *testing.T) {
	const value = "tok-EchoName42"
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: value, Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "k")
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		v := r.Header.Get("X-Key")
		w.Header().Set("Trailer", "X-T-"+v)
		w.Header().Set("X-H-"+v, "1")
		io.WriteString(w, "body")
		w.Header().Set("X-T-"+v, "2")
	}
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("GET / HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\nTE: trailers\r\nConnection: close\r\n\r\n")
	raw, err := io.ReadAll(tn.br)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToLower(string(raw)), strings.ToLower(value)) {
		t.Fatalf("the value reached the sandbox:\n%s", raw)
	}
	if got := strings.Count(string(raw), ph); got < 3 {
		t.Fatalf("placeholder %d times in:\n%s", got, raw)
	}
}

// A client that goes away while a slow answer is awaited cancels the
// upstream call; a client that stays gets its slow answer, and the tunnel
// carries on (the watch's read ahead does not eat the next request).
func TestTunnelClientGoneCancelsUpstream(t *testing.T) {
	e, sbx, token, ph := oneSecretEnv(t, nil)
	cancelled := make(chan string, 4)
	release := make(chan struct{})
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Path == "/gone" {
			select {
			case <-r.Context().Done():
				cancelled <- r.URL.Path
			case <-time.After(10 * time.Second):
			}
			return
		}
		select {
		case <-release:
			io.WriteString(w, "slow")
		case <-time.After(10 * time.Second):
		}
	}
	// Stays: answered after the watch began, then a second request.
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("GET /stays HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\n\r\n")
	time.Sleep(clientWatchAfter + 200*time.Millisecond) // the watch has begun
	close(release)
	if resp, body := tn.read("GET"); resp.StatusCode != 200 || body != "slow" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	tn.send("GET /again HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\n\r\n")
	if resp, body := tn.read("GET"); resp.StatusCode != 200 || body != "slow" {
		t.Fatalf("after a watched request: %d %q", resp.StatusCode, body)
	}

	// Goes: the tunnel closes while the upstream works.
	gone := e.rawTunnel(t, sbx.ID, token, "api.test")
	gone.send("GET /gone HTTP/1.1\r\nHost: api.test\r\nX-Key: " + ph + "\r\n\r\n")
	deadline := time.Now().Add(5 * time.Second)
	for e.up.count() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	gone.conn.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call went on after the client left")
	}
}

// A HEAD that fails the checks after parsing gets its refusal without a
// body, as any answer to a HEAD: nothing follows the header.
func TestTunnelRefusedHeadHasNoBody(t *testing.T) {
	e, sbx, token, _ := oneSecretEnv(t, nil)
	tn := e.rawTunnel(t, sbx.ID, token, "api.test")
	tn.send("HEAD / HTTP/1.1\r\nHost: api.test\r\nBad Name: x\r\n\r\n")
	if resp, body := tn.read("HEAD"); resp.StatusCode != 400 || body != "" || resp.Header.Get("X-Egress-Denied") != "bad_request" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if !tn.closed() {
		t.Fatal("bytes after a HEAD's answer")
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

const realValue = "real-Value-0123456789"

// noLeak fails the test if a value shows in the proxy's log.
func (e *env) noLeak(t *testing.T, values ...string) {
	t.Cleanup(func() {
		e.logMu.Lock()
		defer e.logMu.Unlock()
		for _, v := range values {
			if strings.Contains(e.logs.String(), v) {
				t.Errorf("value %q found in the proxy log", v)
			}
		}
	})
}

func TestSubstitutionEverywhere(t *testing.T) {
	e := newEnv(t, nil)
	e.noLeak(t, realValue)
	sbx, token := e.sandbox(vault.SandboxInput{ExternalUserID: "eu1"})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeExternalUser, ExternalUserID: "eu1",
		AllowedHosts: []string{"api.test"}, SubstituteIn: []vault.Location{vault.InHeader, vault.InQuery, vault.InPath, vault.InBody}})
	ph := e.placeholder(sbx, "k")
	c := e.client(sbx.ID, token)
	u := func(pq string) string { return e.url("https", "api.test", pq) }

	gz := func(s string) *bytes.Buffer {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return &b
	}
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("token", ph)
	fw, _ := mw.CreateFormFile("file", "a.txt")
	fw.Write([]byte("key=" + ph + "\n"))
	mw.Close()
	big := strings.Repeat("x", 3<<20/2) + ph + strings.Repeat("y", 1<<20)

	cases := []struct {
		name   string
		method string
		url    string
		body   io.Reader
		hdr    map[string]string
		check  func(t *testing.T, got seen)
	}{
		{"path", "GET", u("/v1/keys/" + ph + "/info"), nil, nil, func(t *testing.T, got seen) {
			if got.URI != "/v1/keys/"+realValue+"/info" {
				t.Fatalf("URI %q", got.URI)
			}
		}},
		{"query", "GET", u("/v1/search?q=cats&api_key=" + ph), nil, nil, func(t *testing.T, got seen) {
			if got.URI != "/v1/search?q=cats&api_key="+realValue {
				t.Fatalf("URI %q", got.URI)
			}
		}},
		{"header", "GET", u("/v1"), nil, map[string]string{"X-Api-Key": ph, "Authorization": "Bearer " + ph}, func(t *testing.T, got seen) {
			if got.Header.Get("X-Api-Key") != realValue || got.Header.Get("Authorization") != "Bearer "+realValue {
				t.Fatalf("headers %v", got.Header)
			}
		}},
		{"basic", "GET", u("/v1"), nil, map[string]string{"Authorization": basicAuth("user", ph)}, func(t *testing.T, got seen) {
			if got.Header.Get("Authorization") != basicAuth("user", realValue) {
				t.Fatalf("authorization %q", got.Header.Get("Authorization"))
			}
		}},
		{"json body", "POST", u("/v1/chat"), strings.NewReader(`{"key":"` + ph + `","n":1}`), map[string]string{"Content-Type": "application/json"}, func(t *testing.T, got seen) {
			want := `{"key":"` + realValue + `","n":1}`
			if string(got.Body) != want || got.Header.Get("Content-Length") != fmt.Sprint(len(want)) {
				t.Fatalf("body %q length %q", got.Body, got.Header.Get("Content-Length"))
			}
		}},
		{"form body", "POST", u("/v1/form"), strings.NewReader("a=1&key=" + ph), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, func(t *testing.T, got seen) {
			if string(got.Body) != "a=1&key="+realValue {
				t.Fatalf("body %q", got.Body)
			}
		}},
		{"multipart body", "POST", u("/v1/upload"), bytes.NewReader(mp.Bytes()), map[string]string{"Content-Type": mw.FormDataContentType()}, func(t *testing.T, got seen) {
			if bytes.Contains(got.Body, []byte(ph)) || bytes.Count(got.Body, []byte(realValue)) != 2 {
				t.Fatalf("body %q", got.Body)
			}
		}},
		{"gzip body", "POST", u("/v1/gz"), gz(`{"key":"` + ph + `"}`), map[string]string{"Content-Encoding": "gzip"}, func(t *testing.T, got seen) {
			// Forwarded decoded, never re-compressed (echo_leak_test.go).
			if string(got.Body) != `{"key":"`+realValue+`"}` || got.Header.Get("Content-Encoding") != "" {
				t.Fatalf("body %q, Content-Encoding %q", got.Body, got.Header.Get("Content-Encoding"))
			}
		}},
		{"body over 1 MiB streamed", "POST", u("/v1/big"), strings.NewReader(big), nil, func(t *testing.T, got seen) {
			want := strings.Replace(big, ph, realValue, 1)
			if string(got.Body) != want {
				t.Fatalf("body of %d bytes differs (want %d)", len(got.Body), len(want))
			}
			if got.Header.Get("Content-Length") != "" {
				t.Fatalf("streamed body sent with Content-Length %q", got.Header.Get("Content-Length"))
			}
		}},
		{"chunked upload", "POST", u("/v1/chunked"), io.MultiReader(strings.NewReader("a="), strings.NewReader(ph)), nil, func(t *testing.T, got seen) {
			if string(got.Body) != "a="+realValue {
				t.Fatalf("body %q", got.Body)
			}
		}},
		{"non-ascii body", "POST", u("/v1/utf8"), strings.NewReader("héllo wörld ✓ " + ph + " 日本"), nil, func(t *testing.T, got seen) {
			if string(got.Body) != "héllo wörld ✓ "+realValue+" 日本" {
				t.Fatalf("body %q", got.Body)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, c, tc.method, tc.url, tc.body, tc.hdr)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			tc.check(t, e.up.last(t))
			ev := e.event(t)
			if ev.Outcome != OutcomeSubstituted || ev.SandboxID != sbx.ID || ev.ExternalUserID != "eu1" || ev.Uses[0].Level != "external_user" {
				t.Fatalf("event %+v", ev)
			}
			if strings.Contains(ev.Path, realValue) && tc.name != "path" {
				t.Fatalf("event path holds the value")
			}
		})
	}
}

// Values that need escaping are escaped for the part of the URL they go in.
func TestSubstitutionEscapesURLValues(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "a+b/c=d&e", Scope: vault.ScopeTenant, SubstituteIn: []vault.Location{vault.InQuery, vault.InPath}})
	ph := e.placeholder(sbx, "k")
	do(t, e.client(sbx.ID, token), "GET", e.url("https", "api.test", "/p/"+ph+"?k="+ph), nil, nil)
	got := e.up.last(t)
	if got.URI != "/p/a+b%2Fc=d&e?k=a%2Bb%2Fc%3Dd%26e" {
		t.Fatalf("URI %q", got.URI)
	}
}

func TestEachLevelEndToEnd(t *testing.T) {
	e := newEnv(t, nil)
	attr := vault.SandboxInput{OwnerUserID: "u1", WorkspaceID: "w1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1"}
	type lv struct {
		level resolver.Level
		in    vault.SecretInput
	}
	for _, l := range []lv{
		{resolver.LevelTenant, vault.SecretInput{Scope: vault.ScopeTenant}},
		{resolver.LevelWorkspace, vault.SecretInput{Scope: vault.ScopeWorkspace, WorkspaceID: "w1"}},
		{resolver.LevelExternalWorkspace, vault.SecretInput{Scope: vault.ScopeExternalWorkspace, ExternalWorkspaceID: "ew1"}},
		{resolver.LevelExternalUser, vault.SecretInput{Scope: vault.ScopeExternalUser, ExternalUserID: "eu1"}},
		{resolver.LevelUser, vault.SecretInput{Scope: vault.ScopeUser, OwnerUserID: "u1"}},
		{resolver.LevelBinding, vault.SecretInput{Scope: vault.ScopeResource}},
	} {
		t.Run(l.level.String(), func(t *testing.T) {
			sbx, token := e.sandbox(attr)
			in := l.in
			in.Name, in.Value = "lv-"+l.level.String(), "value-"+l.level.String()
			if in.Scope == vault.ScopeResource {
				in.ResourceID = sbx.ID
			}
			e.secret(in)
			ph := e.placeholder(sbx, in.Name)
			resp, _ := do(t, e.client(sbx.ID, token), "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-Key": ph})
			if resp.StatusCode != 200 || e.up.last(t).Header.Get("X-Key") != in.Value {
				t.Fatalf("status %d, upstream got %q", resp.StatusCode, e.up.last(t).Header.Get("X-Key"))
			}
			if ev := e.event(t); ev.Uses[0].Level != l.level.String() {
				t.Fatalf("level %q", ev.Uses[0].Level)
			}
		})
	}
}

// rawConnect sends a CONNECT by hand and returns the proxy's answer.
func rawConnect(t *testing.T, proxyAddr, target, auth string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(conn, "Proxy-Authorization: %s\r\n", auth)
	}
	io.WriteString(conn, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestConnectDenials(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	gone, goneToken := e.sandbox(vault.SandboxInput{})
	if err := e.store.DeleteSandbox(e.tenant, gone.ID); err != nil {
		t.Fatal(err)
	}
	good := basicAuth(sbx.ID, token)
	cases := []struct {
		name, target, auth string
		status             int
		reason             string
	}{
		{"no credentials", "api.test:443", "", 407, "no_credentials"},
		{"wrong token", "api.test:443", basicAuth(sbx.ID, token+"x"), 407, "bad_credentials"},
		{"unknown sandbox", "api.test:443", basicAuth("sbx_nope", token), 407, "bad_credentials"},
		{"deleted sandbox", "api.test:443", basicAuth(gone.ID, goneToken), 407, "bad_credentials"},
		{"not basic", "api.test:443", "Bearer " + token, 407, "bad_credentials"},
		{"metadata address", "metadata.test:80", good, 403, "private_address"},
		{"private address", "private.test:443", good, 403, "private_address"},
		{"private literal", "10.0.0.1:443", good, 403, "private_address"},
		{"ipv4-mapped loopback outside allow", "[::ffff:169.254.169.254]:443", good, 403, "private_address"},
		{"nat64", "[64:ff9b::a9fe:a9fe]:443", good, 403, "private_address"},
		{"own listener", e.addr, good, 403, "own_listener"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := rawConnect(t, e.addr, c.target, c.auth)
			if resp.StatusCode != c.status || resp.Header.Get("X-Egress-Denied") != c.reason {
				t.Fatalf("status %d reason %q, want %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"), c.status, c.reason)
			}
			if c.status == 407 && resp.Header.Get("Proxy-Authenticate") == "" {
				t.Fatal("407 without Proxy-Authenticate")
			}
		})
	}
}

func TestRequestDenials(t *testing.T) {
	e := newEnv(t, nil)
	e.noLeak(t, "openai-real", "header-only-real")
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "openai-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.openai.test"}})
	e.secret(vault.SecretInput{Name: "other", Value: "other-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"other.test"}})
	e.secret(vault.SecretInput{Name: "hdr", Value: "header-only-real", Scope: vault.ScopeTenant, SubstituteIn: []vault.Location{vault.InHeader}})
	e.secret(vault.SecretInput{Name: "crlf", Value: "bad\r\nX-Injected: 1", Scope: vault.ScopeTenant})
	openai, hdr, crlf := e.placeholder(sbx, "openai"), e.placeholder(sbx, "hdr"), e.placeholder(sbx, "crlf")
	c := e.client(sbx.ID, token)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	defer plain.Close()
	_, plainPort, _ := net.SplitHostPort(plain.Listener.Addr().String())

	cases := []struct {
		name   string
		url    string
		hdr    map[string]string
		reason string
	}{
		{"disallowed host", e.url("https", "other.test", "/"), map[string]string{"Authorization": "Bearer " + openai}, "host_not_allowed"},
		{"location not allowed", e.url("https", "api.openai.test", "/?k="+hdr), nil, "location_not_allowed"},
		{"plain http", "http://api.openai.test:" + plainPort + "/", map[string]string{"Authorization": "Bearer " + openai}, "plain_http"},
		{"header injection", e.url("https", "api.openai.test", "/"), map[string]string{"X-Key": crlf}, "invalid_value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.up.count()
			resp, body := do(t, c, "GET", tc.url, nil, tc.hdr)
			if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != tc.reason {
				t.Fatalf("status %d reason %q body %s", resp.StatusCode, resp.Header.Get("X-Egress-Denied"), body)
			}
			if !strings.Contains(string(body), `"code":"`+tc.reason+`"`) {
				t.Fatalf("body %s", body)
			}
			if e.up.count() != before {
				t.Fatal("a refused request reached the upstream")
			}
			if ev := e.event(t); ev.Outcome != OutcomeDenied || ev.Reason != tc.reason {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

// A placeholder quoted in a body where its secret may not go is forwarded
// untouched and noted; the request succeeds.
func TestBodyPlaceholderLeftUntouched(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "openai-real", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "openai")
	body := `{"messages":[{"role":"user","content":"my key is ` + ph + `"}]}`
	resp, _ := do(t, e.client(sbx.ID, token), "POST", e.url("https", "api.test", "/v1/chat"), strings.NewReader(body),
		map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := e.up.last(t)
	if string(got.Body) != body || got.Header.Get("Authorization") != "Bearer openai-real" {
		t.Fatalf("upstream got body %q auth %q", got.Body, got.Header.Get("Authorization"))
	}
	ev := e.event(t)
	if len(ev.Uses) != 2 || ev.Uses[1].Location != vault.InBody || ev.Uses[1].Action != ActionLeft || ev.Uses[1].Reason != "location_not_allowed" {
		t.Fatalf("uses %+v", ev.Uses)
	}
}

func TestForeignAndUnknownPlaceholders(t *testing.T) {
	e := newEnv(t, nil)
	a, tokenA := e.sandbox(vault.SandboxInput{})
	b, _ := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "openai-real", Scope: vault.ScopeTenant})
	phB := e.placeholder(b, "openai")
	e.placeholder(a, "openai")
	unknown := vault.PlaceholderMarker + strings.Repeat("Z", vault.PlaceholderTailLen)
	resp, _ := do(t, e.client(a.ID, tokenA), "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-B": phB, "X-U": unknown})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := e.up.last(t)
	if got.Header.Get("X-B") != phB || got.Header.Get("X-U") != unknown {
		t.Fatalf("upstream got %v", got.Header)
	}
	ev := e.event(t)
	var leak, unk bool
	for _, u := range ev.Uses {
		leak = leak || u.Leak && u.LeakSandboxID == b.ID && u.Action == ActionLeft
		unk = unk || u.Reason == "unknown_placeholder"
	}
	if !leak || !unk {
		t.Fatalf("uses %+v", ev.Uses)
	}
	var m dto.Metric
	e.proxy.metrics.leaks.Write(&m)
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Fatalf("leak metric %v", n)
	}
}

// A host where no secret of the sandbox may be used is tunnelled: the
// client talks TLS to the upstream itself (it verifies the upstream's own
// certificate, not egressd's) and the bytes pass unchanged.
func TestTunnelPassesBytesUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "openai-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.openai.test"}})
	ph := e.placeholder(sbx, "openai")
	pu := &url.URL{Scheme: "http", Host: e.addr, User: url.UserPassword(sbx.ID, token)}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: e.up.roots}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := "raw " + ph + " bytes"
	resp, _ := do(t, c, "POST", e.url("https", "elsewhere.test", "/x?q="+ph), strings.NewReader(body), map[string]string{"X-Key": ph})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := e.up.last(t)
	if string(got.Body) != body || got.Header.Get("X-Key") != ph || got.URI != "/x?q="+ph {
		t.Fatalf("tunnelled request changed: %+v", got)
	}
	// The MITM'd host, for contrast, is not trusted by this client.
	if _, err := c.Get(e.url("https", "api.openai.test", "/")); err == nil {
		t.Fatal("a MITM'd host verified against the upstream's CA")
	}
}

func TestRedaction(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "openai-real-echo", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "openai")
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"you_sent":%q,"twice":%q}`, r.Header.Get("Authorization"), r.Header.Get("Authorization"))
	}
	resp, body := do(t, e.client(sbx.ID, token), "GET", e.url("https", "api.test", "/echo"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if resp.StatusCode != 200 || strings.Contains(string(body), "openai-real-echo") || strings.Count(string(body), ph) != 2 {
		t.Fatalf("body %s", body)
	}
}

func TestUpstreamErrorIsClear(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "v", Scope: vault.ScopeTenant})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	_, deadPort, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	resp, body := do(t, e.client(sbx.ID, token), "GET", "https://api.test:"+deadPort+"/", nil, nil)
	if resp.StatusCode != 502 || resp.Header.Get("X-Egress-Error") == "" {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
}

// A sandbox deleted while its tunnel is open is refused on its next request.
func TestDeletedSandboxInsideTunnel(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "v", Scope: vault.ScopeTenant})
	c := e.client(sbx.ID, token)
	if resp, _ := do(t, c, "GET", e.url("https", "api.test", "/"), nil, nil); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if err := e.store.DeleteSandbox(e.tenant, sbx.ID); err != nil {
		t.Fatal(err)
	}
	resp, _ := do(t, c, "GET", e.url("https", "api.test", "/"), nil, nil)
	if resp.StatusCode != 407 {
		t.Fatalf("status %d after delete", resp.StatusCode)
	}
}

// A request inside a tunnel may not name another host.
func TestHostMismatchInsideTunnel(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "openai", Value: "v", Scope: vault.ScopeTenant})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	target := "api.test:" + e.up.port
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basicAuth(sbx.ID, token))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("connect: %v %v", resp, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Certificate())
	tc := tls.Client(&bufConn{Conn: conn, r: br}, &tls.Config{ServerName: "api.test", RootCAs: roots})
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: other.test:%s\r\n\r\n", e.up.port)
	resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "host_mismatch" {
		t.Fatalf("status %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func TestWebSocketThroughMITM(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "ws", Value: "ws-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	ph := e.placeholder(sbx, "ws")
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Key") != "ws-real" {
			http.Error(w, "bad upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		// Echo the client's bytes until it closes.
		buf := make([]byte, 64)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				conn.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}
	req, _ := http.NewRequest("GET", e.url("https", "api.test", "/ws"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString([]byte("0123456789abcdef")))
	req.Header.Set("X-Key", ph)
	resp, err := e.client(sbx.ID, token).Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	rw := resp.Body.(io.ReadWriteCloser)
	defer rw.Close()
	// The handshake carried a value: egressd reads the upstream's frames
	// (here the client's masked frame, echoed) and passes them unmasked.
	rw.Write(clientFrame("frame-1"))
	want := textFrame(true, "frame-1")
	got := make([]byte, len(want))
	if _, err := io.ReadFull(rw, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("echo %q %v", got, err)
	}
}

func TestCurlThroughProxy(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "gh", Value: "ghp_real_value", Scope: vault.ScopeTenant, PlaceholderPrefix: "ghp_"})
	ph := e.placeholder(sbx, "gh")
	if !strings.HasPrefix(ph, "ghp_"+vault.PlaceholderMarker) {
		t.Fatalf("placeholder %q", ph)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, e.ca.CertPEM(), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--fail-with-body", "--noproxy", "",
		"--proxy", "http://"+sbx.ID+":"+token+"@"+e.addr, "--cacert", caFile,
		"-H", "Authorization: token "+ph, "-d", `{"x":1}`,
		e.url("https", "api.github.test", "/user")).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	got := e.up.last(t)
	if got.Header.Get("Authorization") != "token ghp_real_value" || string(got.Body) != `{"x":1}` {
		t.Fatalf("upstream got %q %q", got.Header.Get("Authorization"), got.Body)
	}
}

func TestMetricsNeverCarryIDsOrValues(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{ExternalUserID: "person-7"})
	e.secret(vault.SecretInput{Name: "openai", Value: "metric-secret-value", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "openai")
	do(t, e.client(sbx.ID, token), "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-Key": ph})
	rawConnect(t, e.addr, "api.test:443", "")
	mfs, err := e.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		fmt.Fprintln(&text, mf.String())
	}
	for _, want := range []string{"egressd_proxy_requests_total", "egressd_proxy_substitutions_total", "egressd_proxy_denials_total", "egressd_proxy_request_duration_seconds", "egressd_proxy_active_tunnels", "egressd_proxy_cert_cache_size", "egressd_resolver_cache_hits_total"} {
		if !names[want] {
			t.Errorf("metric %s missing", want)
		}
	}
	for _, bad := range []string{"metric-secret-value", sbx.ID, "person-7", e.tenant, ph} {
		if strings.Contains(text.String(), bad) {
			t.Errorf("metrics contain %q", bad)
		}
	}
}

func TestTenantHostRules(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	c := e.client(sbx.ID, token)
	c.Transport.(*http.Transport).TLSClientConfig.RootCAs = e.up.roots
	deny, allow := []string{"*.blocked.test"}, []string{"api.test", "x.blocked.test"}
	if _, err := e.store.UpdateSettings(e.tenant, vault.SettingsPatch{EgressDenyHosts: &deny}); err != nil {
		t.Fatal(err)
	}
	if resp := rawConnect(t, e.addr, "x.blocked.test:443", basicAuth(sbx.ID, token)); resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "host_denied" {
		t.Fatalf("deny list: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	if resp, _ := do(t, c, "GET", e.url("https", "fine.test", "/"), nil, nil); resp.StatusCode != 200 {
		t.Fatalf("unlisted host: %d", resp.StatusCode)
	}
	if _, err := e.store.UpdateSettings(e.tenant, vault.SettingsPatch{EgressAllowHosts: &allow}); err != nil {
		t.Fatal(err)
	}
	if resp := rawConnect(t, e.addr, "fine.test:443", basicAuth(sbx.ID, token)); resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != "host_denied" {
		t.Fatalf("allow list: %d", resp.StatusCode)
	}
	// Deny wins over allow.
	if resp := rawConnect(t, e.addr, "x.blocked.test:443", basicAuth(sbx.ID, token)); resp.StatusCode != 403 {
		t.Fatalf("deny over allow: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, "GET", e.url("https", "api.test", "/"), nil, nil); resp.StatusCode != 200 {
		t.Fatalf("allowed host: %d", resp.StatusCode)
	}
}

// Inside a MITM'd tunnel the header size limit holds: a hostile sandbox
// cannot make egressd buffer unbounded headers.
func TestHeaderLimitInsideTunnel(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxHeaderBytes = 8 << 10 })
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "v", Scope: vault.ScopeTenant})
	req, _ := http.NewRequest("GET", e.url("https", "api.test", "/"), nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := e.client(sbx.ID, token).Do(req)
	// The server answers 431 and closes; a client still writing its headers
	// may see the reset before the answer. Either way nothing goes upstream.
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d", resp.StatusCode)
		}
	} else if !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "broken pipe") && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("unexpected error: %v", err)
	}
	if e.up.count() != 0 {
		t.Fatal("oversized request reached the upstream")
	}
}

// Sync audit: the record is stored before the value leaves, and a sink that
// fails refuses the request (fail closed) with nothing sent upstream.
func TestAuditBeforeForwardAndFailClosed(t *testing.T) {
	var fail bool
	var order []string
	var mu sync.Mutex
	e := newEnv(t, func(c *Config) {
		c.Sink = SinkFunc(func(_ context.Context, ev *Event) error {
			mu.Lock()
			defer mu.Unlock()
			if !ev.Final && fail {
				return fmt.Errorf("disk full")
			}
			order = append(order, fmt.Sprintf("record final=%v", ev.Final))
			return nil
		})
	})
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		mu.Lock()
		order = append(order, "upstream")
		mu.Unlock()
		io.WriteString(w, "ok")
	}
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "audited-value", Scope: vault.ScopeTenant, SubstituteIn: []vault.Location{vault.InHeader, vault.InBody}})
	ph := e.placeholder(sbx, "k")
	c := e.client(sbx.ID, token)
	do(t, c, "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-Key": ph})
	mu.Lock()
	got := strings.Join(order, ", ")
	mu.Unlock()
	if got != "record final=false, upstream, record final=true" {
		t.Fatalf("order: %s", got)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	before := e.up.count()
	resp, _ := do(t, c, "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-Key": ph})
	if resp.StatusCode != 503 || resp.Header.Get("X-Egress-Denied") != "audit_unavailable" || e.up.count() != before {
		t.Fatalf("failing sink: status %d %q, upstream %d→%d", resp.StatusCode, resp.Header.Get("X-Egress-Denied"), before, e.up.count())
	}
	// A streamed body: the value is never sent, the placeholder goes as is.
	big := strings.Repeat("x", 2<<20) + ph
	resp, _ = do(t, c, "POST", e.url("https", "api.test", "/"), strings.NewReader(big), nil)
	if resp.StatusCode != 200 || e.up.count() != before+1 {
		t.Fatalf("streamed body with a failing sink: status %d, upstream %d→%d", resp.StatusCode, before, e.up.count())
	}
	if got := string(e.up.last(t).Body); got != big {
		t.Fatalf("a streamed body changed without its record (%d bytes, value sent: %v)", len(got), strings.Contains(got, "audited-value"))
	}
}

// An upstream that compresses unasked (the transport did not negotiate,
// e.g. because of a Range header) is decoded and scanned; an encoding
// egressd cannot read is refused rather than passed unchecked.
func TestRedactionOfUnaskedEncodings(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "unasked-echo-value", Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "k")
	enc := "gzip"
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Encoding", enc)
		w.Header().Set("Content-Type", "application/json")
		if enc == "gzip" {
			zw := gzip.NewWriter(w)
			fmt.Fprintf(zw, `{"echo":%q}`, r.Header.Get("X-Key"))
			zw.Close()
			return
		}
		fmt.Fprintf(w, `opaque %s`, r.Header.Get("X-Key"))
	}
	c := e.client(sbx.ID, token)
	hdr := map[string]string{"X-Key": ph, "Range": "bytes=0-"}
	resp, body := do(t, c, "GET", e.url("https", "api.test", "/"), nil, hdr)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || string(body) != `{"echo":"`+ph+`"}` {
		t.Fatalf("gzip: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
	enc = "br"
	resp, body = do(t, c, "GET", e.url("https", "api.test", "/"), nil, hdr)
	if resp.StatusCode != 502 || strings.Contains(string(body), "unasked-echo-value") {
		t.Fatalf("br: %d %q", resp.StatusCode, body)
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
	"github.com/egressd/egressd/vault/storage"
)

// transparentEnv is the harness with a transparent listener on loopback
// whose original destination is what dst returns (the kernel's redirect
// is the root test's, transparent_root_test.go): the flow after it, with
// a real TLS upstream and real clients, runs without root.
type transparentEnv struct {
	*env
	taddr string
}

func newTransparentEnv(t *testing.T, dst func(*transparentEnv) (netip.AddrPort, error), mod ...func(*Config)) *transparentEnv {
	t.Helper()
	e := newEnv(t, func(c *Config) {
		for _, m := range mod {
			m(c)
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	te := &transparentEnv{env: e, taddr: l.Addr().String()}
	// The operator grants the tenant loopback, where the test clients
	// connect from.
	if _, err := e.store.SetSourcePrefixes(e.tenant, []string{"127.0.0.0/8", "::1"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- e.proxy.serveTransparent(l, func(net.Conn) (netip.AddrPort, error) { return dst(te) })
	}()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("serveTransparent: %v", err)
		}
	})
	return te
}

// rewriteSourcePrefixes sets the tenant's source_prefixes as no vault
// write would (that write refuses to leave a claim outside them): as a
// tenant record from before its prefixes, or restored from elsewhere,
// holds them. A settings write that changes nothing then tells the
// store's listeners, as any write of the tenant does.
func (e *env) rewriteSourcePrefixes(prefixes ...string) {
	e.t.Helper()
	err := e.backend.Update(func(tx storage.Tx) error {
		b := tx.Bucket([]byte("tenants"))
		var t map[string]any
		if err := json.Unmarshal(b.Get([]byte(e.tenant)), &t); err != nil {
			return err
		}
		t["settings"].(map[string]any)["source_prefixes"] = prefixes
		raw, err := json.Marshal(t)
		if err != nil {
			return err
		}
		return b.Put([]byte(e.tenant), raw)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.UpdateSettings(e.tenant, vault.SettingsPatch{}); err != nil {
		e.t.Fatal(err)
	}
}

// toUpstream is the original destination of a client that meant the
// upstream.
func toUpstream(e *transparentEnv) (netip.AddrPort, error) {
	return netip.ParseAddrPort("127.0.0.1:" + e.up.port)
}

// client is a sandbox's client that ignores proxy variables: it connects
// to the transparent listener (as the redirect would) from source, with
// the SNI of the URL's host, trusting roots.
func (e *transparentEnv) client(source string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	tr := &http.Transport{
		Proxy:           nil,
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", e.taddr) },
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// egressdRoots trusts egressd's CA, as a sandbox does.
func (e *env) egressdRoots() *x509.CertPool {
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Certificate())
	return roots
}

// refusedEvent waits for the event of a refused connection.
func (e *transparentEnv) refusedEvent(t *testing.T, reason Reason) *Event {
	t.Helper()
	ev := e.event(t)
	if ev.Outcome != OutcomeDenied || ev.Reason != reason.String() {
		t.Fatalf("event %+v, want denied %s", ev, reason)
	}
	return ev
}

func TestTransparentFlow(t *testing.T) {
	e := newTransparentEnv(t, toUpstream)
	sbx, _ := e.sandbox(vault.SandboxInput{SourceAddrs: []string{"127.0.0.1"}})
	e.secret(vault.SecretInput{Name: "openai", Value: "sk-transparent-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	ph := e.placeholder(sbx, "openai")

	t.Run("mitm substitutes", func(t *testing.T) {
		resp, body := do(t, e.client("127.0.0.1", e.egressdRoots()), "GET", e.url("https", "api.test", "/v1/models"), nil, map[string]string{"Authorization": "Bearer " + ph})
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
		got := e.up.last(t)
		if got.Header.Get("Authorization") != "Bearer sk-transparent-real" || got.Host != "api.test:"+e.up.port {
			t.Fatalf("upstream got %q for %q", got.Header.Get("Authorization"), got.Host)
		}
		ev := e.event(t)
		if ev.Outcome != OutcomeSubstituted || ev.SandboxID != sbx.ID || ev.Host != "api.test" {
			t.Fatalf("event %+v", ev)
		}
	})
	t.Run("no secret for the host: tunnelled untouched", func(t *testing.T) {
		n := e.up.count()
		// The client trusts the upstream's CA only: a MITM would fail.
		resp, _ := do(t, e.client("127.0.0.1", e.up.roots), "GET", e.url("https", "other.test", "/x"), nil, map[string]string{"X-Key": ph})
		if resp.StatusCode != 200 || e.up.count() != n+1 {
			t.Fatalf("answer %d", resp.StatusCode)
		}
		if got := e.up.last(t); got.Header.Get("X-Key") != ph || got.Host != "other.test:"+e.up.port {
			t.Fatalf("tunnel changed the request: %q %q", got.Header.Get("X-Key"), got.Host)
		}
	})
	t.Run("a request inside for another host", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.url("https", "api.test", "/"), nil)
		req.Host = "evil.test"
		req.Header.Set("Authorization", "Bearer "+ph)
		resp, err := e.client("127.0.0.1", e.egressdRoots()).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != ReasonHostMismatch.String() {
			t.Fatalf("answer %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
		}
		e.refusedEvent(t, ReasonHostMismatch)
	})
	refused := func(t *testing.T, source, host string, roots *x509.CertPool, reason Reason) {
		t.Helper()
		n := e.up.count()
		_, err := e.client(source, roots).Get(e.url("https", host, "/"))
		if err == nil {
			t.Fatal("a refused connection answered")
		}
		ev := e.refusedEvent(t, reason)
		if e.up.count() != n {
			t.Fatal("a refused connection reached the upstream")
		}
		e.logMu.Lock()
		logs := e.logs.String()
		e.logMu.Unlock()
		if !strings.Contains(logs, `"reason":"`+reason.String()+`"`) {
			t.Errorf("no decision line says %s", reason)
		}
		_ = ev
	}
	t.Run("unregistered source", func(t *testing.T) {
		refused(t, "127.0.0.2", "api.test", e.egressdRoots(), ReasonUnknownSource)
	})
	t.Run("private destination by name", func(t *testing.T) {
		refused(t, "127.0.0.1", "metadata.test", e.egressdRoots(), ReasonPrivateAddress)
	})
	t.Run("no server name", func(t *testing.T) {
		// Go sends no SNI for an address.
		refused(t, "127.0.0.1", "127.0.0.1", e.egressdRoots(), ReasonNoServerName)
	})
	t.Run("neither TLS nor HTTP", func(t *testing.T) {
		c, err := net.Dial("tcp", e.taddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var ne net.Error
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("read %d %v, want the connection closed", n, err)
		}
		e.refusedEvent(t, ReasonNoServerName)
	})
	t.Run("metrics", func(t *testing.T) {
		mfs, err := e.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() == "egressd_proxy_transparent_connections_total" {
				for _, m := range mf.GetMetric() {
					got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
		if got["mitm"] < 2 || got["tunnel"] != 1 || got["refused"] != 4 {
			t.Errorf("transparent connections %v", got)
		}
	})
}

// A connection that was not redirected, or was redirected to egressd
// itself, is refused before anything is read from it.
func TestTransparentNoRedirect(t *testing.T) {
	for _, c := range []struct {
		name   string
		dst    func(*transparentEnv) (netip.AddrPort, error)
		reason Reason
	}{
		{"no original destination", func(*transparentEnv) (netip.AddrPort, error) { return netip.AddrPort{}, errors.New("ENOENT") }, ReasonNoOriginalDestination},
		{"the listener itself", func(e *transparentEnv) (netip.AddrPort, error) { return netip.ParseAddrPort(e.taddr) }, ReasonTransparentLoop},
		{"the proxy listener", func(e *transparentEnv) (netip.AddrPort, error) { return netip.ParseAddrPort(e.addr) }, ReasonTransparentLoop},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newTransparentEnv(t, c.dst)
			e.sandbox(vault.SandboxInput{SourceAddrs: []string{"127.0.0.1"}})
			if _, err := e.client("127.0.0.1", e.egressdRoots()).Get("https://api.test/"); err == nil {
				t.Fatal("answered")
			}
			e.refusedEvent(t, c.reason)
		})
	}
}

// A sandbox whose proxy token expired is refused on the transparent
// listener too: token_ttl bounds its egress either way.
func TestTransparentTokenExpired(t *testing.T) {
	e := newTransparentEnv(t, toUpstream,
		func(c *Config) { c.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } })
	e.sandbox(vault.SandboxInput{SourceAddrs: []string{"127.0.0.1"}, TokenTTL: vault.TTL(time.Hour)})
	if _, err := e.client("127.0.0.1", e.up.roots).Get(e.url("https", "other.test", "/")); err == nil {
		t.Fatal("answered")
	}
	e.refusedEvent(t, ReasonTokenExpired)
}

// A claim its tenant's source_prefixes no longer hold (one older than
// them, or restored from elsewhere) is refused as unknown_source, in no
// tenant's log, though the index finds it; the tenant's settings are read
// through the resolver's cache, which the tenant's write drops.
func TestTransparentSourceOutsidePrefixes(t *testing.T) {
	e := newTransparentEnv(t, toUpstream)
	e.sandbox(vault.SandboxInput{SourceAddrs: []string{"127.0.0.1"}})
	get := func() error {
		resp, err := e.client("127.0.0.1", e.up.roots).Get(e.url("https", "other.test", "/"))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	// Granted: tunnelled (and the tenant's settings cached).
	if err := get(); err != nil {
		t.Fatalf("granted: %v", err)
	}
	e.rewriteSourcePrefixes("::1", "10.0.0.0/8")
	n := e.up.count()
	if err := get(); err == nil {
		t.Fatal("answered a source outside the tenant's prefixes")
	}
	if ev := e.refusedEvent(t, ReasonUnknownSource); ev.TenantID != "" || ev.SandboxID != "" || e.up.count() != n {
		t.Fatalf("event %+v, upstream requests %d -> %d", ev, n, e.up.count())
	}
	e.rewriteSourcePrefixes("127.0.0.0/8")
	if err := get(); err != nil {
		t.Fatalf("granted again: %v", err)
	}
}

func TestSNIHost(t *testing.T) {
	for in, want := range map[string]string{
		"API.Example.COM.": "api.example.com", "a_b.test": "a_b.test", "x": "x",
		"": "", "10.0.0.1": "", "::1": "", "a..b": "", "-a.test": "", "a-.test": "", "a b.test": "", "a/b": "",
		strings.Repeat("a", 64) + ".test": "", strings.Repeat("a.", 127) + "ab": "",
		"\u212aey.test": "", "1.2.3.4.": "",
	} {
		got, ok := sniHost(in)
		if got != want || ok != (want != "") {
			t.Errorf("sniHost(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func FuzzSNIHost(f *testing.F) {
	for _, s := range []string{"api.test", "API.TEST.", "10.0.0.1", "a..b", "xn--bcher-kva.test", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := sniHost(s)
		if !ok {
			return
		}
		// A host taken is a plain DNS name that dials and matches as it is.
		if h != strings.ToLower(h) || strings.HasSuffix(h, ".") || len(h) > 253 || strings.ContainsAny(h, " /:%@\x00") {
			t.Fatalf("sniHost(%q) = %q", s, h)
		}
		if again, ok := sniHost(h); !ok || again != h {
			t.Fatalf("not a fixed point: %q -> %q", h, again)
		}
	})
}

// Plain HTTP is routed by the Host of its first request and read request
// by request: the same host throughout, and no placeholder.
func TestTransparentPlainHTTP(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain "+r.Host+" "+r.URL.Path)
	}))
	t.Cleanup(plain.Close)
	_, port, _ := net.SplitHostPort(plain.Listener.Addr().String())
	e := newTransparentEnv(t, func(*transparentEnv) (netip.AddrPort, error) { return netip.ParseAddrPort("127.0.0.1:" + port) })
	sbx, _ := e.sandbox(vault.SandboxInput{SourceAddrs: []string{"127.0.0.1"}})
	e.secret(vault.SecretInput{Name: "openai", Value: "sk-plain-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"plain.test"}})
	ph := e.placeholder(sbx, "openai")
	c, err := net.Dial("tcp", e.taddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	send := func(host string, hdr string) *http.Response {
		t.Helper()
		fmt.Fprintf(c, "GET /p HTTP/1.1\r\nHost: %s\r\n%s\r\n", host, hdr)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	host := "plain.test:" + port
	if resp := send(host, ""); resp.StatusCode != 200 {
		t.Fatalf("plain request: %d", resp.StatusCode)
	}
	if resp := send(host, "X-Key: "+ph+"\r\n"); resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != ReasonPlainHTTP.String() {
		t.Fatalf("placeholder over plain HTTP: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	e.refusedEvent(t, ReasonPlainHTTP)
	if resp := send("other.test:"+port, ""); resp.StatusCode != 403 || resp.Header.Get("X-Egress-Denied") != ReasonHostMismatch.String() {
		t.Fatalf("another host on the connection: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	e.refusedEvent(t, ReasonHostMismatch)

	for _, bad := range []string{"\x00\x01\x02\x03\r\n\r\n", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n", "GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"} {
		c, err := net.Dial("tcp", e.taddr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, bad)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("%q: answered", bad)
		}
		c.Close()
		e.refusedEvent(t, ReasonNoServerName)
	}
}

func FuzzReadRequestHead(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: a.test\r\n\r\nbody", "GET / HTTP/1.1\nHost: a.test\n\n", "CONNECT a:1 HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "\x16\x03\x01"} {
		f.Add([]byte(s), 7)
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		if len(in) == 0 {
			return
		}
		chunk = 1 + (chunk&0xff)%64
		read, host, err := readRequestHead(&choppedReader{b: in[1:], n: chunk}, in[0], 1024)
		if err != nil {
			return
		}
		// Every byte read is given back, in order, and the head was whole.
		if !bytes.HasPrefix(in, read) || headEnd(read, 0) < 0 || host == "" || len(read) > 1024+4096 {
			t.Fatalf("read %q host %q from %q", read, host, in)
		}
	})
}

// choppedReader reads b n bytes at a time.
type choppedReader struct {
	b []byte
	n int
}

func (r *choppedReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// A proxy token re-issued while a MITM'd transparent connection is open
// ends that connection's use at its next request; a new connection works.
func TestTransparentTokenReissued(t *testing.T) {
	e := newTransparentEnv(t, toUpstream)
	sbx, _ := e.sandbox(vault.SandboxInput{SourceAddrs: []string{"127.0.0.1"}})
	e.secret(vault.SecretInput{Name: "openai", Value: "sk-reissue-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	ph := e.placeholder(sbx, "openai")
	c := e.client("127.0.0.1", e.egressdRoots())
	hdr := map[string]string{"Authorization": "Bearer " + ph}
	if resp, _ := do(t, c, "GET", e.url("https", "api.test", "/1"), nil, hdr); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	if _, _, err := e.store.ReissueSandboxToken(e.tenant, sbx.ID, 0); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do(t, c, "GET", e.url("https", "api.test", "/2"), nil, hdr); resp.StatusCode != 407 || resp.Header.Get("X-Egress-Denied") != ReasonTokenExpired.String() {
		t.Fatalf("on the open connection: %d %q", resp.StatusCode, resp.Header.Get("X-Egress-Denied"))
	}
	if resp, _ := do(t, e.client("127.0.0.1", e.egressdRoots()), "GET", e.url("https", "api.test", "/3"), nil, hdr); resp.StatusCode != 200 {
		t.Fatalf("a new connection: %d", resp.StatusCode)
	}
}

// What checking a source against its tenant's source_prefixes costs a
// transparent connection once the resolver holds the tenant's settings:
// the tenant's prefixes (one range, or the most: 64, the address in the
// last) read through the cache and checked.
func BenchmarkTransparentGranted(b *testing.B) {
	for _, n := range []int{1, vault.MaxSourcePrefixes} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e := newEnv(b, nil)
			var ps []string
			for i := range n {
				ps = append(ps, fmt.Sprintf("10.%d.0.0/16", i))
			}
			if _, err := e.store.SetSourcePrefixes(e.tenant, ps); err != nil {
				b.Fatal(err)
			}
			tl := &transparentListener{p: e.proxy}
			sbx := &vault.Sandbox{TenantID: e.tenant}
			addr := netip.AddrFrom4([4]byte{10, byte(n - 1), 7, 7})
			ctx := context.Background()
			for b.Loop() {
				if r := tl.granted(ctx, sbx, addr); r != ReasonNone {
					b.Fatal(r)
				}
			}
		})
	}
}

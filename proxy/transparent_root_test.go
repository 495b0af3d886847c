//go:build linux

package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egressd/egressd/vault"
)

// The transparent listener end to end, with the kernel's redirect: two
// network namespaces made for the test, "sandbox" and "proxy", joined by
// a veth pair (no interface or address outside them). The sandbox's
// default route leads into the proxy namespace, whose nftables prerouting
// chain redirects TCP port 443 to the transparent listener. The test
// binary runs again inside the proxy namespace (ip netns exec), where it
// serves a TLS upstream on 127.0.0.1:443 and egressd; clients that know
// nothing of proxies (curl, Go's net/http) run in the sandbox namespace
// and connect to documentation addresses, which only the redirect
// answers.

const (
	transparentInnerEnv = "EGRESSD_TRANSPARENT_NETNS"
	transparentPort     = "15443"
	// Addresses inside the namespaces only.
	sandboxV4, otherV4, proxyV4 = "10.77.0.2", "10.77.0.3", "10.77.0.1"
	sandboxV6, proxyV6          = "fd77::2", "fd77::1"
	// Where the clients think they connect: nothing has these addresses.
	farV4, farV6 = "198.51.100.10", "2001:db8::10"
)

func TestTransparentNetns(t *testing.T) {
	if ns := os.Getenv(transparentInnerEnv); ns != "" {
		transparentInner(t, ns)
		return
	}
	const how = "sudo go test -run TransparentNetns ./proxy/"
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables): " + how)
	}
	for _, tool := range []string{"ip", "nft", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install iproute2 nftables curl): %s", tool, how)
		}
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	sbxNS, proxyNS := "egt-sbx-"+id, "egt-px-"+id
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{sbxNS, proxyNS} {
		// Root without the right to make namespaces (a container): skip.
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("cannot make a network namespace here (%v: %s): %s", err, strings.TrimSpace(string(out)), how)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("ip", "-n", sbxNS, "link", "add", "vs", "type", "veth", "peer", "name", "vp", "netns", proxyNS)
	for _, c := range [][]string{
		{"-n", sbxNS, "addr", "add", sandboxV4 + "/24", "dev", "vs"},
		{"-n", sbxNS, "addr", "add", otherV4 + "/24", "dev", "vs"},
		{"-n", sbxNS, "addr", "add", sandboxV6 + "/64", "dev", "vs", "nodad"},
		{"-n", proxyNS, "addr", "add", proxyV4 + "/24", "dev", "vp"},
		{"-n", proxyNS, "addr", "add", proxyV6 + "/64", "dev", "vp", "nodad"},
		{"-n", sbxNS, "link", "set", "vs", "up"},
		{"-n", sbxNS, "link", "set", "lo", "up"},
		{"-n", proxyNS, "link", "set", "vp", "up"},
		{"-n", proxyNS, "link", "set", "lo", "up"},
		{"-n", sbxNS, "route", "add", "default", "via", proxyV4},
		{"-n", sbxNS, "-6", "route", "add", "default", "via", proxyV6},
	} {
		run(append([]string{"ip"}, c...)...)
	}
	rules := filepath.Join(t.TempDir(), "redirect.nft")
	if err := os.WriteFile(rules, []byte(`table inet egressd {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "vp" tcp dport { 80, 443 } redirect to :`+transparentPort+`
	}
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", proxyNS, "nft", "-f", rules).CombinedOutput(); err != nil {
		if strings.Contains(string(out), "not supported") {
			t.Skipf("the kernel has no nftables NAT here (%s): %s", strings.TrimSpace(string(out)), how)
		}
		t.Fatalf("nft -f: %v\n%s", err, out)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", proxyNS, exe, "-test.run=^TestTransparentNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), transparentInnerEnv+"="+sbxNS)
	out, err := cmd.CombinedOutput()
	t.Logf("inside the proxy namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test inside the proxy namespace failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestTransparentNetns") {
		t.Fatal("the test inside the proxy namespace did not run")
	}
}

// transparentInner runs in the proxy namespace; sbxNS is the sandbox's.
func transparentInner(t *testing.T, sbxNS string) {
	l443, err := net.Listen("tcp", "127.0.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstreamOn(t, l443)
	e := newEnv(t, func(c *Config) { c.UpstreamRoots = up.roots })
	e.up = up
	tl, err := net.Listen("tcp", ":"+transparentPort)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.proxy.ServeTransparent(tl) }()
	t.Cleanup(func() {
		tl.Close()
		<-done
	})

	// The operator grants the tenant the sandboxes' network.
	if _, err := e.store.SetSourcePrefixes(e.tenant, []string{"10.77.0.0/24", "fd77::/64"}); err != nil {
		t.Fatal(err)
	}
	sbx, _ := e.sandbox(vault.SandboxInput{SourceAddrs: []string{sandboxV4, sandboxV6}})
	e.secret(vault.SecretInput{Name: "openai", Value: "sk-netns-real", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	ph := e.placeholder(sbx, "openai")
	dir := t.TempDir()
	egressdCA, upstreamCA := filepath.Join(dir, "egressd.pem"), filepath.Join(dir, "upstream.pem")
	writePEM(t, egressdCA, e.ca.Certificate())
	writePEM(t, upstreamCA, firstCert(t, up))

	curl := func(args ...string) (string, error) {
		all := append([]string{"netns", "exec", sbxNS, "curl", "-sS", "--noproxy", "*", "--max-time", "10"}, args...)
		cmd := exec.Command("ip", all...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no proxy variables
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	expectSubstituted := func(t *testing.T, via string) {
		t.Helper()
		got := up.last(t)
		if got.Header.Get("Authorization") != "Bearer sk-netns-real" || got.Host != "api.test" {
			t.Fatalf("%s: upstream got Authorization %q, Host %q", via, got.Header.Get("Authorization"), got.Host)
		}
		if ev := e.event(t); ev.Outcome != OutcomeSubstituted || ev.SandboxID != sbx.ID || ev.Host != "api.test" {
			t.Fatalf("%s: event %+v", via, ev)
		}
	}
	for _, c := range []struct{ name, far string }{{"curl IPv4", farV4}, {"curl IPv6", "[" + farV6 + "]"}} {
		t.Run(c.name, func(t *testing.T) {
			out, err := curl("--cacert", egressdCA, "--resolve", "api.test:443:"+c.far, "-H", "Authorization: Bearer "+ph, "https://api.test/v1/models")
			if err != nil || out != "ok" {
				t.Fatalf("curl: %v: %s", err, out)
			}
			expectSubstituted(t, c.name)
		})
	}
	t.Run("Go net/http IPv4", func(t *testing.T) {
		c := netnsClient(t, sbxNS, farV4, e.egressdRoots())
		req, _ := http.NewRequest("GET", "https://api.test/v1/chat", nil)
		req.Header.Set("Authorization", "Bearer "+ph)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		expectSubstituted(t, "net/http")
	})
	t.Run("no secret for the host: tunnelled untouched", func(t *testing.T) {
		out, err := curl("--cacert", upstreamCA, "--resolve", "other.test:443:"+farV4, "-H", "X-Key: "+ph, "https://other.test/x")
		if err != nil || out != "ok" {
			t.Fatalf("curl: %v: %s", err, out)
		}
		if got := up.last(t); got.Header.Get("X-Key") != ph || got.Host != "other.test" {
			t.Fatalf("upstream got %q for %q", got.Header.Get("X-Key"), got.Host)
		}
	})
	t.Run("plain HTTP on port 80, by its Host", func(t *testing.T) {
		l80, err := net.Listen("tcp", "127.0.0.1:80")
		if err != nil {
			t.Fatal(err)
		}
		plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "plain %s %s", r.Host, r.URL.Path)
		})}
		go plain.Serve(l80)
		t.Cleanup(func() { plain.Close() })
		out, err := curl("--resolve", "plain.test:80:"+farV4, "http://plain.test/p")
		if err != nil || out != "plain plain.test /p" {
			t.Fatalf("curl: %v: %s", err, out)
		}
	})
	t.Run("unregistered source address", func(t *testing.T) {
		n := up.count()
		out, err := curl("--interface", otherV4, "--cacert", egressdCA, "--resolve", "api.test:443:"+farV4, "-H", "Authorization: Bearer "+ph, "https://api.test/")
		if err == nil {
			t.Fatalf("answered: %s", out)
		}
		ev := e.event(t)
		if ev.Reason != ReasonUnknownSource.String() || up.count() != n {
			t.Fatalf("event %+v, upstream requests %d -> %d", ev, n, up.count())
		}
	})
	t.Run("claimed source outside the tenant's prefixes", func(t *testing.T) {
		// A claim older than its tenant's prefixes: the IPv6 address is
		// no longer granted.
		e.rewriteSourcePrefixes("10.77.0.0/24")
		t.Cleanup(func() { e.rewriteSourcePrefixes("10.77.0.0/24", "fd77::/64") })
		n := up.count()
		out, err := curl("--cacert", egressdCA, "--resolve", "api.test:443:"+farV6, "-H", "Authorization: Bearer "+ph, "https://api.test/")
		if err == nil {
			t.Fatalf("answered: %s", out)
		}
		if ev := e.event(t); ev.Reason != ReasonUnknownSource.String() || ev.TenantID != "" || ev.SandboxID != "" || up.count() != n {
			t.Fatalf("event %+v, upstream requests %d -> %d", ev, n, up.count())
		}
	})
	t.Run("not redirected", func(t *testing.T) {
		// Straight to the listener: its own address is the original
		// destination.
		out, err := curl("--cacert", egressdCA, "--resolve", "api.test:"+transparentPort+":"+proxyV4, "https://api.test:"+transparentPort+"/")
		if err == nil {
			t.Fatalf("answered: %s", out)
		}
		if ev := e.event(t); ev.Reason != ReasonTransparentLoop.String() {
			t.Fatalf("event %+v", ev)
		}
	})
}

func writePEM(t *testing.T, path string, c *x509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstCert is the upstream's CA certificate, for a client that trusts it.
func firstCert(t *testing.T, up *upstream) *x509.Certificate {
	t.Helper()
	// The pool holds exactly the one CA; find it by a handshake.
	var got *x509.Certificate
	c, err := tls.Dial("tcp", up.srv.Listener.Addr().String(), &tls.Config{ServerName: "api.test", RootCAs: up.roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if n := len(cs.VerifiedChains); n > 0 {
				chain := cs.VerifiedChains[0]
				got = chain[len(chain)-1]
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got == nil {
		t.Fatal("no upstream CA")
	}
	return got
}

// netnsClient is a Go client whose connections are made in the network
// namespace ns (a thread locked, moved there for the socket's creation,
// and moved back), to far:443 whatever the URL's host: a client that
// ignores proxies and resolved the name to far.
func netnsClient(t *testing.T, ns, far string, roots *x509.CertPool) *http.Client {
	t.Helper()
	target, err := os.Open(filepath.Join("/var/run/netns", ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	home, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { home.Close() })
	addr := netip.AddrPortFrom(netip.MustParseAddr(far), 443).String()
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		runtime.LockOSThread()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if serr := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); serr != nil {
			// The thread stays locked and ends with this goroutine.
			if c != nil {
				c.Close()
			}
			return nil, serr
		}
		runtime.UnlockOSThread()
		return c, err
	}
	tr := &http.Transport{Proxy: nil, DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault"
)

// idleClients opens n MITM'd keep-alive tunnels through the proxy at
// addr to target (its CA in roots), for the sandboxes' credentials (round
// robin), each with one request answered, and leaves them idle.
func idleClients(addr, target string, roots *x509.CertPool, auths []string, n int) ([]net.Conn, error) {
	host, _, _ := net.SplitHostPort(target)
	conns := make([]net.Conn, 0, n)
	for i := range n {
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return conns, err
		}
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(raw, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auths[i%len(auths)])
		br := bufio.NewReader(raw)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			return conns, fmt.Errorf("CONNECT %d: %v %v", i, resp, err)
		}
		tc := tls.Client(&bufConn{Conn: raw, r: br}, &tls.Config{ServerName: host, RootCAs: roots})
		fmt.Fprintf(tc, "GET /idle HTTP/1.1\r\nHost: %s\r\n\r\n", target)
		up, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil || up.StatusCode != 200 {
			return conns, fmt.Errorf("request %d: %v %v", i, up, err)
		}
		up.Body.Close()
		raw.SetDeadline(time.Time{})
		conns = append(conns, tc)
	}
	return conns, nil
}

// TestIdleTunnelClients is the client side of BenchmarkIdleTunnelHeap, run in
// a child process so that its TLS state is not counted in the proxy's
// heap. It opens the tunnels, prints "ready", and holds them until its
// standard input closes.
func TestIdleTunnelClients(t *testing.T) {
	addr := os.Getenv("EGRESSD_IDLE_PROXY")
	if addr == "" {
		t.Skip("the child process of BenchmarkIdleTunnelHeap (go test -run '^$' -bench IdleTunnelHeap -benchtime 1x ./proxy/)")
	}
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(os.Getenv("EGRESSD_IDLE_CA"))
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("CA: %v", err)
	}
	n, _ := strconv.Atoi(os.Getenv("EGRESSD_IDLE_N"))
	conns, err := idleClients(addr, os.Getenv("EGRESSD_IDLE_TARGET"), roots, strings.Split(os.Getenv("EGRESSD_IDLE_AUTHS"), ","), n)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// rssKiB is this process's resident set (VmRSS), or 0 where /proc has
// none.
func rssKiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb
		}
	}
	return 0
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// BenchmarkIdleTunnelHeap measures the heap and goroutine stacks that
// idle keep-alive tunnels hold in the proxy, MITM'd (mitm: a secret may
// be used at the host) and passed through (pass: none may): the clients
// run in a child process, so only the proxy's side (and the upstream's,
// whose pooled connections are shared) is in this process. It reports
// KiB per tunnel (KiB/tunnel); EGRESSD_IDLE_TUNNELS sets how many
// (default 200, from a tenth as many sandboxes). One measurement a run:
//
//	go test -run '^$' -bench IdleTunnelHeap -benchtime 1x ./proxy/
func BenchmarkIdleTunnelHeap(b *testing.B) {
	b.Run("mitm", func(b *testing.B) { idleTunnelHeap(b, true) })
	b.Run("pass", func(b *testing.B) { idleTunnelHeap(b, false) })
}

func idleTunnelHeap(t *testing.B, mitm bool) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("EGRESSD_IDLE_TUNNELS")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(t, func(c *Config) {
		c.MaxConnsPerSandbox = n
		c.Logger = slog.New(slog.DiscardHandler) // the harness's log buffer would count
	})
	var auths []string
	for range max(1, n/10) {
		s, tok := e.sandbox(vault.SandboxInput{})
		auths = append(auths, basicAuth(s.ID, tok))
	}
	target := "api.test:" + e.up.port
	// The client's TLS peer: egressd with its CA (MITM), or the upstream
	// with its own (the tunnel passes the handshake through).
	caPEM, roots := e.ca.CertPEM(), x509.NewCertPool()
	roots.AddCert(e.ca.Certificate())
	if mitm {
		e.secret(vault.SecretInput{Name: "key", Value: "real-value", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	} else {
		caPEM, roots = upstreamRootPEM(t, e), e.up.roots
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	warm, err := idleClients(e.addr, target, roots, auths, 20) // pools, caches, leaf certificate
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range warm {
			c.Close()
		}
	}()
	before, rssBefore := heapInUse(), rssKiB()
	child := exec.Command(os.Args[0], "-test.run=^TestIdleTunnelClients$", "-test.count=1")
	child.Env = append(os.Environ(), "EGRESSD_IDLE_PROXY="+e.addr, "EGRESSD_IDLE_CA="+caFile, "EGRESSD_IDLE_TARGET="+target,
		"EGRESSD_IDLE_N="+strconv.Itoa(n), "EGRESSD_IDLE_AUTHS="+strings.Join(auths, ","))
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("the client process: %q %v", line, err)
	}
	after, rssAfter := heapInUse(), rssKiB()
	if f := os.Getenv("EGRESSD_IDLE_HEAPPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(out, 0)
		out.Close()
	}
	per := float64(after-before) / float64(n)
	kind := map[bool]string{true: "MITM'd", false: "passed-through"}[mitm]
	t.Logf("%d idle %s keep-alive tunnels from %d sandboxes: %.1f KiB of proxy heap and stacks each; RSS %.0f -> %.0f MiB", n, kind, len(auths), per/1024, rssBefore/1024, rssAfter/1024)
	for t.Loop() {
	}
	t.ReportMetric(per/1024, "KiB/tunnel")
}

// upstreamRootPEM is the PEM of the CA e's upstream certificates chain
// to, read from a handshake with it.
func upstreamRootPEM(t testing.TB, e *env) []byte {
	c, err := tls.Dial("tcp", e.up.srv.Listener.Addr().String(), &tls.Config{ServerName: "api.test", RootCAs: e.up.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chain := c.ConnectionState().VerifiedChains[0]
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[len(chain)-1].Raw})
}

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
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

	"github.com/egressd/egressd/certs"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// upstreamRecord is one request as the upstream received it.
type upstreamRecord struct {
	method, uri string
	header      http.Header
	body        []byte
}

// upstreamRecorder is an upstream that records every request and answers
// 200 with a small JSON list.
type upstreamRecorder struct {
	mu   sync.Mutex
	reqs []upstreamRecord
}

func (u *upstreamRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, upstreamRecord{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: body})
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"object":"list","data":[]}`)
}

func (u *upstreamRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// last returns the latest request and checks that exactly want arrived so far.
func (u *upstreamRecorder) last(t *testing.T, want int) upstreamRecord {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) != want {
		t.Fatalf("upstream received %d requests, want %d", len(u.reqs), want)
	}
	return u.reqs[len(u.reqs)-1]
}

// waitFor polls cond until it holds or 20s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proxyClient sends its requests through proxy and trusts only roots.
func proxyClient(t *testing.T, proxy *url.URL, roots *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		Proxy:           http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type answer struct {
	status int
	header http.Header
	body   string
	// root is the root the server's chain was verified against (nil for
	// plain HTTP).
	root *x509.Certificate
}

// bearerGet sends GET target with Authorization: Bearer token.
func bearerGet(c *http.Client, target, token string) (answer, error) {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if resp.TLS != nil && len(resp.TLS.VerifiedChains) > 0 {
		ch := resp.TLS.VerifiedChains[0]
		a.root = ch[len(ch)-1]
	}
	return a, nil
}

func mustBearerGet(t *testing.T, c *http.Client, target, token string) answer {
	t.Helper()
	a, err := bearerGet(c, target, token)
	if err != nil {
		t.Fatalf("GET %s through the proxy: %v", target, err)
	}
	return a
}

// rawConnect sends one CONNECT to the proxy with the given
// Proxy-Authorization (none if empty) and returns the answer.
func rawConnect(t *testing.T, proxyAddr, target, auth string) answer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		msg += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, msg+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	defer resp.Body.Close()
	var b []byte
	if resp.StatusCode != http.StatusOK {
		b, _ = io.ReadAll(resp.Body)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func basicAuth(id, token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+token))
}

func parseCertPEM(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(p)
	if blk == nil {
		t.Fatalf("no PEM block in %q", p)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProxyEndToEnd runs the real binary the way a platform does: the admin
// client creates a secret and a sandbox, net/http and curl call an upstream
// by name through the proxy with the sandbox's placeholder, the upstream
// receives the real value; then the denials, rotation, disabling and
// deletion, and a log free of values.
func TestProxyEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	// An upstream on 127.0.0.1 with leaves of its own CA, for "localhost"
	// (by SNI) and 127.0.0.1 (clients send no SNI for an IP).
	upCA, _, err := certs.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := certs.NewLeafCache(upCA, certs.LeafConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &upstreamRecorder{}
	up := httptest.NewUnstartedServer(rec)
	ipLeaf, err := leaves.Get("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// crypto/tls serves Certificates[0] to a client that sent no SNI (and
	// httptest would put its own there if it were empty).
	up.TLS = &tls.Config{GetCertificate: leaves.GetCertificate, Certificates: []tls.Certificate{*ipLeaf}}
	up.StartTLS()
	t.Cleanup(up.Close)
	upPort := up.Listener.Addr().(*net.TCPAddr).Port
	upCAFile := filepath.Join(t.TempDir(), "upstream-ca.pem")
	if err := os.WriteFile(upCAFile, upCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	byName := fmt.Sprintf("https://localhost:%d/v1/models", upPort)
	byIP := fmt.Sprintf("https://127.0.0.1:%d/v1/models", upPort)

	// A plain-HTTP upstream, for the plain_http refusal.
	plainRec := &upstreamRecorder{}
	plain := httptest.NewServer(plainRec)
	t.Cleanup(plain.Close)
	plainURL := fmt.Sprintf("http://localhost:%d/v1/models", plain.Listener.Addr().(*net.TCPAddr).Port)

	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil, "--allow-private-destinations", "127.0.0.1/32", "--upstream-ca", upCAFile)
	proxyAddr := s.waitAddr(t, filepath.Join(dir, "proxy.addr"))
	waitFor(t, "the first-run line on stdout", func() bool { return strings.Contains(s.stdout.String(), "\n") })
	var keys map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(s.stdout.String(), "\n", 2)[0]), &keys); err != nil {
		t.Fatalf("first-run line is not JSON: %v", err)
	}
	api, err := client.New("http://"+s.admin, str(keys, "api_key"))
	if err != nil {
		t.Fatal(err)
	}

	const (
		value1 = "sk-live-e2e-first-4b1d9c07e2a8f35d"
		value2 = "sk-live-e2e-rotated-91c3a7f0b6d24e58"
		value3 = "ghp-e2e-other-host-5e8f2a1c9d7b3064"
	)
	secret, err := api.CreateSecret(ctx, client.SecretInput{
		Name: "OPENAI_API_KEY", Value: value1, Scope: vault.ScopeTenant,
		AllowedHosts: []string{"localhost"}, PlaceholderPrefix: "sk-proj-",
	})
	if err != nil || !secret.Created {
		t.Fatalf("create secret: %+v, %v", secret, err)
	}
	attr := client.Attribution{OwnerUserID: "user-e2e", WorkspaceID: "ws-e2e", ExternalUserID: "ext-user-e2e", ExternalWorkspaceID: "ext-ws-e2e", ExternalProjectID: "ext-proj-e2e"}
	sbx, err := api.CreateSandbox(ctx, client.SandboxInput{
		Name: "e2e", OwnerUserID: attr.OwnerUserID, WorkspaceID: attr.WorkspaceID, ExternalUserID: attr.ExternalUserID,
		ExternalWorkspaceID: attr.ExternalWorkspaceID, ExternalProjectID: attr.ExternalProjectID,
	})
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	if sbx.ID == "" || sbx.ProxyToken == "" || sbx.Attribution != attr {
		t.Fatalf("sandbox answer: id %q, token set %v, attribution %+v", sbx.ID, sbx.ProxyToken != "", sbx.Attribution)
	}

	// The answer's env holds the placeholder and the proxy URL.
	var placeholder string
	for _, e := range sbx.Placeholders {
		if e.Name == "OPENAI_API_KEY" {
			placeholder = e.Placeholder
			if sbx.Env[e.Env] != placeholder {
				t.Errorf("env %s = %q, want the placeholder %q", e.Env, sbx.Env[e.Env], placeholder)
			}
		}
	}
	if !strings.HasPrefix(placeholder, "sk-proj-EGP_") {
		t.Fatalf("placeholder %q (entries %+v)", placeholder, sbx.Placeholders)
	}
	if sbx.Env["HTTPS_PROXY"] != sbx.ProxyURL {
		t.Errorf("HTTPS_PROXY %q, proxy_url %q", sbx.Env["HTTPS_PROXY"], sbx.ProxyURL)
	}
	proxyURL, err := url.Parse(sbx.ProxyURL)
	if err != nil {
		t.Fatal(err)
	}
	if pw, _ := proxyURL.User.Password(); proxyURL.User.Username() != sbx.ID || pw != sbx.ProxyToken {
		t.Fatalf("proxy_url does not carry the sandbox's credentials")
	}
	if _, boundPort, _ := net.SplitHostPort(proxyAddr); proxyURL.Port() != boundPort {
		t.Errorf("proxy_url port %q, the proxy listens on %s", proxyURL.Port(), proxyAddr)
	}
	proxyURL.Host = proxyAddr

	// The CA of the answer is the one in the data dir.
	if strings.TrimSpace(sbx.CACertPEM) != strings.TrimSpace(string(readFile(t, filepath.Join(dir, "ca.pem")))) {
		t.Errorf("ca_cert_pem differs from DATA/ca.pem")
	}
	egressCA := parseCertPEM(t, []byte(sbx.CACertPEM))
	egressCAFile := filepath.Join(t.TempDir(), "egressd-ca.pem")
	if err := os.WriteFile(egressCAFile, []byte(sbx.CACertPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	egressRoots := x509.NewCertPool()
	egressRoots.AddCert(egressCA)
	// A sandbox's bundle: egressd's CA and the "system" roots (here the
	// upstream's CA), for hosts that are tunnelled.
	bundleRoots := x509.NewCertPool()
	bundleRoots.AddCert(egressCA)
	bundleRoots.AddCert(upCA.Certificate())

	// net/http: the upstream receives the real value, through MITM.
	kept := proxyClient(t, proxyURL, egressRoots)
	a := mustBearerGet(t, kept, byName, placeholder)
	if a.status != http.StatusOK || a.body != `{"object":"list","data":[]}` {
		t.Fatalf("net/http: %d %s", a.status, a.body)
	}
	if a.root == nil || !a.root.Equal(egressCA) {
		t.Errorf("net/http: the answer was not served under egressd's CA")
	}
	got := rec.last(t, 1)
	if got.method != http.MethodGet || got.uri != "/v1/models" || got.header.Get("Authorization") != "Bearer "+value1 {
		t.Fatalf("upstream got %s %s with Authorization %q", got.method, got.uri, got.header.Get("Authorization"))
	}
	if v := got.header.Get("Proxy-Authorization"); v != "" {
		t.Fatalf("the proxy credentials went upstream: %q", v)
	}
	n := 1

	// curl, the same way.
	if curl, err := exec.LookPath("curl"); err != nil {
		t.Log("curl not installed: skipping the curl part")
	} else {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, curl, "-sS", "--max-time", "15", "--proxy", proxyURL.String(), "--cacert", egressCAFile,
			"--noproxy", "", "-H", "Authorization: Bearer "+placeholder, "-w", "\n%{http_code}", byName)
		for _, kv := range baseEnv() {
			if k, _, _ := strings.Cut(kv, "="); !strings.HasSuffix(strings.ToLower(k), "_proxy") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("curl: %v: %s\n%s", err, out, stderr)
		}
		if want := `{"object":"list","data":[]}` + "\n200"; string(out) != want {
			t.Fatalf("curl printed %q, want %q", out, want)
		}
		n++
		if got := rec.last(t, n); got.header.Get("Authorization") != "Bearer "+value1 || got.uri != "/v1/models" {
			t.Fatalf("upstream got %s with Authorization %q from curl", got.uri, got.header.Get("Authorization"))
		}
	}

	// Denials on CONNECT.
	creds := basicAuth(sbx.ID, sbx.ProxyToken)
	upHost := fmt.Sprintf("localhost:%d", upPort)
	for _, c := range []struct {
		name, target, auth string
		status             int
		reason             string
	}{
		{"no credentials", upHost, "", http.StatusProxyAuthRequired, "no_credentials"},
		{"wrong token", upHost, basicAuth(sbx.ID, "wrong-token"), http.StatusProxyAuthRequired, "bad_credentials"},
		{"private address", "10.0.0.1:443", creds, http.StatusForbidden, "private_address"},
		{"own admin listener", s.admin, creds, http.StatusForbidden, "own_listener"},
	} {
		a := rawConnect(t, proxyAddr, c.target, c.auth)
		if a.status != c.status || a.header.Get("X-Egress-Denied") != c.reason {
			t.Errorf("%s: CONNECT %s answered %d %q, want %d %q; body %s", c.name, c.target, a.status, a.header.Get("X-Egress-Denied"), c.status, c.reason, a.body)
		}
		if c.status == http.StatusProxyAuthRequired && a.header.Get("Proxy-Authenticate") == "" {
			t.Errorf("%s: 407 without Proxy-Authenticate", c.name)
		}
	}

	// A placeholder in plain HTTP is refused and goes nowhere.
	a = mustBearerGet(t, proxyClient(t, proxyURL, egressRoots), plainURL, placeholder)
	if a.status != http.StatusForbidden || a.header.Get("X-Egress-Denied") != "plain_http" {
		t.Errorf("plain HTTP: %d %q %s", a.status, a.header.Get("X-Egress-Denied"), a.body)
	}
	if c := plainRec.count(); c != 0 {
		t.Errorf("the plain upstream received %d requests", c)
	}

	// 127.0.0.1 is not in allowed_hosts and no secret may go there: the
	// connection is tunnelled and the placeholder arrives as it was sent.
	a = mustBearerGet(t, proxyClient(t, proxyURL, bundleRoots), byIP, placeholder)
	if a.status != http.StatusOK {
		t.Fatalf("tunnel to 127.0.0.1: %d %s", a.status, a.body)
	}
	if a.root == nil || !a.root.Equal(upCA.Certificate()) {
		t.Errorf("tunnel to 127.0.0.1: not served under the upstream's own CA (MITM'd?)")
	}
	n++
	if got := rec.last(t, n); got.header.Get("Authorization") != "Bearer "+placeholder {
		t.Fatalf("tunnel to 127.0.0.1: upstream got Authorization %q, want the placeholder", got.header.Get("Authorization"))
	}

	// Once another secret may go to 127.0.0.1, the host is MITM'd and the
	// first secret's placeholder there is refused: host_not_allowed.
	other, err := api.CreateSecret(ctx, client.SecretInput{Name: "GITHUB_TOKEN", Value: value3, Scope: vault.ScopeTenant, AllowedHosts: []string{"127.0.0.1"}})
	if err != nil || !other.Created {
		t.Fatalf("create second secret: %+v, %v", other, err)
	}
	a = mustBearerGet(t, proxyClient(t, proxyURL, egressRoots), byIP, placeholder)
	if a.status != http.StatusForbidden || a.header.Get("X-Egress-Denied") != "host_not_allowed" {
		t.Errorf("placeholder to a host not allowed: %d %q %s", a.status, a.header.Get("X-Egress-Denied"), a.body)
	}
	if c := rec.count(); c != n {
		t.Fatalf("a refused request reached the upstream (%d requests, want %d)", c, n)
	}

	// Rotation: the very next request carries the new value, on the
	// kept-alive connection and on a new one.
	if _, err := api.RotateSecret(ctx, secret.Secret.ID, client.RotateInput{Value: value2}); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	for _, c := range []struct {
		name string
		hc   *http.Client
	}{{"kept-alive client", kept}, {"new client", proxyClient(t, proxyURL, egressRoots)}} {
		a := mustBearerGet(t, c.hc, byName, placeholder)
		n++
		if got := rec.last(t, n); a.status != http.StatusOK || got.header.Get("Authorization") != "Bearer "+value2 {
			t.Fatalf("after rotation (%s): %d, upstream got Authorization %q", c.name, a.status, got.header.Get("Authorization"))
		}
	}

	// Disabled: the placeholder resolves to nothing and is forwarded as is.
	if _, err := api.DisableSecret(ctx, secret.Secret.ID); err != nil {
		t.Fatalf("disable: %v", err)
	}
	for _, c := range []struct {
		name string
		hc   *http.Client
	}{{"kept-alive client", kept}, {"new client", proxyClient(t, proxyURL, bundleRoots)}} {
		a := mustBearerGet(t, c.hc, byName, placeholder)
		n++
		if got := rec.last(t, n); a.status != http.StatusOK || got.header.Get("Authorization") != "Bearer "+placeholder {
			t.Fatalf("after disabling (%s): %d, upstream got Authorization %q, want the placeholder", c.name, a.status, got.header.Get("Authorization"))
		}
		if c.name == "new client" && (a.root == nil || !a.root.Equal(upCA.Certificate())) {
			t.Errorf("after disabling: localhost is still MITM'd though no secret may go there")
		}
	}

	// Deleted: a request on the open connection and a new CONNECT get 407.
	if err := api.DeleteSandbox(ctx, sbx.ID); err != nil {
		t.Fatalf("delete sandbox: %v", err)
	}
	if a, err := bearerGet(kept, byName, placeholder); err == nil && a.status != http.StatusProxyAuthRequired {
		t.Errorf("deleted sandbox, open connection: %d %s", a.status, a.body)
	} else if err != nil && !strings.Contains(err.Error(), "Proxy Authentication Required") {
		t.Errorf("deleted sandbox, open connection: %v", err)
	}
	if a := rawConnect(t, proxyAddr, upHost, creds); a.status != http.StatusProxyAuthRequired || a.header.Get("X-Egress-Denied") != "bad_credentials" {
		t.Errorf("deleted sandbox: CONNECT answered %d %q", a.status, a.header.Get("X-Egress-Denied"))
	}
	if c := rec.count(); c != n {
		t.Fatalf("a deleted sandbox reached the upstream (%d requests, want %d)", c, n)
	}

	_, metrics := get(t, "http://"+s.metrics+"/metrics")
	for _, want := range []string{`egressd_proxy_requests_total{outcome="substituted"}`, `egressd_proxy_denials_total{reason="host_not_allowed"}`, `egressd_proxy_denials_total{reason="no_credentials"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	if c := s.stop(t); c != 0 {
		t.Fatalf("SIGTERM: exit %d; stderr:\n%s", c, s.stderr.String())
	}
	logs, stdout := s.stderr.String(), s.stdout.String()
	for name, v := range map[string]string{"first value": value1, "rotated value": value2, "second secret's value": value3, "proxy token": sbx.ProxyToken} {
		if strings.Contains(logs, v) || strings.Contains(stdout, v) {
			t.Errorf("the %s was written to the log or stdout", name)
		}
	}
	var decisions, substituted int
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || str(m, "msg") != "proxy request" {
			continue
		}
		decisions++
		if str(m, "outcome") == "substituted" && str(m, "sandbox") == sbx.ID && str(m, "path") == "/v1/models" {
			substituted++
		}
	}
	if decisions == 0 || substituted == 0 {
		t.Errorf("log holds %d proxy request lines, %d substituted for the sandbox; want some of each:\n%s", decisions, substituted, logs)
	}
	t.Logf("%d decision lines; upstream received %d requests", decisions, n)
}

package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// TestStaticHosts runs the real binary with --static-hosts: a name that no
// DNS knows reaches a loopback upstream through the proxy (its certificate
// verified with --upstream-ca, the placeholder swapped for the value), and
// the answer still passes the deny table: without
// --allow-private-destinations the same name is refused as private.
func TestStaticHosts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const name, value = "upstream.test", "sk-live-static-hosts-3c9e1f7a5b"

	rec, upPort, upCAFile := tlsUpstream(t)
	target := fmt.Sprintf("https://%s:%d/v1/models", name, upPort)

	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil, "--static-hosts", name+"=127.0.0.1", "--allow-private-destinations", "127.0.0.1/32", "--upstream-ca", upCAFile)
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
	if _, err := api.CreateSecret(ctx, client.SecretInput{Name: "UPSTREAM_KEY", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{name}}); err != nil {
		t.Fatalf("create secret: %v", err)
	}
	sbx, err := api.CreateSandbox(ctx, client.SandboxInput{Name: "static-hosts"})
	if err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	var placeholder string
	for _, e := range sbx.Placeholders {
		if e.Name == "UPSTREAM_KEY" {
			placeholder = e.Placeholder
		}
	}
	if placeholder == "" {
		t.Fatalf("no placeholder for UPSTREAM_KEY: %+v", sbx.Placeholders)
	}
	proxyURL, err := url.Parse(sbx.ProxyURL)
	if err != nil {
		t.Fatal(err)
	}
	proxyURL.Host = proxyAddr
	roots := x509.NewCertPool()
	roots.AddCert(parseCertPEM(t, []byte(sbx.CACertPEM)))

	a := mustBearerGet(t, proxyClient(t, proxyURL, roots), target, placeholder)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s through the proxy: %d %q %s", target, a.status, a.header.Get("X-Egress-Denied"), a.body)
	}
	if got := rec.last(t, 1); got.header.Get("Authorization") != "Bearer "+value || got.uri != "/v1/models" {
		t.Fatalf("upstream got %s with the wrong Authorization (placeholder not swapped)", got.uri)
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d; stderr:\n%s", c, s.stderr.String())
	}

	// The same name without --allow-private-destinations: 127.0.0.1 is in
	// the deny table, as it would be from DNS.
	s = serve(t, dir, nil, "--static-hosts", name+"=127.0.0.1", "--upstream-ca", upCAFile)
	proxyAddr = s.waitAddr(t, filepath.Join(dir, "proxy.addr"))
	hostPort := fmt.Sprintf("%s:%d", name, upPort)
	if a := rawConnect(t, proxyAddr, hostPort, basicAuth(sbx.ID, sbx.ProxyToken)); a.status != http.StatusForbidden || a.header.Get("X-Egress-Denied") != "private_address" {
		t.Fatalf("CONNECT %s without --allow-private-destinations: %d %q, want 403 private_address", hostPort, a.status, a.header.Get("X-Egress-Denied"))
	}
	if c := rec.count(); c != 1 {
		t.Fatalf("the upstream received %d requests, want 1", c)
	}
	if c := s.stop(t); c != 0 {
		t.Fatalf("serve exit %d; stderr:\n%s", c, s.stderr.String())
	}
	if strings.Contains(s.stderr.String(), value) {
		t.Fatal("the secret's value was logged")
	}
}

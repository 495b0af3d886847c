package main

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// TestCrashKeepsEveryAuditRow proxies requests with substitution through
// the real binary, kills it with SIGKILL in the middle of the load, and
// then checks, from the audit log of the restarted vault, that every
// request the upstream received has its row: in journal mode (the
// default, run as serve runs without --audit) a value leaves only after
// its row is written to the audit journal, which the kernel keeps when the
// process dies; in sync mode only after its row is on disk.
func TestCrashKeepsEveryAuditRow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"default-journal", nil},
		{"sync", []string{"--audit", "sync"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			crashKeepsEveryAuditRow(t, tc.flags)
		})
	}
}

func crashKeepsEveryAuditRow(t *testing.T, auditFlags []string) {
	ctx := t.Context()
	rec, upPort, upCAFile := tlsUpstream(t)
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil, append([]string{"--allow-private-destinations", "127.0.0.1/32", "--upstream-ca", upCAFile}, auditFlags...)...)
	proxyAddr := s.waitAddr(t, filepath.Join(dir, "proxy.addr"))
	waitFor(t, "the first-run line", func() bool { return strings.Contains(s.stdout.String(), "\n") })
	var keys map[string]any
	json.Unmarshal([]byte(strings.SplitN(s.stdout.String(), "\n", 2)[0]), &keys)
	api, err := client.New("http://"+s.admin, str(keys, "api_key"))
	if err != nil {
		t.Fatal(err)
	}
	const value = "sk-crash-test-value-7f3a9c2e"
	if _, err := api.CreateSecret(ctx, client.SecretInput{Name: "k", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	sbx, err := api.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "crash-user"})
	if err != nil {
		t.Fatal(err)
	}
	ph := sbx.Placeholders[0].Placeholder
	pu, err := url.Parse(sbx.ProxyURL)
	if err != nil {
		t.Fatal(err)
	}
	pu.Host = proxyAddr
	pool := x509.NewCertPool()
	pool.AddCert(parseCertPEM(t, []byte(sbx.CACertPEM)))
	target := fmt.Sprintf("https://localhost:%d", upPort)

	// Load: 16 clients, each with requests to its own paths, until killed.
	var next atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := proxyClient(t, pu, pool)
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := next.Add(1)
				if n > 5000 {
					return
				}
				if _, err := bearerGet(c, fmt.Sprintf("%s/crash/%d", target, n), ph); err != nil {
					return // the proxy died
				}
			}
		}()
	}
	waitFor(t, "100 requests upstream", func() bool { return rec.count() >= 100 })
	s.cmd.Process.Kill() // SIGKILL, mid-load
	<-s.exited
	close(stop)
	wg.Wait()

	received := map[string]bool{}
	rec.mu.Lock()
	for _, r := range rec.reqs {
		received[r.uri] = true
		if r.header.Get("Authorization") != "Bearer "+value {
			t.Errorf("upstream got %q", r.header.Get("Authorization"))
		}
	}
	rec.mu.Unlock()

	// Restart: the vault opens (bbolt recovers) and the log is read back.
	res := egressd(t, nil, "audit", "export", "--data-dir", dir, "--since", "1h")
	if res.code != 0 {
		t.Fatalf("audit export: %d %s", res.code, res.stderr)
	}
	rows := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader([]byte(res.stdout)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r audit.Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line: %v", err)
		}
		if r.Kind == audit.KindRequest && r.SandboxID == sbx.ID {
			rows[r.Path] = true
		}
	}
	missing := 0
	for uri := range received {
		if !rows[uri] {
			missing++
		}
	}
	t.Logf("upstream received %d requests before the kill; the log holds %d request rows", len(received), len(rows))
	if missing > 0 {
		t.Fatalf("%d requests reached the upstream without an audit row", missing)
	}
	if strings.Contains(res.stdout, value) {
		t.Fatal("the export holds the value")
	}
}

func TestHealthcheckVerb(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil)
	if res := egressd(t, nil, "healthcheck", "--url", "http://"+s.admin+"/healthz"); res.code != 0 || !strings.Contains(res.stdout, "ok") {
		t.Fatalf("healthcheck of a running server: %d %s %s", res.code, res.stdout, res.stderr)
	}
	s.stop(t)
	if res := egressd(t, nil, "healthcheck", "--url", "http://"+s.admin+"/healthz", "--timeout", "1s"); res.code == 0 {
		t.Fatal("healthcheck of a stopped server succeeded")
	}
}

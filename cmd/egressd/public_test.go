package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublicListener: with --public-listen, the end users' listener serves
// the Connect page and the OAuth callback and nothing of the admin API or
// the dashboard, while the admin listener keeps serving both; OAuth links
// and the callback point at the public listener.
func TestPublicListener(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := serve(t, dir, nil, "--public-listen", "127.0.0.1:0")
	public := s.waitAddr(t, filepath.Join(dir, "public.addr"))
	if public == s.admin {
		t.Fatal("the public listener is the admin listener")
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	fetch := func(base, path string) (int, string, string) {
		t.Helper()
		resp, err := c.Get("http://" + base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for _, path := range []string{"/api/v1/whoami", "/api/v1/egress/secrets", "/api/v1/tenants", "/api/v1/ca.pem", "/ui/", "/ui", "/readyz", "/metrics"} {
		if code, _, body := fetch(public, path); code != http.StatusNotFound || strings.Contains(body, "egress/secrets") {
			t.Errorf("public %s: %d %q", path, code, body)
		}
	}
	// The end users' pages answer there, and on the admin listener too.
	for _, base := range []string{public, s.admin} {
		code, ctype, body := fetch(base, "/connect/flow_unknown")
		if code != http.StatusNotFound || !strings.HasPrefix(ctype, "text/html") || strings.Contains(body, "egressd") {
			t.Errorf("%s /connect/: %d %q", base, code, ctype)
		}
		if code, _, _ := fetch(base, "/api/v1/egress/oauth/callback?state=x&code=y"); code == http.StatusNotFound || code >= 500 {
			t.Errorf("%s callback: %d", base, code)
		}
	}
	if code, _, _ := fetch(s.admin, "/api/v1/ca.pem"); code != http.StatusOK {
		t.Errorf("admin ca.pem: %d", code)
	}
	if code, _, _ := fetch(public, "/healthz"); code != http.StatusOK {
		t.Errorf("public /healthz: %d", code)
	}
	if !strings.Contains(s.stderr.String(), `"callback":"http://`+public+`/api/v1/egress/oauth/callback"`) {
		t.Errorf("the OAuth callback does not point at the public listener; log:\n%s", s.stderr.String())
	}
}

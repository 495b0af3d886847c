package proxy

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
)

// FuzzHeaderAndURLSubstitution feeds hostile header values, Basic
// credentials and URLs through the substitution of a real sandbox. It must
// never panic, never put the value anywhere the placeholder was not, and
// substitute every placeholder that was there.
func FuzzHeaderAndURLSubstitution(f *testing.F) {
	e := newEnv(f, func(c *Config) { c.Sink = nil })
	sbx, _ := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: "the-real-value", Scope: vault.ScopeTenant, PlaceholderPrefix: "sk-"})
	ph := e.placeholder(sbx, "k")
	f.Add("Bearer {}", "/v1/{}", "a={}&b=1", "user:{}")
	f.Add("{}{}", "/{}/{}", "{}", ":{}")
	f.Add("EGP_{}", "/%zz{}", "%%{}", "{}:{}")
	f.Add("sk-EGP_x", "/", "", "")
	f.Fuzz(func(t *testing.T, hv, path, query, basic string) {
		fill := func(s string) string { return strings.ReplaceAll(s, "{}", ph) }
		hv, path, query, basic = fill(hv), fill(path), fill(query), fill(basic)
		h := http.Header{}
		h["X-Key"] = []string{hv}
		h["Authorization"] = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(basic))}
		u := &url.URL{Scheme: "https", Host: "api.test", Path: path, RawQuery: query}
		s := &subst{p: e.proxy, st: &reqState{}, ctx: context.Background(), sbx: &sbx, host: "api.test", tls: true}
		substituteURL(u, s)
		substituteHeaders(h, s)
		if !strings.Contains(hv, ph) && strings.Contains(h.Get("X-Key"), "the-real-value") && !strings.Contains(hv, "the-real-value") {
			t.Fatalf("value appeared in a header that had no placeholder: %q", h.Get("X-Key"))
		}
		if strings.Contains(hv, ph) && s.denied() == ReasonNone && strings.Contains(h.Get("X-Key"), ph) {
			t.Fatalf("placeholder left in header: %q", h.Get("X-Key"))
		}
		if strings.Contains(query, ph) && s.denied() == ReasonNone && strings.Contains(u.RawQuery, ph) {
			t.Fatalf("placeholder left in query: %q", u.RawQuery)
		}
	})
}

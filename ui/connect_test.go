package ui

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"
)

// Every kind of Connect page renders with its brand and one h1; a page
// that would send the browser to a non-http(s) URL, or of an unknown
// kind, is refused before anything is written.
func TestConnectPageKinds(t *testing.T) {
	brand := ConnectBrand{Name: "Acme", Provider: "GitHub"}
	for _, p := range []ConnectPage{
		{Kind: ConnectForm, Token: strings.Repeat("t", 43)},
		{Kind: ConnectContinue, ProviderURL: "https://github.com/login/oauth/authorize?a=1&b=2"},
		{Kind: ConnectRefused, Title: "T", Message: "M", Retry: "oaf_x"},
		{Kind: ConnectResult, Status: "completed", Title: "T", Message: "M"},
	} {
		p.Brand, p.Stylesheet = brand, ConnectStylesheetFrom("")
		w := httptest.NewRecorder()
		if err := p.Serve(w, 200); err != nil {
			t.Fatalf("%s: %v", p.Kind, err)
		}
		body := w.Body.String()
		if strings.Count(body, "<h1>") != 1 || !strings.Contains(body, `<p class="brand" id="connect-brand">Acme</p>`) ||
			strings.Contains(strings.ToLower(body), "egressd") || w.Header().Get("Content-Security-Policy") != p.CSP() {
			t.Fatalf("%s: %s", p.Kind, body)
		}
	}
	for _, p := range []ConnectPage{
		{Kind: ConnectContinue, ProviderURL: "javascript:alert(1)"},
		{Kind: ConnectContinue, ProviderURL: "/relative"},
		{Kind: "other"},
	} {
		w := httptest.NewRecorder()
		if err := p.Serve(w, 200); err == nil || w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" {
			t.Fatalf("%+v: %v %q", p, err, w.Body.String())
		}
	}
}

// The brand colour reaches the page only as #rrggbb, with a text colour
// that reads on it, and its <style> is allowed by its exact hash.
func TestConnectBrandColour(t *testing.T) {
	for _, c := range []struct{ in, css string }{
		{"#000000", ":root{--brand:#000000;--brand-text:#ffffff}"},
		{"#ffffff", ":root{--brand:#ffffff;--brand-text:#111111}"},
		{"#2f5bd3", ":root{--brand:#2f5bd3;--brand-text:#ffffff}"},
		{"#ffcc00", ":root{--brand:#ffcc00;--brand-text:#111111}"},
		{"red", ""},
		{"#fff", ""},
		{"#ffffff;}", ""},
		{"", ""},
	} {
		p := ConnectPage{Kind: ConnectForm, Brand: ConnectBrand{Color: c.in}}
		if got := string(p.BrandCSS()); got != c.css {
			t.Errorf("%q: %q, want %q", c.in, got, c.css)
		}
		want := "default-src 'none'; style-src 'self'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
		if c.css != "" {
			sum := sha256.Sum256([]byte(c.css))
			want = strings.Replace(want, "style-src 'self'", "style-src 'self' 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'", 1)
		}
		if p.CSP() != want {
			t.Errorf("%q: CSP %q", c.in, p.CSP())
		}
	}
}

// Nothing embedded for the Connect pages names the product.
func TestConnectAssetsUnbranded(t *testing.T) {
	for _, name := range []string{"connect/page.html", "connect/connect.css"} {
		b, err := connectFS.ReadFile(name)
		if err != nil || strings.Contains(strings.ToLower(string(b)), "egressd") {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

package ui

import (
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func newTestDashboard(t *testing.T) *Dashboard {
	t.Helper()
	d, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func serve(d *Dashboard, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, req)
	return rec
}

func checkHeaders(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	h := rec.Header()
	for k, want := range map[string]string{
		"Content-Security-Policy": DashboardCSP, "X-Content-Type-Options": "nosniff",
		"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
}

// The page names every asset by its hash, and every name it uses exists.
func TestIndexNamesAssetsByHash(t *testing.T) {
	d := newTestDashboard(t)
	rec := serve(d, "GET", "/ui/", nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("index: %d %v", rec.Code, rec.Header())
	}
	checkHeaders(t, "index", rec)
	page := rec.Body.String()
	refs := regexp.MustCompile(`(?:src|href)="(/ui/assets/[^"?]+)\?v=([0-9a-f]{16})"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 10 {
		t.Fatalf("only %d hashed asset references in the page", len(refs))
	}
	for _, m := range refs {
		a := d.assets[strings.TrimPrefix(m[1], DashboardPath)]
		if a == nil || a.hash != m[2] {
			t.Errorf("%s?v=%s: no such asset version", m[1], m[2])
		}
		rec := serve(d, "GET", m[1]+"?v="+m[2], nil)
		if rec.Code != 200 || rec.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("%s: %d %q", m[1], rec.Code, rec.Header().Get("Cache-Control"))
		}
		checkHeaders(t, m[1], rec)
	}
	// Every script file is loaded by the page.
	fs.WalkDir(dashFS, "assets/js", func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !strings.Contains(page, `"/ui/`+p+`?v=`) {
			t.Errorf("%s is not loaded by the page", p)
		}
		return err
	})
}

// Regression: nothing inline that the CSP would block (and so nothing
// the CSP has to allow), and no HTML parsing of data in the scripts.
func TestNoInlineScriptOrStyle(t *testing.T) {
	d := newTestDashboard(t)
	page := serve(d, "GET", "/ui/", nil).Body.String()
	for _, tag := range regexp.MustCompile(`(?s)<script[^>]*>.*?</script>`).FindAllString(page, -1) {
		if !strings.Contains(tag, ` src="`) || !strings.HasSuffix(tag, "></script>") {
			t.Errorf("inline script: %s", tag)
		}
	}
	for _, re := range []string{`\sstyle\s*=`, `<style`, `\son[a-z]+\s*=`, `javascript:`} {
		if loc := regexp.MustCompile(re).FindStringIndex(page); loc != nil {
			t.Errorf("index.html matches %s at %q", re, page[loc[0]:min(loc[1]+20, len(page))])
		}
	}
	for name, a := range d.assets {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		src := string(a.body)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", "localStorage"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
}

func TestAssetCaching(t *testing.T) {
	d := newTestDashboard(t)
	a := d.assets["assets/js/app.js"]
	rec := serve(d, "GET", "/ui/assets/js/app.js", nil)
	if rec.Code != 200 || rec.Header().Get("Cache-Control") != "no-cache" || rec.Header().Get("ETag") != `"`+a.hash+`"` ||
		rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" || rec.Body.String() != string(a.body) {
		t.Fatalf("unversioned asset: %d %v", rec.Code, rec.Header())
	}
	if rec := serve(d, "GET", "/ui/assets/js/app.js?v=0000000000000000", nil); rec.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("a stale version is cached for a year: %q", rec.Header().Get("Cache-Control"))
	}
	rec = serve(d, "GET", "/ui/assets/js/app.js", map[string]string{"If-None-Match": `W/"x", "` + a.hash + `"`})
	if rec.Code != 304 || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d with %d bytes", rec.Code, rec.Body.Len())
	}
	rec = serve(d, "GET", "/ui/assets/js/app.js", map[string]string{"Accept-Encoding": "br, gzip"})
	if rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("ETag") != `"`+a.hash+`-gz"` || rec.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip: %v", rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != string(a.body) {
		t.Error("gzipped body differs")
	}
	if rec := serve(d, "GET", "/ui/assets/js/app.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); rec.Header().Get("Content-Encoding") != "" {
		t.Error("gzip sent to a client that refused it")
	}
	if rec := serve(d, "HEAD", "/ui/", nil); rec.Code != 200 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestRefusals(t *testing.T) {
	d := newTestDashboard(t)
	for _, c := range []struct {
		method, target string
		status         int
	}{
		{"GET", "/ui/nope", http.StatusNotFound},
		{"GET", "/ui/assets/nope.js", http.StatusNotFound},
		{"GET", "/ui/assets/", http.StatusNotFound},
		{"GET", "/ui/assets/../ui.go", http.StatusNotFound},
		{"GET", "/ui/index.html/x", http.StatusNotFound},
		{"POST", "/ui/", http.StatusMethodNotAllowed},
		{"DELETE", "/ui/assets/js/app.js", http.StatusMethodNotAllowed},
	} {
		rec := serve(d, c.method, c.target, nil)
		if rec.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.target, rec.Code, c.status)
		}
		checkHeaders(t, c.method+" "+c.target, rec)
		if c.status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", c.method, c.target, rec.Header().Get("Allow"))
		}
	}
}

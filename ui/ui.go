// Package ui holds egressd's browser pages, served by the admin API: the
// tenant dashboard under /ui/ (this file and assets/) and the end-user
// Connect page of an OAuth flow (connect.go and connect/). The dashboard is one HTML page with its stylesheet and
// scripts, all embedded in the binary (no CDN, no build step). It holds
// no logic the API does not enforce: its script signs in with an API key
// or a browser token kept in the tab's sessionStorage and calls the admin
// API like any client, with Authorization: Bearer. Every answer carries a
// strict Content-Security-Policy (no inline script or style), nosniff and
// no-referrer; assets are named by their content hash in the page and
// cached for a year, or revalidated by ETag without it.
package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
)

// DashboardPath is the path the dashboard is served under.
const DashboardPath = "/ui/"

// DashboardCSP is the policy of every dashboard answer: scripts,
// styles and API calls from this origin only, nothing inline, no frames.
const DashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

//go:embed assets
var dashFS embed.FS

// Config configures New.
type Config struct {
	// Logger receives a line when an answer cannot be written; nil
	// discards.
	Logger *slog.Logger
}

// Dashboard serves the dashboard's page and assets. It is an
// http.Handler for DashboardPath and everything under it, safe for concurrent
// use.
type Dashboard struct {
	log    *slog.Logger
	index  *dashAsset
	assets map[string]*dashAsset // by path under DashboardPath, such as "assets/js/app.js"
}

// dashAsset is one file ready to serve: its bytes, gzipped when that helps,
// and the hash that names its version.
type dashAsset struct {
	ctype string
	body  []byte
	gz    []byte // nil when gzip does not make it smaller
	hash  string // 16 hex digits of its SHA-256
}

// New reads the embedded assets and renders the page.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{log: cfg.Logger, assets: map[string]*dashAsset{}}
	err := fs.WalkDir(dashFS, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || p == "assets/index.html" {
			return err
		}
		b, err := dashFS.ReadFile(p)
		if err != nil {
			return err
		}
		ctype, ok := dashTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("ui: %s: no content type for its extension", p)
		}
		d.assets[p] = newDashAsset(ctype, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	src, err := dashFS.ReadFile("assets/index.html")
	if err != nil {
		return nil, err
	}
	page, err := template.New("index").Funcs(template.FuncMap{
		// asset names a file by its content, so a new binary's page never
		// runs an old script from a cache.
		"asset": func(name string) (string, error) {
			a, ok := d.assets["assets/"+name]
			if !ok {
				return "", fmt.Errorf("no asset %q", name)
			}
			return DashboardPath + "assets/" + name + "?v=" + a.hash, nil
		},
	}).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("ui: index.html: %w", err)
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, nil); err != nil {
		return nil, fmt.Errorf("ui: index.html: %w", err)
	}
	d.index = newDashAsset("text/html; charset=utf-8", buf.Bytes())
	return d, nil
}

var dashTypes = map[string]string{
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".html": "text/html; charset=utf-8",
}

// contentHash names a version of b: 16 hex digits of its SHA-256.
func contentHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func newDashAsset(ctype string, b []byte) *dashAsset {
	a := &dashAsset{ctype: ctype, body: b, hash: contentHash(b)}
	if !strings.HasPrefix(ctype, "image/png") {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		if buf.Len() < len(b) {
			a.gz = buf.Bytes()
		}
	}
	return a
}

// dashboardHeaders sets the headers every dashboard answer carries.
func dashboardHeaders(h http.Header) {
	h.Set("Content-Security-Policy", DashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
}

// ServeHTTP serves the page at DashboardPath and the assets under
// DashboardPath+"assets/"; anything else is 404.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dashboardHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		d.plain(w, http.StatusMethodNotAllowed, "method not allowed; use GET")
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, DashboardPath)
	if !ok {
		d.plain(w, http.StatusNotFound, "not found")
		return
	}
	if name == "" || name == "index.html" {
		d.serve(w, r, d.index, "no-cache")
		return
	}
	a, ok := d.assets[name]
	if !ok || !strings.HasPrefix(name, "assets/") {
		d.plain(w, http.StatusNotFound, "not found")
		return
	}
	cache := "no-cache"
	if r.URL.Query().Get("v") == a.hash {
		cache = "public, max-age=31536000, immutable"
	}
	d.serve(w, r, a, cache)
}

// serve answers a, gzipped if the client takes it, or 304 when the
// client's copy is current.
func (d *Dashboard) serve(w http.ResponseWriter, r *http.Request, a *dashAsset, cache string) {
	h := w.Header()
	body, etag := a.body, `"`+a.hash+`"`
	if a.gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if dashAcceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = a.gz, `"`+a.hash+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", cache)
	h.Set("ETag", etag)
	if match := r.Header.Get("If-None-Match"); match != "" && dashETagMatch(match, etag) {
		h.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := w.Write(body); err != nil {
		d.log.Debug("ui: writing an answer", "path", r.URL.Path, "err", err)
	}
}

func (d *Dashboard) plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// dashAcceptsGzip reads Accept-Encoding: gzip listed without q=0.
func dashAcceptsGzip(v string) bool {
	for _, part := range strings.Split(v, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// dashETagMatch reads If-None-Match: * or a list of (weak or strong) tags.
func dashETagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

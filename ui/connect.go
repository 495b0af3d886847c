package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/egressd/egressd/vault"
)

// The end-user Connect pages: a flow's connect link (/connect/{id}), the
// page its button leads to on the way to the provider, the refusals, and
// the callback's result. They show the tenant's brand and nothing else:
// no product name, no markup comments (html/template drops them), an
// empty favicon. They carry no script; their one stylesheet is an
// embedded file, and a tenant's colour reaches it as a CSS custom
// property in a <style> element allowed by its hash, so the policy stays
// strict: ConnectPage.CSP.

//go:embed connect
var connectFS embed.FS

var (
	connectTmpl = template.Must(template.ParseFS(connectFS, "connect/page.html"))
	connectCSS  = connectFile("connect/connect.css")
	// connectCSSHash names the stylesheet's version in its URL.
	connectCSSHash = contentHash(connectCSS)
)

func connectFile(name string) []byte {
	b, err := connectFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// ConnectStylesheet is the stylesheet's path under the connect links'
// folder (/connect/).
const ConnectStylesheet = "assets/connect.css"

// ConnectStylesheetFrom is the stylesheet's URL, with its version,
// relative to a page whose way to the connect links' folder is dir: ""
// from /connect/{id}, "../../../../connect/" from
// /api/v1/egress/oauth/callback. A relative URL keeps working behind a
// proxy that serves the pages under a path prefix.
func ConnectStylesheetFrom(dir string) string {
	return dir + ConnectStylesheet + "?v=" + connectCSSHash
}

// ServeConnectStylesheet answers the stylesheet: cached for a year when
// asked for by its version, else revalidated by its ETag.
func ServeConnectStylesheet(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	etag := `"` + connectCSSHash + `"`
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("ETag", etag)
	if r.URL.Query().Get("v") == connectCSSHash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(connectCSS)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(connectCSS)
	}
}

// ConnectBrand is what a Connect page shows of the tenant.
type ConnectBrand struct {
	// Name is the tenant's brand: the display_name of its override for
	// the flow's provider, else the tenant's name. Empty on a page that
	// knows no tenant (a link to no flow): it then shows no brand.
	Name string
	// Provider is the provider's display name ("GitHub").
	Provider string
	// ButtonLabel is the Connect button's text; empty means "Connect " +
	// Provider.
	ButtonLabel string
	// Color is the accent colour as #rrggbb; anything else means the
	// default one.
	Color string
}

// Label is the Connect button's text.
func (b ConnectBrand) Label() string {
	if b.ButtonLabel != "" {
		return b.ButtonLabel
	}
	return "Connect " + b.Provider
}

// The kinds of Connect page.
const (
	// ConnectForm is the connect link's page: what connecting does and
	// the button (a form posting Token back to the page's URL).
	ConnectForm = "form"
	// ConnectContinue answers the button: it sends the browser on to
	// ProviderURL (a refresh, and a link for a browser that does not
	// follow it). It is a page rather than a redirect because the
	// provider's own redirects (to its sign-in page, often on another
	// origin) would all count against the form's form-action.
	ConnectContinue = "continue"
	// ConnectRefused says why the link cannot be used (Title, Message),
	// with a link to open the page again (Retry) where that can help.
	ConnectRefused = "refused"
	// ConnectResult is the callback's page: Status is "completed" or
	// "failed", Title and Message say so in words.
	ConnectResult = "result"
)

// ConnectPage is one Connect page.
type ConnectPage struct {
	// Kind is one of ConnectForm, ConnectContinue, ConnectRefused and
	// ConnectResult.
	Kind  string
	Brand ConnectBrand
	// Stylesheet is the stylesheet's URL (ConnectStylesheetFrom).
	Stylesheet string
	// Token is the form's token (ConnectForm).
	Token string
	// ProviderURL is where ConnectContinue sends the browser: an
	// absolute http(s) URL, else the page refuses to render.
	ProviderURL string
	// Title and Message say what happened (ConnectRefused, ConnectResult).
	Title, Message string
	// Status is data-status of #connect-result (ConnectResult).
	Status string
	// Retry is the URL of the connect page to open again (ConnectRefused);
	// empty shows no link.
	Retry string
}

// Label is the Connect button's text.
func (p ConnectPage) Label() string { return p.Brand.Label() }

// PageTitle is the document's title: what the page says, and the brand.
func (p ConnectPage) PageTitle() string {
	t := p.Title
	switch p.Kind {
	case ConnectForm:
		t = p.Label()
	case ConnectContinue:
		t = "Continuing to " + p.Brand.Provider
	}
	if p.Brand.Name != "" && p.Brand.Name != t {
		t += " · " + p.Brand.Name
	}
	return t
}

// BrandCSS is the tenant's colour as CSS custom properties (and a text
// colour that reads on it), or "" for the default colour.
func (p ConnectPage) BrandCSS() template.CSS {
	c := p.Brand.Color
	if !vault.ValidColor(c) {
		return ""
	}
	// Trusted: c is exactly # and six hex digits.
	return template.CSS(":root{--brand:" + c + ";--brand-text:" + textOn(c) + "}")
}

// CSP is the page's Content-Security-Policy: nothing but this origin's
// stylesheet (and the brand colour's <style>, by its hash), an empty
// favicon, forms posting to this origin only, no frames around it.
func (p ConnectPage) CSP() string {
	style := "style-src 'self'"
	if css := p.BrandCSS(); css != "" {
		sum := sha256.Sum256([]byte(css))
		style += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return "default-src 'none'; " + style + "; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
}

// ReferrerPolicy is the page's: the form's page sends its origin with its
// own POST (its Origin header, checked), every other one sends nothing.
func (p ConnectPage) ReferrerPolicy() string {
	if p.Kind == ConnectForm {
		return "same-origin"
	}
	return "no-referrer"
}

// Serve writes the page with status and its headers: HTML, never cached,
// its CSP, referrer policy, nosniff and no framing. The page is rendered
// before anything is written, so a failure answers nothing.
func (p ConnectPage) Serve(w http.ResponseWriter, status int) error {
	var buf bytes.Buffer
	if err := p.render(&buf); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", p.CSP())
	h.Set("Referrer-Policy", p.ReferrerPolicy())
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

func (p ConnectPage) render(buf *bytes.Buffer) error {
	switch p.Kind {
	case ConnectForm, ConnectRefused, ConnectResult:
	case ConnectContinue:
		u, err := url.Parse(p.ProviderURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("ui: connect page: provider URL: want an absolute http(s) URL")
		}
	default:
		return fmt.Errorf("ui: connect page: unknown kind %q", p.Kind)
	}
	return connectTmpl.Execute(buf, p)
}

// textOn is the text colour with the better contrast on c (#rrggbb):
// white or near-black (WCAG relative luminance).
func textOn(c string) string {
	lum := 0.0
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		v, _ := strconv.ParseUint(c[1+2*i:3+2*i], 16, 8)
		s := float64(v) / 255
		if s <= 0.04045 {
			s /= 12.92
		} else {
			s = math.Pow((s+0.055)/1.055, 2.4)
		}
		lum += w * s
	}
	// Contrast with white (1.05/(L+0.05)) against with #111 (L≈0.0056).
	if 1.05/(lum+0.05) >= (lum+0.05)/(0.0056+0.05) {
		return "#ffffff"
	}
	return "#111111"
}

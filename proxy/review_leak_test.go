package proxy

// Regression tests from the security review: paths by which a real value
// could reach the sandbox although response redaction is on. Each now
// asserts that the sandbox receives only the placeholder.

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
)

// Regression: a value the upstream echoes in a response header (Location of
// a redirect, any X- header) or trailer is masked like one in the body. The
// transport does not follow the redirect, so the sandbox gets the Location
// as the upstream wrote it, after redaction.
func TestReviewResponseHeaderEchoMasked(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}, SubstituteIn: []vault.Location{vault.InHeader, vault.InQuery, vault.InPath}})
	ph := e.placeholder(sbx, "k")
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		// Pagination, trailing-slash and login redirects send the request
		// URI back; debug headers and trailers echo request headers.
		w.Header().Set("Trailer", "X-Echo-Trailer")
		w.Header().Set("X-Request-Key", r.Header.Get("X-Api-Key"))
		http.Redirect(w, r, r.URL.RequestURI()+"&page=2", http.StatusFound)
		w.Header().Set("X-Echo-Trailer", "key="+r.Header.Get("X-Api-Key"))
	}
	c := e.client(sbx.ID, token)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, body := do(t, c, "GET", e.url("https", "api.test", "/v1/items?key="+ph), nil, map[string]string{"X-Api-Key": ph})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The upstream did get the value, in both places.
	if up := e.up.last(t); up.Header.Get("X-Api-Key") != realValue || !strings.Contains(up.URI, "key="+url.QueryEscape(realValue)) {
		t.Fatalf("upstream got %q %q: not substituted", up.Header.Get("X-Api-Key"), up.URI)
	}
	if bytes.Contains(body, []byte(realValue)) {
		t.Fatalf("body not redacted: %s", body)
	}
	if got, want := resp.Header.Get("Location"), "/v1/items?key="+ph+"&page=2"; got != want {
		t.Fatalf("Location %q, want %q", got, want)
	}
	if got := resp.Header.Get("X-Request-Key"); got != ph {
		t.Fatalf("X-Request-Key %q, want the placeholder", got)
	}
	if got := resp.Trailer.Get("X-Echo-Trailer"); got != "key="+ph {
		t.Fatalf("trailer X-Echo-Trailer %q, want key=<placeholder>", got)
	}
	for _, h := range []http.Header{resp.Header, resp.Trailer} {
		for name, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, realValue) || strings.Contains(v, url.QueryEscape(realValue)) {
					t.Fatalf("%s: %q carries the value", name, v)
				}
			}
		}
	}
}

// Regression: inside a MITM'd tunnel the sandbox's own Accept-Encoding no
// longer goes upstream when redaction is on; the proxy's transport
// negotiates (and undoes) compression itself, so an echo in a response the
// upstream compresses is found and masked. Python requests, Node fetch,
// curl --compressed and Go clients without DisableCompression all send
// Accept-Encoding: gzip.
func TestReviewCompressedResponseEchoMasked(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "k")
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		out, _ := json.Marshal(map[string]string{"error": "invalid key " + r.Header.Get("Authorization")})
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write(out)
			zw.Close()
			return
		}
		w.Write(out)
	}
	c := e.client(sbx.ID, token)
	// Control: without Accept-Encoding the echo is masked.
	_, body := do(t, c, "GET", e.url("https", "api.test", "/v1"), nil, map[string]string{"Authorization": "Bearer " + ph})
	if bytes.Contains(body, []byte(realValue)) || !bytes.Contains(body, []byte(ph)) {
		t.Fatalf("control: body %s", body)
	}
	// "gzip" is what Go and Node send; "gzip, deflate, br" (Python
	// requests with brotli, curl) tells the sandbox's header apart from the
	// transport's own "gzip" on the upstream's side.
	for _, ae := range []string{"gzip", "gzip, deflate, br"} {
		t.Run(ae, func(t *testing.T) {
			resp, body := do(t, c, "GET", e.url("https", "api.test", "/v1"), nil, map[string]string{"Authorization": "Bearer " + ph, "Accept-Encoding": ae})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %q", resp.StatusCode, body)
			}
			up := e.up.last(t)
			if up.Header.Get("Authorization") != "Bearer "+realValue {
				t.Fatalf("upstream got %q: not substituted", up.Header.Get("Authorization"))
			}
			// The upstream sees no Accept-Encoding, or only the transport's
			// own "gzip", which the transport then decodes itself.
			if got := up.Header.Values("Accept-Encoding"); len(got) > 1 || len(got) == 1 && got[0] != "gzip" {
				t.Fatalf("upstream received the sandbox's Accept-Encoding %q", got)
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" {
				t.Fatalf("sandbox got Content-Encoding %q: the upstream's compression was passed through", ce)
			}
			if bytes.Contains(body, []byte(realValue)) {
				t.Fatalf("sandbox got the value: %s", body)
			}
			var got map[string]string
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if want := "invalid key Bearer " + ph; got["error"] != want {
				t.Fatalf("decoded body %q, want %q", got["error"], want)
			}
		})
	}
}

// Regression: the value goes out encoded in some places and upstreams
// re-encode what they echo: base64 in Basic credentials, percent-encoding in
// a query, "\/" from PHP's and Java's JSON encoders (AWS secret keys hold
// '/' and '+'); and a body whose Content-Type is missing or not text-like
// is scanned too. Every such echo reaches the sandbox as the placeholder.
func TestReviewRedactionMasksEncodedEchoes(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	const slashy = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	e.secret(vault.SecretInput{Name: "basic", Value: realValue, Scope: vault.ScopeTenant, SubstituteIn: []vault.Location{vault.InHeader, vault.InQuery, vault.InPath}})
	e.secret(vault.SecretInput{Name: "aws", Value: slashy, Scope: vault.ScopeTenant, SubstituteIn: []vault.Location{vault.InHeader, vault.InQuery, vault.InPath}})
	phBasic, phAWS := e.placeholder(sbx, "basic"), e.placeholder(sbx, "aws")
	c := e.client(sbx.ID, token)

	// Every form of either value the sandbox must never see.
	jsonForm := func(v string) string { b, _ := json.Marshal(v); return string(b[1 : len(b)-1]) }
	forbidden := []string{
		realValue, slashy,
		url.QueryEscape(slashy), url.PathEscape(slashy),
		jsonForm(slashy), strings.ReplaceAll(jsonForm(slashy), "/", `\/`),
		strings.TrimPrefix(basicAuth("user", realValue), "Basic "),
	}

	cases := []struct {
		name  string
		path  string
		hdr   map[string]string
		reply func(w http.ResponseWriter, r *http.Request)
		// masked reports whether what the sandbox received carries the
		// placeholder where the upstream echoed the value.
		masked func(body []byte) bool
	}{
		{"basic echoed base64", "/headers", map[string]string{"Authorization": basicAuth("user", phBasic)},
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]string{"authorization": r.Header.Get("Authorization")})
			},
			func(body []byte) bool {
				var got map[string]string
				json.Unmarshal(body, &got)
				raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(got["authorization"], "Basic "))
				return string(raw) == "user:"+phBasic
			}},
		{"query echoed percent-encoded", "/search?key=" + phAWS, nil,
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "you asked for "+r.URL.RawQuery)
			},
			func(body []byte) bool {
				q, _ := url.ParseQuery(strings.TrimPrefix(string(body), "you asked for "))
				return q.Get("key") == phAWS
			}},
		{"json with escaped slashes", "/v1", map[string]string{"X-Key": phAWS},
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"key":"`+strings.ReplaceAll(r.Header.Get("X-Key"), "/", `\/`)+`"}`)
			},
			func(body []byte) bool {
				var got map[string]string
				json.Unmarshal(body, &got)
				return got["key"] == phAWS
			}},
		{"octet-stream body", "/v1", map[string]string{"X-Key": phBasic},
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				io.WriteString(w, r.Header.Get("X-Key"))
			},
			func(body []byte) bool { return string(body) == phBasic }},
		{"no content type", "/v1", map[string]string{"X-Key": phBasic},
			func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil // no sniffing either
				io.WriteString(w, r.Header.Get("X-Key"))
			},
			func(body []byte) bool { return string(body) == phBasic }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.up.mu.Lock()
			e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) { tc.reply(w, r) }
			e.up.mu.Unlock()
			resp, body := do(t, c, "GET", e.url("https", "api.test", tc.path), nil, tc.hdr)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			for _, f := range forbidden {
				if bytes.Contains(body, []byte(f)) {
					t.Fatalf("body %q carries the value as %q", body, f)
				}
			}
			if !tc.masked(body) {
				t.Fatalf("body %q does not carry the placeholder in place of the echo", body)
			}
		})
	}
}

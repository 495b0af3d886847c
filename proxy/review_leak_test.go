package proxy

// Review findings: paths by which a real value reaches the sandbox although
// response redaction is on. Each test asserts the current (wrong) behaviour
// so that it passes today; invert its final assertion when the gap is fixed.

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

// Review: redaction masks only the body; a value the upstream echoes in a
// response header (Location of a redirect, any X- header) reaches the
// sandbox. The transport does not follow the redirect, so the sandbox gets
// the Location as it is.
func TestReviewResponseHeaderEchoReachesSandbox(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	ph := e.placeholder(sbx, "k")
	e.up.reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		// Pagination, trailing-slash and login redirects send the request
		// URI back; debug headers echo request headers.
		w.Header().Set("X-Request-Key", r.Header.Get("X-Api-Key"))
		http.Redirect(w, r, r.URL.RequestURI()+"&page=2", http.StatusFound)
	}
	c := e.client(sbx.ID, token)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, body := do(t, c, "GET", e.url("https", "api.test", "/v1/items?key="+ph), nil, map[string]string{"X-Api-Key": ph})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if bytes.Contains(body, []byte(realValue)) {
		t.Fatalf("body not redacted: %s", body) // the body is masked...
	}
	// ...the headers are not.
	if !strings.Contains(resp.Header.Get("Location"), realValue) {
		t.Fatalf("Location %q no longer carries the value: finding fixed, invert this test", resp.Header.Get("Location"))
	}
	if resp.Header.Get("X-Request-Key") != realValue {
		t.Fatalf("X-Request-Key %q no longer carries the value: finding fixed, invert this test", resp.Header.Get("X-Request-Key"))
	}
}

// Review: inside a MITM'd tunnel the sandbox's own Accept-Encoding goes
// upstream unchanged (ReverseProxy keeps it), so the transport does not
// decompress; a compressed response is not redactable() and passes
// unmasked. Python requests, Node fetch, curl --compressed and Go clients
// without DisableCompression all send Accept-Encoding: gzip.
func TestReviewCompressedResponseBypassesRedaction(t *testing.T) {
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
	resp, body := do(t, c, "GET", e.url("https", "api.test", "/v1"), nil, map[string]string{"Authorization": "Bearer " + ph, "Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("upstream did not compress: %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Contains(plain, []byte(realValue)) {
		t.Fatalf("decompressed body %s no longer carries the value: finding fixed, invert this test", plain)
	}
}

// Review: the redactor looks only for the raw value, but the value goes out
// encoded in some places and upstreams re-encode what they echo: base64 in
// Basic credentials, percent-encoding in a query, "\/" from PHP's and
// Java's JSON encoders (AWS secret keys hold '/' and '+'), and any body whose
// Content-Type is missing or not text-like is not redacted at all.
func TestReviewRedactionMissesEncodedEchoes(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	const slashy = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	e.secret(vault.SecretInput{Name: "basic", Value: realValue, Scope: vault.ScopeTenant})
	e.secret(vault.SecretInput{Name: "aws", Value: slashy, Scope: vault.ScopeTenant})
	phBasic, phAWS := e.placeholder(sbx, "basic"), e.placeholder(sbx, "aws")
	c := e.client(sbx.ID, token)

	cases := []struct {
		name  string
		path  string
		hdr   map[string]string
		reply func(w http.ResponseWriter, r *http.Request)
		// leaked extracts the value from what the sandbox received.
		leaked func(body []byte) bool
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
				return string(raw) == "user:"+realValue
			}},
		{"query echoed percent-encoded", "/search?key=" + phAWS, nil,
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "you asked for "+r.URL.RawQuery)
			},
			func(body []byte) bool {
				q, _ := url.ParseQuery(strings.TrimPrefix(string(body), "you asked for "))
				return q.Get("key") == slashy
			}},
		{"json with escaped slashes", "/v1", map[string]string{"X-Key": phAWS},
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"key":"`+strings.ReplaceAll(r.Header.Get("X-Key"), "/", `\/`)+`"}`)
			},
			func(body []byte) bool {
				var got map[string]string
				json.Unmarshal(body, &got)
				return got["key"] == slashy
			}},
		{"octet-stream body", "/v1", map[string]string{"X-Key": phBasic},
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				io.WriteString(w, r.Header.Get("X-Key"))
			},
			func(body []byte) bool { return string(body) == realValue }},
		{"no content type", "/v1", map[string]string{"X-Key": phBasic},
			func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil // no sniffing either
				io.WriteString(w, r.Header.Get("X-Key"))
			},
			func(body []byte) bool { return string(body) == realValue }},
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
			if !tc.leaked(body) {
				t.Fatalf("body %q no longer yields the value: finding fixed, invert this case", body)
			}
		})
	}
}

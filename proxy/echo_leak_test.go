package proxy

// Regression tests for issue 13, findings 4 to 7: an upstream on an
// allowed host that tries to hand a real value back to the sandbox past
// response redaction. Here: Content-Encoding lines, and the helpers of
// echo_range_test.go (ranges), echo_abort_test.go (a body that breaks off
// inside the value) and echo_gzipbody_test.go (a compressed request body
// echoed raw).

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/egressd/egressd/vault"
)

// echoHost is the allowed host of the secrets of these tests.
const echoHost = "api.test"

// echoEnv is an env with one secret (value realValue, allowed on
// echoHost, in header and body) and a sandbox: its client and its
// placeholder.
func echoEnv(t *testing.T, mod func(*Config)) (*env, *http.Client, string) {
	t.Helper()
	e := newEnv(t, mod)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant,
		AllowedHosts: []string{echoHost}, SubstituteIn: []vault.Location{vault.InHeader, vault.InBody}})
	return e, e.client(sbx.ID, token), e.placeholder(sbx, "k")
}

// setReply sets what the upstream answers (the harness's upstream reads
// reply under its lock).
func (e *env) setReply(f func(w http.ResponseWriter, r *http.Request, body []byte)) {
	e.up.mu.Lock()
	e.up.reply = f
	e.up.mu.Unlock()
}

func gzipped(b []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

func zlibbed(b []byte) []byte {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	return z.Bytes()
}

// holdsValue reports whether b carries realValue, as it is or inside
// any number of gzip or zlib layers.
func holdsValue(b []byte) bool {
	for range 4 {
		if bytes.Contains(b, []byte(realValue)) {
			return true
		}
		var dec io.Reader
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			dec = zr
		} else if zr, err := zlib.NewReader(bytes.NewReader(b)); err == nil {
			dec = zr
		} else {
			return false
		}
		out, _ := io.ReadAll(dec)
		b = out
	}
	return false
}

// Regression (finding 4): the Content-Encoding lines of an answer are read
// together; two codings, on one line or two, are refused (502) when the
// request carried a value, where the check read only the first line and
// "identity" then "gzip" (or "gzip" twice, the first undone by the
// transport) reached the sandbox compressed and unscanned. Exactly one
// coding egressd reads is undone and masked.
func TestEchoContentEncodingLinesTakenTogether(t *testing.T) {
	e, c, ph := echoEnv(t, nil)
	echo := func(r *http.Request) []byte { return []byte("key=" + r.Header.Get("X-Key")) }
	cases := []struct {
		name  string
		lines []string
		code  func([]byte) []byte // what the upstream applies to its body
		want  int                 // status: 200, masked; 502, refused
	}{
		{"identity then gzip", []string{"identity", "gzip"}, gzipped, 502},
		{"gzip twice", []string{"gzip", "gzip"}, func(b []byte) []byte { return gzipped(gzipped(b)) }, 502},
		{"gzip then identity", []string{"gzip", "identity"}, gzipped, 502},
		{"two on one line", []string{"gzip, gzip"}, func(b []byte) []byte { return gzipped(gzipped(b)) }, 502},
		{"identity and deflate", []string{"identity", "deflate"}, zlibbed, 502},
		{"unknown coding", []string{"br"}, func(b []byte) []byte { return b }, 502},
		{"gzip", []string{"gzip"}, gzipped, 200},
		{"gzip in odd case and spaces", []string{" GZip "}, gzipped, 200},
		{"x-gzip", []string{"x-gzip"}, gzipped, 200},
		{"deflate", []string{"deflate"}, zlibbed, 200},
		{"identity", []string{"identity"}, func(b []byte) []byte { return b }, 200},
		{"gzip with an empty element", []string{"gzip,", ""}, gzipped, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.setReply(func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.Header()["Content-Encoding"] = tc.lines
				w.Header().Set("Content-Type", "text/plain")
				w.Write(tc.code(echo(r)))
			})
			resp, body := do(t, c, "GET", e.url("https", echoHost, "/v1"), nil, map[string]string{"X-Key": ph})
			if e.up.last(t).Header.Get("X-Key") != realValue {
				t.Fatal("the value was not substituted")
			}
			if holdsValue(body) {
				t.Fatalf("status %d, Content-Encoding %q: the sandbox got the value", resp.StatusCode, resp.Header.Values("Content-Encoding"))
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.want, body)
			}
			if tc.want == 200 && string(body) != "key="+ph {
				t.Fatalf("body %q, want the echo masked and decoded", body)
			}
		})
	}
}

// Without a value in the request, egressd undoes the gzip it asked for, as
// the transport did, and passes any other coding as it came, every line
// kept (the transport undid the first of two gzip lines and dropped both).
func TestEchoAskedGzipUndoneWithoutValue(t *testing.T) {
	e, c, _ := echoEnv(t, nil)
	for _, tc := range []struct {
		name  string
		lines []string
		body  []byte
		want  []byte
		ce    []string
	}{
		{"gzip", []string{"gzip"}, gzipped([]byte("hello")), []byte("hello"), nil},
		{"gzip twice", []string{"gzip", "gzip"}, gzipped(gzipped([]byte("hello"))), gzipped(gzipped([]byte("hello"))), []string{"gzip", "gzip"}},
		{"deflate unasked", []string{"deflate"}, zlibbed([]byte("hello")), zlibbed([]byte("hello")), []string{"deflate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.setReply(func(w http.ResponseWriter, r *http.Request, _ []byte) {
				if got := r.Header.Values("Accept-Encoding"); !slices.Equal(got, []string{"gzip"}) {
					t.Errorf("upstream got Accept-Encoding %q, want egressd's gzip", got)
				}
				w.Header()["Content-Encoding"] = tc.lines
				w.Write(tc.body)
			})
			resp, body := do(t, c, "GET", e.url("https", echoHost, "/v1"), nil, map[string]string{"Accept-Encoding": "br"})
			if resp.StatusCode != 200 || !bytes.Equal(body, tc.want) || !slices.Equal(resp.Header.Values("Content-Encoding"), tc.ce) {
				t.Fatalf("status %d, Content-Encoding %q, body %q; want %q, %q", resp.StatusCode, resp.Header.Values("Content-Encoding"), body, tc.ce, tc.want)
			}
		})
	}
}

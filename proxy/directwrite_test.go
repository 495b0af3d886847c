package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// checkWriteDirect fails unless writeDirect writes req as Request.Write
// does, byte for byte, or fails where it fails.
func checkWriteDirect(t *testing.T, req *http.Request) {
	t.Helper()
	var want, got bytes.Buffer
	werr := req.Write(&want)
	bw := bufio.NewWriter(&got)
	gerr := writeDirect(bw, req)
	bw.Flush()
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("Request.Write error %v, writeDirect error %v", werr, gerr)
	}
	if werr == nil && want.String() != got.String() {
		t.Fatalf("writeDirect wrote\n%q\nRequest.Write\n%q", got.String(), want.String())
	}
}

// The direct path writes a request upstream as net/http's Request.Write
// would (the same bytes), without its allocations.
func TestWriteDirectEqualsRequestWrite(t *testing.T) {
	for _, c := range []struct {
		name, method, url, host string
		header                  http.Header
	}{
		{"plain", "GET", "https://api.test/v1/models", "", http.Header{"Authorization": {"Bearer x"}, "Accept-Encoding": {"gzip"}}},
		{"query kept as sent", "GET", "https://api.test/a%2Fb/c?x=1&y=%20z#frag", "", nil},
		{"host header over the URL's", "GET", "https://api.test/", "other.test:8443", nil},
		{"no user agent", "GET", "https://api.test/", "", http.Header{"User-Agent": {""}}},
		{"user agent", "GET", "https://api.test/", "", http.Header{"User-Agent": {"  curl/8 ", "second"}}},
		{"many fields, several values", "HEAD", "https://api.test/x", "", http.Header{"X-B": {"2", "3"}, "X-A": {"1"}, "Accept": {"*/*"}, "Zeta": {" padded\t"}}},
		{"options", "OPTIONS", "https://api.test/*", "", nil},
		{"trace", "TRACE", "https://api.test/t", "", nil},
		{"excluded fields", "GET", "https://api.test/", "", http.Header{"Host": {"evil.test"}, "Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}}},
		{"newlines become spaces", "GET", "https://api.test/", "", http.Header{"X-N": {"a\r\nb"}, "User-Agent": {"u\nv"}}},
		{"invalid field name dropped", "GET", "https://api.test/", "", http.Header{"Bad Name": {"v"}, "Ok": {"v"}}},
		{"invalid host emptied", "GET", "https://api.test/", "api.test/evil", nil},
		{"ipv6 zone removed", "GET", "https://[fe80::1%25eth0]:443/", "", nil},
		{"non-ascii host", "GET", "https://api.test/", "bücher.test", nil},
		{"control byte in path", "GET", "https://api.test/", "", nil},
		{"more than 24 fields", "GET", "https://api.test/", "", manyFields(30)},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, c.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.host != "" {
				req.Host = c.host
			}
			if c.header != nil {
				req.Header = c.header
			}
			if c.name == "control byte in path" {
				req.URL.Path, req.URL.RawPath = "/a\x01b", "/a\x01b"
			}
			checkWriteDirect(t, req)
		})
	}
}

func manyFields(n int) http.Header {
	h := http.Header{}
	for i := range n {
		h[http.CanonicalHeaderKey("X-F"+strings.Repeat("a", i))] = []string{"v"}
	}
	return h
}

// FuzzWriteDirect: for any method, URL, Host and fields, writeDirect
// writes what Request.Write writes (or fails where it fails).
func FuzzWriteDirect(f *testing.F) {
	f.Add("GET", "/v1/models?x=1", "api.test", "Authorization", "Bearer ph_x", "User-Agent", "")
	f.Add("HEAD", "/", "[fe80::1%25en0]:443", "X-A", " v ", "Accept", "a\r\nb")
	f.Add("OPTIONS", "*", "", "Bad Name", "v", "Content-Length", "3")
	f.Fuzz(func(t *testing.T, method, target, host, k1, v1, k2, v2 string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		u.Scheme, u.Host = "https", "api.test"
		req := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{k1: {v1}, k2: {v2}}, ProtoMajor: 1, ProtoMinor: 1}
		checkWriteDirect(t, req)
	})
}

// What writing a bodyless request costs the direct path, against
// net/http's Request.Write.
func BenchmarkWriteDirect(b *testing.B) {
	req, _ := http.NewRequest("GET", "https://api.test/v1/models", nil)
	req.Header = http.Header{"Authorization": {"Bearer sk-real-value"}, "Accept-Encoding": {"gzip"}, "User-Agent": {""}, "Accept": {"*/*"}}
	bw := bufio.NewWriter(nil)
	var sink discardWriter
	for _, c := range []struct {
		name  string
		write func(*bufio.Writer, *http.Request) error
	}{{"writeDirect", writeDirect}, {"Request.Write", func(bw *bufio.Writer, r *http.Request) error { return r.Write(bw) }}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bw.Reset(sink)
				if err := c.write(bw, req); err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

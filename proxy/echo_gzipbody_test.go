package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Regression (finding 7): a gzip request body egressd decoded to
// substitute goes upstream decoded (no Content-Encoding, its length
// exact, or chunked when streamed), never re-compressed: an upstream that
// echoes the raw body hands back bytes the redactor reads and masks.
func TestEchoGzipRequestBodyForwardedDecoded(t *testing.T) {
	e, c, ph := echoEnv(t, func(cfg *Config) { cfg.MaxBufferedBody = 4 << 10 })
	e.setReply(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body) // stored, then handed back as it arrived
	})
	noise := make([]byte, 16<<10)
	rand.Read(noise)
	big := hex.EncodeToString(noise) // compresses to more than MaxBufferedBody
	cases := []struct {
		name     string
		plain    string
		streamed bool
	}{
		{"buffered", `{"key":"` + ph + `"}`, false},
		{"streamed", `{"pad":"` + big + `","key":"` + ph + `"}`, true},
		{"x-gzip", `{"key":"` + ph + `"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ce := "gzip"
			if tc.name == "x-gzip" {
				ce = "x-gzip"
			}
			z := gzipped([]byte(tc.plain))
			if tc.streamed != (int64(len(z)) > 4<<10) {
				t.Fatalf("the compressed body is %d bytes: not the case it is meant to be", len(z))
			}
			resp, body := do(t, c, "POST", e.url("https", echoHost, "/v1/store"), bytes.NewReader(z), map[string]string{"Content-Encoding": ce})
			up := e.up.last(t)
			want := strings.Replace(tc.plain, ph, realValue, 1)
			if string(up.Body) != want {
				t.Fatalf("upstream got %d bytes (gzip: %v), want the %d decoded, substituted", len(up.Body), bytes.HasPrefix(up.Body, []byte{0x1f, 0x8b}), len(want))
			}
			if got := up.Header.Values("Content-Encoding"); got != nil {
				t.Fatalf("upstream got Content-Encoding %q with a decoded body", got)
			}
			wantLen := strconv.Itoa(len(want))
			if tc.streamed {
				wantLen = ""
			}
			if got := up.Header.Get("Content-Length"); got != wantLen {
				t.Fatalf("upstream got Content-Length %q, want %q", got, wantLen)
			}
			if holdsValue(body) {
				t.Fatal("the echoed body carries the value")
			}
			if resp.StatusCode != 200 || string(body) != tc.plain {
				t.Fatalf("status %d, echoed body of %d bytes, want the %d sent", resp.StatusCode, len(body), len(tc.plain))
			}
		})
	}
	// Nothing to substitute: the compressed bytes go on as they came.
	z := gzipped([]byte(`{"a":1}`))
	do(t, c, "POST", e.url("https", echoHost, "/v1/store"), bytes.NewReader(z), map[string]string{"Content-Encoding": "gzip"})
	if up := e.up.last(t); !bytes.Equal(up.Body, z) || up.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("without a placeholder: upstream got %q, Content-Encoding %q", up.Body, up.Header.Get("Content-Encoding"))
	}
}

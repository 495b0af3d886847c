package proxy

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Regression (finding 5): a request that carries a value goes upstream
// without Range and If-Range when redaction is on, so an echo cannot be
// fetched in pieces that each escape the mask; the whole answer comes back
// masked. Without a value, or with redaction off, ranges pass.
func TestEchoRangeDroppedWhenValueSent(t *testing.T) {
	reply := func(w http.ResponseWriter, r *http.Request, _ []byte) {
		echo := "key=" + r.Header.Get("X-Key") + ";"
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(echo))
	}
	t.Run("redaction on", func(t *testing.T) {
		e, c, ph := echoEnv(t, nil)
		e.setReply(reply)
		// The two halves of an echo, asked for one after the other.
		split := len("key=") + len(realValue)/2
		var got []byte
		for _, rng := range []string{fmt.Sprintf("bytes=0-%d", split-1), fmt.Sprintf("bytes=%d-", split)} {
			resp, body := do(t, c, "GET", e.url("https", echoHost, "/file"), nil, map[string]string{"X-Key": ph, "Range": rng, "If-Range": `"v1"`})
			up := e.up.last(t)
			if up.Header.Get("X-Key") != realValue {
				t.Fatal("the value was not substituted")
			}
			if r, ir := up.Header.Values("Range"), up.Header.Values("If-Range"); r != nil || ir != nil {
				t.Fatalf("upstream got Range %q, If-Range %q with a value in the request", r, ir)
			}
			if resp.StatusCode != 200 || string(body) != "key="+ph+";" {
				t.Fatalf("%s: status %d body %q, want the whole answer, masked", rng, resp.StatusCode, body)
			}
			got = append(got, body...)
		}
		if bytes.Contains(got, []byte(realValue[:len(realValue)/2])) || bytes.Contains(got, []byte(realValue[len(realValue)/2:])) {
			t.Fatalf("the pieces carry the value: %q", got)
		}
		// No value: the range is the sandbox's to ask for.
		resp, body := do(t, c, "GET", e.url("https", echoHost, "/file"), nil, map[string]string{"Range": "bytes=0-2"})
		if up := e.up.last(t); up.Header.Get("Range") != "bytes=0-2" || resp.StatusCode != http.StatusPartialContent || string(body) != "key" {
			t.Fatalf("without a value: upstream Range %q, status %d, body %q", up.Header.Get("Range"), resp.StatusCode, body)
		}
	})
	t.Run("redaction off", func(t *testing.T) {
		e, c, ph := echoEnv(t, func(cfg *Config) { cfg.Redact = false })
		e.setReply(reply)
		do(t, c, "GET", e.url("https", echoHost, "/file"), nil, map[string]string{"X-Key": ph, "Range": "bytes=0-2", "If-Range": `"v1"`})
		if up := e.up.last(t); up.Header.Get("Range") != "bytes=0-2" || up.Header.Get("If-Range") != `"v1"` {
			t.Fatalf("redaction off: upstream Range %q If-Range %q, want both as sent", up.Header.Get("Range"), up.Header.Get("If-Range"))
		}
	})
}

package proxy

// Review findings: per-request state that grows with the sandbox's input.
// Each test asserts the current behaviour so that it passes today; invert
// its final assertion when the finding is fixed.

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
)

// Review: every occurrence of a placeholder appends one Use and, when
// substituted, one echo; nothing deduplicates or caps them. The redactor
// then runs one bytes.Index per echo over every chunk of a text response,
// so 1,000 copies of one placeholder in a header (64 KiB allows ~1,700)
// make each response byte cost 1,000 scans.
func TestReviewEchoesNotDeduplicated(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant})
	ph := e.placeholder(sbx, "k")
	const n = 1000
	many := strings.TrimSpace(strings.Repeat(ph+" ", n))
	resp, _ := do(t, e.client(sbx.ID, token), "GET", e.url("https", "api.test", "/"), nil, map[string]string{"X-Key": many})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ev := e.event(t); len(ev.Uses) != n {
		t.Fatalf("event uses %d", len(ev.Uses))
	}
	h := http.Header{"X-Key": {many}}
	s := &subst{p: e.proxy, ctx: context.Background(), sbx: &sbx, host: "api.test", tls: true}
	substituteHeaders(h, s)
	if s.denied() != ReasonNone || strings.Contains(h.Get("X-Key"), ph) {
		t.Fatalf("not substituted: %v", s.denied())
	}
	if len(s.uses) != n || len(s.echoes) != n {
		t.Fatalf("uses %d echoes %d", len(s.uses), len(s.echoes))
	}
	if r := newRedactor(nil, s.echoes); len(r.echoes) != n {
		t.Fatalf("redactor keeps %d echoes for one value: finding fixed, invert this test", len(r.echoes))
	}
}

// Review: a body passing through the observer records one Use per
// placeholder-shaped string (and does one vault lookup per unknown one, as
// misses are not cached); the list has no bound, so a streamed body of any
// length grows the request's memory and the audit event without limit.
func TestReviewObservedBodyUsesUnbounded(t *testing.T) {
	e := newEnv(t, nil)
	sbx, token := e.sandbox(vault.SandboxInput{})
	e.secret(vault.SecretInput{Name: "k", Value: realValue, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.test"}})
	unknown := vault.PlaceholderMarker + strings.Repeat("Z", vault.PlaceholderTailLen)
	const n = 20000
	body := strings.Repeat(unknown+" ", n)
	resp, _ := do(t, e.client(sbx.ID, token), "POST", e.url("https", "api.test", "/v1/chat"), strings.NewReader(body), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ev := e.event(t); len(ev.Uses) != n {
		t.Fatalf("event holds %d uses for %d occurrences: finding fixed, invert this test", len(ev.Uses), n)
	}
}

// Review: readUpTo sizes its buffer to the limit when the length is
// unknown, so a 20-byte gzip body to a host whose secret opts into bodies
// allocates MaxBufferedBody*32+1 bytes (32 MiB by default) up front, and a
// chunked plain body allocates MaxBufferedBody+1.
func TestReviewBodyBuffersPreallocateLimit(t *testing.T) {
	p := &Proxy{cfg: Config{MaxBufferedBody: 1 << 20}}
	never := func([]byte, []byte) (int, []byte, bool) { return 0, nil, false }
	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}

	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(`{"a":1}`))
	zw.Close()
	gz := httptest.NewRequest("POST", "https://api.test/", bytes.NewReader(z.Bytes()))
	gz.Header.Set("Content-Encoding", "gzip")
	if got := allocated(func() { p.gzipBody(gz, never) }); got < 32<<20 {
		t.Fatalf("gzip body of %d bytes allocated %d: finding fixed, invert this test", z.Len(), got)
	}

	chunked := httptest.NewRequest("POST", "https://api.test/", strings.NewReader(`{"a":1}`))
	chunked.ContentLength = -1
	if got := allocated(func() { p.plainBody(chunked, never) }); got < 1<<20 {
		t.Fatalf("chunked body of 7 bytes allocated %d: finding fixed, invert this test", got)
	}
}

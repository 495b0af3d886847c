package proxy

// Regression tests from the security review: per-request state must not
// grow with the sandbox's input.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/egressd/egressd/vault"
)

// Regression: 1,000 copies of one placeholder in a header must not record
// 1,000 uses nor make the redactor scan each response byte 1,000 times.
func TestReviewEchoesDeduplicated(t *testing.T) {
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
	if ev := e.event(t); len(ev.Uses) != maxUses || ev.UsesDropped != n-maxUses {
		t.Fatalf("event uses %d, dropped %d", len(ev.Uses), ev.UsesDropped)
	}
	h := http.Header{"X-Key": {many}}
	s := &subst{p: e.proxy, st: &reqState{}, ctx: context.Background(), sbx: &sbx, host: "api.test", tls: true}
	substituteHeaders(h, s)
	if s.denied() != ReasonNone || strings.Contains(h.Get("X-Key"), ph) {
		t.Fatalf("not substituted: %v", s.denied())
	}
	if len(s.uses) != maxUses || s.dropped != n-maxUses {
		t.Fatalf("uses %d dropped %d", len(s.uses), s.dropped)
	}
	// One echo per distinct form of the one value (raw, URL- and
	// JSON-escaped), however many times it went out.
	js, _ := json.Marshal(realValue)
	forms := map[string]bool{
		realValue: true, url.QueryEscape(realValue): true, url.PathEscape(realValue): true,
		string(js[1 : len(js)-1]): true, strings.ReplaceAll(string(js[1:len(js)-1]), "/", `\/`): true,
	}
	seen := map[string]bool{}
	for _, ec := range s.echoes {
		if !forms[string(ec.value)] || seen[string(ec.value)] || string(ec.placeholder) != ph {
			t.Fatalf("echoes %q", s.echoes)
		}
		seen[string(ec.value)] = true
	}
	if len(s.echoes) != len(forms) {
		t.Fatalf("%d echoes for %d forms of one value", len(s.echoes), len(forms))
	}
}

// Regression: a body passing through the observer with 20,000
// placeholder-shaped strings records a bounded list of uses.
func TestReviewObservedBodyUsesBounded(t *testing.T) {
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
	if ev := e.event(t); len(ev.Uses) != maxUses || ev.UsesDropped != n-maxUses {
		t.Fatalf("event holds %d uses (%d dropped) for %d occurrences", len(ev.Uses), ev.UsesDropped, n)
	}
}

// Regression: a 20-byte gzip or chunked body must not allocate the whole
// buffering limit up front.
func TestReviewBodyBuffersGrowAsNeeded(t *testing.T) {
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
	if got := allocated(func() { p.gzipBody(gz, &subst{}, never) }); got > 1<<20 {
		t.Fatalf("gzip body of %d bytes allocated %d", z.Len(), got)
	}

	chunked := httptest.NewRequest("POST", "https://api.test/", strings.NewReader(`{"a":1}`))
	chunked.ContentLength = -1
	if got := allocated(func() { p.plainBody(chunked, &subst{}, never) }); got > 256<<10 {
		t.Fatalf("chunked body of 7 bytes allocated %d", got)
	}
}

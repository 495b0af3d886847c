package api_test

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkUpsertSecret measures POST /api/v1/egress/secrets through the
// handler (auth, decoding, the vault's write transaction with sealing,
// the answer), without the network.
func BenchmarkUpsertSecret(b *testing.B) {
	h := newHarness(b)
	// One counter across every run of a sub-benchmark, so that "create"
	// never meets a name it made before.
	n := 0
	run := func(b *testing.B, body func(i int) string, want int) {
		b.ReportAllocs()
		for b.Loop() {
			n++
			req := httptest.NewRequest("POST", "/api/v1/egress/secrets", strings.NewReader(body(n)))
			req.Header.Set("Authorization", "Bearer "+h.adminKey)
			rec := httptest.NewRecorder()
			h.server.ServeHTTP(rec, req)
			if rec.Code != want {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	}
	update := func(i int) string {
		return `{"name":"openai","value":"sk-` + strconv.Itoa(i) + `","type":"api_key","scope":"tenant","allowed_hosts":["api.openai.com"],"placeholder_prefix":"sk-proj-"}`
	}
	if code, body := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(update(0))); code != 201 {
		b.Fatalf("seed: %d %s", code, body)
	}
	b.Run("update", func(b *testing.B) { run(b, update, 200) })
	b.Run("create", func(b *testing.B) {
		run(b, func(i int) string {
			return `{"name":"key-` + strconv.Itoa(i) + `","value":"v","scope":"external_user","external_user_id":"eu1","allowed_hosts":["api.example.com"]}`
		}, 201)
	})
}

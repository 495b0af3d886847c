package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// fuzzCanary is put in the value field of every object the fuzzer makes;
// no answer may ever contain it.
const fuzzCanary = "CanaryV4lue0f7d1e9b3a5c2"

// FuzzDecodeSecretInput throws arbitrary bodies at the upsert endpoint:
// it never panics, never answers 5xx, always answers JSON, and never
// echoes the value it was given.
func FuzzDecodeSecretInput(f *testing.F) {
	for _, seed := range []string{
		`{"name":"openai","value":"sk-1","scope":"tenant"}`,
		`{"name":"gh","value":"v","scope":"external_user","external_user_id":"eu1","expose_as_env":"GH","allowed_hosts":["api.github.com","*.github.com"],"substitute_in":["header","body"]}`,
		`{"name":"n","value":"v","scope":"user","owner_user_id":"u","metadata":{"a":"b"},"expires_at":"2030-01-01T00:00:00Z","refresh_token":"r","type":"oauth_token"}`,
		`{"name":"n","value":"v","scope":"resource","resource_id":"sbx_x","resource_type":"computer","placeholder_prefix":"sk-proj-"}`,
		`{"name":"n","value":"v","scope":"tenant","Value":"w"}`,
		`{"name":"n","value":"v","scope":"tenant"}{}`,
		`{"name":"n","value":"v","scope":"tenant","expires_at":"x"}`,
		`{"name":"n","value":"v","scope":"workspace","workspace_id":"\u0000"}`,
		`{"name":1e999}`, `{"metadata":{"k":{}}}`, `[]`, `null`, `"x"`, `{`, ``, `{"a":`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	h := newHarness(f)
	post := func(t *testing.T, body []byte) string {
		t.Helper()
		req := httptest.NewRequest("POST", "/api/v1/egress/secrets", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+h.adminKey)
		rec := httptest.NewRecorder()
		h.server.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusCreated {
			var e struct {
				Error struct{ Code, Message string }
			}
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("status %d without a JSON error: %s", rec.Code, rec.Body)
			}
		}
		return rec.Body.String()
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		post(t, body)
		// The same object with a known value: the answer must not hold it.
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) != nil || obj == nil {
			return
		}
		obj["value"] = json.RawMessage(strconv.Quote(fuzzCanary))
		canaried, err := json.Marshal(obj)
		if err != nil {
			return
		}
		if out := post(t, canaried); strings.Contains(out, fuzzCanary) {
			t.Fatalf("the value is echoed for %s: %s", canaried, out)
		}
	})
}

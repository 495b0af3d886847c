package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/client"
)

func TestWhoami(t *testing.T) {
	h := newHarness(t)
	bt := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(context.Background(), "eu1", time.Hour))
	for _, c := range []struct {
		name, token string
		want        api.Whoami
	}{
		{"admin key", h.adminKey, api.Whoami{TenantID: h.tenant.ID, TenantName: "acme", KeyKind: api.WhoamiAPIKey}},
		{"browser token", bt.Token, api.Whoami{TenantID: h.tenant.ID, TenantName: "acme", KeyKind: api.WhoamiBrowserToken, ExternalUserID: "eu1", ReadOnly: true}},
		{"operator key", h.operatorKey, api.Whoami{KeyKind: api.WhoamiOperator}},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := h.do("GET", "/api/v1/whoami", c.token, nil)
			if code != 200 {
				t.Fatalf("%d %s", code, body)
			}
			if strings.Contains(body, c.token) {
				t.Fatal("whoami echoes the token")
			}
			var got api.Whoami
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if got.KeyID == "" {
				t.Error("no key_id")
			}
			if (got.ExpiresAt != nil) != (c.want.KeyKind == api.WhoamiBrowserToken) {
				t.Errorf("expires_at %v for a %s", got.ExpiresAt, c.want.KeyKind)
			}
			got.KeyID, got.ExpiresAt = "", nil
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
	// The key id is the one admin rows name as the actor.
	code, body := h.do("GET", "/api/v1/whoami", bt.Token, nil)
	if code != 200 || !strings.Contains(body, `"key_id":"`+bt.KeyID+`"`) {
		t.Errorf("browser token's key_id: %d %s, want %s", code, body, bt.KeyID)
	}
}

func TestWhoamiRefuses(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct {
		name, method, path, token string
		status                    int
		msg                       string
	}{
		{"no token", "GET", "/api/v1/whoami", "", 401, "missing bearer token"},
		{"unknown token", "GET", "/api/v1/whoami", "egk_nope", 401, "unknown or expired token"},
		{"a query parameter", "GET", "/api/v1/whoami?x=1", h.adminKey, 400, "takes no query parameters"},
		{"POST", "POST", "/api/v1/whoami", h.adminKey, 405, "not allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := h.do(c.method, c.path, c.token, nil)
			checkRefusal(t, code, body, c.status, c.msg)
		})
	}
	// The operator key may ask who it is, and still nothing else.
	if code, _ := h.do("GET", "/api/v1/egress/secrets", h.operatorKey, nil); code != 403 {
		t.Errorf("operator key listing secrets: %d, want 403", code)
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

func TestTenantsSettingsAndBrowserTokens(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	op := h.client(h.operatorKey)

	created := must[client.TenantCreated](t)(op.CreateTenant(ctx, "globex"))
	if created.Tenant.Name != "globex" || !strings.HasPrefix(created.APIKey, "egk_") || !created.Tenant.Settings.AllowEndUserCredentials {
		t.Fatalf("tenant: %+v", created)
	}
	if _, err := h.client(created.APIKey).ListSecrets(ctx, client.SecretFilter{}); err != nil {
		t.Fatalf("the new key does not work: %v", err)
	}
	// The new tenant's log starts with its creation, made by the operator,
	// naming the admin key it was given (by id).
	rows := must[client.AuditPage](t)(h.client(created.APIKey).Audit(ctx, client.AuditFilter{}))
	if len(rows.Rows) != 1 || rows.Rows[0].Action != vault.ActionTenantCreated || rows.Rows[0].ActorKind != vault.ActorOperator ||
		rows.Rows[0].TenantID != created.Tenant.ID || rows.Rows[0].Details["key_id"] == "" || strings.Contains(rows.Rows[0].Details["key_id"], created.APIKey) {
		t.Fatalf("the new tenant's log: %+v", rows.Rows)
	}
	_, err := op.CreateTenant(ctx, "globex")
	mustStatus(t, err, 409)
	_, err = op.CreateTenant(ctx, "")
	mustStatus(t, err, 400)
	_, err = h.admin.CreateTenant(ctx, "mine")
	mustStatus(t, err, 403)
	_, err = op.ListSecrets(ctx, client.SecretFilter{})
	mustStatus(t, err, 403)
	_, err = op.GetSettings(ctx)
	mustStatus(t, err, 403)

	st := must[vault.Settings](t)(h.admin.GetSettings(ctx))
	if !st.AllowEndUserCredentials || st.CABundlePath != "" || st.AllowAnyHostSecrets {
		t.Fatalf("default settings: %+v", st)
	}
	// allow_any_host_secrets: off by default, on the wire by its name,
	// and what lets a secret's allowed_hosts be ["*"].
	anyHost := client.SecretInput{Name: "anywhere", Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{"*"}}
	_, err = h.admin.UpsertSecret(ctx, anyHost)
	mustStatus(t, err, 403)
	if code, body := h.do("PATCH", "/api/v1/tenant/settings", h.adminKey, strings.NewReader(`{"allow_any_host_secrets":true}`)); code != 200 || !strings.Contains(body, `"allow_any_host_secrets":true`) {
		t.Fatalf("patch allow_any_host_secrets: %d %s", code, body)
	}
	if sec := must[client.UpsertResult](t)(h.admin.UpsertSecret(ctx, anyHost)).Secret; !slices.Equal(sec.AllowedHosts, []string{"*"}) {
		t.Fatalf("any-host secret: %+v", sec)
	}
	if st = must[vault.Settings](t)(h.admin.GetSettings(ctx)); !st.AllowAnyHostSecrets {
		t.Fatalf("settings after the patch: %+v", st)
	}
	must[vault.Settings](t)(h.admin.UpdateSettings(ctx, vault.SettingsPatch{AllowAnyHostSecrets: new(bool)}))
	off := false
	if st = must[vault.Settings](t)(h.admin.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &off})); st.AllowEndUserCredentials {
		t.Fatal("patch did not apply")
	}
	if st = must[vault.Settings](t)(h.admin.UpdateSettings(ctx, vault.SettingsPatch{})); st.AllowEndUserCredentials {
		t.Fatal("an empty patch changed something")
	}
	rel := "relative/path"
	_, err = h.admin.UpdateSettings(ctx, vault.SettingsPatch{CABundlePath: &rel})
	mustStatus(t, err, 400)

	before := time.Now()
	bt := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(ctx, "eu1", 0))
	if !strings.HasPrefix(bt.Token, "egb_") || bt.ExternalUserID != "eu1" || bt.ExpiresAt == nil || bt.ExpiresAt.Sub(before) > time.Hour+time.Minute || bt.ExpiresAt.Sub(before) < time.Hour-time.Minute {
		t.Fatalf("browser token: %+v", bt)
	}
	bt2 := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(ctx, "eu1", 24*time.Hour))
	if bt2.ExpiresAt.Sub(before) < 23*time.Hour {
		t.Fatalf("ttl ignored: %+v", bt2)
	}
	_, err = h.admin.CreateBrowserToken(ctx, "eu1", 25*time.Hour)
	mustStatus(t, err, 400)
	_, err = h.admin.CreateBrowserToken(ctx, "", 0)
	mustStatus(t, err, 400)
	for _, body := range []string{`{"external_user_id":"eu1","ttl":"soon"}`, `{"external_user_id":"eu1","ttl":"-1h"}`} {
		if code, _ := h.do("POST", "/api/v1/browser_tokens", h.adminKey, strings.NewReader(body)); code != 400 {
			t.Errorf("%s: %d", body, code)
		}
	}
}

func TestRoutingAndAuth(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		method, path, token string
		want                int
		code                string
	}{
		{"GET", "/api/v1/egress/secrets", "", 401, "unauthorized"},
		{"GET", "/api/v1/egress/secrets", "egk_wrong", 401, "unauthorized"},
		{"GET", "/api/v1/nope", h.adminKey, 404, "not_found"},
		{"PUT", "/api/v1/egress/secrets", h.adminKey, 405, "method_not_allowed"},
		{"DELETE", "/api/v1/tenant/settings", h.adminKey, 405, "method_not_allowed"},
		{"GET", "/api/v1/egress/secrets/x?verbose=1", h.adminKey, 400, "invalid_request"},
		{"GET", "/api/v1/egress/secrets?scope=tenant&scope=user", h.adminKey, 400, "invalid_request"},
	} {
		code, body := h.do(tc.method, tc.path, tc.token, nil)
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || code != tc.want || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, code, body)
		}
	}
	req, _ := http.NewRequest("GET", h.http.URL+"/api/v1/egress/secrets", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("401 without WWW-Authenticate: %v", resp.Header)
	}
	req, _ = http.NewRequest("PUT", h.http.URL+"/api/v1/egress/secrets/x", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "DELETE") {
		t.Fatalf("405 Allow: %q", allow)
	}
}

// TestInternalErrorsAreGeneric: a failure the caller cannot fix answers
// 500 with a generic message; the cause goes to the log only.
func TestInternalErrorsAreGeneric(t *testing.T) {
	h := newHarness(t)
	h.store.Close()
	code, body := h.do("GET", "/api/v1/egress/secrets", h.adminKey, nil)
	checkRefusal(t, code, body, 500, "internal error; the server log has the cause")
	if strings.Contains(body, "database") {
		t.Fatalf("the cause leaks to the caller: %s", body)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, `"error_code":"internal"`) || !strings.Contains(logs, "database not open") {
		t.Fatalf("the cause is not logged: %s", logs)
	}
}

// TestObservability: one log line per request with its route pattern and
// who called, and metrics labelled by route pattern and code only.
func TestObservability(t *testing.T) {
	h := newHarness(t)
	must[client.UpsertResult](t)(h.admin.UpsertSecret(context.Background(), client.SecretInput{Name: "n", Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}}))
	h.do("GET", "/api/v1/egress/secrets/sec_none", h.adminKey, nil)

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 { // create tenant, upsert, get
		t.Fatalf("%d log lines, want 3", len(lines))
	}
	up, get := lines[1], lines[2]
	if up["method"] != "POST" || up["route"] != "POST /api/v1/egress/secrets" || up["status"] != 201.0 || up["tenant_id"] != h.tenant.ID || up["key_id"] == "" || up["duration"] == nil {
		t.Errorf("upsert line: %v", up)
	}
	if get["route"] != "GET /api/v1/egress/secrets/{id}" || get["status"] != 404.0 || get["error_code"] != "not_found" {
		t.Errorf("get line: %v", get)
	}
	m := h.metrics()
	for _, want := range []string{
		`egressd_api_requests_total{code="201",route="POST /api/v1/egress/secrets"} 1`,
		`egressd_api_requests_total{code="404",route="GET /api/v1/egress/secrets/{id}"} 1`,
		`egressd_api_request_duration_seconds_count{route="POST /api/v1/tenants"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	h := newHarness(t)
	for name, cfg := range map[string]api.Config{
		"no store":         {Resolver: h.resolver},
		"no resolver":      {Store: h.store},
		"proxy url scheme": {Store: h.store, Resolver: h.resolver, ProxyURL: "egressd:8080"},
		"proxy url creds":  {Store: h.store, Resolver: h.resolver, ProxyURL: "http://a:b@egressd:8080"},
		"relative bundle":  {Store: h.store, Resolver: h.resolver, CABundlePath: "ca.pem"},
		"registry reused":  {Store: h.store, Resolver: h.resolver, Registerer: h.reg},
	} {
		if _, err := api.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := api.New(api.Config{Store: h.store, Resolver: h.resolver}); err != nil {
		t.Errorf("zero values: %v", err)
	}
}

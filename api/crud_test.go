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
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

func TestSecretsCRUD(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1", WorkspaceID: "w1"}))

	in := client.SecretInput{Name: "openai", Value: "sk-live-1", Type: "api_key", Scope: vault.ScopeTenant,
		AllowedHosts: []string{"API.openai.com"}, PlaceholderPrefix: "sk-proj-", Metadata: map[string]string{"team": "ml"}}
	first := must[client.UpsertResult](t)(c.UpsertSecret(ctx, in))
	if !first.Created || first.Secret.Version != 1 || first.Secret.Name != "openai" || first.Binding != nil {
		t.Fatalf("first upsert: %+v", first)
	}
	if !slices.Equal(first.Secret.AllowedHosts, []string{"api.openai.com"}) || len(first.Secret.SubstituteIn) != 3 {
		t.Fatalf("normalisation: %+v", first.Secret)
	}
	in.Value = "sk-live-2"
	second := must[client.UpsertResult](t)(c.UpsertSecret(ctx, in))
	if second.Created || second.Secret.ID != first.Secret.ID || second.Secret.Version != 2 {
		t.Fatalf("second upsert: %+v", second)
	}

	// 201 on create, 200 on update, on the wire.
	body := `{"name":"wire","value":"v","scope":"workspace","workspace_id":"w1"}`
	if code, _ := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(body)); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	if code, _ := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(body)); code != http.StatusOK {
		t.Fatalf("update: %d", code)
	}

	// expose_as_env with resource_id also binds.
	bound := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "ghp_x", Scope: vault.ScopeExternalUser,
		ExternalUserID: "eu1", ExposeAsEnv: "GH_TOKEN", ResourceID: sbx.ID}))
	if bound.Binding == nil || bound.Binding.ResourceID != sbx.ID || bound.Binding.ExposeAsEnv != "GH_TOKEN" || bound.Binding.SecretID != bound.Secret.ID {
		t.Fatalf("binding from upsert: %+v", bound.Binding)
	}

	got := must[vault.Secret](t)(c.GetSecret(ctx, first.Secret.ID))
	if got.ID != first.Secret.ID || got.Version != 2 || got.Metadata["team"] != "ml" {
		t.Fatalf("get: %+v", got)
	}

	filters := []struct {
		f    client.SecretFilter
		want []string
	}{
		{client.SecretFilter{}, []string{"gh", "openai", "wire"}},
		{client.SecretFilter{Scope: vault.ScopeTenant}, []string{"openai"}},
		{client.SecretFilter{Type: "api_key"}, []string{"openai"}},
		{client.SecretFilter{WorkspaceID: "w1"}, []string{"wire"}},
		{client.SecretFilter{ExternalUserID: "eu1"}, []string{"gh"}},
		{client.SecretFilter{ResourceID: sbx.ID}, []string{"gh"}},
		{client.SecretFilter{ResourceID: sbx.ID, ResourceType: vault.ResourceComputer}, nil},
		{client.SecretFilter{Name: "wire"}, []string{"wire"}},
		{client.SecretFilter{OwnerUserID: "nobody"}, nil},
		{client.SecretFilter{ExternalWorkspaceID: "nobody"}, nil},
	}
	for _, tc := range filters {
		list := must[[]vault.Secret](t)(c.ListSecrets(ctx, tc.f))
		var names []string
		for _, s := range list {
			names = append(names, s.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, tc.want) {
			t.Errorf("filter %+v: %v, want %v", tc.f, names, tc.want)
		}
	}

	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rot := must[vault.Secret](t)(c.RotateSecret(ctx, first.Secret.ID, client.RotateInput{Value: "sk-live-3", RefreshToken: "rt", ExpiresAt: &exp}))
	if rot.Version != 3 || !rot.HasRefreshToken || rot.ExpiresAt == nil || !rot.ExpiresAt.Equal(exp) {
		t.Fatalf("rotate: %+v", rot)
	}
	if d := must[vault.Secret](t)(c.DisableSecret(ctx, first.Secret.ID)); !d.Disabled {
		t.Fatal("disable did not disable")
	}
	if e := must[vault.Secret](t)(c.EnableSecret(ctx, first.Secret.ID)); e.Disabled {
		t.Fatal("enable did not enable")
	}
	// disable/enable accept an empty JSON object as well as no body.
	if code, b := h.do("POST", "/api/v1/egress/secrets/"+first.Secret.ID+"/disable", h.adminKey, strings.NewReader("{}")); code != 200 {
		t.Fatalf("disable with {}: %d %s", code, b)
	}

	if err := c.DeleteSecret(ctx, bound.Secret.ID); err != nil {
		t.Fatal(err)
	}
	_, err := c.GetSecret(ctx, bound.Secret.ID)
	mustStatus(t, err, 404)
	if bs := must[[]vault.Binding](t)(c.ListBindings(ctx, client.BindingFilter{SecretID: bound.Secret.ID})); len(bs) != 0 {
		t.Fatalf("bindings survive their secret: %+v", bs)
	}
	mustStatus(t, c.DeleteSecret(ctx, bound.Secret.ID), 404)
}

func TestBindingsCRUD(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{}))
	cmp := must[client.SandboxCreated](t)(c.CreateComputer(ctx, client.SandboxInput{}))
	sec := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "db", Value: "pw", Scope: vault.ScopeTenant}))

	b1 := must[vault.Binding](t)(c.CreateBinding(ctx, client.BindingInput{SecretID: sec.Secret.ID, ResourceID: sbx.ID, ExposeAsEnv: "DB_PASSWORD"}))
	if b1.ResourceType != vault.ResourceSandbox || b1.ExposeAsEnv != "DB_PASSWORD" {
		t.Fatalf("binding: %+v", b1)
	}
	b2 := must[vault.Binding](t)(c.CreateBinding(ctx, client.BindingInput{SecretID: sec.Secret.ID, ResourceID: cmp.ID, ResourceType: vault.ResourceComputer}))
	_, err := c.CreateBinding(ctx, client.BindingInput{SecretID: sec.Secret.ID, ResourceID: cmp.ID, ResourceType: vault.ResourceSandbox})
	mustStatus(t, err, 400)
	_, err = c.CreateBinding(ctx, client.BindingInput{SecretID: "sec_nope", ResourceID: sbx.ID})
	mustStatus(t, err, 404)

	for _, tc := range []struct {
		f    client.BindingFilter
		want []string
	}{
		{client.BindingFilter{}, []string{b1.ID, b2.ID}},
		{client.BindingFilter{ResourceID: sbx.ID}, []string{b1.ID}},
		{client.BindingFilter{ResourceType: vault.ResourceComputer}, []string{b2.ID}},
		{client.BindingFilter{SecretID: sec.Secret.ID}, []string{b1.ID, b2.ID}},
		{client.BindingFilter{SecretID: "sec_other"}, nil},
	} {
		var ids []string
		for _, b := range must[[]vault.Binding](t)(c.ListBindings(ctx, tc.f)) {
			ids = append(ids, b.ID)
		}
		slices.Sort(ids)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(ids, want) {
			t.Errorf("filter %+v: %v, want %v", tc.f, ids, want)
		}
	}
	if got := must[vault.Binding](t)(c.GetBinding(ctx, b1.ID)); got != b1 {
		t.Fatalf("get: %+v want %+v", got, b1)
	}
	if err := c.DeleteBinding(ctx, b1.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetBinding(ctx, b1.ID)
	mustStatus(t, err, 404)
	mustStatus(t, c.DeleteBinding(ctx, b1.ID), 404)
}

func TestSandboxesCRUD(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "openai", Value: "sk-real", Scope: vault.ScopeTenant, PlaceholderPrefix: "sk-proj-"}))
	must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "ghp_real", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", ExposeAsEnv: "GITHUB_TOKEN"}))

	in := client.SandboxInput{Name: "agent-1", OwnerUserID: "u1", WorkspaceID: "w1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "p1", Metadata: map[string]string{"k": "v"}}
	created := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, in))
	if !strings.HasPrefix(created.ID, "sbx_") || created.ResourceType != vault.ResourceSandbox || created.Sandbox.ID != created.ID {
		t.Fatalf("created: %+v", created)
	}
	if created.Attribution != (client.Attribution{OwnerUserID: "u1", WorkspaceID: "w1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "p1"}) {
		t.Fatalf("attribution: %+v", created.Attribution)
	}
	if !strings.HasPrefix(created.ProxyToken, "egt_") {
		t.Fatalf("proxy token: %q", created.ProxyToken)
	}
	wantURL := "http://" + created.ID + ":" + created.ProxyToken + "@egressd:8080"
	if created.ProxyURL != wantURL || created.CACertPEM != testCAPEM || created.CABundlePath != api.DefaultCABundlePath {
		t.Fatalf("proxy url %q (want %q), ca %q, path %q", created.ProxyURL, wantURL, created.CACertPEM, created.CABundlePath)
	}
	if _, err := h.store.AuthenticateSandbox(created.ID, created.ProxyToken); err != nil {
		t.Fatalf("the token shown does not authenticate: %v", err)
	}
	env := created.Env
	for _, v := range api.ProxyVars {
		if env[v] != wantURL {
			t.Errorf("%s = %q", v, env[v])
		}
	}
	for _, v := range api.CATrustVars {
		if env[v] != api.DefaultCABundlePath {
			t.Errorf("%s = %q", v, env[v])
		}
	}
	if !strings.HasPrefix(env["OPENAI"], "sk-proj-"+vault.PlaceholderMarker) || !strings.HasPrefix(env["GITHUB_TOKEN"], vault.PlaceholderMarker) {
		t.Fatalf("placeholders in env: %v", env)
	}
	if len(created.Placeholders) != 2 {
		t.Fatalf("placeholders: %+v", created.Placeholders)
	}
	for _, p := range created.Placeholders {
		if env[p.Env] != p.Placeholder || p.SecretID == "" {
			t.Errorf("placeholder entry %+v", p)
		}
		if p.Name == "gh" && p.Level != resolver.LevelExternalUser || p.Name == "openai" && p.Level != resolver.LevelTenant {
			t.Errorf("level of %s: %s", p.Name, p.Level)
		}
	}

	// GET env: same placeholders, no token.
	ge := must[client.SandboxEnv](t)(c.SandboxEnv(ctx, created.ID))
	if !ge.ProxyTokenOmitted || ge.Note == "" || ge.ProxyURL != "http://"+created.ID+":<proxy-token>@egressd:8080" {
		t.Fatalf("env: %+v", ge)
	}
	if ge.Env["HTTPS_PROXY"] != ge.ProxyURL || ge.Env["OPENAI"] != env["OPENAI"] || ge.Env["GITHUB_TOKEN"] != env["GITHUB_TOKEN"] || ge.CACertPEM != testCAPEM {
		t.Fatalf("env differs from creation: %+v", ge.Env)
	}
	if raw, _ := json.Marshal(ge); strings.Contains(string(raw), created.ProxyToken) {
		t.Fatal("GET env shows the proxy token again")
	}

	// The tenant's ca_bundle_path wins over the server's.
	path := "/opt/ca/bundle.pem"
	must[vault.Settings](t)(c.UpdateSettings(ctx, vault.SettingsPatch{CABundlePath: &path}))
	if ge := must[client.SandboxEnv](t)(c.SandboxEnv(ctx, created.ID)); ge.Env["SSL_CERT_FILE"] != path || ge.CABundlePath != path {
		t.Fatalf("ca_bundle_path not applied: %+v", ge)
	}

	got := must[vault.Sandbox](t)(c.GetSandbox(ctx, created.ID))
	if got.ID != created.ID || got.ExternalProjectID != "p1" || got.Metadata["k"] != "v" {
		t.Fatalf("get: %+v", got)
	}

	// Computers: one model, its own endpoint.
	cmp := must[client.SandboxCreated](t)(c.CreateComputer(ctx, client.SandboxInput{ExternalUserID: "eu2"}))
	if cmp.ResourceType != vault.ResourceComputer || !strings.HasPrefix(cmp.ID, "cmp_") {
		t.Fatalf("computer: %+v", cmp)
	}
	_, err := c.CreateComputer(ctx, client.SandboxInput{ResourceType: vault.ResourceSandbox})
	mustStatus(t, err, 400)
	viaSandboxes := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ResourceType: vault.ResourceComputer}))
	if viaSandboxes.ResourceType != vault.ResourceComputer {
		t.Fatalf("resource_type ignored: %+v", viaSandboxes)
	}
	if all := must[[]vault.Sandbox](t)(c.ListSandboxes(ctx, client.SandboxFilter{})); len(all) != 3 {
		t.Fatalf("list all: %d", len(all))
	}
	if cs := must[[]vault.Sandbox](t)(c.ListComputers(ctx, client.SandboxFilter{})); len(cs) != 2 {
		t.Fatalf("list computers: %d", len(cs))
	}
	if cs := must[[]vault.Sandbox](t)(c.ListComputers(ctx, client.SandboxFilter{ResourceType: vault.ResourceSandbox})); len(cs) != 0 {
		t.Fatalf("computers listed sandboxes: %d", len(cs))
	}
	for _, f := range []client.SandboxFilter{{ExternalUserID: "eu1"}, {OwnerUserID: "u1"}, {WorkspaceID: "w1"}, {ExternalWorkspaceID: "ew1"}, {ExternalProjectID: "p1"}, {ResourceType: vault.ResourceSandbox}} {
		if l := must[[]vault.Sandbox](t)(c.ListSandboxes(ctx, f)); len(l) != 1 || l[0].ID != created.ID {
			t.Errorf("filter %+v: %+v", f, l)
		}
	}
	// /computers/{id} shows computers only; /sandboxes/{id} shows both.
	if code, _ := h.do("GET", "/api/v1/computers/"+created.ID, h.adminKey, nil); code != 404 {
		t.Fatalf("a sandbox through /computers: %d", code)
	}
	if code, _ := h.do("GET", "/api/v1/computers/"+cmp.ID, h.adminKey, nil); code != 200 {
		t.Fatalf("a computer through /computers: %d", code)
	}
	if code, _ := h.do("GET", "/api/v1/computers/"+cmp.ID+"/env", h.adminKey, nil); code != 200 {
		t.Fatalf("env through /computers: %d", code)
	}
	if code, _ := h.do("DELETE", "/api/v1/computers/"+created.ID, h.adminKey, nil); code != 404 {
		t.Fatalf("deleting a sandbox through /computers: %d", code)
	}

	if err := c.DeleteSandbox(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetSandbox(ctx, created.ID)
	mustStatus(t, err, 404)
	_, err = c.SandboxEnv(ctx, created.ID)
	mustStatus(t, err, 404)
	if _, err := h.store.AuthenticateSandbox(created.ID, created.ProxyToken); err == nil {
		t.Fatal("a deleted sandbox's token still works")
	}
	mustStatus(t, c.DeleteSandbox(ctx, created.ID), 404)
	if code, _ := h.do("DELETE", "/api/v1/computers/"+cmp.ID, h.adminKey, nil); code != 204 {
		t.Fatalf("deleting a computer through /computers: %d", code)
	}
}

func TestExplainLevels(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{OwnerUserID: "u1", ExternalUserID: "eu1", WorkspaceID: "w1"}))
	up := func(in client.SecretInput) vault.Secret {
		in.Name, in.Value = "tok", "value-"+string(in.Scope)
		return must[client.UpsertResult](t)(c.UpsertSecret(ctx, in)).Secret
	}
	tenant := up(client.SecretInput{Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})
	ws := up(client.SecretInput{Scope: vault.ScopeWorkspace, WorkspaceID: "w1", AllowedHosts: []string{"*.example.com"}})
	ext := up(client.SecretInput{Scope: vault.ScopeExternalUser, ExternalUserID: "eu1"})
	user := up(client.SecretInput{Scope: vault.ScopeUser, OwnerUserID: "u1"})
	bound := up(client.SecretInput{Scope: vault.ScopeResource, ResourceID: sbx.ID})

	status := func(ex resolver.Explanation) map[resolver.Level]resolver.Status {
		m := map[resolver.Level]resolver.Status{}
		for _, s := range ex.Steps {
			m[s.Level] = s.Status
		}
		return m
	}
	ex := must[resolver.Explanation](t)(c.Explain(ctx, sbx.ID, "tok", ""))
	st := status(ex)
	if !ex.Resolved || ex.Level != resolver.LevelBinding || ex.SecretID != bound.ID || len(ex.Steps) != 6 {
		t.Fatalf("explain: %+v", ex)
	}
	if st[resolver.LevelUser] != resolver.StatusShadowed || st[resolver.LevelExternalWorkspace] != resolver.StatusEmptyAttribution || st[resolver.LevelTenant] != resolver.StatusShadowed {
		t.Fatalf("steps: %v", st)
	}

	must[vault.Secret](t)(c.DisableSecret(ctx, bound.ID))
	must[vault.Secret](t)(c.DisableSecret(ctx, user.ID))
	ex = must[resolver.Explanation](t)(c.Explain(ctx, sbx.ID, "tok", ""))
	if ex.Level != resolver.LevelExternalUser || ex.SecretID != ext.ID || status(ex)[resolver.LevelBinding] != resolver.StatusDisabled || status(ex)[resolver.LevelUser] != resolver.StatusDisabled {
		t.Fatalf("after disabling: %+v", ex)
	}

	off := false
	must[vault.Settings](t)(c.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &off}))
	ex = must[resolver.Explanation](t)(c.Explain(ctx, sbx.ID, "tok", "api.example.com:443"))
	if ex.Level != resolver.LevelTenant || ex.SecretID != tenant.ID || ex.AllowEndUserCredentials || ex.HostAllowed == nil || !*ex.HostAllowed || ex.Host != "api.example.com" {
		t.Fatalf("tenant toggle off: %+v", ex)
	}
	if s := status(ex); s[resolver.LevelExternalUser] != resolver.StatusBlockedBySetting || s[resolver.LevelWorkspace] != resolver.StatusBlockedBySetting {
		t.Fatalf("blocked steps: %v", s)
	}
	ex = must[resolver.Explanation](t)(c.Explain(ctx, sbx.ID, "tok", "evil.test"))
	if ex.HostAllowed == nil || *ex.HostAllowed {
		t.Fatalf("host not checked: %+v", ex)
	}
	on := true
	must[vault.Settings](t)(c.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &on}))
	must[vault.Secret](t)(c.DisableSecret(ctx, ext.ID))
	if ex = must[resolver.Explanation](t)(c.Explain(ctx, sbx.ID, "tok", "")); ex.Level != resolver.LevelWorkspace || ex.SecretID != ws.ID {
		t.Fatalf("workspace level: %+v", ex)
	}
	ex = must[resolver.Explanation](t)(c.Explain(ctx, sbx.ID, "absent", ""))
	if ex.Resolved || ex.Level != resolver.LevelNone {
		t.Fatalf("absent name: %+v", ex)
	}
	_, err := c.Explain(ctx, sbx.ID, "bad name!", "")
	mustStatus(t, err, 400)
	_, err = c.Explain(ctx, sbx.ID, "tok", "*.example.com")
	mustStatus(t, err, 400)
	_, err = c.Explain(ctx, "sbx_nope", "tok", "")
	mustStatus(t, err, 404)
}

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
	if !st.AllowEndUserCredentials || st.CABundlePath != "" {
		t.Fatalf("default settings: %+v", st)
	}
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

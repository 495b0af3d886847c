package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

func TestSandboxesCRUD(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "openai", Value: "sk-real", Scope: vault.ScopeTenant, PlaceholderPrefix: "sk-proj-", AllowedHosts: []string{"api.example.com"}}))
	must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "ghp_real", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", ExposeAsEnv: "GITHUB_TOKEN", AllowedHosts: []string{"api.example.com"}}))

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
		if env[v.Name] != wantURL {
			t.Errorf("%s = %q", v.Name, env[v.Name])
		}
	}
	for _, v := range api.CATrustVars {
		if env[v.Name] != api.DefaultCABundlePath {
			t.Errorf("%s = %q", v.Name, env[v.Name])
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
	if all := must[client.SandboxPage](t)(c.ListSandboxes(ctx, client.SandboxFilter{})).Sandboxes; len(all) != 3 {
		t.Fatalf("list all: %d", len(all))
	}
	if cs := must[client.SandboxPage](t)(c.ListComputers(ctx, client.SandboxFilter{})).Sandboxes; len(cs) != 2 {
		t.Fatalf("list computers: %d", len(cs))
	}
	if cs := must[client.SandboxPage](t)(c.ListComputers(ctx, client.SandboxFilter{ResourceType: vault.ResourceSandbox})).Sandboxes; len(cs) != 0 {
		t.Fatalf("computers listed sandboxes: %d", len(cs))
	}
	for _, f := range []client.SandboxFilter{{ExternalUserID: "eu1"}, {OwnerUserID: "u1"}, {WorkspaceID: "w1"}, {ExternalWorkspaceID: "ew1"}, {ExternalProjectID: "p1"}, {ResourceType: vault.ResourceSandbox}} {
		if l := must[client.SandboxPage](t)(c.ListSandboxes(ctx, f)).Sandboxes; len(l) != 1 || l[0].ID != created.ID {
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
	ext := up(client.SecretInput{Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}})
	user := up(client.SecretInput{Scope: vault.ScopeUser, OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}})
	bound := up(client.SecretInput{Scope: vault.ScopeResource, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}})

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

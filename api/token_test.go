package api_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// TestReissueToken: a re-issued token is shown once, the old one stops at
// once, a bad token_ttl leaves the old one working, and both the creation
// and the re-issue are on the admin log.
func TestReissueToken(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sbx := must[client.SandboxCreated](t)(h.admin.CreateSandbox(ctx, client.SandboxInput{OwnerUserID: "alice"}))

	code, body := h.do("POST", "/api/v1/sandboxes/"+sbx.ID+"/token", h.adminKey, strings.NewReader(`{"token_ttl":"2s"}`))
	if code != 400 || !strings.Contains(body, "token_ttl") {
		t.Fatalf("a 2s ttl: %d %s", code, body)
	}
	if _, err := h.store.AuthenticateSandbox(sbx.ID, sbx.ProxyToken); err != nil {
		t.Fatalf("a refused re-issue stopped the old token: %v", err)
	}
	browser := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(ctx, "eu1", 0))
	if code, body := h.do("POST", "/api/v1/sandboxes/"+sbx.ID+"/token", browser.Token, nil); code != 403 {
		t.Fatalf("a browser token re-issued: %d %s", code, body)
	}
	_, _, other := h.newTenant("other")
	if _, err := other.ReissueToken(ctx, sbx.ID, ""); client.StatusOf(err) != 404 {
		t.Fatalf("another tenant re-issued: %v", err)
	}

	got, err := h.admin.ReissueToken(ctx, sbx.ID, "24h")
	if err != nil {
		t.Fatal(err)
	}
	if got.ProxyToken == "" || got.ProxyToken == sbx.ProxyToken || !strings.Contains(got.ProxyURL, ":"+got.ProxyToken+"@") || got.Env["HTTPS_PROXY"] != got.ProxyURL {
		t.Fatalf("re-issued: token shown %v, url carries it %v", got.ProxyToken != "", strings.Contains(got.ProxyURL, got.ProxyToken))
	}
	if got.Sandbox.TokenExpiresAt == nil || got.Sandbox.TokenExpiresAt.Sub(got.Sandbox.TokenIssuedAt).Hours() != 24 {
		t.Fatalf("expiry: %v", got.Sandbox.TokenExpiresAt)
	}
	if _, err := h.store.AuthenticateSandbox(sbx.ID, sbx.ProxyToken); err == nil {
		t.Fatal("the old token still authenticates")
	}
	if _, err := h.store.AuthenticateSandbox(sbx.ID, got.ProxyToken); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	// An empty body: a token without expiry.
	code, body = h.do("POST", "/api/v1/sandboxes/"+sbx.ID+"/token", h.adminKey, nil)
	if code != 200 || strings.Contains(body, "token_expires_at") {
		t.Fatalf("without a body: %d", code)
	}
	var actions []string
	for _, r := range h.auditRows(h.tenant.ID, audit.Filter{SandboxID: sbx.ID, Kind: audit.KindAdmin}) {
		actions = append(actions, r.Action)
	}
	if strings.Count(strings.Join(actions, ","), vault.ActionSandboxToken) != 2 {
		t.Fatalf("admin rows: %v", actions)
	}
	// The token never reaches the log or the sandbox record.
	if strings.Contains(h.logs.String(), got.ProxyToken) || strings.Contains(must[vault.Sandbox](t)(h.admin.GetSandbox(ctx, sbx.ID)).Name, "egt_") {
		t.Fatal("the token was logged")
	}
}

// TestEnvFormats: the env block has the proxy, NO_PROXY, Node and CA
// variables of every common client, and ?format=shell and dotenv carry the
// same values, which a real shell reads back unchanged even from an awkward
// ca_bundle_path.
func TestEnvFormats(t *testing.T) {
	h := newHarnessWith(t, func(c *api.Config) { c.NoProxy = []string{".internal.example", "10.0.0.0/8"} })
	ctx := context.Background()
	must[client.UpsertResult](t)(h.admin.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "ghp_real", Scope: vault.ScopeTenant, ExposeAsEnv: "GH_TOKEN", AllowedHosts: []string{"api.github.com"}}))
	awkward := "/opt/it's $HOME/ca \"bundle\".pem"
	if _, err := h.admin.UpdateSettings(ctx, vault.SettingsPatch{CABundlePath: &awkward}); err != nil {
		t.Fatal(err)
	}
	sbx := must[client.SandboxCreated](t)(h.admin.CreateSandbox(ctx, client.SandboxInput{OwnerUserID: "alice"}))
	env := must[client.SandboxEnv](t)(h.admin.SandboxEnv(ctx, sbx.ID)).Env

	want := map[string]string{
		"NO_PROXY": "localhost,127.0.0.1,::1,.internal.example,10.0.0.0/8", "no_proxy": "localhost,127.0.0.1,::1,.internal.example,10.0.0.0/8",
		"NODE_USE_ENV_PROXY": "1",
	}
	for _, v := range append(append([]api.EnvVar{}, api.ProxyVars...), api.CATrustVars...) {
		want[v.Name] = awkward
	}
	for _, v := range api.ProxyVars {
		want[v.Name] = "http://" + sbx.ID + ":" + api.ProxyTokenPlaceholder + "@egressd:8080"
	}
	for _, name := range []string{"DENO_CERT", "PIP_CERT", "HEX_CACERTS_PATH", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE", "CARGO_HTTP_CAINFO"} {
		if want[name] != awkward {
			t.Fatalf("%s is not among the CA-trust variables", name)
		}
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if !strings.HasPrefix(env["GH_TOKEN"], vault.PlaceholderMarker) {
		t.Fatalf("GH_TOKEN = %q", env["GH_TOKEN"])
	}

	resp, shell := h.get("/api/v1/sandboxes/"+sbx.ID+"/env?format=shell", h.adminKey)
	if resp.StatusCode != 200 || !strings.HasPrefix(shell, "# egressd sandbox "+sbx.ID+"\n") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("shell: %d %q", resp.StatusCode, shell)
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		file := filepath.Join(t.TempDir(), "sandbox.env")
		if err := os.WriteFile(file, []byte(shell), 0o600); err != nil {
			t.Fatal(err)
		}
		for k, v := range env {
			out, err := exec.Command(sh, "-c", `. "$1" && printf '%s' "$(printenv "$2")"`, "sh", file, k).Output()
			if err != nil || string(out) != v {
				t.Errorf("sh read %s = %q (%v), want %q", k, out, err, v)
			}
		}
	} else {
		t.Log("no sh on PATH: the shell format is checked by shape only")
	}

	_, dotenv := h.get("/api/v1/sandboxes/"+sbx.ID+"/env?format=dotenv", h.adminKey)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(dotenv, "\n"), "\n")[1:] {
		k, v, _ := strings.Cut(line, "=")
		if strings.HasPrefix(v, `"`) {
			v = strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(strings.Trim(v, `"`))
		}
		got[k] = v
	}
	if len(got) != len(env) {
		t.Fatalf("dotenv has %d variables, json %d", len(got), len(env))
	}
	for k, v := range env {
		if got[k] != v {
			t.Errorf("dotenv %s = %q, want %q", k, got[k], v)
		}
	}
	if !strings.Contains(dotenv, "\nNODE_USE_ENV_PROXY=1\n") {
		t.Errorf("a plain value is quoted: %q", dotenv)
	}

	if code, body := h.do("GET", "/api/v1/sandboxes/"+sbx.ID+"/env?format=yaml", h.adminKey, nil); code != 400 || !strings.Contains(body, "format") {
		t.Fatalf("format=yaml: %d %s", code, body)
	}
	// Creation and re-issue answer the env with the token in the formats.
	code, created := h.do("POST", "/api/v1/sandboxes?format=shell", h.adminKey, strings.NewReader(`{"owner_user_id":"bob"}`))
	if code != 201 || !strings.Contains(created, "export HTTPS_PROXY='http://sbx_") || strings.Contains(created, api.ProxyTokenPlaceholder) {
		t.Fatalf("created as shell: %d %q", code, created)
	}
	code, reissued := h.do("POST", "/api/v1/sandboxes/"+sbx.ID+"/token?format=dotenv", h.adminKey, nil)
	if code != 200 || !strings.Contains(reissued, "HTTPS_PROXY=http://"+sbx.ID+":egt_") {
		t.Fatalf("re-issued as dotenv: %d %q", code, reissued)
	}
}

func TestNoProxyConfigRefused(t *testing.T) {
	for _, bad := range []string{"a b", "x,y", "-", "ex..ample", "\x00"} {
		if _, err := api.New(api.Config{Store: &vault.Store{}, Resolver: &resolver.Resolver{}, NoProxy: []string{bad}}); err == nil || !strings.Contains(err.Error(), "NoProxy") {
			t.Errorf("NoProxy %q: %v", bad, err)
		}
	}
}

// TestCABundle: GET /api/v1/ca.pem answers egressd's CA without a key;
// ?bundle=system puts the system roots first.
func TestCABundle(t *testing.T) {
	roots := filepath.Join(t.TempDir(), "roots.pem")
	const rootPEM = "-----BEGIN CERTIFICATE-----\nMIIBsystemroot\n-----END CERTIFICATE-----"
	if err := os.WriteFile(roots, []byte(rootPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, func(c *api.Config) { c.SystemRootsFile = roots })
	resp, body := h.get("/api/v1/ca.pem", "")
	if resp.StatusCode != 200 || body != testCAPEM || resp.Header.Get("Content-Type") != "application/x-pem-file" {
		t.Fatalf("ca.pem: %d %q", resp.StatusCode, body)
	}
	resp, body = h.get("/api/v1/ca.pem?bundle=system", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, rootPEM+"\n") || !strings.HasSuffix(body, testCAPEM) {
		t.Fatalf("bundle: %d %q", resp.StatusCode, body)
	}
	if code, body := h.do("GET", "/api/v1/ca.pem?bundle=all", "", nil); code != 400 {
		t.Fatalf("bundle=all: %d %s", code, body)
	}
	missing := newHarnessWith(t, func(c *api.Config) { c.SystemRootsFile = filepath.Join(t.TempDir(), "none.pem") })
	if code, body := missing.do("GET", "/api/v1/ca.pem?bundle=system", "", nil); code != 501 || !strings.Contains(body, "no system root") {
		t.Fatalf("no roots: %d %s", code, body)
	}
}

// TestExplainByEnvName: explain takes the env var a secret is exposed as,
// from the secret or a binding, and says which it matched.
func TestExplainByEnvName(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sbx := must[client.SandboxCreated](t)(h.admin.CreateSandbox(ctx, client.SandboxInput{OwnerUserID: "alice"}))
	gh := must[client.UpsertResult](t)(h.admin.UpsertSecret(ctx, client.SecretInput{Name: "github", Value: "ghp_real", Scope: vault.ScopeTenant, ExposeAsEnv: "GH_TOKEN", AllowedHosts: []string{"api.github.com"}})).Secret
	npm := must[client.UpsertResult](t)(h.admin.UpsertSecret(ctx, client.SecretInput{Name: "npm", Value: "npm_real", Scope: vault.ScopeWorkspace, WorkspaceID: "w9", AllowedHosts: []string{"registry.npmjs.org"}})).Secret
	must[vault.Binding](t)(h.admin.CreateBinding(ctx, client.BindingInput{SecretID: npm.ID, ResourceID: sbx.ID, ResourceType: vault.ResourceSandbox, ExposeAsEnv: "NPM_TOKEN"}))

	for _, c := range []struct {
		asked, name, matched, env string
		resolved                  bool
	}{
		{"github", "github", resolver.MatchedSecretName, "", true},
		{"GH_TOKEN", "github", resolver.MatchedEnvName, "GH_TOKEN", true},
		{"NPM_TOKEN", "npm", resolver.MatchedEnvName, "NPM_TOKEN", true},
		{"GITHUB", "github", resolver.MatchedEnvName, "GITHUB", false},
		{"NOPE", "NOPE", resolver.MatchedSecretName, "", false},
	} {
		ex, err := h.admin.Explain(ctx, sbx.ID, c.asked, "api.github.com")
		if err != nil {
			t.Fatalf("%s: %v", c.asked, err)
		}
		if c.asked == "GITHUB" {
			// The derived env var of "github" is GITHUB, but the secret
			// sets GH_TOKEN: GITHUB names nothing.
			c.name, c.matched, c.env = "GITHUB", resolver.MatchedSecretName, ""
		}
		if ex.Name != c.name || ex.MatchedAs != c.matched || ex.Env != c.env || ex.Resolved != c.resolved {
			t.Errorf("%s: name %q matched %q env %q resolved %v", c.asked, ex.Name, ex.MatchedAs, ex.Env, ex.Resolved)
		}
	}
	ex := must[resolver.Explanation](t)(h.admin.Explain(ctx, sbx.ID, "GH_TOKEN", ""))
	if ex.SecretID != gh.ID || ex.Level != resolver.LevelTenant {
		t.Fatalf("GH_TOKEN: %+v", ex)
	}
}

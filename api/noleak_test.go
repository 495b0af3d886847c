package api_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

func randomText(prefix string) string {
	b := make([]byte, 24)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// TestNoLeak stores known values through the API, then reads everything
// the API, the log, the metrics page and the bbolt file expose: the values
// appear nowhere.
func TestNoLeak(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	value, refresh := randomText("leakvalue"), randomText("leakrefresh")
	rotated, rotatedRefresh := randomText("leakrotated"), randomText("leakrotrefresh")
	secrets := []string{value, refresh, rotated, rotatedRefresh}

	var bodies []string
	record := func(v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(v)
		bodies = append(bodies, string(b))
	}

	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1", WorkspaceID: "w1"}))
	cmp := must[client.SandboxCreated](t)(c.CreateComputer(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	up := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "openai", Value: value, RefreshToken: refresh, Type: "oauth_token",
		Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", ExposeAsEnv: "OPENAI_API_KEY", ResourceID: sbx.ID, AllowedHosts: []string{"api.openai.com"}}))
	record(up, nil)
	record(c.UpsertSecret(ctx, client.SecretInput{Name: "shared", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}}))
	record(c.CreateBinding(ctx, client.BindingInput{SecretID: up.Secret.ID, ResourceID: cmp.ID, ResourceType: vault.ResourceComputer}))

	// The resolver does see the value: the test looks for something real.
	res, err := h.resolver.Resolve(ctx, sbx.ID, "openai")
	if err != nil || string(res.Value.Reveal()) != value || string(res.Refresh.Reveal()) != refresh {
		t.Fatalf("resolve: %v", err)
	}

	// Refused writes that carry a value must not echo it either.
	for _, body := range []string{
		`{"name":"x","value":"` + value + `","` + value + `":1,"scope":"tenant"}`,
		`{"name":"x","value":"` + value + `","scope":"` + value + `"}`,
		`{"name":"` + value + `!","value":"` + value + `","scope":"tenant"}`,
		`{"name":"x","value":"` + value + `","scope":"tenant","expires_at":"` + value + `"}`,
		`{"name":"x","value":"` + value + `","scope":"tenant","allowed_hosts":"` + value + `"}`,
		`{"name":"x","value":"` + value + `","scope":"tenant"} "` + value + `"`,
		`{"name":"x","value":"` + value,
	} {
		code, out := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(body))
		if code != 400 {
			t.Errorf("refused upsert answered %d: %s", code, out)
		}
		bodies = append(bodies, out)
	}
	code, out := h.do("POST", "/api/v1/egress/secrets/"+up.Secret.ID+"/rotate", h.adminKey, strings.NewReader(`{"value":"`+value+`","`+value+`":true}`))
	if code != 400 {
		t.Errorf("refused rotate answered %d", code)
	}
	bodies = append(bodies, out)

	record(c.RotateSecret(ctx, up.Secret.ID, client.RotateInput{Value: rotated, RefreshToken: rotatedRefresh}))
	record(c.DisableSecret(ctx, up.Secret.ID))
	record(c.EnableSecret(ctx, up.Secret.ID))

	// Every read endpoint.
	record(c.ListSecrets(ctx, client.SecretFilter{}))
	record(c.ListSecrets(ctx, client.SecretFilter{ResourceID: sbx.ID}))
	record(c.ListSecrets(ctx, client.SecretFilter{ExternalUserID: "eu1", Type: "oauth_token", Scope: vault.ScopeExternalUser}))
	record(c.GetSecret(ctx, up.Secret.ID))
	record(c.ListBindings(ctx, client.BindingFilter{}))
	record(c.GetBinding(ctx, up.Binding.ID))
	record(c.ListSandboxes(ctx, client.SandboxFilter{}))
	record(c.ListComputers(ctx, client.SandboxFilter{}))
	record(c.GetSandbox(ctx, sbx.ID))
	record(c.SandboxEnv(ctx, sbx.ID))
	record(c.SandboxEnv(ctx, cmp.ID))
	record(c.Explain(ctx, sbx.ID, "openai", "api.openai.com"))
	record(c.Explain(ctx, sbx.ID, "shared", ""))
	record(c.Explain(ctx, cmp.ID, "openai", "evil.test"))
	record(c.GetSettings(ctx))
	record(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	bt := must[client.BrowserToken](t)(c.CreateBrowserToken(ctx, "eu1", 0))
	bc := h.client(bt.Token)
	record(bc.ListSecrets(ctx, client.SecretFilter{}))
	record(bc.GetSecret(ctx, up.Secret.ID))
	record(bc.SandboxEnv(ctx, sbx.ID))
	record(bc.Explain(ctx, sbx.ID, "openai", ""))
	for _, path := range []string{
		"/api/v1/egress/secrets", "/api/v1/egress/secrets/" + up.Secret.ID, "/api/v1/egress/bindings",
		"/api/v1/sandboxes/" + sbx.ID + "/env", "/api/v1/computers/" + cmp.ID, "/api/v1/computers/" + cmp.ID + "/explain/openai",
	} {
		code, out := h.do("GET", path, h.adminKey, nil)
		if code != 200 {
			t.Errorf("GET %s: %d", path, code)
		}
		bodies = append(bodies, out)
	}

	if err := c.DeleteSecret(ctx, up.Secret.ID); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	places := map[string]string{
		"API answers": strings.Join(bodies, "\n"),
		"log":         h.logs.String(),
		"metrics":     h.metrics(),
		"bbolt file":  string(file),
	}
	if !strings.Contains(places["log"], `"route":"POST /api/v1/egress/secrets"`) || !strings.Contains(places["metrics"], "egressd_api_requests_total") {
		t.Fatal("the log or the metrics page is not being recorded")
	}
	for where, text := range places {
		for _, s := range secrets {
			for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s)), hex.EncodeToString([]byte(s))} {
				if strings.Contains(text, form) {
					t.Errorf("a stored value (%.12s...) appears in the %s", form, where)
				}
			}
		}
		// Tokens are secrets too: never in a log line or a metric.
		if where == "log" || where == "metrics" || where == "bbolt file" {
			for _, tok := range []string{h.adminKey, h.operatorKey, sbx.ProxyToken, bt.Token} {
				if strings.Contains(text, tok) {
					t.Errorf("a token appears in the %s", where)
				}
			}
		}
	}
	for _, id := range []string{sbx.ID, up.Secret.ID, h.tenant.ID} {
		if strings.Contains(places["metrics"], id) {
			t.Errorf("an id (%s) is a metric label", id)
		}
	}
}

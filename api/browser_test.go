package api_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/resolver"
	"github.com/egressd/egressd/vault"
)

// TestBrowserTokens checks that a browser token writes nothing (403) and
// reads only its external user's sandboxes, secrets and bindings.
func TestBrowserTokens(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a := seedTenantA(t, h)
	bt := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(ctx, "eu1", time.Hour))
	br := h.client(bt.Token)
	before := h.snapshot(h.tenant.ID)

	off := false
	writes := map[string]error{}
	_, writes["UpsertSecret"] = br.UpsertSecret(ctx, client.SecretInput{Name: "n", Value: "v", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}})
	_, writes["RotateSecret"] = br.RotateSecret(ctx, a.userSecret.ID, client.RotateInput{Value: "v2"})
	_, writes["DisableSecret"] = br.DisableSecret(ctx, a.userSecret.ID)
	_, writes["EnableSecret"] = br.EnableSecret(ctx, a.userSecret.ID)
	writes["DeleteSecret"] = br.DeleteSecret(ctx, a.userSecret.ID)
	_, writes["CreateBinding"] = br.CreateBinding(ctx, client.BindingInput{SecretID: a.userSecret.ID, ResourceID: a.sbx.ID})
	writes["DeleteBinding"] = br.DeleteBinding(ctx, a.binding.ID)
	_, writes["CreateSandbox"] = br.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"})
	_, writes["CreateComputer"] = br.CreateComputer(ctx, client.SandboxInput{ExternalUserID: "eu1"})
	writes["DeleteSandbox"] = br.DeleteSandbox(ctx, a.sbx.ID)
	_, writes["UpdateSettings"] = br.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &off})
	_, writes["CreateBrowserToken"] = br.CreateBrowserToken(ctx, "eu2", 0)
	_, writes["CreateTenant"] = br.CreateTenant(ctx, "evil")
	_, writes["GetSettings"] = br.GetSettings(ctx) // tenant-wide, not the user's
	for name, err := range writes {
		mustStatusNamed(t, name, err, 403)
	}
	if code, _ := h.do("DELETE", "/api/v1/computers/"+a.cmp.ID, bt.Token, nil); code != 403 {
		t.Errorf("DELETE computer: %d", code)
	}
	if after := h.snapshot(h.tenant.ID); !reflect.DeepEqual(before, after) {
		t.Errorf("a browser token changed the store:\n%+v\n%+v", before, after)
	}

	ids := func(xs []vault.Sandbox) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x.ID)
		}
		slices.Sort(out)
		return out
	}
	if got, want := ids(must[client.SandboxPage](t)(br.ListSandboxes(ctx, client.SandboxFilter{})).Sandboxes), slices.Sorted(slices.Values([]string{a.sbx.ID, a.cmp.ID})); !slices.Equal(got, want) {
		t.Errorf("sandboxes: %v, want %v", got, want)
	}
	if l := must[client.SandboxPage](t)(br.ListSandboxes(ctx, client.SandboxFilter{ExternalUserID: "eu2"})).Sandboxes; len(l) != 0 {
		t.Errorf("asking for eu2's sandboxes: %v", ids(l))
	}
	if l := must[client.SandboxPage](t)(br.ListComputers(ctx, client.SandboxFilter{})).Sandboxes; len(l) != 1 || l[0].ID != a.cmp.ID {
		t.Errorf("computers: %v", ids(l))
	}
	secs := must[client.SecretPage](t)(br.ListSecrets(ctx, client.SecretFilter{})).Secrets
	if len(secs) != 1 || secs[0].ID != a.userSecret.ID {
		t.Errorf("secrets: %+v", secs)
	}
	if l := must[client.SecretPage](t)(br.ListSecrets(ctx, client.SecretFilter{ExternalUserID: "eu2"})).Secrets; len(l) != 0 {
		t.Errorf("asking for eu2's secrets: %+v", l)
	}
	bs := must[client.BindingPage](t)(br.ListBindings(ctx, client.BindingFilter{})).Bindings
	for _, b := range bs {
		if b.ResourceID != a.sbx.ID && b.ResourceID != a.cmp.ID {
			t.Errorf("binding on another user's sandbox: %+v", b)
		}
	}
	if len(bs) != 2 {
		t.Errorf("bindings: %+v", bs)
	}

	// Own resources: readable.
	must[vault.Sandbox](t)(br.GetSandbox(ctx, a.sbx.ID))
	must[vault.Secret](t)(br.GetSecret(ctx, a.userSecret.ID))
	must[vault.Binding](t)(br.GetBinding(ctx, a.binding.ID))
	env := must[client.SandboxEnv](t)(br.SandboxEnv(ctx, a.sbx.ID))
	if !strings.HasPrefix(env.Env["GH_TOKEN"], vault.PlaceholderMarker) {
		t.Errorf("env: %+v", env.Env)
	}
	if ex := must[resolver.Explanation](t)(br.Explain(ctx, a.sbx.ID, "gh", "")); ex.SecretID != a.userSecret.ID {
		t.Errorf("explain: %+v", ex)
	}
	// Another user's, or the tenant's: not found.
	for name, err := range map[string]error{
		"GetSandbox(other)":   second(br.GetSandbox(ctx, a.other.ID)),
		"SandboxEnv(other)":   second(br.SandboxEnv(ctx, a.other.ID)),
		"Explain(other)":      second(br.Explain(ctx, a.other.ID, "gh", "")),
		"GetSecret(other)":    second(br.GetSecret(ctx, a.otherSecret.ID)),
		"GetSecret(tenant)":   second(br.GetSecret(ctx, a.tenantSecret.ID)),
		"GetBinding(other)":   second(br.GetBinding(ctx, a.otherBinding.ID)),
		"GetSandbox(unknown)": second(br.GetSandbox(ctx, "sbx_unknown")),
	} {
		mustStatusNamed(t, name, err, 404)
	}

	// An expired browser token is refused.
	tok, _, err := h.store.CreateAPIKey(h.tenant.ID, vault.KeyBrowser, "eu1", time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	_, err = h.client(tok).ListSandboxes(ctx, client.SandboxFilter{})
	mustStatus(t, err, 401)
}

func second[T any](_ T, err error) error { return err }

func mustStatusNamed(t *testing.T, name string, err error, want int) {
	t.Helper()
	if got := client.StatusOf(err); got != want {
		t.Errorf("%s: status %d (err %v), want %d", name, got, err, want)
	}
}

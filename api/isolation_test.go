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

// tenantA is what the isolation tests try to reach from outside.
type tenantA struct {
	sbx, cmp, other client.SandboxCreated // other belongs to external user eu2
	tenantSecret    vault.Secret
	userSecret      vault.Secret // external_user eu1, bound to sbx
	otherSecret     vault.Secret // external_user eu2, bound to other
	binding         vault.Binding
	otherBinding    vault.Binding
}

func seedTenantA(t *testing.T, h *harness) tenantA {
	ctx := context.Background()
	c := h.admin
	var a tenantA
	a.sbx = must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	a.cmp = must[client.SandboxCreated](t)(c.CreateComputer(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	a.other = must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu2"}))
	a.tenantSecret = must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "shared", Value: "v-shared", Scope: vault.ScopeTenant})).Secret
	up := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "v-eu1", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", ExposeAsEnv: "GH_TOKEN", ResourceID: a.sbx.ID}))
	a.userSecret, a.binding = up.Secret, *up.Binding
	up = must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "v-eu2", Scope: vault.ScopeExternalUser, ExternalUserID: "eu2", ExposeAsEnv: "GH_TOKEN", ResourceID: a.other.ID}))
	a.otherSecret, a.otherBinding = up.Secret, *up.Binding
	must[vault.Binding](t)(c.CreateBinding(ctx, client.BindingInput{SecretID: a.tenantSecret.ID, ResourceID: a.cmp.ID, ResourceType: vault.ResourceComputer}))
	return a
}

// TestTenantIsolation calls every endpoint with tenant B's key on tenant
// A's ids: each answers 404, word for word as for an id that does not
// exist, and neither tenant's records change.
func TestTenantIsolation(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a := seedTenantA(t, h)
	tenantB, keyB, b := h.newTenant("globex")
	sbxB := must[client.SandboxCreated](t)(b.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	secB := must[client.UpsertResult](t)(b.UpsertSecret(ctx, client.SecretInput{Name: "shared", Value: "v-b", Scope: vault.ScopeTenant})).Secret
	beforeA, beforeB := h.snapshot(h.tenant.ID), h.snapshot(tenantB.ID)

	// Each call is made twice: on A's id, and on an id that exists nowhere.
	calls := map[string]func(id string) error{
		"GetSecret":    func(id string) error { _, err := b.GetSecret(ctx, id); return err },
		"RotateSecret": func(id string) error { _, err := b.RotateSecret(ctx, id, client.RotateInput{Value: "x"}); return err },
		"Disable":      func(id string) error { _, err := b.DisableSecret(ctx, id); return err },
		"Enable":       func(id string) error { _, err := b.EnableSecret(ctx, id); return err },
		"DeleteSecret": func(id string) error { return b.DeleteSecret(ctx, id) },
		"BindSecretA": func(id string) error {
			_, err := b.CreateBinding(ctx, client.BindingInput{SecretID: id, ResourceID: sbxB.ID})
			return err
		},
		"GetBinding":    func(id string) error { _, err := b.GetBinding(ctx, id); return err },
		"DeleteBinding": func(id string) error { return b.DeleteBinding(ctx, id) },
		"BindToSandboxA": func(id string) error {
			_, err := b.CreateBinding(ctx, client.BindingInput{SecretID: secB.ID, ResourceID: id})
			return err
		},
		"UpsertOnSandboxA": func(id string) error {
			_, err := b.UpsertSecret(ctx, client.SecretInput{Name: "n", Value: "v", Scope: vault.ScopeResource, ResourceID: id})
			return err
		},
		"UpsertBoundToSandboxA": func(id string) error {
			_, err := b.UpsertSecret(ctx, client.SecretInput{Name: "n", Value: "v", Scope: vault.ScopeTenant, ExposeAsEnv: "N", ResourceID: id})
			return err
		},
		"GetSandbox":    func(id string) error { _, err := b.GetSandbox(ctx, id); return err },
		"SandboxEnv":    func(id string) error { _, err := b.SandboxEnv(ctx, id); return err },
		"Explain":       func(id string) error { _, err := b.Explain(ctx, id, "shared", ""); return err },
		"DeleteSandbox": func(id string) error { return b.DeleteSandbox(ctx, id) },
	}
	targets := map[string][]string{
		"GetSecret": {a.tenantSecret.ID, a.userSecret.ID}, "RotateSecret": {a.tenantSecret.ID}, "Disable": {a.tenantSecret.ID},
		"Enable": {a.tenantSecret.ID}, "DeleteSecret": {a.tenantSecret.ID, a.userSecret.ID}, "BindSecretA": {a.tenantSecret.ID},
		"GetBinding": {a.binding.ID}, "DeleteBinding": {a.binding.ID}, "BindToSandboxA": {a.sbx.ID},
		"UpsertOnSandboxA": {a.sbx.ID}, "UpsertBoundToSandboxA": {a.sbx.ID},
		"GetSandbox": {a.sbx.ID, a.cmp.ID}, "SandboxEnv": {a.sbx.ID, a.cmp.ID}, "Explain": {a.sbx.ID, a.cmp.ID},
		"DeleteSandbox": {a.sbx.ID, a.cmp.ID},
	}
	for name, call := range calls {
		for _, id := range targets[name] {
			err := call(id)
			mustStatusNamed(t, name, err, 404)
			// Same answer as for an id that exists nowhere: nothing leaks.
			ghost := id[:4] + strings.Repeat("Z", len(id)-4)
			e1, e2 := apiErr(err), apiErr(call(ghost))
			if e1 == nil || e2 == nil || strings.ReplaceAll(e1.Message, id, ghost) != e2.Message || e1.Code != e2.Code {
				t.Errorf("%s: %v differs from %v", name, e1, e2)
			}
		}
	}
	// The /computers twins of the sandbox routes.
	for _, rq := range [][2]string{
		{"GET", "/api/v1/computers/" + a.cmp.ID}, {"GET", "/api/v1/computers/" + a.cmp.ID + "/env"},
		{"GET", "/api/v1/computers/" + a.cmp.ID + "/explain/shared"}, {"DELETE", "/api/v1/computers/" + a.cmp.ID},
	} {
		if code, body := h.do(rq[0], rq[1], keyB, nil); code != 404 {
			t.Errorf("%s %s: %d %s", rq[0], rq[1], code, body)
		}
	}
	// Lists filtered by A's ids find nothing of A's.
	if l := must[[]vault.Secret](t)(b.ListSecrets(ctx, client.SecretFilter{ResourceID: a.sbx.ID})); len(l) != 0 {
		t.Errorf("B lists A's secrets: %+v", l)
	}
	if l := must[[]vault.Binding](t)(b.ListBindings(ctx, client.BindingFilter{SecretID: a.userSecret.ID})); len(l) != 0 {
		t.Errorf("B lists A's bindings: %+v", l)
	}
	if l := must[[]vault.Sandbox](t)(b.ListSandboxes(ctx, client.SandboxFilter{})); len(l) != 1 || l[0].ID != sbxB.ID {
		t.Errorf("B lists A's sandboxes: %+v", l)
	}
	if l := must[[]vault.Secret](t)(b.ListSecrets(ctx, client.SecretFilter{})); len(l) != 1 || l[0].ID != secB.ID {
		t.Errorf("B's secrets: %+v", l)
	}

	if after := h.snapshot(h.tenant.ID); !reflect.DeepEqual(beforeA, after) {
		t.Errorf("tenant A changed:\n%+v\n%+v", beforeA, after)
	}
	if after := h.snapshot(tenantB.ID); !reflect.DeepEqual(beforeB, after) {
		t.Errorf("tenant B changed:\n%+v\n%+v", beforeB, after)
	}
	// A's sandbox still resolves its own secrets; B's sees B's.
	if res, err := h.resolver.Resolve(ctx, a.sbx.ID, "shared"); err != nil || string(res.Value.Reveal()) != "v-shared" {
		t.Errorf("A resolves: %v", err)
	}
	if res, err := h.resolver.Resolve(ctx, sbxB.ID, "shared"); err != nil || string(res.Value.Reveal()) != "v-b" {
		t.Errorf("B resolves: %v", err)
	}
}

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
	_, writes["UpsertSecret"] = br.UpsertSecret(ctx, client.SecretInput{Name: "n", Value: "v", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1"})
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
	if got, want := ids(must[[]vault.Sandbox](t)(br.ListSandboxes(ctx, client.SandboxFilter{}))), slices.Sorted(slices.Values([]string{a.sbx.ID, a.cmp.ID})); !slices.Equal(got, want) {
		t.Errorf("sandboxes: %v, want %v", got, want)
	}
	if l := must[[]vault.Sandbox](t)(br.ListSandboxes(ctx, client.SandboxFilter{ExternalUserID: "eu2"})); len(l) != 0 {
		t.Errorf("asking for eu2's sandboxes: %v", ids(l))
	}
	if l := must[[]vault.Sandbox](t)(br.ListComputers(ctx, client.SandboxFilter{})); len(l) != 1 || l[0].ID != a.cmp.ID {
		t.Errorf("computers: %v", ids(l))
	}
	secs := must[[]vault.Secret](t)(br.ListSecrets(ctx, client.SecretFilter{}))
	if len(secs) != 1 || secs[0].ID != a.userSecret.ID {
		t.Errorf("secrets: %+v", secs)
	}
	if l := must[[]vault.Secret](t)(br.ListSecrets(ctx, client.SecretFilter{ExternalUserID: "eu2"})); len(l) != 0 {
		t.Errorf("asking for eu2's secrets: %+v", l)
	}
	bs := must[[]vault.Binding](t)(br.ListBindings(ctx, client.BindingFilter{}))
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

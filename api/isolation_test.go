package api_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/egressd/egressd/client"
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
	a.tenantSecret = must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "shared", Value: "v-shared", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})).Secret
	up := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "v-eu1", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", ExposeAsEnv: "GH_TOKEN", ResourceID: a.sbx.ID, AllowedHosts: []string{"api.example.com"}}))
	a.userSecret, a.binding = up.Secret, *up.Binding
	up = must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "v-eu2", Scope: vault.ScopeExternalUser, ExternalUserID: "eu2", ExposeAsEnv: "GH_TOKEN", ResourceID: a.other.ID, AllowedHosts: []string{"api.example.com"}}))
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
	secB := must[client.UpsertResult](t)(b.UpsertSecret(ctx, client.SecretInput{Name: "shared", Value: "v-b", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})).Secret
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
			_, err := b.UpsertSecret(ctx, client.SecretInput{Name: "n", Value: "v", Scope: vault.ScopeResource, ResourceID: id, AllowedHosts: []string{"api.example.com"}})
			return err
		},
		"UpsertBoundToSandboxA": func(id string) error {
			_, err := b.UpsertSecret(ctx, client.SecretInput{Name: "n", Value: "v", Scope: vault.ScopeTenant, ExposeAsEnv: "N", ResourceID: id, AllowedHosts: []string{"api.example.com"}})
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
	if l := must[client.SecretPage](t)(b.ListSecrets(ctx, client.SecretFilter{ResourceID: a.sbx.ID})).Secrets; len(l) != 0 {
		t.Errorf("B lists A's secrets: %+v", l)
	}
	if l := must[client.BindingPage](t)(b.ListBindings(ctx, client.BindingFilter{SecretID: a.userSecret.ID})).Bindings; len(l) != 0 {
		t.Errorf("B lists A's bindings: %+v", l)
	}
	if l := must[client.SandboxPage](t)(b.ListSandboxes(ctx, client.SandboxFilter{})).Sandboxes; len(l) != 1 || l[0].ID != sbxB.ID {
		t.Errorf("B lists A's sandboxes: %+v", l)
	}
	if l := must[client.SecretPage](t)(b.ListSecrets(ctx, client.SecretFilter{})).Secrets; len(l) != 1 || l[0].ID != secB.ID {
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

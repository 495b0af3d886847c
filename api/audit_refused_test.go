package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// TestAuditRefusedWritesAndReads checks that a write the API or the vault
// refuses leaves no row, and that no read, by any kind of key, writes one.
func TestAuditRefusedWritesAndReads(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	a := seedTenantA(t, h)
	c := h.admin
	bt := must[client.BrowserToken](t)(c.CreateBrowserToken(ctx, "eu1", 0))
	br := h.client(bt.Token)
	_, _, other := h.newTenant("other")
	off := false
	must[vault.Settings](t)(c.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &off}))
	count := func() int { return len(h.auditRows(h.tenant.ID, audit.Filter{})) }
	start := count()

	refused := map[string]error{}
	// Refused by the vault, inside the write's transaction.
	_, refused["end-user secret with the setting off"] = c.UpsertSecret(ctx, client.SecretInput{Name: "x", Value: "v", Scope: vault.ScopeExternalUser, ExternalUserID: "eu9", AllowedHosts: []string{"api.example.com"}})
	_, refused["upsert bound to a missing sandbox"] = c.UpsertSecret(ctx, client.SecretInput{Name: "x", Value: "v", Scope: vault.ScopeTenant, ExposeAsEnv: "X", ResourceID: "sbx_missing", ResourceType: vault.ResourceSandbox, AllowedHosts: []string{"api.example.com"}})
	_, refused["rotate a missing secret"] = c.RotateSecret(ctx, "sec_missing", client.RotateInput{Value: "v"})
	_, refused["disable a missing secret"] = c.DisableSecret(ctx, "sec_missing")
	refused["delete a missing secret"] = c.DeleteSecret(ctx, "sec_missing")
	_, refused["bind to a missing sandbox"] = c.CreateBinding(ctx, client.BindingInput{SecretID: a.tenantSecret.ID, ResourceID: "sbx_missing", ResourceType: vault.ResourceSandbox})
	refused["delete a missing binding"] = c.DeleteBinding(ctx, "bnd_missing")
	refused["delete a missing sandbox"] = c.DeleteSandbox(ctx, "sbx_missing")
	_, refused["bad settings"] = c.UpdateSettings(ctx, vault.SettingsPatch{CABundlePath: ptr("relative/path")})
	_, refused["bad attribution"] = c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: strings.Repeat("x", 5000)})
	_, refused["browser token without a user"] = c.CreateBrowserToken(ctx, "", 0)
	// Refused by the API before the vault.
	_, refused["rotate without a value"] = c.RotateSecret(ctx, a.userSecret.ID, client.RotateInput{})
	_, refused["browser token ttl"] = c.CreateBrowserToken(ctx, "eu1", 48*time.Hour)
	_, refused["browser token writes"] = br.DisableSecret(ctx, a.userSecret.ID)
	refused["another tenant's binding"] = other.DeleteBinding(ctx, a.binding.ID)
	refused["another tenant's sandbox"] = other.DeleteSandbox(ctx, a.sbx.ID)
	for name, err := range refused {
		if s := client.StatusOf(err); s < 400 || s >= 500 {
			t.Errorf("%s: %v, want a 4xx", name, err)
		}
	}
	if n := count(); n != start {
		t.Errorf("refused writes added %d rows", n-start)
	}

	for _, rc := range []*client.Client{c, br} {
		for name, err := range map[string]error{
			"list secrets":   second(rc.ListSecrets(ctx, client.SecretFilter{})),
			"get secret":     second(rc.GetSecret(ctx, a.userSecret.ID)),
			"list bindings":  second(rc.ListBindings(ctx, client.BindingFilter{})),
			"list sandboxes": second(rc.ListSandboxes(ctx, client.SandboxFilter{})),
			"get sandbox":    second(rc.GetSandbox(ctx, a.sbx.ID)),
			"env":            second(rc.SandboxEnv(ctx, a.sbx.ID)),
			"explain":        second(rc.Explain(ctx, a.sbx.ID, "gh", "")),
			"audit":          second(rc.Audit(ctx, client.AuditFilter{})),
		} {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	if _, err := c.GetSettings(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != start {
		t.Errorf("reads added %d rows", n-start)
	}
}

func ptr[T any](v T) *T { return &v }

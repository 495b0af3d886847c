package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// auditRows reads every row of a tenant's log straight from the vault,
// keyed by id.
func (h *harness) auditRows(tenantID string, f audit.Filter) map[string]audit.Row {
	h.t.Helper()
	out := map[string]audit.Row{}
	f.Limit = audit.MaxLimit
	for {
		rows, next, err := h.store.QueryAudit(tenantID, f)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, r := range rows {
			out[r.ID] = r
		}
		if next == "" {
			return out
		}
		f.Cursor = next
	}
}

// identity is the identity chain of a row, for comparing.
type identity struct {
	Kind, Action, TenantID, WorkspaceID, OwnerUserID, ExternalUserID, ExternalWorkspaceID, ExternalProjectID string
	SandboxID, SecretID, ActorKind, ActorID                                                                  string
}

func identityOf(r audit.Row) identity {
	return identity{r.Kind, r.Action, r.TenantID, r.WorkspaceID, r.OwnerUserID, r.ExternalUserID, r.ExternalWorkspaceID, r.ExternalProjectID,
		r.SandboxID, r.SecretID, r.ActorKind, r.ActorID}
}

// TestAuditAdminRows makes every admin write through the API: each leaves
// exactly one admin row of its action, naming the API key that acted and
// the full identity chain of what it changed.
func TestAuditAdminRows(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	key := must[vault.APIKey](t)(h.store.Authenticate(h.adminKey))
	tid := h.tenant.ID
	// A new tenant's log holds its creation only, by the operator.
	var created audit.Row
	for _, r := range h.auditRows(tid, audit.Filter{}) {
		if created.ID != "" || r.Action != vault.ActionTenantCreated || r.ActorKind != vault.ActorOperator || r.Details["key_id"] != key.ID {
			t.Fatalf("a new tenant's log: %+v", r)
		}
		created = r
	}
	if created.ID == "" {
		t.Fatal("a new tenant's log has no tenant.created row")
	}
	// want is the identity of an admin row of this tenant by this key.
	want := func(action string, id identity) identity {
		id.Kind, id.Action, id.TenantID, id.ActorKind, id.ActorID = audit.KindAdmin, action, tid, vault.ActorAPIKey, key.ID
		return id
	}

	var (
		sbx, cmp           client.SandboxCreated
		userSec, tenantSec client.UpsertResult
		bnd                vault.Binding
		bt                 client.BrowserToken
		off, on            = false, true
	)
	steps := []struct {
		name    string
		do      func() error
		want    func() identity
		details map[string]string // entries the row's details must hold
	}{
		{"create sandbox", func() (err error) {
			sbx, err = c.CreateSandbox(ctx, client.SandboxInput{WorkspaceID: "w1", OwnerUserID: "u1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "ep1"})
			return err
		}, func() identity {
			return want(vault.ActionSandboxCreated, identity{WorkspaceID: "w1", OwnerUserID: "u1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "ep1", SandboxID: sbx.ID})
		}, map[string]string{"resource_type": "sandbox"}},
		{"create computer", func() (err error) {
			cmp, err = c.CreateComputer(ctx, client.SandboxInput{ExternalUserID: "eu1", ExternalWorkspaceID: "ew1"})
			return err
		}, func() identity {
			return want(vault.ActionSandboxCreated, identity{ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", SandboxID: cmp.ID})
		}, map[string]string{"resource_type": "computer"}},
		{"create secret with binding", func() (err error) {
			userSec, err = c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "v1", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", ExposeAsEnv: "GH_TOKEN", ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}})
			return err
		}, func() identity {
			return want(vault.ActionSecretCreated, identity{ExternalUserID: "eu1", SecretID: userSec.Secret.ID})
		}, map[string]string{"scope": "external_user"}},
		{"update secret", func() error {
			_, err := c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "v2", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}})
			return err
		}, func() identity {
			return want(vault.ActionSecretUpdated, identity{ExternalUserID: "eu1", SecretID: userSec.Secret.ID})
		}, nil},
		{"rotate secret", func() error {
			_, err := c.RotateSecret(ctx, userSec.Secret.ID, client.RotateInput{Value: "v3"})
			return err
		}, func() identity {
			return want(vault.ActionSecretRotated, identity{ExternalUserID: "eu1", SecretID: userSec.Secret.ID})
		}, nil},
		{"disable secret", func() error { return second(c.DisableSecret(ctx, userSec.Secret.ID)) }, func() identity {
			return want(vault.ActionSecretDisabled, identity{ExternalUserID: "eu1", SecretID: userSec.Secret.ID})
		}, nil},
		{"enable secret", func() error { return second(c.EnableSecret(ctx, userSec.Secret.ID)) }, func() identity {
			return want(vault.ActionSecretEnabled, identity{ExternalUserID: "eu1", SecretID: userSec.Secret.ID})
		}, nil},
		{"create tenant secret", func() (err error) {
			tenantSec, err = c.UpsertSecret(ctx, client.SecretInput{Name: "shared", Value: "vs", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})
			return err
		}, func() identity { return want(vault.ActionSecretCreated, identity{SecretID: tenantSec.Secret.ID}) }, map[string]string{"scope": "tenant"}},
		{"create binding", func() (err error) {
			bnd, err = c.CreateBinding(ctx, client.BindingInput{SecretID: tenantSec.Secret.ID, ResourceID: cmp.ID, ResourceType: vault.ResourceComputer, ExposeAsEnv: "SHARED"})
			return err
		}, func() identity {
			return want(vault.ActionBindingCreated, identity{ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", SandboxID: cmp.ID, SecretID: tenantSec.Secret.ID})
		}, map[string]string{"expose_as_env": "SHARED"}},
		{"delete binding", func() error { return c.DeleteBinding(ctx, bnd.ID) }, func() identity {
			return want(vault.ActionBindingDeleted, identity{ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", SandboxID: cmp.ID, SecretID: tenantSec.Secret.ID})
		}, nil},
		{"change settings", func() error {
			_, err := c.UpdateSettings(ctx, vault.SettingsPatch{AllowEndUserCredentials: &off})
			return err
		}, func() identity { return want(vault.ActionSettingsChanged, identity{}) }, map[string]string{"changed": "allow_end_user_credentials"}},
		{"allow any-host secrets", func() error {
			_, err := c.UpdateSettings(ctx, vault.SettingsPatch{AllowAnyHostSecrets: &on})
			return err
		}, func() identity { return want(vault.ActionSettingsChanged, identity{}) }, map[string]string{"changed": "allow_any_host_secrets"}},
		{"issue browser token", func() (err error) {
			bt, err = c.CreateBrowserToken(ctx, "eu1", time.Hour)
			return err
		}, func() identity { return want(vault.ActionBrowserTokenIssued, identity{ExternalUserID: "eu1"}) }, nil},
		{"delete secret", func() error { return c.DeleteSecret(ctx, userSec.Secret.ID) }, func() identity {
			return want(vault.ActionSecretDeleted, identity{ExternalUserID: "eu1", SecretID: userSec.Secret.ID})
		}, map[string]string{"bindings_deleted": "1"}},
		{"delete computer", func() error {
			code, body := h.do("DELETE", "/api/v1/computers/"+cmp.ID, h.adminKey, nil)
			if code != 204 {
				t.Fatalf("%d %s", code, body)
			}
			return nil
		}, func() identity {
			return want(vault.ActionSandboxDeleted, identity{ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", SandboxID: cmp.ID})
		}, nil},
		{"delete sandbox", func() error { return c.DeleteSandbox(ctx, sbx.ID) }, func() identity {
			return want(vault.ActionSandboxDeleted, identity{WorkspaceID: "w1", OwnerUserID: "u1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "ep1", SandboxID: sbx.ID})
		}, nil},
	}
	before := h.auditRows(tid, audit.Filter{})
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		after := h.auditRows(tid, audit.Filter{})
		var added []audit.Row
		for id, r := range after {
			if _, ok := before[id]; !ok {
				added = append(added, r)
			}
		}
		before = after
		if len(added) != 1 {
			t.Errorf("%s: %d new rows, want 1: %+v", st.name, len(added), added)
			continue
		}
		r := added[0]
		if got, w := identityOf(r), st.want(); got != w {
			t.Errorf("%s: row\n%+v\nwant\n%+v", st.name, got, w)
		}
		for k, v := range st.details {
			if r.Details[k] != v {
				t.Errorf("%s: details[%s] = %q, want %q (%v)", st.name, k, r.Details[k], v, r.Details)
			}
		}
		if r.Time.IsZero() || r.Outcome != "" || r.Host != "" {
			t.Errorf("%s: row %+v", st.name, r)
		}
		switch st.name {
		case "issue browser token":
			if r.Details["key_id"] != bt.KeyID {
				t.Errorf("browser token row names key %q, want %q", r.Details["key_id"], bt.KeyID)
			}
		case "create secret with binding":
			if r.Details["binding_id"] != userSec.Binding.ID {
				t.Errorf("upsert row names binding %q, want %q", r.Details["binding_id"], userSec.Binding.ID)
			}
		}
	}

	// The API answers the same rows, newest first.
	var viaAPI []audit.Row
	if err := c.AuditAll(ctx, client.AuditFilter{Kind: audit.KindAdmin, Limit: 4}, func(r audit.Row) error {
		viaAPI = append(viaAPI, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(viaAPI) != len(steps)+1 || len(viaAPI) != len(before) {
		t.Fatalf("API answers %d rows, want %d", len(viaAPI), len(steps)+1)
	}
	if viaAPI[len(steps)].ID != created.ID {
		t.Errorf("the oldest admin row is %s, want the tenant's creation", viaAPI[len(steps)].Action)
	}
	for i, r := range viaAPI[:len(steps)] {
		if _, ok := before[r.ID]; !ok {
			t.Errorf("API row %s is not in the log", r.ID)
		}
		if w := steps[len(steps)-1-i].want().Action; r.Action != w {
			t.Errorf("API row %d: %s, want %s", i, r.Action, w)
		}
	}
}

package vault

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
)

// adminRows returns the tenant's admin rows, oldest first.
func adminRows(tb testing.TB, s *Store, tenantID string) []audit.Row {
	tb.Helper()
	var out []audit.Row
	if err := s.ExportAudit(tenantID, time.Time{}, func(r audit.Row) error {
		if r.Kind == audit.KindAdmin {
			out = append(out, r)
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestAdminAuditRows runs every audited write once through a Store made by
// As and checks that each appends exactly one row: its action, the actor
// and the full identity chain, in the write's own transaction.
func TestAdminAuditRows(t *testing.T) {
	clock := newTestClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	tn, _, err := s.CreateTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	actor := Actor{Kind: ActorAPIKey, ID: "key_admin1"}
	a := s.As(actor)
	if a.Actor() != actor || s.Actor() != (Actor{}) {
		t.Fatalf("As changed the wrong store: %v %v", a.Actor(), s.Actor())
	}

	attrib := SandboxInput{Name: "box", OwnerUserID: "u1", WorkspaceID: "w1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "p1"}
	var sbx Sandbox
	var openai, gh, res Secret
	var bnd Binding
	var browser APIKey
	// chain is the identity chain of sbx's rows.
	chain := func(r audit.Row) audit.Row {
		r.TenantID, r.WorkspaceID, r.OwnerUserID = tn.ID, "w1", "u1"
		r.ExternalUserID, r.ExternalWorkspaceID, r.ExternalProjectID = "eu1", "ew1", "p1"
		r.SandboxID = sbx.ID
		return r
	}
	steps := []struct {
		name string
		do   func() error
		want func() audit.Row
	}{
		{"sandbox.created", func() (err error) { sbx, _, err = a.CreateSandbox(tn.ID, attrib); return err },
			func() audit.Row {
				return chain(audit.Row{Action: ActionSandboxCreated, Details: map[string]string{"resource_type": "sandbox"}})
			}},
		{"secret.created", func() error {
			r, err := a.UpsertSecret(tn.ID, SecretInput{Name: "openai", Value: "sk-VALUE-1", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
			openai = r.Secret
			return err
		}, func() audit.Row {
			return audit.Row{TenantID: tn.ID, Action: ActionSecretCreated, SecretID: openai.ID, SecretName: "openai", SecretVersion: 1, Details: map[string]string{"scope": "tenant"}}
		}},
		{"secret.updated", func() error {
			_, err := a.UpsertSecret(tn.ID, SecretInput{Name: "openai", Value: "sk-VALUE-2", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
			return err
		}, func() audit.Row {
			return audit.Row{TenantID: tn.ID, Action: ActionSecretUpdated, SecretID: openai.ID, SecretName: "openai", SecretVersion: 2, Details: map[string]string{"scope": "tenant"}}
		}},
		{"secret.created end-user", func() error {
			r, err := a.UpsertSecret(tn.ID, SecretInput{Name: "gh", Value: "ghp-VALUE-3", Scope: ScopeExternalUser, ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", AllowedHosts: []string{"api.example.com"}})
			gh = r.Secret
			return err
		}, func() audit.Row {
			return audit.Row{TenantID: tn.ID, ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", Action: ActionSecretCreated, SecretID: gh.ID, SecretName: "gh", SecretVersion: 1, Details: map[string]string{"scope": "external_user"}}
		}},
		{"secret.created with binding", func() error {
			r, err := a.UpsertSecret(tn.ID, SecretInput{Name: "res", Value: "VALUE-4", Scope: ScopeResource, ResourceID: sbx.ID, ExposeAsEnv: "RES", OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}})
			res = r.Secret
			if err == nil {
				bnd = *r.Binding
			}
			return err
		}, func() audit.Row {
			return audit.Row{TenantID: tn.ID, OwnerUserID: "u1", SandboxID: sbx.ID, Action: ActionSecretCreated, SecretID: res.ID, SecretName: "res", SecretVersion: 1,
				Details: map[string]string{"scope": "resource", "binding_id": bnd.ID, "resource_id": sbx.ID}}
		}},
		{"secret.rotated", func() error { _, err := a.RotateSecret(tn.ID, openai.ID, RotateInput{Value: "sk-VALUE-5"}); return err },
			func() audit.Row {
				return audit.Row{TenantID: tn.ID, Action: ActionSecretRotated, SecretID: openai.ID, SecretName: "openai", SecretVersion: 3, Details: map[string]string{"scope": "tenant"}}
			}},
		{"secret.disabled", func() error { _, err := a.SetDisabled(tn.ID, gh.ID, true); return err },
			func() audit.Row {
				return audit.Row{TenantID: tn.ID, ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", Action: ActionSecretDisabled, SecretID: gh.ID, SecretName: "gh", SecretVersion: 1, Details: map[string]string{"scope": "external_user"}}
			}},
		{"secret.enabled", func() error { _, err := a.SetDisabled(tn.ID, gh.ID, false); return err },
			func() audit.Row {
				return audit.Row{TenantID: tn.ID, ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", Action: ActionSecretEnabled, SecretID: gh.ID, SecretName: "gh", SecretVersion: 1, Details: map[string]string{"scope": "external_user"}}
			}},
		{"binding.created", func() (err error) {
			bnd, err = a.CreateBinding(tn.ID, BindingInput{SecretID: openai.ID, ResourceID: sbx.ID, ExposeAsEnv: "OPENAI_API_KEY"})
			return err
		}, func() audit.Row {
			return chain(audit.Row{Action: ActionBindingCreated, SecretID: openai.ID, SecretName: "openai", SecretVersion: 3,
				Details: map[string]string{"resource_type": "sandbox", "binding_id": bnd.ID, "secret_scope": "tenant", "expose_as_env": "OPENAI_API_KEY"}})
		}},
		{"binding.deleted", func() error { return a.DeleteBinding(tn.ID, bnd.ID) },
			func() audit.Row {
				return chain(audit.Row{Action: ActionBindingDeleted, SecretID: openai.ID, SecretName: "openai", SecretVersion: 3,
					Details: map[string]string{"resource_type": "sandbox", "binding_id": bnd.ID, "secret_scope": "tenant", "expose_as_env": "OPENAI_API_KEY"}})
			}},
		{"settings.changed", func() error {
			// allow_end_user_credentials is set to what it is: not a change.
			_, err := a.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: ptr(true), CABundlePath: ptr("/etc/ca.pem"), EgressDenyHosts: &[]string{"evil.example"}})
			return err
		}, func() audit.Row {
			return audit.Row{TenantID: tn.ID, Action: ActionSettingsChanged, Details: map[string]string{"changed": "ca_bundle_path,egress_deny_hosts"}}
		}},
		{"browser_token.issued", func() (err error) {
			_, browser, err = a.CreateAPIKey(tn.ID, KeyBrowser, "eu1", time.Hour)
			return err
		}, func() audit.Row {
			return audit.Row{TenantID: tn.ID, ExternalUserID: "eu1", Action: ActionBrowserTokenIssued,
				Details: map[string]string{"key_id": browser.ID, "expires_at": clock.Now().Add(time.Hour).Format(time.RFC3339)}}
		}},
		{"secret.deleted", func() error { return a.DeleteSecret(tn.ID, gh.ID) },
			func() audit.Row {
				return audit.Row{TenantID: tn.ID, ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", Action: ActionSecretDeleted, SecretID: gh.ID, SecretName: "gh", SecretVersion: 1,
					Details: map[string]string{"scope": "external_user", "bindings_deleted": "0"}}
			}},
		{"sandbox.deleted", func() error { return a.DeleteSandbox(tn.ID, sbx.ID) },
			func() audit.Row {
				return chain(audit.Row{Action: ActionSandboxDeleted, Details: map[string]string{"resource_type": "sandbox", "bindings_deleted": "1", "secrets_deleted": res.ID}})
			}},
		{"oauth.completed", func() error {
			_, err := a.WithAudit(ActionOAuthCompleted, map[string]string{"provider": "github"}).UpsertSecret(tn.ID, SecretInput{Name: "gh", Value: "gho-VALUE-6", Scope: ScopeUser, OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}})
			return err
		}, func() audit.Row {
			sec, _ := s.ListSecrets(tn.ID, SecretFilter{Name: "gh"})
			return audit.Row{TenantID: tn.ID, OwnerUserID: "u1", Action: ActionOAuthCompleted, SecretID: sec[0].ID, SecretName: "gh", SecretVersion: 1,
				Details: map[string]string{"scope": "user", "provider": "github"}}
		}},
	}
	for _, st := range steps {
		before := adminRows(t, s, tn.ID)
		clock.Advance(time.Second)
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		after := adminRows(t, s, tn.ID)
		if len(after) != len(before)+1 {
			t.Fatalf("%s: %d new rows, want 1", st.name, len(after)-len(before))
		}
		got := after[len(after)-1]
		if !strings.HasPrefix(got.ID, "aud_") || len(got.ID) != 30 || !got.Time.Equal(clock.Now()) {
			t.Errorf("%s: id %q time %v, want a valid id at %v", st.name, got.ID, got.Time, clock.Now())
		}
		want := st.want()
		want.ID, want.Time, want.Kind = got.ID, got.Time, audit.KindAdmin
		want.ActorKind, want.ActorID = actor.Kind, actor.ID
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", st.name, got, want)
		}
	}

	// An admin key issued by an actor (egressd init) is on record.
	n := len(adminRows(t, s, tn.ID))
	_, k, err := a.CreateAPIKey(tn.ID, KeyAdmin, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	issued := 0
	for _, r := range adminRows(t, s, tn.ID) {
		if r.Action == ActionAPIKeyIssued && r.Details["key_id"] == k.ID && r.ActorID == actor.ID {
			issued++
		}
	}
	if got := len(adminRows(t, s, tn.ID)); got != n+1 || issued != 1 {
		t.Errorf("admin key issued: %d new rows, %d for the key", got-n, issued)
	}

	// Writes that record nothing: a Store not made by As, a placeholder
	// issued on an env read.
	n = len(adminRows(t, s, tn.ID))
	if _, err := s.UpsertSecret(tn.ID, SecretInput{Name: "quiet", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	sbx2, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	if _, err := a.EnsurePlaceholders(tn.ID, sbx2.ID, map[string]string{"openai": ""}); err != nil {
		t.Fatal(err)
	}
	if got := len(adminRows(t, s, tn.ID)); got != n {
		t.Errorf("unaudited writes appended %d rows", got-n)
	}
}

// TestAdminAuditRefused checks that a refused write appends no row and
// changes nothing, whether refused before its transaction or inside it,
// and that a write whose row cannot be written is refused with it.
func TestAdminAuditRefused(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	a := s.As(Actor{Kind: ActorCLI, ID: "ops"})
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{ExternalUserID: "eu1"})
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	if _, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	bogus := s.As(Actor{Kind: "robot", ID: "r1"})
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"upsert without value", func() error {
			_, err := a.UpsertSecret(tn.ID, SecretInput{Name: "x", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
			return err
		}, ErrInvalid},
		{"upsert forbidden by setting", func() error {
			_, err := a.UpsertSecret(tn.ID, SecretInput{Name: "x", Value: "v", Scope: ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}})
			return err
		}, ErrForbidden},
		{"upsert onto unknown sandbox", func() error {
			_, err := a.UpsertSecret(tn.ID, SecretInput{Name: "x", Value: "v", Scope: ScopeResource, ResourceID: "sbx_nope", AllowedHosts: []string{"api.example.com"}})
			return err
		}, ErrNotFound},
		{"rotate unknown", func() error { _, err := a.RotateSecret(tn.ID, "sec_nope", RotateInput{Value: "v"}); return err }, ErrNotFound},
		{"disable unknown", func() error { _, err := a.SetDisabled(tn.ID, "sec_nope", true); return err }, ErrNotFound},
		{"delete unknown secret", func() error { return a.DeleteSecret(tn.ID, "sec_nope") }, ErrNotFound},
		{"bind unknown secret", func() error {
			_, err := a.CreateBinding(tn.ID, BindingInput{SecretID: "sec_nope", ResourceID: sbx.ID})
			return err
		}, ErrNotFound},
		{"bind as wrong type", func() error {
			_, err := a.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: sbx.ID, ResourceType: ResourceComputer})
			return err
		}, ErrInvalid},
		{"delete unknown binding", func() error { return a.DeleteBinding(tn.ID, "bnd_nope") }, ErrNotFound},
		{"sandbox of unknown tenant", func() error { _, _, err := a.CreateSandbox("ten_nope", SandboxInput{}); return err }, ErrNotFound},
		{"delete unknown sandbox", func() error { return a.DeleteSandbox(tn.ID, "sbx_nope") }, ErrNotFound},
		{"settings of unknown tenant", func() error {
			_, err := a.UpdateSettings("ten_nope", SettingsPatch{AllowEndUserCredentials: ptr(true)})
			return err
		}, ErrNotFound},
		{"bad settings", func() error {
			_, err := a.UpdateSettings(tn.ID, SettingsPatch{CABundlePath: ptr("relative")})
			return err
		}, ErrInvalid},
		{"browser token without user", func() error { _, _, err := a.CreateAPIKey(tn.ID, KeyBrowser, "", 0); return err }, ErrInvalid},
		{"browser token of unknown tenant", func() error { _, _, err := a.CreateAPIKey("ten_nope", KeyBrowser, "eu1", 0); return err }, ErrNotFound},
		// The row fails inside the write's transaction: the write goes too.
		{"row refused: upsert", func() error {
			_, err := bogus.UpsertSecret(tn.ID, SecretInput{Name: "new", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
			return err
		}, ErrInvalid},
		{"row refused: delete", func() error { return bogus.DeleteSecret(tn.ID, sec.ID) }, ErrInvalid},
		{"row refused: sandbox", func() error { return bogus.DeleteSandbox(tn.ID, sbx.ID) }, ErrInvalid},
		{"row refused: settings", func() error {
			_, err := bogus.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: ptr(true)})
			return err
		}, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := dump(t, s)
			if err := c.do(); !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if after := dump(t, s); !slices.Equal(before, after) {
				t.Errorf("a refused write changed the file")
			}
			if rows := adminRows(t, s, tn.ID); len(rows) != 0 {
				t.Errorf("a refused write left %d rows: %+v", len(rows), rows)
			}
		})
	}
}

func TestActorOf(t *testing.T) {
	for _, c := range []struct {
		k    APIKey
		want Actor
	}{
		{APIKey{ID: "key_1", Kind: KeyAdmin}, Actor{ActorAPIKey, "key_1"}},
		{APIKey{ID: "key_2", Kind: KeyBrowser}, Actor{ActorBrowserToken, "key_2"}},
		{APIKey{ID: "key_3", Kind: KeyOperator}, Actor{ActorOperator, "key_3"}},
	} {
		if got := ActorOf(c.k); got != c.want {
			t.Errorf("ActorOf(%v) = %v, want %v", c.k.Kind, got, c.want)
		}
	}
}

package resolver

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/internal/vaulttest"
	"github.com/egressd/egressd/vault"
)

// Regression: a secret stored with no allowed_hosts by an older version
// (which read none as any host) resolved and went to every host. The
// walk now counts it as absent, a lower level's secret wins, and explain
// says no_allowed_hosts. The old row is written into the file the way
// such a version left it, past the vault's validation.
func TestOldSecretWithoutHostsDoesNotResolve(t *testing.T) {
	path, key := filepath.Join(t.TempDir(), "v.db"), vault.NewMasterKey()
	s, err := vault.Open(vault.Config{Path: path, MasterKey: key, NoSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tn, _, err := s.EnsureTenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	sbx, _, err := s.CreateSandbox(tn.ID, attribution)
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"api.example.com"}
	var old []string
	for _, in := range []vault.SecretInput{
		{Name: "only", Value: "old-only", Scope: vault.ScopeTenant, AllowedHosts: hosts},
		{Name: "k", Value: "old-user", Scope: vault.ScopeUser, OwnerUserID: "u1", AllowedHosts: hosts},
		{Name: "k", Value: "tenant-value", Scope: vault.ScopeTenant, AllowedHosts: hosts},
		{Name: "bound", Value: "old-bound", Scope: vault.ScopeResource, ResourceID: sbx.ID, AllowedHosts: hosts},
	} {
		res, err := s.UpsertSecret(tn.ID, in)
		if err != nil {
			t.Fatal(err)
		}
		if in.Value != "tenant-value" {
			old = append(old, res.Secret.ID)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	vaulttest.StripAllowedHosts(t, path, old...)
	s, err = vault.Open(vault.Config{Path: path, MasterKey: key, NoSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if n, err := s.SecretsWithoutHosts(); err != nil || n != len(old) {
		t.Fatalf("SecretsWithoutHosts = %d, %v; want %d", n, err, len(old))
	}
	r, err := New(Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	for _, name := range []string{"only", "bound"} {
		if res, err := r.Resolve(ctx, sbx.ID, name); !errors.Is(err, ErrNoSecret) {
			t.Errorf("%s resolved (%v, %v), want ErrNoSecret", name, res, err)
		}
		ex, err := r.Explain(ctx, tn.ID, sbx.ID, name, "api.example.com")
		if err != nil || ex.Resolved {
			t.Fatalf("explain %s: %+v %v", name, ex, err)
		}
		st := stepWith(ex, vault.ScopeTenant, vault.ScopeResource)
		if st == nil || st.Status != StatusNoAllowedHosts || !strings.Contains(st.Detail, "no allowed_hosts") {
			t.Errorf("explain %s: steps %+v, want one no_allowed_hosts", name, ex.Steps)
		}
	}
	// The user level's old secret is skipped: the tenant's resolves.
	res, err := r.Resolve(ctx, sbx.ID, "k")
	if err != nil || res.Level != LevelTenant {
		t.Fatalf("k: %+v %v, want the tenant's secret", res, err)
	}
	ex, _ := r.Explain(ctx, tn.ID, sbx.ID, "k", "")
	if got := ex.Steps[LevelUser-1].Status; got != StatusNoAllowedHosts || ex.Level != LevelTenant {
		t.Errorf("k: user step %s, level %s; want no_allowed_hosts, tenant", got, ex.Level)
	}
	// Nor does the proxy terminate TLS for it on any host.
	for _, host := range []string{"api.example.com", "evil.example"} {
		if u, err := r.MayUse(ctx, sbx.ID, host); err != nil || u.Body || (u.Any && host != "api.example.com") {
			t.Errorf("MayUse(%s) = %+v, %v", host, u, err)
		}
	}
}

// stepWith is the step of ex that found a secret of one of scopes.
func stepWith(ex Explanation, scopes ...vault.Scope) *Step {
	for i, st := range ex.Steps {
		for _, sc := range scopes {
			if st.SecretID != "" && st.Scope == sc {
				return &ex.Steps[i]
			}
		}
	}
	return nil
}

// Regression: ["*"] resolves only while the tenant's
// allow_any_host_secrets is on; off, explain names that setting.
func TestAnyHostSecretFollowsSetting(t *testing.T) {
	f := newFixture(t)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	on, off := true, false
	if _, err := f.store.UpdateSettings(tid, vault.SettingsPatch{AllowAnyHostSecrets: &on}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.UpsertSecret(tid, vault.SecretInput{Name: "any", Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{vault.AnyHost}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.r.Resolve(ctx, sbx.ID, "any"); err != nil {
		t.Fatalf("with the setting on: %v", err)
	}
	if u, err := f.r.MayUse(ctx, sbx.ID, "10.9.8.7"); err != nil || !u.Any {
		t.Fatalf("MayUse of an address with the setting on: %+v %v", u, err)
	}
	ex, _ := f.r.Explain(ctx, tid, sbx.ID, "any", "anything.example")
	if !ex.Resolved || ex.HostAllowed == nil || !*ex.HostAllowed {
		t.Fatalf("explain with the setting on: %+v", ex)
	}
	if _, err := f.store.UpdateSettings(tid, vault.SettingsPatch{AllowAnyHostSecrets: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Resolve(ctx, sbx.ID, "any"); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("with the setting off: %v, want ErrNoSecret", err)
	}
	if u, _ := f.r.MayUse(ctx, sbx.ID, "anything.example"); u.Any {
		t.Fatalf("MayUse with the setting off: %+v", u)
	}
	ex, _ = f.r.Explain(ctx, tid, sbx.ID, "any", "")
	st := stepWith(ex, vault.ScopeTenant)
	if ex.Resolved || st == nil || st.Status != StatusBlockedBySetting || !strings.Contains(st.Detail, "allow_any_host_secrets") {
		t.Fatalf("explain with the setting off: %+v", ex)
	}
}

package resolver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/egressd/egressd/vault"
)

type fixture struct {
	t     testing.TB
	store *vault.Store
	r     *Resolver
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	s, err := vault.Open(vault.Config{Path: filepath.Join(t.TempDir(), "v.db"), MasterKey: vault.NewMasterKey(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r, err := New(Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, store: s, r: r}
}

func (f *fixture) tenant(name string) string {
	f.t.Helper()
	tn, _, err := f.store.EnsureTenant(name)
	if err != nil {
		f.t.Fatal(err)
	}
	return tn.ID
}

// fullSandbox has every attribution field set.
func (f *fixture) sandbox(tid string, in vault.SandboxInput) vault.Sandbox {
	f.t.Helper()
	sbx, _, err := f.store.CreateSandbox(tid, in)
	if err != nil {
		f.t.Fatal(err)
	}
	return sbx
}

var attribution = vault.SandboxInput{OwnerUserID: "u1", WorkspaceID: "w1", ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", ExternalProjectID: "p1"}

// put stores a secret that the walk finds at level l for sbx.
func (f *fixture) put(tid string, sbx vault.Sandbox, l Level, name, value string) vault.Secret {
	f.t.Helper()
	in := vault.SecretInput{Name: name, Value: value, AllowedHosts: []string{"api.example.com"}}
	switch l {
	case LevelBinding:
		in.Scope, in.ResourceID, in.ResourceType = vault.ScopeResource, sbx.ID, sbx.ResourceType
	case LevelUser:
		in.Scope, in.OwnerUserID = vault.ScopeUser, sbx.OwnerUserID
	case LevelExternalUser:
		in.Scope, in.ExternalUserID = vault.ScopeExternalUser, sbx.ExternalUserID
	case LevelExternalWorkspace:
		in.Scope, in.ExternalWorkspaceID = vault.ScopeExternalWorkspace, sbx.ExternalWorkspaceID
	case LevelWorkspace:
		in.Scope, in.WorkspaceID = vault.ScopeWorkspace, sbx.WorkspaceID
	case LevelTenant:
		in.Scope = vault.ScopeTenant
	}
	res, err := f.store.UpsertSecret(tid, in)
	if err != nil {
		f.t.Fatalf("put %s at %s: %v", name, l, err)
	}
	return res.Secret
}

func (f *fixture) resolve(sbx string, name string) (string, Level, error) {
	f.t.Helper()
	res, err := f.r.Resolve(context.Background(), sbx, name)
	if err != nil {
		return "", LevelNone, err
	}
	return string(res.Value.Reveal()), res.Level, nil
}

func valueAt(l Level) string { return "value-at-" + l.String() }

// Every level wins over every lower one, whether the cache is warm or not.
func TestWalkEveryLevelBeatsEveryLower(t *testing.T) {
	for _, hi := range Levels {
		for _, lo := range Levels {
			if lo <= hi {
				continue
			}
			t.Run(fmt.Sprintf("%s_over_%s", hi, lo), func(t *testing.T) {
				f := newFixture(t)
				tid := f.tenant("acme")
				sbx := f.sandbox(tid, attribution)
				f.put(tid, sbx, lo, "openai", valueAt(lo))
				if v, l, err := f.resolve(sbx.ID, "openai"); err != nil || l != lo || v != valueAt(lo) {
					t.Fatalf("lower alone: got %q at %s, %v", v, l, err)
				}
				f.put(tid, sbx, hi, "openai", valueAt(hi))
				if v, l, err := f.resolve(sbx.ID, "openai"); err != nil || l != hi || v != valueAt(hi) {
					t.Fatalf("got %q at %s, %v; want %q at %s", v, l, err, valueAt(hi), hi)
				}
			})
		}
	}
}

// An empty attribution field matches nothing at its level, even when a
// secret exists whose owner id is empty-looking at that scope.
func TestWalkEmptyAttribution(t *testing.T) {
	cases := []struct {
		level Level
		clear func(*vault.SandboxInput)
	}{
		{LevelUser, func(in *vault.SandboxInput) { in.OwnerUserID = "" }},
		{LevelExternalUser, func(in *vault.SandboxInput) { in.ExternalUserID = "" }},
		{LevelExternalWorkspace, func(in *vault.SandboxInput) { in.ExternalWorkspaceID = "" }},
		{LevelWorkspace, func(in *vault.SandboxInput) { in.WorkspaceID = "" }},
	}
	for _, c := range cases {
		t.Run(c.level.String(), func(t *testing.T) {
			f := newFixture(t)
			tid := f.tenant("acme")
			full := f.sandbox(tid, attribution)
			in := attribution
			c.clear(&in)
			empty := f.sandbox(tid, in)
			f.put(tid, full, c.level, "k", valueAt(c.level))
			f.put(tid, full, LevelTenant, "k", valueAt(LevelTenant))
			if v, l, _ := f.resolve(full.ID, "k"); l != c.level || v != valueAt(c.level) {
				t.Fatalf("full attribution: got %q at %s", v, l)
			}
			if v, l, _ := f.resolve(empty.ID, "k"); l != LevelTenant || v != valueAt(LevelTenant) {
				t.Fatalf("empty %s: got %q at %s, want the tenant secret", c.level, v, l)
			}
			ex, err := f.r.Explain(context.Background(), tid, empty.ID, "k", "")
			if err != nil {
				t.Fatal(err)
			}
			if st := ex.Steps[c.level-1]; st.Status != StatusEmptyAttribution {
				t.Fatalf("explain step %s: %s", c.level, st.Status)
			}
		})
	}
}

// A disabled secret at any level counts as absent: the walk falls through
// to the next level, and comes back when it is enabled again.
func TestWalkDisabledFallsThrough(t *testing.T) {
	for _, l := range Levels[:len(Levels)-1] {
		t.Run(l.String(), func(t *testing.T) {
			f := newFixture(t)
			tid := f.tenant("acme")
			sbx := f.sandbox(tid, attribution)
			sec := f.put(tid, sbx, l, "k", valueAt(l))
			f.put(tid, sbx, LevelTenant, "k", valueAt(LevelTenant))
			if _, got, _ := f.resolve(sbx.ID, "k"); got != l {
				t.Fatalf("before disable: level %s", got)
			}
			if _, err := f.store.SetDisabled(tid, sec.ID, true); err != nil {
				t.Fatal(err)
			}
			if v, got, _ := f.resolve(sbx.ID, "k"); got != LevelTenant || v != valueAt(LevelTenant) {
				t.Fatalf("disabled %s: got %q at %s", l, v, got)
			}
			ex, _ := f.r.Explain(context.Background(), tid, sbx.ID, "k", "")
			if ex.Steps[l-1].Status != StatusDisabled || ex.Level != LevelTenant {
				t.Fatalf("explain: %+v", ex)
			}
			if _, err := f.store.SetDisabled(tid, sec.ID, false); err != nil {
				t.Fatal(err)
			}
			if _, got, _ := f.resolve(sbx.ID, "k"); got != l {
				t.Fatalf("after enable: level %s", got)
			}
		})
	}
	t.Run("tenant_alone", func(t *testing.T) {
		f := newFixture(t)
		tid := f.tenant("acme")
		sbx := f.sandbox(tid, attribution)
		sec := f.put(tid, sbx, LevelTenant, "k", "v")
		f.store.SetDisabled(tid, sec.ID, true)
		if _, _, err := f.resolve(sbx.ID, "k"); !errors.Is(err, ErrNoSecret) {
			t.Fatalf("got %v, want ErrNoSecret", err)
		}
	})
}

// With allow_end_user_credentials off only tenant and external_workspace
// secrets resolve, at whatever level they are found.
func TestWalkTenantToggle(t *testing.T) {
	f := newFixture(t)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	for _, l := range Levels {
		f.put(tid, sbx, l, "k", valueAt(l))
	}
	// A tenant-scoped secret bound to the sandbox: found at level 1, and
	// still allowed with the toggle off.
	other := f.put(tid, sbx, LevelTenant, "bound", "tenant-bound")
	if _, err := f.store.CreateBinding(tid, vault.BindingInput{SecretID: other.ID, ResourceID: sbx.ID, ResourceType: vault.ResourceSandbox}); err != nil {
		t.Fatal(err)
	}
	setToggle := func(on bool) {
		if _, err := f.store.UpdateSettings(tid, vault.SettingsPatch{AllowEndUserCredentials: &on}); err != nil {
			t.Fatal(err)
		}
	}
	if _, l, _ := f.resolve(sbx.ID, "k"); l != LevelBinding {
		t.Fatalf("toggle on: level %s", l)
	}
	setToggle(false)
	if v, l, _ := f.resolve(sbx.ID, "k"); l != LevelExternalWorkspace || v != valueAt(LevelExternalWorkspace) {
		t.Fatalf("toggle off: got %q at %s, want external_workspace", v, l)
	}
	if v, l, _ := f.resolve(sbx.ID, "bound"); l != LevelBinding || v != "tenant-bound" {
		t.Fatalf("toggle off, tenant secret bound: got %q at %s", v, l)
	}
	ex, _ := f.r.Explain(context.Background(), tid, sbx.ID, "k", "")
	for _, st := range ex.Steps {
		want := StatusBlockedBySetting
		switch st.Level {
		case LevelExternalWorkspace:
			want = StatusMatched
		case LevelTenant:
			want = StatusShadowed
		}
		if st.Status != want {
			t.Errorf("explain %s: %s, want %s", st.Level, st.Status, want)
		}
	}
	if _, err := f.store.UpsertSecret(tid, vault.SecretInput{Name: "x", Value: "v", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}}); !errors.Is(err, vault.ErrForbidden) {
		t.Fatalf("external_user secret with toggle off: %v", err)
	}
	setToggle(true)
	if _, l, _ := f.resolve(sbx.ID, "k"); l != LevelBinding {
		t.Fatalf("toggle back on: level %s", l)
	}
}

// The same external ids in two tenants are two identities.
func TestWalkTenantsAreSeparate(t *testing.T) {
	f := newFixture(t)
	a, b := f.tenant("a"), f.tenant("b")
	sa, sb := f.sandbox(a, attribution), f.sandbox(b, attribution)
	for _, l := range Levels[1:] {
		f.put(a, sa, l, "only-a-"+l.String(), "a")
	}
	for _, l := range Levels[1:] {
		if _, _, err := f.resolve(sb.ID, "only-a-"+l.String()); !errors.Is(err, ErrNoSecret) {
			t.Errorf("tenant b resolved tenant a's %s secret: %v", l, err)
		}
		if v, _, err := f.resolve(sa.ID, "only-a-"+l.String()); err != nil || v != "a" {
			t.Errorf("tenant a: %q %v", v, err)
		}
	}
	f.put(b, sb, LevelExternalUser, "shared", "b-value")
	f.put(a, sa, LevelExternalUser, "shared", "a-value")
	if v, _, _ := f.resolve(sb.ID, "shared"); v != "b-value" {
		t.Fatalf("tenant b got %q", v)
	}
	if v, _, _ := f.resolve(sa.ID, "shared"); v != "a-value" {
		t.Fatalf("tenant a got %q", v)
	}
}

// A rotated, disabled or deleted secret resolves to its new state on the
// very next Resolve after the write returned, with the cache warm before it.
func TestWriteInvalidatesBeforeReturn(t *testing.T) {
	f := newFixture(t)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	sec := f.put(tid, sbx, LevelWorkspace, "k", "v1")
	for range 3 {
		f.resolve(sbx.ID, "k") // warm
	}
	if _, err := f.store.RotateSecret(tid, sec.ID, vault.RotateInput{Value: "v2"}); err != nil {
		t.Fatal(err)
	}
	res, err := f.r.Resolve(context.Background(), sbx.ID, "k")
	if err != nil || string(res.Value.Reveal()) != "v2" || res.Secret.Version != 2 {
		t.Fatalf("after rotate: %v %v", res, err)
	}
	f.store.SetDisabled(tid, sec.ID, true)
	if _, _, err := f.resolve(sbx.ID, "k"); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("after disable: %v", err)
	}
	f.store.SetDisabled(tid, sec.ID, false)
	if v, _, _ := f.resolve(sbx.ID, "k"); v != "v2" {
		t.Fatalf("after enable: %q", v)
	}
	// A negative entry is dropped too: a secret created after a miss resolves.
	if _, _, err := f.resolve(sbx.ID, "later"); !errors.Is(err, ErrNoSecret) {
		t.Fatal(err)
	}
	f.put(tid, sbx, LevelTenant, "later", "now")
	if v, _, _ := f.resolve(sbx.ID, "later"); v != "now" {
		t.Fatalf("after create: %q", v)
	}
	if err := f.store.DeleteSecret(tid, sec.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.resolve(sbx.ID, "k"); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("after delete: %v", err)
	}
	if err := f.store.DeleteSandbox(tid, sbx.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.resolve(sbx.ID, "later"); !errors.Is(err, ErrUnknownSandbox) {
		t.Fatalf("after sandbox delete: %v", err)
	}
}

// Concurrent resolves racing with rotations never see a version older than
// the last rotation that returned before the resolve started.
func TestConcurrentRotateNeverStale(t *testing.T) {
	f := newFixture(t)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	sec := f.put(tid, sbx, LevelTenant, "k", "v")
	var mu sync.Mutex
	acked := 1
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				min := acked
				mu.Unlock()
				res, err := f.r.Resolve(context.Background(), sbx.ID, "k")
				if err != nil {
					t.Error(err)
					return
				}
				if res.Secret.Version < min {
					t.Errorf("resolved version %d after version %d was acknowledged", res.Secret.Version, min)
					return
				}
			}
		}()
	}
	for i := range 50 {
		s, err := f.store.RotateSecret(tid, sec.ID, vault.RotateInput{Value: fmt.Sprint("v", i)})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		acked = s.Version
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
}

func TestEnvAndPlaceholders(t *testing.T) {
	f := newFixture(t)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	other := f.sandbox(tid, attribution)
	if _, err := f.store.UpsertSecret(tid, vault.SecretInput{Name: "openai", Value: "sk-real", Scope: vault.ScopeTenant, ExposeAsEnv: "OPENAI_API_KEY", PlaceholderPrefix: "sk-proj-", AllowedHosts: []string{"api.example.com"}}); err != nil {
		t.Fatal(err)
	}
	f.put(tid, sbx, LevelExternalUser, "github.token", "ghp_real")
	env, err := f.r.Env(context.Background(), tid, sbx.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != 2 || env[0].Env != "GITHUB_TOKEN" || env[1].Env != "OPENAI_API_KEY" {
		t.Fatalf("env: %+v", env)
	}
	ph := env[1].Placeholder
	if len(ph) != len("sk-proj-")+vault.PlaceholderCoreLen || ph[:8] != "sk-proj-" || vault.PlaceholderCore(ph) == "" {
		t.Fatalf("placeholder %q", ph)
	}
	// Stable across calls and rotation; different per sandbox.
	sec, _ := f.store.ListSecrets(tid, vault.SecretFilter{Name: "openai"})
	f.store.RotateSecret(tid, sec[0].ID, vault.RotateInput{Value: "sk-new"})
	env2, _ := f.r.Env(context.Background(), tid, sbx.ID)
	if env2[1].Placeholder != ph {
		t.Fatalf("placeholder changed after rotation: %q → %q", ph, env2[1].Placeholder)
	}
	envOther, _ := f.r.Env(context.Background(), tid, other.ID)
	if envOther[1].Placeholder == ph {
		t.Fatal("two sandboxes share a placeholder")
	}
	p, err := f.store.LookupPlaceholder(ph)
	if err != nil || p.SandboxID != sbx.ID || p.Name != "openai" {
		t.Fatalf("lookup: %+v %v", p, err)
	}
}

func BenchmarkResolveWarm(b *testing.B) {
	f := newFixture(b)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	f.put(tid, sbx, LevelWorkspace, "openai", "sk-value")
	ctx := context.Background()
	if _, err := f.r.Resolve(ctx, sbx.ID, "openai"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.r.Resolve(ctx, sbx.ID, "openai"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResolveWarmParallel(b *testing.B) {
	f := newFixture(b)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	f.put(tid, sbx, LevelWorkspace, "openai", "sk-value")
	ctx := context.Background()
	f.r.Resolve(ctx, sbx.ID, "openai")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.r.Resolve(ctx, sbx.ID, "openai")
		}
	})
}

// Cold: every call walks the vault (bbolt read, unwrap, decrypt).
func BenchmarkResolveCold(b *testing.B) {
	f := newFixture(b)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	f.put(tid, sbx, LevelTenant, "openai", "sk-value")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.r.Invalidate(tid)
		if _, err := f.r.Resolve(ctx, sbx.ID, "openai"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMayUse(t *testing.T) {
	f := newFixture(t)
	tid := f.tenant("acme")
	sbx := f.sandbox(tid, attribution)
	ctx := context.Background()
	if u, err := f.r.MayUse(ctx, sbx.ID, "api.openai.com"); err != nil || u.Any {
		t.Fatalf("no secrets: %+v %v", u, err)
	}
	if _, err := f.store.UpsertSecret(tid, vault.SecretInput{Name: "openai", Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.openai.com"}}); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.r.MayUse(ctx, sbx.ID, "api.openai.com"); !u.Any || u.Body {
		t.Fatalf("openai host: %+v", u)
	}
	if u, _ := f.r.MayUse(ctx, sbx.ID, "example.com"); u.Any {
		t.Fatalf("other host: %+v", u)
	}
	if _, err := f.store.UpsertSecret(tid, vault.SecretInput{Name: "gh", Value: "v", Scope: vault.ScopeWorkspace, WorkspaceID: "w1", AllowedHosts: []string{"*.github.com"}, SubstituteIn: []vault.Location{vault.InBody}}); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.r.MayUse(ctx, sbx.ID, "api.github.com"); !u.Any || !u.Body {
		t.Fatalf("github: %+v", u)
	}
	f.store.DeleteSandbox(tid, sbx.ID)
	if _, err := f.r.MayUse(ctx, sbx.ID, "api.github.com"); !errors.Is(err, ErrUnknownSandbox) {
		t.Fatalf("deleted sandbox: %v", err)
	}
}

func TestSettingsCachedUntilWrite(t *testing.T) {
	f := newFixture(t)
	tid := f.tenant("acme")
	ctx := context.Background()
	s, err := f.r.Settings(ctx, tid)
	if err != nil || !s.AllowEndUserCredentials || !s.EgressAllowed("anything.test") {
		t.Fatalf("%+v %v", s, err)
	}
	deny := []string{"*.evil.test"}
	if _, err := f.store.UpdateSettings(tid, vault.SettingsPatch{EgressDenyHosts: &deny}); err != nil {
		t.Fatal(err)
	}
	s, _ = f.r.Settings(ctx, tid)
	if s.EgressAllowed("a.evil.test") || !s.EgressAllowed("good.test") {
		t.Fatalf("deny list not applied: %+v", s)
	}
	allow := []string{"api.good.test"}
	f.store.UpdateSettings(tid, vault.SettingsPatch{EgressAllowHosts: &allow})
	s, _ = f.r.Settings(ctx, tid)
	if s.EgressAllowed("other.test") || !s.EgressAllowed("api.good.test") {
		t.Fatalf("allow list not applied: %+v", s)
	}
	bad := []string{"not a host"}
	if _, err := f.store.UpdateSettings(tid, vault.SettingsPatch{EgressAllowHosts: &bad}); !errors.Is(err, vault.ErrInvalid) {
		t.Fatalf("bad host accepted: %v", err)
	}
}

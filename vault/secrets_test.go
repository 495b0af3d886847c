package vault

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUpsertUpdatesInPlace(t *testing.T) {
	clock := newTestClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	tn := mustTenant(t, s, "acme")
	in := SecretInput{Name: "gh", Value: "v1", Scope: ScopeUser, OwnerUserID: "u1", Metadata: map[string]string{"a": "1"}, AllowedHosts: []string{"api.github.com"}}
	first := mustUpsert(t, s, tn.ID, in)
	if !first.Created || first.Secret.Version != 1 || first.Secret.ID == "" || !strings.HasPrefix(first.Secret.ID, "sec_") {
		t.Fatalf("first upsert: %+v", first)
	}
	if _, err := s.SetDisabled(tn.ID, first.Secret.ID, true); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	in.Value, in.Metadata, in.AllowedHosts, in.Type = "v2", map[string]string{"b": "2"}, []string{"uploads.github.com"}, "api_key"
	second := mustUpsert(t, s, tn.ID, in)
	sec := second.Secret
	switch {
	case second.Created:
		t.Error("second upsert says it created")
	case sec.ID != first.Secret.ID:
		t.Errorf("id changed: %s → %s", first.Secret.ID, sec.ID)
	case sec.Version != 2:
		t.Errorf("version %d, want 2", sec.Version)
	case !sec.Disabled:
		t.Error("upsert re-enabled a disabled secret")
	case !sec.CreatedAt.Equal(first.Secret.CreatedAt) || !sec.UpdatedAt.Equal(clock.Now()):
		t.Errorf("timestamps %v %v", sec.CreatedAt, sec.UpdatedAt)
	case !reflect.DeepEqual(sec.Metadata, map[string]string{"b": "2"}) || !reflect.DeepEqual(sec.AllowedHosts, []string{"uploads.github.com"}) || sec.Type != "api_key":
		t.Errorf("fields not replaced: %+v", sec)
	}
	if v, _, ver, err := openValue(s, tn.ID, sec.ID); err != nil || v != "v2" || ver != 2 {
		t.Fatalf("value %q version %d %v", v, ver, err)
	}
	if got, _ := s.ListSecrets(tn.ID, SecretFilter{}); len(got) != 1 {
		t.Fatalf("%d secrets, want 1", len(got))
	}
	// The third upsert drops the refresh token the second did not send.
	in.RefreshToken = "r"
	mustUpsert(t, s, tn.ID, in)
	in.RefreshToken = ""
	third := mustUpsert(t, s, tn.ID, in).Secret
	if third.Version != 4 || third.HasRefreshToken {
		t.Fatalf("after upsert without refresh token: %+v", third)
	}
}

func TestUpsertKey(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	other := mustTenant(t, s, "other")
	base := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeUser, OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}}).Secret
	for name, c := range map[string]struct {
		tenant string
		in     SecretInput
	}{
		"other owner":       {tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeUser, OwnerUserID: "u2", AllowedHosts: []string{"api.example.com"}}},
		"other scope":       {tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeExternalUser, ExternalUserID: "u1", AllowedHosts: []string{"api.example.com"}}},
		"other workspace":   {tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeWorkspace, WorkspaceID: "u1", AllowedHosts: []string{"api.example.com"}}},
		"other name":        {tn.ID, SecretInput{Name: "K", Value: "v", Scope: ScopeUser, OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}}},
		"other tenant":      {other.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeUser, OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}}},
		"tenant scope":      {tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}},
		"ext workspace":     {tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeExternalWorkspace, ExternalWorkspaceID: "u1", AllowedHosts: []string{"api.example.com"}}},
		"owner with suffix": {tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeUser, OwnerUserID: "u1 ", AllowedHosts: []string{"api.example.com"}}},
	} {
		res := mustUpsert(t, s, c.tenant, c.in)
		if !res.Created || res.Secret.ID == base.ID {
			t.Errorf("%s: updated the existing secret instead of creating one", name)
		}
	}
	// For scope tenant, the owner fields are not part of the key.
	a := mustUpsert(t, s, tn.ID, SecretInput{Name: "t", Value: "v", Scope: ScopeTenant, OwnerUserID: "x", AllowedHosts: []string{"api.example.com"}}).Secret
	b := mustUpsert(t, s, tn.ID, SecretInput{Name: "t", Value: "v", Scope: ScopeTenant, OwnerUserID: "y", AllowedHosts: []string{"api.example.com"}})
	if b.Created || b.Secret.ID != a.ID {
		t.Errorf("tenant scope: owner_user_id split the secret")
	}
	if got, _ := s.Secret(tn.ID, base.ID); got.Version != 1 {
		t.Errorf("base secret touched: version %d", got.Version)
	}
}

func TestUpsertDefaults(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"API.example.com", "api.example.com."}, SubstituteIn: []Location{InBody, InBody}}).Secret
	if sec.Type != "generic" {
		t.Errorf("type %q", sec.Type)
	}
	if !reflect.DeepEqual(sec.AllowedHosts, []string{"api.example.com"}) {
		t.Errorf("allowed hosts %q", sec.AllowedHosts)
	}
	if !reflect.DeepEqual(sec.SubstituteIn, []Location{InBody}) {
		t.Errorf("substitute_in %q", sec.SubstituteIn)
	}
	def := mustUpsert(t, s, tn.ID, SecretInput{Name: "d", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	if !reflect.DeepEqual(def.SubstituteIn, DefaultSubstituteIn) || def.AllowedHosts == nil {
		t.Errorf("defaults: %+v", def)
	}
	// Regression: the default was header, query and path; an API that
	// stores a URL handed a value put in its path or query back later.
	if !reflect.DeepEqual(def.SubstituteIn, []Location{InHeader}) {
		t.Errorf("default substitute_in %q, want only header", def.SubstituteIn)
	}
}

// refusal is a write that must be refused and must change nothing.
type refusal struct {
	name  string
	field string // the ValidationError's field, if any
	want  error
	do    func() error
}

// checkRefusals runs each refusal and checks its error and that neither the
// listings nor any byte of the file's content changed.
func checkRefusals(t *testing.T, s *Store, tenantID string, cases []refusal) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, beforeList := dump(t, s), list(t, s, tenantID)
			err := c.do()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var ve *ValidationError
			if c.field != "" && (!errors.As(err, &ve) || ve.Field != c.field) {
				t.Errorf("error %q does not name field %q", err, c.field)
			}
			if err.Error() == "" || strings.Contains(err.Error(), "SECRETVALUE") {
				t.Errorf("error message %q", err)
			}
			if after := list(t, s, tenantID); !reflect.DeepEqual(beforeList, after) {
				t.Errorf("listings changed:\n%+v\n%+v", beforeList, after)
			}
			if after := dump(t, s); !reflect.DeepEqual(before, after) {
				t.Errorf("the store's content changed")
			}
		})
	}
}

func TestUpsertValidation(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	cmp, _ := mustSandbox(t, s, tn.ID, SandboxInput{ResourceType: ResourceComputer})
	existing := mustUpsert(t, s, tn.ID, SecretInput{Name: "keep", Value: "SECRETVALUE", Scope: ScopeTenant, ResourceID: sbx.ID, ExposeAsEnv: "KEEP", AllowedHosts: []string{"api.example.com"}})
	_ = existing
	ok := func() SecretInput {
		return SecretInput{Name: "keep", Value: "SECRETVALUE-2", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}
	}
	with := func(f func(*SecretInput)) func() error {
		return func() error {
			in := ok()
			f(&in)
			_, err := s.UpsertSecret(tn.ID, in)
			return err
		}
	}
	manyHosts := make([]string, MaxAllowedHosts+1)
	for i := range manyHosts {
		manyHosts[i] = fmt.Sprintf("h%d.example.com", i)
	}
	manyMeta := map[string]string{}
	for i := range MaxMetadata + 1 {
		manyMeta[fmt.Sprint(i)] = "v"
	}
	cases := []refusal{
		{"empty name", "name", ErrInvalid, with(func(in *SecretInput) { in.Name = "" })},
		{"name with space", "name", ErrInvalid, with(func(in *SecretInput) { in.Name = "a b" })},
		{"name with slash", "name", ErrInvalid, with(func(in *SecretInput) { in.Name = "a/b" })},
		{"name with NUL", "name", ErrInvalid, with(func(in *SecretInput) { in.Name = "keep\x00x" })},
		{"name not ASCII", "name", ErrInvalid, with(func(in *SecretInput) { in.Name = "clé" })},
		{"name too long", "name", ErrInvalid, with(func(in *SecretInput) { in.Name = strings.Repeat("n", MaxNameLen+1) })},
		{"no value", "value", ErrInvalid, with(func(in *SecretInput) { in.Value = "" })},
		{"value too large", "value", ErrInvalid, with(func(in *SecretInput) { in.Value = strings.Repeat("v", MaxValueLen+1) })},
		{"refresh token too large", "value", ErrInvalid, with(func(in *SecretInput) { in.RefreshToken = strings.Repeat("v", MaxValueLen+1) })},
		{"unknown type", "type", ErrInvalid, with(func(in *SecretInput) { in.Type = "ssh_key" })},
		{"no scope", "scope", ErrInvalid, with(func(in *SecretInput) { in.Scope = "" })},
		{"unknown scope", "scope", ErrInvalid, with(func(in *SecretInput) { in.Scope = "global" })},
		{"scope wrong case", "scope", ErrInvalid, with(func(in *SecretInput) { in.Scope = "Tenant" })},
		{"user without owner_user_id", "owner_user_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeUser; in.ExternalUserID = "x" })},
		{"external_user without external_user_id", "external_user_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeExternalUser; in.OwnerUserID = "x" })},
		{"external_workspace without external_workspace_id", "external_workspace_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeExternalWorkspace; in.WorkspaceID = "x" })},
		{"workspace without workspace_id", "workspace_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeWorkspace; in.ExternalWorkspaceID = "x" })},
		{"resource without resource_id", "resource_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeResource; in.ResourceType = ResourceSandbox })},
		{"unknown resource type", "resource_type", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeResource; in.ResourceID = sbx.ID; in.ResourceType = "vm" })},
		{"resource type mismatch", "resource_type", ErrInvalid, with(func(in *SecretInput) {
			in.Scope = ScopeResource
			in.ResourceID = cmp.ID
			in.ResourceType = ResourceSandbox
		})},
		{"bad allowed host", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = []string{"api.example.com", "https://evil.com"} })},
		{"wildcard TLD", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = []string{"*.com"} })},
		// Regression: no hosts was stored and meant "any host".
		{"no allowed hosts", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = nil })},
		{"empty allowed hosts", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = []string{} })},
		// Regression: any host needs the tenant's allow_any_host_secrets.
		{"any host while the tenant does not allow it", "allowed_hosts", ErrForbidden, with(func(in *SecretInput) { in.AllowedHosts = []string{"*"} })},
		{"any host among others while the tenant does not allow it", "allowed_hosts", ErrForbidden, with(func(in *SecretInput) { in.AllowedHosts = []string{"api.example.com", " * "} })},
		// Regression: wildcards over public suffixes, ICANN and private.
		{"wildcard over an ICANN public suffix", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = []string{"*.co.uk"} })},
		{"wildcard over a private public suffix", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = []string{"api.example.com", "*.github.io"} })},
		{"empty allowed host", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = []string{""} })},
		{"host with port", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = []string{"api.example.com:443"} })},
		{"too many hosts", "allowed_hosts", ErrInvalid, with(func(in *SecretInput) { in.AllowedHosts = manyHosts })},
		{"unknown location", "substitute_in", ErrInvalid, with(func(in *SecretInput) { in.SubstituteIn = []Location{InHeader, "cookie"} })},
		{"env starts with digit", "expose_as_env", ErrInvalid, with(func(in *SecretInput) { in.ExposeAsEnv = "1KEY" })},
		{"env with dash", "expose_as_env", ErrInvalid, with(func(in *SecretInput) { in.ExposeAsEnv = "MY-KEY" })},
		{"env with equals", "expose_as_env", ErrInvalid, with(func(in *SecretInput) { in.ExposeAsEnv = "A=B" })},
		{"bad placeholder prefix", "placeholder_prefix", ErrInvalid, with(func(in *SecretInput) { in.PlaceholderPrefix = "sk/" })},
		{"placeholder prefix with marker", "placeholder_prefix", ErrInvalid, with(func(in *SecretInput) { in.PlaceholderPrefix = "x" + PlaceholderMarker })},
		{"placeholder prefix too long", "placeholder_prefix", ErrInvalid, with(func(in *SecretInput) { in.PlaceholderPrefix = strings.Repeat("p", MaxPlaceholderPrefix+1) })},
		{"too much metadata", "metadata", ErrInvalid, with(func(in *SecretInput) { in.Metadata = manyMeta })},
		{"metadata value too large", "metadata", ErrInvalid, with(func(in *SecretInput) { in.Metadata = map[string]string{"k": strings.Repeat("v", MaxMetadataValue+1)} })},
		{"metadata key too large", "metadata", ErrInvalid, with(func(in *SecretInput) { in.Metadata = map[string]string{strings.Repeat("k", MaxMetadataKey+1): "v"} })},
		{"metadata empty key", "metadata", ErrInvalid, with(func(in *SecretInput) { in.Metadata = map[string]string{"": "v"} })},
		{"metadata not UTF-8", "metadata", ErrInvalid, with(func(in *SecretInput) { in.Metadata = map[string]string{"k": "\xff"} })},
		{"owner id too long", "owner_user_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeUser; in.OwnerUserID = strings.Repeat("u", MaxIDLen+1) })},
		{"owner id with NUL", "owner_user_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeUser; in.OwnerUserID = "u\x00keep" })},
		{"external id with newline", "external_user_id", ErrInvalid, with(func(in *SecretInput) { in.Scope = ScopeExternalUser; in.ExternalUserID = "u\n" })},
		{"unknown tenant", "", ErrNotFound, func() error { _, err := s.UpsertSecret("ten_nope", ok()); return err }},
	}
	checkRefusals(t, s, tn.ID, cases)
}

// A resource-scoped secret needs a resource of that type in the tenant; one
// of another tenant is not found, exactly like one that does not exist.
func TestUpsertResourceMustExist(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	other := mustTenant(t, s, "other")
	foreign, _ := mustSandbox(t, s, other.ID, SandboxInput{})
	var errs []error
	for _, id := range []string{"sbx_doesnotexist", foreign.ID} {
		before := dump(t, s)
		_, err := s.UpsertSecret(tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeResource, ResourceID: id, AllowedHosts: []string{"api.example.com"}})
		var ve *ValidationError
		if !errors.Is(err, ErrNotFound) || !errors.As(err, &ve) || ve.Field != "resource_id" {
			t.Fatalf("resource %s: %v, want ErrNotFound naming resource_id", id, err)
		}
		if !reflect.DeepEqual(before, dump(t, s)) {
			t.Fatalf("resource %s: the store changed", id)
		}
		errs = append(errs, err)
	}
	// Another tenant's sandbox is answered like a missing one.
	if strings.ReplaceAll(errs[0].Error(), "sbx_doesnotexist", "X") != strings.ReplaceAll(errs[1].Error(), foreign.ID, "X") {
		t.Errorf("another tenant's sandbox is refused unlike a missing one: %v / %v", errs[0], errs[1])
	}
	// Also for a non-resource scope that names a resource to bind to.
	before := dump(t, s)
	if _, err := s.UpsertSecret(tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, ResourceID: foreign.ID, ExposeAsEnv: "K", AllowedHosts: []string{"api.example.com"}}); err == nil {
		t.Fatal("bound a secret to another tenant's sandbox")
	}
	if !reflect.DeepEqual(before, dump(t, s)) {
		t.Fatal("the store changed")
	}
}

func TestExternalUserForbidden(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	off, on := false, true
	if _, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: &off}); err != nil {
		t.Fatal(err)
	}
	in := SecretInput{Name: "k", Value: "SECRETVALUE", Scope: ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}}
	checkRefusals(t, s, tn.ID, []refusal{{"external_user while off", "scope", ErrForbidden, func() error {
		_, err := s.UpsertSecret(tn.ID, in)
		if errors.Is(err, ErrInvalid) {
			return fmt.Errorf("forbidden reported as invalid input: %w", err)
		}
		return err
	}}})
	// The scopes that still resolve can be written.
	mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeExternalWorkspace, ExternalWorkspaceID: "ew", AllowedHosts: []string{"api.example.com"}})
	if _, err := s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: &on}); err != nil {
		t.Fatal(err)
	}
	mustUpsert(t, s, tn.ID, in)
	// Another tenant is not affected by this one's setting.
	b := mustTenant(t, s, "b")
	s.UpdateSettings(tn.ID, SettingsPatch{AllowEndUserCredentials: &off})
	mustUpsert(t, s, b.ID, in)
}

func TestResourceScopeBinds(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	cmp, _ := mustSandbox(t, s, tn.ID, SandboxInput{ResourceType: ResourceComputer})
	if !strings.HasPrefix(sbx.ID, "sbx_") || !strings.HasPrefix(cmp.ID, "cmp_") {
		t.Fatalf("ids %s %s", sbx.ID, cmp.ID)
	}

	res := mustUpsert(t, s, tn.ID, SecretInput{Name: "db", Value: "v", Scope: ScopeResource, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}})
	if res.Binding == nil || res.Binding.SecretID != res.Secret.ID || res.Binding.ResourceID != sbx.ID || res.Binding.ResourceType != ResourceSandbox {
		t.Fatalf("binding %+v", res.Binding)
	}
	if res.Secret.ResourceID != sbx.ID || res.Secret.ResourceType != ResourceSandbox || res.Secret.ScopeOwner() != "sandbox:"+sbx.ID {
		t.Fatalf("secret %+v", res.Secret)
	}
	// Upserting again keeps one binding and updates its env var.
	again := mustUpsert(t, s, tn.ID, SecretInput{Name: "db", Value: "v2", Scope: ScopeResource, ResourceID: sbx.ID, ExposeAsEnv: "DB_URL", AllowedHosts: []string{"api.example.com"}})
	if again.Created || again.Binding == nil || again.Binding.ID != res.Binding.ID || again.Binding.ExposeAsEnv != "DB_URL" {
		t.Fatalf("second upsert: %+v %+v", again, again.Binding)
	}
	if bs, _ := s.ListBindings(tn.ID, BindingFilter{SecretID: res.Secret.ID}); len(bs) != 1 || bs[0].ExposeAsEnv != "DB_URL" {
		t.Fatalf("bindings %+v", bs)
	}
	// A computer takes its own type.
	c := mustUpsert(t, s, tn.ID, SecretInput{Name: "db", Value: "v", Scope: ScopeResource, ResourceID: cmp.ID, ResourceType: ResourceComputer, AllowedHosts: []string{"api.example.com"}})
	if !c.Created || c.Binding == nil || c.Binding.ResourceType != ResourceComputer {
		t.Fatalf("computer: %+v", c)
	}
	// A non-resource scope binds only with expose_as_env, and records no resource.
	tnt := mustUpsert(t, s, tn.ID, SecretInput{Name: "t", Value: "v", Scope: ScopeTenant, ResourceID: sbx.ID, ExposeAsEnv: "T", AllowedHosts: []string{"api.example.com"}})
	if tnt.Binding == nil || tnt.Secret.ResourceID != "" || tnt.Binding.ExposeAsEnv != "T" {
		t.Fatalf("tenant secret with binding: %+v %+v", tnt.Secret, tnt.Binding)
	}
	nob := mustUpsert(t, s, tn.ID, SecretInput{Name: "n", Value: "v", Scope: ScopeTenant, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}})
	if nob.Binding != nil {
		t.Fatalf("bound without expose_as_env: %+v", nob.Binding)
	}
	got, _ := s.ListSecrets(tn.ID, SecretFilter{ResourceID: sbx.ID})
	if names := secretNames(got); !reflect.DeepEqual(names, []string{"db", "t"}) {
		t.Fatalf("secrets of the sandbox: %v", names)
	}
	got, _ = s.ListSecrets(tn.ID, SecretFilter{ResourceID: sbx.ID, ResourceType: ResourceComputer})
	if len(got) != 0 {
		t.Fatalf("sandbox secrets listed as a computer's: %v", secretNames(got))
	}
}

func secretNames(ss []Secret) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

func TestListSecretsFilters(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	cmp, _ := mustSandbox(t, s, tn.ID, SandboxInput{ResourceType: ResourceComputer})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "t", Value: "v", Scope: ScopeTenant, Type: "api_key", AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "u", Value: "v", Scope: ScopeUser, OwnerUserID: "u1", AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "w", Value: "v", Scope: ScopeWorkspace, WorkspaceID: "w1", AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "eu", Value: "v", Scope: ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "ew", Value: "v", Scope: ScopeExternalWorkspace, ExternalWorkspaceID: "ew1", AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "rs", Value: "v", Scope: ScopeResource, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "rc", Value: "v", Scope: ScopeResource, ResourceID: cmp.ID, ResourceType: ResourceComputer, AllowedHosts: []string{"api.example.com"}})
	mustUpsert(t, s, tn.ID, SecretInput{Name: "bc", Value: "v", Scope: ScopeTenant, ResourceID: cmp.ID, ResourceType: ResourceComputer, ExposeAsEnv: "BC", AllowedHosts: []string{"api.example.com"}})
	other := mustTenant(t, s, "other")
	mustUpsert(t, s, other.ID, SecretInput{Name: "t", Value: "v", Scope: ScopeTenant, Type: "api_key", AllowedHosts: []string{"api.example.com"}})
	for _, c := range []struct {
		f    SecretFilter
		want []string
	}{
		{SecretFilter{}, []string{"bc", "eu", "ew", "rc", "rs", "t", "u", "w"}},
		{SecretFilter{Scope: ScopeTenant}, []string{"bc", "t"}},
		{SecretFilter{Type: "api_key"}, []string{"t"}},
		{SecretFilter{OwnerUserID: "u1"}, []string{"u"}},
		{SecretFilter{WorkspaceID: "w1"}, []string{"w"}},
		{SecretFilter{ExternalUserID: "eu1"}, []string{"eu"}},
		{SecretFilter{ExternalWorkspaceID: "ew1"}, []string{"ew"}},
		{SecretFilter{Name: "u"}, []string{"u"}},
		{SecretFilter{ResourceID: sbx.ID}, []string{"rs"}},
		{SecretFilter{ResourceID: cmp.ID}, []string{"bc", "rc"}},
		{SecretFilter{ResourceID: cmp.ID, Scope: ScopeResource}, []string{"rc"}},
		{SecretFilter{ResourceType: ResourceComputer}, []string{"bc", "rc"}},
		{SecretFilter{ResourceType: ResourceSandbox}, []string{"rs"}},
		{SecretFilter{ResourceID: "sbx_none"}, []string{}},
		{SecretFilter{OwnerUserID: "nobody"}, []string{}},
	} {
		got, err := s.ListSecrets(tn.ID, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if names := secretNames(got); !reflect.DeepEqual(names, c.want) {
			t.Errorf("filter %+v: %v, want %v", c.f, names, c.want)
		}
	}
}

func TestRotateAndDisable(t *testing.T) {
	clock := newTestClock()
	s := openTest(t, func(c *Config) { c.Now = clock.Now })
	tn := mustTenant(t, s, "acme")
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v1", Scope: ScopeTenant, RefreshToken: "r1", AllowedHosts: []string{"api.example.com"}}).Secret
	exp := clock.Now().Add(time.Hour)
	clock.Advance(time.Second)
	rot, err := s.RotateSecret(tn.ID, sec.ID, RotateInput{Value: "v2", RefreshToken: "r2", ExpiresAt: &exp})
	if err != nil || rot.Version != 2 || !rot.UpdatedAt.Equal(clock.Now()) || rot.ExpiresAt == nil || !rot.ExpiresAt.Equal(exp) || !rot.HasRefreshToken {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	if v, r, ver, err := openValue(s, tn.ID, sec.ID); v != "v2" || r != "r2" || ver != 2 || err != nil {
		t.Fatalf("after rotate: %q %q %d %v", v, r, ver, err)
	}
	dis, err := s.SetDisabled(tn.ID, sec.ID, true)
	if err != nil || !dis.Disabled || dis.Version != 2 {
		t.Fatalf("disable: %+v %v", dis, err)
	}
	// A disabled secret can still be rotated, and stays disabled. A
	// rotation that sends no refresh token keeps the one there was (OAuth
	// providers often issue none on refresh): it is sealed again for the
	// new version.
	rot, err = s.RotateSecret(tn.ID, sec.ID, RotateInput{Value: "v3"})
	if err != nil || !rot.Disabled || rot.Version != 3 || !rot.HasRefreshToken || rot.ExpiresAt != nil {
		t.Fatalf("rotate disabled: %+v %v", rot, err)
	}
	if v, r, ver, err := openValue(s, tn.ID, sec.ID); v != "v3" || r != "r2" || ver != 3 || err != nil {
		t.Fatalf("after rotate without refresh token: %q %q %d %v", v, r, ver, err)
	}
	plain := mustUpsert(t, s, tn.ID, SecretInput{Name: "plain", Value: "p1", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	if rot, err := s.RotateSecret(tn.ID, plain.ID, RotateInput{Value: "p2"}); err != nil || rot.HasRefreshToken {
		t.Fatalf("rotate without any refresh token: %+v %v", rot, err)
	}
	if en, err := s.SetDisabled(tn.ID, sec.ID, false); err != nil || en.Disabled {
		t.Fatalf("enable: %+v %v", en, err)
	}
	checkRefusals(t, s, tn.ID, []refusal{
		{"rotate without value", "value", ErrInvalid, func() error { _, err := s.RotateSecret(tn.ID, sec.ID, RotateInput{}); return err }},
		{"rotate too large", "value", ErrInvalid, func() error {
			_, err := s.RotateSecret(tn.ID, sec.ID, RotateInput{Value: strings.Repeat("v", MaxValueLen+1)})
			return err
		}},
		{"rotate unknown", "", ErrNotFound, func() error { _, err := s.RotateSecret(tn.ID, "sec_nope", RotateInput{Value: "v"}); return err }},
		{"disable unknown", "", ErrNotFound, func() error { _, err := s.SetDisabled(tn.ID, "sec_nope", true); return err }},
	})
}

func TestDeleteSecretRemovesBindings(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	a, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	b, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, ResourceID: a.ID, ExposeAsEnv: "K", AllowedHosts: []string{"api.example.com"}}).Secret
	if _, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: b.ID}); err != nil {
		t.Fatal(err)
	}
	keep := mustUpsert(t, s, tn.ID, SecretInput{Name: "keep", Value: "v", Scope: ScopeTenant, ResourceID: a.ID, ExposeAsEnv: "KEEP", AllowedHosts: []string{"api.example.com"}})
	if err := s.DeleteSecret(tn.ID, sec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(tn.ID, sec.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted secret: %v", err)
	}
	if bs, _ := s.ListBindings(tn.ID, BindingFilter{SecretID: sec.ID}); len(bs) != 0 {
		t.Fatalf("bindings left: %+v", bs)
	}
	bs, _ := s.ListBindings(tn.ID, BindingFilter{})
	if len(bs) != 1 || bs[0].ID != keep.Binding.ID {
		t.Fatalf("other bindings: %+v", bs)
	}
	err := s.Read(func(r *Reader) error {
		if bs, _ := r.BindingsOf(tn.ID, b.ID); len(bs) != 0 {
			t.Errorf("index by resource still lists %+v", bs)
		}
		if _, err := r.SecretAt(tn.ID, ScopeTenant, "", "k"); !errors.Is(err, ErrNotFound) {
			t.Errorf("index by name still finds it: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecret(tn.ID, sec.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// The name is free again: a new upsert creates a new secret.
	again := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}})
	if !again.Created || again.Secret.ID == sec.ID {
		t.Fatalf("upsert after delete: %+v", again)
	}
}

func TestBindings(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sbx, _ := mustSandbox(t, s, tn.ID, SandboxInput{})
	cmp, _ := mustSandbox(t, s, tn.ID, SandboxInput{ResourceType: ResourceComputer})
	sec := mustUpsert(t, s, tn.ID, SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, AllowedHosts: []string{"api.example.com"}}).Secret
	b, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: sbx.ID, ExposeAsEnv: "A"})
	if err != nil || b.ResourceType != ResourceSandbox || !strings.HasPrefix(b.ID, "bnd_") {
		t.Fatalf("bind: %+v %v", b, err)
	}
	b2, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: sbx.ID, ExposeAsEnv: "B"})
	if err != nil || b2.ID != b.ID || b2.ExposeAsEnv != "B" {
		t.Fatalf("rebind: %+v %v", b2, err)
	}
	bc, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: cmp.ID, ResourceType: ResourceComputer})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    BindingFilter
		want int
	}{
		{BindingFilter{}, 2}, {BindingFilter{ResourceID: sbx.ID}, 1}, {BindingFilter{ResourceType: ResourceComputer}, 1},
		{BindingFilter{SecretID: sec.ID}, 2}, {BindingFilter{SecretID: "sec_x"}, 0},
		{BindingFilter{ResourceIDs: map[string]bool{cmp.ID: true}}, 1}, {BindingFilter{ResourceIDs: map[string]bool{}}, 0},
	} {
		if got, _ := s.ListBindings(tn.ID, c.f); len(got) != c.want {
			t.Errorf("filter %+v: %d, want %d", c.f, len(got), c.want)
		}
	}
	if got, err := s.Binding(tn.ID, bc.ID); err != nil || got != bc {
		t.Fatalf("get: %+v %v", got, err)
	}
	if err := s.DeleteBinding(tn.ID, bc.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Binding(tn.ID, bc.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted binding: %v", err)
	}
	if _, err := s.Secret(tn.ID, sec.ID); err != nil {
		t.Fatalf("deleting a binding deleted its secret: %v", err)
	}
	checkRefusals(t, s, tn.ID, []refusal{
		{"no secret", "secret_id", ErrInvalid, func() error { _, err := s.CreateBinding(tn.ID, BindingInput{ResourceID: sbx.ID}); return err }},
		{"no resource", "resource_id", ErrInvalid, func() error { _, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID}); return err }},
		{"bad type", "resource_type", ErrInvalid, func() error {
			_, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: sbx.ID, ResourceType: "vm"})
			return err
		}},
		{"type mismatch", "resource_type", ErrInvalid, func() error {
			_, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: cmp.ID, ResourceType: ResourceSandbox})
			return err
		}},
		{"bad env", "expose_as_env", ErrInvalid, func() error {
			_, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: sbx.ID, ExposeAsEnv: "A-B"})
			return err
		}},
		{"unknown secret", "", ErrNotFound, func() error {
			_, err := s.CreateBinding(tn.ID, BindingInput{SecretID: "sec_nope", ResourceID: sbx.ID})
			return err
		}},
		{"unknown sandbox", "", ErrNotFound, func() error {
			_, err := s.CreateBinding(tn.ID, BindingInput{SecretID: sec.ID, ResourceID: "sbx_nope"})
			return err
		}},
		{"delete unknown", "", ErrNotFound, func() error { return s.DeleteBinding(tn.ID, "bnd_nope") }},
	})
}

// Reserved metadata (oauth_*) is refused at the store for every writer but
// the one OAuth uses, not only at the HTTP API.
func TestReservedMetadataRefusedAtStore(t *testing.T) {
	s := openTest(t)
	tn, _, _ := s.EnsureTenant("acme")
	in := SecretInput{Name: "k", Value: "v", Scope: ScopeTenant, Metadata: map[string]string{"OAuth_Client": "operator:x"}, AllowedHosts: []string{"api.example.com"}}
	if _, err := s.UpsertSecret(tn.ID, in); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reserved key accepted: %v", err)
	}
	if err := s.CheckSecretInput(tn.ID, in); !errors.Is(err, ErrInvalid) {
		t.Fatalf("CheckSecretInput accepted a reserved key: %v", err)
	}
	if _, err := s.WithReservedMetadata().As(Actor{Kind: ActorCLI, ID: "t"}).UpsertSecret(tn.ID, in); err != nil {
		t.Fatalf("the OAuth writer was refused: %v", err)
	}
}

package vault

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCreateSandbox(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	in := SandboxInput{Name: "n", OwnerUserID: "u", WorkspaceID: "w", ExternalUserID: "eu", ExternalWorkspaceID: "ew", ExternalProjectID: "p", Metadata: map[string]string{"a": "b"}}
	sbx, token, err := s.CreateSandbox(tn.ID, in)
	if err != nil {
		t.Fatal(err)
	}
	if sbx.ResourceType != ResourceSandbox || sbx.TenantID != tn.ID || sbx.OwnerUserID != "u" || sbx.ExternalProjectID != "p" || !strings.HasPrefix(token, "egt_") {
		t.Fatalf("sandbox %+v token %q", sbx, token)
	}
	_, token2, _ := s.CreateSandbox(tn.ID, in)
	if token2 == token {
		t.Fatal("two sandboxes got one token")
	}
	for _, c := range []struct {
		f    SandboxFilter
		want int
	}{
		{SandboxFilter{}, 2}, {SandboxFilter{ResourceType: ResourceComputer}, 0}, {SandboxFilter{OwnerUserID: "u"}, 2},
		{SandboxFilter{WorkspaceID: "x"}, 0}, {SandboxFilter{ExternalUserID: "eu"}, 2}, {SandboxFilter{ExternalWorkspaceID: "ew"}, 2},
		{SandboxFilter{ExternalProjectID: "p"}, 2}, {SandboxFilter{ExternalProjectID: "q"}, 0},
	} {
		if got, _ := s.ListSandboxes(tn.ID, c.f); len(got) != c.want {
			t.Errorf("filter %+v: %d, want %d", c.f, len(got), c.want)
		}
	}
	checkRefusals(t, s, tn.ID, []refusal{
		{"unknown type", "resource_type", ErrInvalid, func() error { _, _, err := s.CreateSandbox(tn.ID, SandboxInput{ResourceType: "vm"}); return err }},
		{"long id", "owner_user_id", ErrInvalid, func() error {
			_, _, err := s.CreateSandbox(tn.ID, SandboxInput{OwnerUserID: strings.Repeat("u", MaxIDLen+1)})
			return err
		}},
		{"control char", "external_project_id", ErrInvalid, func() error {
			_, _, err := s.CreateSandbox(tn.ID, SandboxInput{ExternalProjectID: "p\x00"})
			return err
		}},
		{"bad metadata", "metadata", ErrInvalid, func() error {
			_, _, err := s.CreateSandbox(tn.ID, SandboxInput{Metadata: map[string]string{"": "x"}})
			return err
		}},
		{"unknown tenant", "", ErrNotFound, func() error { _, _, err := s.CreateSandbox("ten_nope", SandboxInput{}); return err }},
	})
}

func TestAuthenticateSandbox(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	a, ta := mustSandbox(t, s, tn.ID, SandboxInput{OwnerUserID: "u"})
	b, tb := mustSandbox(t, s, tn.ID, SandboxInput{ResourceType: ResourceComputer})
	if got, err := s.AuthenticateSandbox(a.ID, ta); err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("good token: %+v %v", got, err)
	}
	if got, err := s.AuthenticateSandbox(b.ID, tb); err != nil || got.ID != b.ID {
		t.Fatalf("computer token: %+v %v", got, err)
	}
	for name, c := range map[string][2]string{
		"other's token":   {a.ID, tb},
		"wrong token":     {a.ID, ta[:len(ta)-1] + otherChar(ta[len(ta)-1])},
		"token prefix":    {a.ID, ta[:len(ta)-1]},
		"token suffix":    {a.ID, ta + "x"},
		"empty token":     {a.ID, ""},
		"unknown sandbox": {"sbx_nope", ta},
		"empty id":        {"", ta},
		"tenant as id":    {tn.ID, ta},
	} {
		if got, err := s.AuthenticateSandbox(c[0], c[1]); !errors.Is(err, ErrUnauthenticated) || got.ID != "" {
			t.Errorf("%s: %+v %v, want ErrUnauthenticated", name, got, err)
		}
	}
}

func TestDeleteSandbox(t *testing.T) {
	s := openTest(t)
	tn := mustTenant(t, s, "acme")
	sbx, token := mustSandbox(t, s, tn.ID, SandboxInput{})
	other, otherToken := mustSandbox(t, s, tn.ID, SandboxInput{})
	// A secret scoped to the sandbox, bound to it and also to the other one.
	scoped := mustUpsert(t, s, tn.ID, SecretInput{Name: "scoped", Value: "v", Scope: ScopeResource, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}}).Secret
	if _, err := s.CreateBinding(tn.ID, BindingInput{SecretID: scoped.ID, ResourceID: other.ID}); err != nil {
		t.Fatal(err)
	}
	// A secret scoped to the sandbox whose binding was deleted.
	unbound := mustUpsert(t, s, tn.ID, SecretInput{Name: "unbound", Value: "v", Scope: ScopeResource, ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}})
	if err := s.DeleteBinding(tn.ID, unbound.Binding.ID); err != nil {
		t.Fatal(err)
	}
	// A tenant secret bound to both: it stays, with the other's binding.
	shared := mustUpsert(t, s, tn.ID, SecretInput{Name: "shared", Value: "v", Scope: ScopeTenant, ResourceID: sbx.ID, ExposeAsEnv: "SHARED", AllowedHosts: []string{"api.example.com"}}).Secret
	keep, err := s.CreateBinding(tn.ID, BindingInput{SecretID: shared.ID, ResourceID: other.ID, ExposeAsEnv: "SHARED"})
	if err != nil {
		t.Fatal(err)
	}
	// The other sandbox's own scoped secret stays.
	otherScoped := mustUpsert(t, s, tn.ID, SecretInput{Name: "scoped", Value: "v", Scope: ScopeResource, ResourceID: other.ID, AllowedHosts: []string{"api.example.com"}}).Secret
	phs, err := s.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"shared": "", "scoped": "x-"})
	if err != nil {
		t.Fatal(err)
	}
	otherPHs, err := s.EnsurePlaceholders(tn.ID, other.ID, map[string]string{"shared": ""})
	if err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteSandbox(tn.ID, sbx.ID); err != nil {
		t.Fatal(err)
	}

	if _, err := s.Sandbox(tn.ID, sbx.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("sandbox: %v", err)
	}
	if _, err := s.AuthenticateSandbox(sbx.ID, token); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("token still works: %v", err)
	}
	for _, id := range []string{scoped.ID, unbound.Secret.ID} {
		if _, err := s.Secret(tn.ID, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("resource-scoped secret %s left: %v", id, err)
		}
	}
	if _, err := s.Secret(tn.ID, shared.ID); err != nil {
		t.Errorf("tenant secret deleted: %v", err)
	}
	if _, err := s.Secret(tn.ID, otherScoped.ID); err != nil {
		t.Errorf("other sandbox's secret deleted: %v", err)
	}
	bs, _ := s.ListBindings(tn.ID, BindingFilter{})
	ids := []string{}
	for _, b := range bs {
		ids = append(ids, b.ID)
		if b.ResourceID == sbx.ID || b.SecretID == scoped.ID {
			t.Errorf("binding left: %+v", b)
		}
	}
	if len(bs) != 2 {
		t.Errorf("bindings %v, want the other sandbox's two (%s and its own scoped one)", ids, keep.ID)
	}
	for name, text := range phs {
		if _, err := s.LookupPlaceholder(text); !errors.Is(err, ErrNotFound) {
			t.Errorf("placeholder %s still found: %v", name, err)
		}
	}
	if p, err := s.LookupPlaceholder(otherPHs["shared"]); err != nil || p.SandboxID != other.ID {
		t.Errorf("other sandbox's placeholder: %+v %v", p, err)
	}
	if _, err := s.EnsurePlaceholders(tn.ID, sbx.ID, map[string]string{"x": ""}); !errors.Is(err, ErrNotFound) {
		t.Errorf("placeholders for a deleted sandbox: %v", err)
	}
	err = s.Read(func(r *Reader) error {
		if _, err := r.SandboxTenant(sbx.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("owner index: %v", err)
		}
		if p := r.Placeholders(sbx.ID); len(p) != 0 {
			t.Errorf("placeholder index: %v", p)
		}
		if n := r.ScopedNames(tn.ID, ScopeResource, "sandbox:"+sbx.ID); len(n) != 0 {
			t.Errorf("name index still lists %v", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateSandbox(other.ID, otherToken); err != nil {
		t.Errorf("other sandbox's token: %v", err)
	}
	if err := s.DeleteSandbox(tn.ID, sbx.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// Every read or write of a record, called with another tenant's id, is not
// found, and changes nothing.
func TestTenantIsolation(t *testing.T) {
	s := openTest(t)
	a := mustTenant(t, s, "a")
	b := mustTenant(t, s, "b")
	sbxA, tokA := mustSandbox(t, s, a.ID, SandboxInput{ExternalUserID: "same"})
	sbxB, _ := mustSandbox(t, s, b.ID, SandboxInput{ExternalUserID: "same"})
	resA := mustUpsert(t, s, a.ID, SecretInput{Name: "k", Value: "value-a", Scope: ScopeExternalUser, ExternalUserID: "same", ResourceID: sbxA.ID, ExposeAsEnv: "K", AllowedHosts: []string{"api.example.com"}})
	secA, bindA := resA.Secret, *resA.Binding
	secB := mustUpsert(t, s, b.ID, SecretInput{Name: "k", Value: "value-b", Scope: ScopeExternalUser, ExternalUserID: "same", AllowedHosts: []string{"api.example.com"}}).Secret
	if secA.ID == secB.ID {
		t.Fatal("the same external id in two tenants is one secret")
	}
	phA, err := s.EnsurePlaceholders(a.ID, sbxA.ID, map[string]string{"k": ""})
	if err != nil {
		t.Fatal(err)
	}
	notFound := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s with tenant b: %v, want ErrNotFound", name, err)
		}
	}
	before := dump(t, s)
	_, err = s.Secret(b.ID, secA.ID)
	notFound("Secret", err)
	_, err = s.Binding(b.ID, bindA.ID)
	notFound("Binding", err)
	_, err = s.Sandbox(b.ID, sbxA.ID)
	notFound("Sandbox", err)
	_, err = s.RotateSecret(b.ID, secA.ID, RotateInput{Value: "x"})
	notFound("RotateSecret", err)
	_, err = s.SetDisabled(b.ID, secA.ID, true)
	notFound("SetDisabled", err)
	notFound("DeleteSecret", s.DeleteSecret(b.ID, secA.ID))
	notFound("DeleteBinding", s.DeleteBinding(b.ID, bindA.ID))
	notFound("DeleteSandbox", s.DeleteSandbox(b.ID, sbxA.ID))
	_, err = s.CreateBinding(b.ID, BindingInput{SecretID: secA.ID, ResourceID: sbxB.ID})
	notFound("CreateBinding of a's secret", err)
	_, err = s.CreateBinding(b.ID, BindingInput{SecretID: secB.ID, ResourceID: sbxA.ID})
	notFound("CreateBinding to a's sandbox", err)
	_, err = s.EnsurePlaceholders(b.ID, sbxA.ID, map[string]string{"k": ""})
	notFound("EnsurePlaceholders", err)
	_, err = s.UpsertSecret(b.ID, SecretInput{Name: "k", Value: "x", Scope: ScopeResource, ResourceID: sbxA.ID, AllowedHosts: []string{"api.example.com"}})
	notFound("UpsertSecret on a's sandbox", err)
	_, err = s.UpdateSettings("ten_nope", SettingsPatch{})
	notFound("UpdateSettings", err)
	err = s.Read(func(r *Reader) error {
		_, err := r.Secret(b.ID, secA.ID)
		notFound("Reader.Secret", err)
		_, err = r.Sandbox(b.ID, sbxA.ID)
		notFound("Reader.Sandbox", err)
		_, _, _, err = r.OpenValue(b.ID, secA.ID)
		notFound("Reader.OpenValue", err)
		if bs, err := r.BindingsOf(b.ID, sbxA.ID); err != nil || len(bs) != 0 {
			t.Errorf("Reader.BindingsOf: %v %v", bs, err)
		}
		if sec, err := r.SecretAt(b.ID, ScopeExternalUser, "same", "k"); err != nil || sec.ID != secB.ID {
			t.Errorf("Reader.SecretAt: %+v %v", sec, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []int{len(list(t, s, b.ID).Secrets), len(list(t, s, b.ID).Sandboxes)} {
		if l != 1 {
			t.Errorf("tenant b lists %d records of a kind, want 1", l)
		}
	}
	if bs, _ := s.ListBindings(b.ID, BindingFilter{}); len(bs) != 0 {
		t.Errorf("tenant b lists a's bindings: %+v", bs)
	}
	if got, _ := s.ListSecrets(b.ID, SecretFilter{ResourceID: sbxA.ID}); len(got) != 0 {
		t.Errorf("tenant b lists a's sandbox's secrets: %+v", got)
	}
	if !reflect.DeepEqual(before, dump(t, s)) {
		t.Fatal("calls with another tenant's ids changed the store")
	}
	// a's records are untouched and work.
	if v := mustOpenValue(t, s, a.ID, secA.ID); v != "value-a" {
		t.Fatalf("a's value: %q", v)
	}
	if _, err := s.AuthenticateSandbox(sbxA.ID, tokA); err != nil {
		t.Fatal(err)
	}
	if p, err := s.LookupPlaceholder(phA["k"]); err != nil || p.TenantID != a.ID {
		t.Fatalf("a's placeholder: %+v %v", p, err)
	}
}

// otherChar is a token character different from c, so a changed token
// really differs (regression: a token ending in "x" stayed the same).
func otherChar(c byte) string {
	if c == 'x' {
		return "y"
	}
	return "x"
}

package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

func TestSecretsCRUD(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1", WorkspaceID: "w1"}))

	in := client.SecretInput{Name: "openai", Value: "sk-live-1", Type: "api_key", Scope: vault.ScopeTenant,
		AllowedHosts: []string{"API.openai.com"}, PlaceholderPrefix: "sk-proj-", Metadata: map[string]string{"team": "ml"}}
	first := must[client.UpsertResult](t)(c.UpsertSecret(ctx, in))
	if !first.Created || first.Secret.Version != 1 || first.Secret.Name != "openai" || first.Binding != nil {
		t.Fatalf("first upsert: %+v", first)
	}
	if !slices.Equal(first.Secret.AllowedHosts, []string{"api.openai.com"}) || !slices.Equal(first.Secret.SubstituteIn, []vault.Location{vault.InHeader}) {
		t.Fatalf("normalisation: %+v", first.Secret)
	}
	in.Value = "sk-live-2"
	second := must[client.UpsertResult](t)(c.UpsertSecret(ctx, in))
	if second.Created || second.Secret.ID != first.Secret.ID || second.Secret.Version != 2 {
		t.Fatalf("second upsert: %+v", second)
	}

	// 201 on create, 200 on update, on the wire.
	body := `{"name":"wire","value":"v","scope":"workspace","workspace_id":"w1","allowed_hosts":["api.example.com"]}`
	if code, _ := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(body)); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	if code, _ := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(body)); code != http.StatusOK {
		t.Fatalf("update: %d", code)
	}

	// expose_as_env with resource_id also binds.
	bound := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "gh", Value: "ghp_x", Scope: vault.ScopeExternalUser,
		ExternalUserID: "eu1", ExposeAsEnv: "GH_TOKEN", ResourceID: sbx.ID, AllowedHosts: []string{"api.example.com"}}))
	if bound.Binding == nil || bound.Binding.ResourceID != sbx.ID || bound.Binding.ExposeAsEnv != "GH_TOKEN" || bound.Binding.SecretID != bound.Secret.ID {
		t.Fatalf("binding from upsert: %+v", bound.Binding)
	}

	got := must[vault.Secret](t)(c.GetSecret(ctx, first.Secret.ID))
	if got.ID != first.Secret.ID || got.Version != 2 || got.Metadata["team"] != "ml" {
		t.Fatalf("get: %+v", got)
	}

	filters := []struct {
		f    client.SecretFilter
		want []string
	}{
		{client.SecretFilter{}, []string{"gh", "openai", "wire"}},
		{client.SecretFilter{Scope: vault.ScopeTenant}, []string{"openai"}},
		{client.SecretFilter{Type: "api_key"}, []string{"openai"}},
		{client.SecretFilter{WorkspaceID: "w1"}, []string{"wire"}},
		{client.SecretFilter{ExternalUserID: "eu1"}, []string{"gh"}},
		{client.SecretFilter{ResourceID: sbx.ID}, []string{"gh"}},
		{client.SecretFilter{ResourceID: sbx.ID, ResourceType: vault.ResourceComputer}, nil},
		{client.SecretFilter{Name: "wire"}, []string{"wire"}},
		{client.SecretFilter{OwnerUserID: "nobody"}, nil},
		{client.SecretFilter{ExternalWorkspaceID: "nobody"}, nil},
	}
	for _, tc := range filters {
		list := must[client.SecretPage](t)(c.ListSecrets(ctx, tc.f)).Secrets
		var names []string
		for _, s := range list {
			names = append(names, s.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, tc.want) {
			t.Errorf("filter %+v: %v, want %v", tc.f, names, tc.want)
		}
	}

	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rot := must[vault.Secret](t)(c.RotateSecret(ctx, first.Secret.ID, client.RotateInput{Value: "sk-live-3", RefreshToken: "rt", ExpiresAt: &exp}))
	if rot.Version != 3 || !rot.HasRefreshToken || rot.ExpiresAt == nil || !rot.ExpiresAt.Equal(exp) {
		t.Fatalf("rotate: %+v", rot)
	}
	if d := must[vault.Secret](t)(c.DisableSecret(ctx, first.Secret.ID)); !d.Disabled {
		t.Fatal("disable did not disable")
	}
	if e := must[vault.Secret](t)(c.EnableSecret(ctx, first.Secret.ID)); e.Disabled {
		t.Fatal("enable did not enable")
	}
	// disable/enable accept an empty JSON object as well as no body.
	if code, b := h.do("POST", "/api/v1/egress/secrets/"+first.Secret.ID+"/disable", h.adminKey, strings.NewReader("{}")); code != 200 {
		t.Fatalf("disable with {}: %d %s", code, b)
	}

	if err := c.DeleteSecret(ctx, bound.Secret.ID); err != nil {
		t.Fatal(err)
	}
	_, err := c.GetSecret(ctx, bound.Secret.ID)
	mustStatus(t, err, 404)
	if bs := must[client.BindingPage](t)(c.ListBindings(ctx, client.BindingFilter{SecretID: bound.Secret.ID})).Bindings; len(bs) != 0 {
		t.Fatalf("bindings survive their secret: %+v", bs)
	}
	mustStatus(t, c.DeleteSecret(ctx, bound.Secret.ID), 404)
}

func TestBindingsCRUD(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{}))
	cmp := must[client.SandboxCreated](t)(c.CreateComputer(ctx, client.SandboxInput{}))
	sec := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "db", Value: "pw", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}}))

	b1 := must[vault.Binding](t)(c.CreateBinding(ctx, client.BindingInput{SecretID: sec.Secret.ID, ResourceID: sbx.ID, ExposeAsEnv: "DB_PASSWORD"}))
	if b1.ResourceType != vault.ResourceSandbox || b1.ExposeAsEnv != "DB_PASSWORD" {
		t.Fatalf("binding: %+v", b1)
	}
	b2 := must[vault.Binding](t)(c.CreateBinding(ctx, client.BindingInput{SecretID: sec.Secret.ID, ResourceID: cmp.ID, ResourceType: vault.ResourceComputer}))
	_, err := c.CreateBinding(ctx, client.BindingInput{SecretID: sec.Secret.ID, ResourceID: cmp.ID, ResourceType: vault.ResourceSandbox})
	mustStatus(t, err, 400)
	_, err = c.CreateBinding(ctx, client.BindingInput{SecretID: "sec_nope", ResourceID: sbx.ID})
	mustStatus(t, err, 404)

	for _, tc := range []struct {
		f    client.BindingFilter
		want []string
	}{
		{client.BindingFilter{}, []string{b1.ID, b2.ID}},
		{client.BindingFilter{ResourceID: sbx.ID}, []string{b1.ID}},
		{client.BindingFilter{ResourceType: vault.ResourceComputer}, []string{b2.ID}},
		{client.BindingFilter{SecretID: sec.Secret.ID}, []string{b1.ID, b2.ID}},
		{client.BindingFilter{SecretID: "sec_other"}, nil},
	} {
		var ids []string
		for _, b := range must[client.BindingPage](t)(c.ListBindings(ctx, tc.f)).Bindings {
			ids = append(ids, b.ID)
		}
		slices.Sort(ids)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(ids, want) {
			t.Errorf("filter %+v: %v, want %v", tc.f, ids, want)
		}
	}
	if got := must[vault.Binding](t)(c.GetBinding(ctx, b1.ID)); got != b1 {
		t.Fatalf("get: %+v want %+v", got, b1)
	}
	if err := c.DeleteBinding(ctx, b1.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetBinding(ctx, b1.ID)
	mustStatus(t, err, 404)
	mustStatus(t, c.DeleteBinding(ctx, b1.ID), 404)
}

// BenchmarkUpsertSecret measures POST /api/v1/egress/secrets through the
// handler (auth, decoding, the vault's write transaction with sealing,
// the answer), without the network.
func BenchmarkUpsertSecret(b *testing.B) {
	h := newHarness(b)
	// One counter across every run of a sub-benchmark, so that "create"
	// never meets a name it made before.
	n := 0
	run := func(b *testing.B, body func(i int) string, want int) {
		b.ReportAllocs()
		for b.Loop() {
			n++
			req := httptest.NewRequest("POST", "/api/v1/egress/secrets", strings.NewReader(body(n)))
			req.Header.Set("Authorization", "Bearer "+h.adminKey)
			rec := httptest.NewRecorder()
			h.server.ServeHTTP(rec, req)
			if rec.Code != want {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	}
	update := func(i int) string {
		return `{"name":"openai","value":"sk-` + strconv.Itoa(i) + `","type":"api_key","scope":"tenant","allowed_hosts":["api.openai.com"],"placeholder_prefix":"sk-proj-"}`
	}
	if code, body := h.do("POST", "/api/v1/egress/secrets", h.adminKey, strings.NewReader(update(0))); code != 201 {
		b.Fatalf("seed: %d %s", code, body)
	}
	b.Run("update", func(b *testing.B) { run(b, update, 200) })
	b.Run("create", func(b *testing.B) {
		run(b, func(i int) string {
			return `{"name":"key-` + strconv.Itoa(i) + `","value":"v","scope":"external_user","external_user_id":"eu1","allowed_hosts":["api.example.com"]}`
		}, 201)
	})
}

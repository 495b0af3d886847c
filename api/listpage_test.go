package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// listAnswer is the shape every list answers: its rows under their
// field, and next_cursor.
func listAnswer(t *testing.T, body, field string) (ids []string, next string) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	if err := json.Unmarshal(raw["next_cursor"], &next); err != nil {
		t.Fatalf("next_cursor of %s: %v", body, err)
	}
	var rows []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw[field], &rows); err != nil || rows == nil {
		t.Fatalf("%s of %s: %v", field, body, err)
	}
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return ids, next
}

// TestListsPage pages each list through the API, 250 rows by 100: 100,
// 100 and 50 rows, each once, in id order, next_cursor empty on the last
// page only; the client's All forms return the same.
func TestListsPage(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	shared := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "shared", Value: "v", Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}})).Secret
	for i := range 249 {
		must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: fmt.Sprintf("k%d", i), Value: "v", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}}))
	}
	for i := range 250 {
		in := client.SandboxInput{ExternalUserID: "eu1"}
		if i%2 == 1 {
			in.ResourceType = vault.ResourceComputer
		}
		x, _, err := h.store.CreateSandbox(h.tenant.ID, in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.store.CreateBinding(h.tenant.ID, vault.BindingInput{SecretID: shared.ID, ResourceID: x.ID, ResourceType: x.ResourceType}); err != nil {
			t.Fatal(err)
		}
	}
	snap := h.snapshot(h.tenant.ID)
	want := map[string][]string{}
	for _, s := range snap.secrets {
		want["secrets"] = append(want["secrets"], s.ID)
	}
	for _, b := range snap.bindings {
		want["bindings"] = append(want["bindings"], b.ID)
	}
	for _, x := range snap.sandboxes {
		want["sandboxes"] = append(want["sandboxes"], x.ID)
	}
	for _, l := range []struct{ path, field string }{
		{"/api/v1/egress/secrets", "secrets"},
		{"/api/v1/egress/bindings", "bindings"},
		{"/api/v1/sandboxes", "sandboxes"},
	} {
		t.Run(l.field, func(t *testing.T) {
			var got []string
			cursor := ""
			for i, n := range []int{100, 100, 50} {
				q := url.Values{"limit": {"100"}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				code, body := h.do("GET", l.path+"?"+q.Encode(), h.adminKey, nil)
				if code != 200 {
					t.Fatalf("page %d: %d %s", i, code, body)
				}
				ids, next := listAnswer(t, body, l.field)
				if len(ids) != n || (next == "") != (i == 2) {
					t.Fatalf("page %d: %d rows, next %q", i, len(ids), next)
				}
				got, cursor = append(got, ids...), next
			}
			if !slices.Equal(got, want[l.field]) {
				t.Fatalf("pages:\n%v\nwant\n%v", got, want[l.field])
			}
			// Without a limit: the first 100.
			code, body := h.do("GET", l.path, h.adminKey, nil)
			if ids, next := listAnswer(t, body, l.field); code != 200 || !slices.Equal(ids, want[l.field][:100]) || next == "" {
				t.Fatalf("default page: %d, %d rows, next %q", code, len(ids), next)
			}
		})
	}
	t.Run("client", func(t *testing.T) {
		var secrets, bindings, sandboxes, computers []string
		if err := c.SecretsAll(ctx, client.SecretFilter{Limit: 7}, func(s vault.Secret) error { secrets = append(secrets, s.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := c.BindingsAll(ctx, client.BindingFilter{SecretID: shared.ID}, func(b vault.Binding) error { bindings = append(bindings, b.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := c.SandboxesAll(ctx, client.SandboxFilter{ExternalUserID: "eu1", Limit: 1000}, func(x vault.Sandbox) error { sandboxes = append(sandboxes, x.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := c.ComputersAll(ctx, client.SandboxFilter{}, func(x vault.Sandbox) error { computers = append(computers, x.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		var wantComputers []string
		for _, x := range snap.sandboxes {
			if x.ResourceType == vault.ResourceComputer {
				wantComputers = append(wantComputers, x.ID)
			}
		}
		if !slices.Equal(secrets, want["secrets"]) || !slices.Equal(bindings, want["bindings"]) ||
			!slices.Equal(sandboxes, want["sandboxes"]) || !slices.Equal(computers, wantComputers) || len(computers) != 125 {
			t.Fatalf("All: %d secrets, %d bindings, %d sandboxes, %d computers", len(secrets), len(bindings), len(sandboxes), len(computers))
		}
		// fn's error stops the walk and is returned.
		stop := fmt.Errorf("stop")
		n := 0
		if err := c.SecretsAll(ctx, client.SecretFilter{}, func(vault.Secret) error { n++; return stop }); err != stop || n != 1 {
			t.Fatalf("stopped walk: %v after %d", err, n)
		}
		page := must[client.SecretPage](t)(c.ListSecrets(ctx, client.SecretFilter{Limit: 10, ExternalUserID: "eu1"}))
		if len(page.Secrets) != 10 || page.NextCursor == "" {
			t.Fatalf("one page: %d, %q", len(page.Secrets), page.NextCursor)
		}
	})
}

// TestListCursorAndLimitRefused: limit outside 1 to 1000 and a cursor of
// another tenant, list or filter answer 400 naming the parameter, and
// leak nothing of what the cursor came from.
func TestListCursorAndLimitRefused(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	other, otherKey, oc := h.newTenant("globex")
	for _, c := range []*client.Client{h.admin, oc} {
		for i := range 3 {
			must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: fmt.Sprintf("k%d", i), Value: "v", Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", AllowedHosts: []string{"api.example.com"}}))
			must[client.SandboxCreated](t)(c.CreateComputer(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
		}
	}
	page := must[client.SecretPage](t)(oc.ListSecrets(ctx, client.SecretFilter{Limit: 1}))
	theirs := page.NextCursor
	mine := must[client.SecretPage](t)(h.admin.ListSecrets(ctx, client.SecretFilter{Limit: 1, ExternalUserID: "eu1"})).NextCursor
	computers := must[client.SandboxPage](t)(h.admin.ListComputers(ctx, client.SandboxFilter{Limit: 1})).NextCursor
	bt := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(ctx, "eu1", time.Hour))
	if theirs == "" || mine == "" || computers == "" {
		t.Fatal("no cursors")
	}
	for _, c := range []struct {
		name, path, token, field string
	}{
		{"limit 0", "/api/v1/egress/secrets?limit=0", h.adminKey, "limit"},
		{"limit 1001", "/api/v1/egress/bindings?limit=1001", h.adminKey, "limit"},
		{"limit -1", "/api/v1/sandboxes?limit=-1", h.adminKey, "limit"},
		{"limit word", "/api/v1/computers?limit=ten", h.adminKey, "limit"},
		{"another tenant's cursor", "/api/v1/egress/secrets?cursor=" + theirs, h.adminKey, "cursor"},
		{"my cursor, other filter", "/api/v1/egress/secrets?external_user_id=eu2&cursor=" + mine, h.adminKey, "cursor"},
		{"my cursor, no filter", "/api/v1/egress/secrets?cursor=" + mine, h.adminKey, "cursor"},
		{"a secrets cursor on bindings", "/api/v1/egress/bindings?cursor=" + mine, h.adminKey, "cursor"},
		{"computers cursor on sandboxes", "/api/v1/sandboxes?cursor=" + computers, h.adminKey, "cursor"},
		{"garbage", "/api/v1/sandboxes?cursor=%00%01", h.adminKey, "cursor"},
		// The browser token's filter is forced to its user, so the admin's
		// unfiltered cursor is not its.
		{"admin cursor on a browser token", "/api/v1/egress/secrets?cursor=" + theirs, bt.Token, "cursor"},
		{"the other tenant's own cursor", "/api/v1/egress/secrets?cursor=" + mine, otherKey, "cursor"},
	} {
		code, body := h.do("GET", c.path, c.token, nil)
		if code != 400 || !strings.Contains(body, c.field) {
			t.Errorf("%s: %d %s", c.name, code, body)
		}
		for _, leak := range []string{h.tenant.ID, other.ID, page.Secrets[0].ID, "eu1"} {
			if strings.Contains(body, leak) {
				t.Errorf("%s: the refusal %s names %q", c.name, body, leak)
			}
		}
	}
	if code, body := h.do("GET", "/api/v1/egress/secrets?limit=1000", h.adminKey, nil); code != 200 {
		t.Errorf("limit 1000: %d %s", code, body)
	}
}

// TestBrowserTokenPages: a browser token pages through its own user's
// secrets, sandboxes and bindings only, its filter forced on every page.
func TestBrowserTokenPages(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c := h.admin
	mine, all := map[string]bool{}, 0
	for i := range 12 {
		user := []string{"eu1", "eu2", "eu3"}[i%3]
		sec := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: fmt.Sprintf("k%d", i), Value: "v", Scope: vault.ScopeExternalUser, ExternalUserID: user, AllowedHosts: []string{"api.example.com"}})).Secret
		x := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: user}))
		b := must[vault.Binding](t)(c.CreateBinding(ctx, client.BindingInput{SecretID: sec.ID, ResourceID: x.ID, ExposeAsEnv: "K"}))
		if user == "eu1" {
			mine[sec.ID], mine[x.ID], mine[b.ID] = true, true, true
		}
		all += 3
	}
	bt := must[client.BrowserToken](t)(c.CreateBrowserToken(ctx, "eu1", time.Hour))
	br := h.client(bt.Token)
	seen := map[string]bool{}
	collect := func(id string) error {
		if !mine[id] || seen[id] {
			t.Errorf("browser token saw %s (another user's, or twice)", id)
		}
		seen[id] = true
		return nil
	}
	if err := br.SecretsAll(ctx, client.SecretFilter{Limit: 1}, func(s vault.Secret) error { return collect(s.ID) }); err != nil {
		t.Fatal(err)
	}
	if err := br.SandboxesAll(ctx, client.SandboxFilter{Limit: 1}, func(x vault.Sandbox) error { return collect(x.ID) }); err != nil {
		t.Fatal(err)
	}
	if err := br.BindingsAll(ctx, client.BindingFilter{Limit: 1}, func(b vault.Binding) error { return collect(b.ID) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(mine) || len(mine) != 12 || all != 36 {
		t.Fatalf("saw %d of %d", len(seen), len(mine))
	}
}

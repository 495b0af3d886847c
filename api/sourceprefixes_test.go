package api_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// A tenant's source_prefixes through the API and the Go client: only the
// operator key sets them (on creation, or PUT); a tenant's keys read them
// with the settings and are refused setting them; a sandbox claims only
// inside them; narrowing under a claim and overlapping another tenant's
// answer 409; every refusal leaves the store as it was.
func TestTenantSourcePrefixes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	op := h.client(h.operatorKey)
	acme := h.tenant
	prefixesPath := "/api/v1/tenants/" + acme.ID + "/source_prefixes"

	// A tenant's keys may not grant themselves addresses.
	browser := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(ctx, "u1", 0))
	before := h.snapshot(acme.ID)
	for _, c := range []struct{ name, method, path, token, body string }{
		{"admin key, PUT", "PUT", prefixesPath, h.adminKey, `{"source_prefixes":["10.0.0.0/8"]}`},
		{"browser token, PUT", "PUT", prefixesPath, browser.Token, `{"source_prefixes":["10.0.0.0/8"]}`},
		{"admin key, PATCH settings", "PATCH", "/api/v1/tenant/settings", h.adminKey, `{"source_prefixes":["10.0.0.0/8"]}`},
		{"admin key, PATCH settings with others", "PATCH", "/api/v1/tenant/settings", h.adminKey, `{"allow_any_host_secrets":true,"source_prefixes":[]}`},
		{"admin key, POST tenants", "POST", "/api/v1/tenants", h.adminKey, `{"name":"mine","source_prefixes":["10.0.0.0/8"]}`},
	} {
		code, body := h.do(c.method, c.path, c.token, strings.NewReader(c.body))
		if code != http.StatusForbidden || !strings.Contains(body, "operator") {
			t.Errorf("%s: %d %s, want 403 naming the operator", c.name, code, body)
		}
	}
	_, err := h.admin.SetSourcePrefixes(ctx, acme.ID, []string{"10.0.0.0/8"})
	mustStatus(t, err, http.StatusForbidden)
	if after := h.snapshot(acme.ID); !reflect.DeepEqual(before, after) {
		t.Errorf("a tenant key's refused writes changed the store")
	}

	// The operator grants them; the tenant reads them with its settings.
	got := must[vault.Tenant](t)(op.SetSourcePrefixes(ctx, acme.ID, []string{"10.20.0.0/16", "::ffff:10.21.0.0/112", "fd20::/48"}))
	want := []string{"10.20.0.0/16", "10.21.0.0/16", "fd20::/48"}
	if got.ID != acme.ID || !reflect.DeepEqual(got.Settings.SourcePrefixes, want) {
		t.Fatalf("set: %+v", got)
	}
	if st := must[vault.Settings](t)(h.admin.GetSettings(ctx)); !reflect.DeepEqual(st.SourcePrefixes, want) {
		t.Errorf("the tenant reads %q, want %q", st.SourcePrefixes, want)
	}
	// A tenant's own settings write keeps them.
	on := true
	if st := must[vault.Settings](t)(h.admin.UpdateSettings(ctx, vault.SettingsPatch{AllowAnyHostSecrets: &on})); !reflect.DeepEqual(st.SourcePrefixes, want) {
		t.Errorf("after a settings write: %q", st.SourcePrefixes)
	}
	// The tenant's log says the operator set them.
	var row *audit.Row
	must[struct{}](t)(struct{}{}, h.admin.AuditAll(ctx, client.AuditFilter{Kind: "admin"}, func(r audit.Row) error {
		if r.Action == vault.ActionSettingsChanged && r.Details["changed"] == "source_prefixes" {
			row = &r
		}
		return nil
	}))
	if row == nil || row.ActorKind != vault.ActorOperator || row.Details["source_prefixes"] != strings.Join(want, ",") {
		t.Errorf("admin row %+v", row)
	}

	// Claims inside are taken; one outside is refused, naming it.
	a := must[client.SandboxCreated](t)(h.admin.CreateSandbox(ctx, client.SandboxInput{SourceAddrs: []string{"10.20.0.5", "fd20::/64"}}))
	b := must[client.SandboxCreated](t)(h.admin.CreateSandbox(ctx, client.SandboxInput{SourceAddrs: []string{"10.21.3.0/24"}}))
	before = h.snapshot(acme.ID)
	_, err = h.admin.CreateSandbox(ctx, client.SandboxInput{SourceAddrs: []string{"10.20.0.6", "10.22.0.1"}})
	mustStatus(t, err, http.StatusForbidden)
	if e := apiErr(err); e == nil || !strings.Contains(e.Message, "10.22.0.1 is outside this tenant's source_prefixes") {
		t.Errorf("claim outside: %v", err)
	}
	_, err = h.admin.SetSourceAddrs(ctx, b.ID, []string{"fd21::1"})
	mustStatus(t, err, http.StatusForbidden)
	if e := apiErr(err); e == nil || !strings.Contains(e.Message, "fd21::1") {
		t.Errorf("claim outside on PATCH: %v", err)
	}

	// Narrowing under claims: 409 naming how many sandboxes and which.
	_, err = op.SetSourcePrefixes(ctx, acme.ID, []string{"10.20.0.0/24"})
	mustStatus(t, err, http.StatusConflict)
	if e := apiErr(err); e == nil || !strings.Contains(e.Message, "2 sandboxes") || !strings.Contains(e.Message, a.ID) || !strings.Contains(e.Message, b.ID) {
		t.Errorf("narrowing: %v", err)
	}
	_, err = op.SetSourcePrefixes(ctx, acme.ID, nil)
	mustStatus(t, err, http.StatusConflict)

	// Another tenant's prefixes may not overlap: 409 naming the tenant
	// (to the operator), on creation and on PUT.
	n := len(must[[]vault.Tenant](t)(h.store.Tenants()))
	_, err = op.CreateTenantWith(ctx, client.TenantInput{Name: "other", SourcePrefixes: []string{"10.21.128.0/17"}})
	mustStatus(t, err, http.StatusConflict)
	if e := apiErr(err); e == nil || !strings.Contains(e.Message, "tenant "+acme.ID) {
		t.Errorf("overlap on creation: %v", err)
	}
	if len(must[[]vault.Tenant](t)(h.store.Tenants())) != n {
		t.Errorf("a refused creation made a tenant")
	}
	other := must[client.TenantCreated](t)(op.CreateTenantWith(ctx, client.TenantInput{Name: "other", SourcePrefixes: []string{"10.30.0.0/16"}}))
	if !reflect.DeepEqual(other.Tenant.Settings.SourcePrefixes, []string{"10.30.0.0/16"}) {
		t.Errorf("created with %q", other.Tenant.Settings.SourcePrefixes)
	}
	otherBefore := h.snapshot(other.Tenant.ID)
	_, err = op.SetSourcePrefixes(ctx, other.Tenant.ID, []string{"10.30.0.0/16", "fd20::/56"})
	mustStatus(t, err, http.StatusConflict)
	if e := apiErr(err); e == nil || !strings.Contains(e.Message, "fd20::/56 overlaps fd20::/48 of tenant "+acme.ID) {
		t.Errorf("overlap on PUT: %v", err)
	}
	// The other tenant's admin key cannot claim acme's addresses.
	_, err = h.client(other.APIKey).CreateSandbox(ctx, client.SandboxInput{SourceAddrs: []string{"10.20.0.9"}})
	mustStatus(t, err, http.StatusForbidden)

	// Bad input.
	for _, c := range []struct {
		path, body string
		status     int
	}{
		{prefixesPath, `{"source_prefixes":["10.0.0.0/4"]}`, http.StatusBadRequest},
		{prefixesPath, `{"source_prefixes":["bogus"]}`, http.StatusBadRequest},
		{prefixesPath, `{}`, http.StatusBadRequest},
		{prefixesPath, `{"source_prefixes":"10.0.0.0/8"}`, http.StatusBadRequest},
		{prefixesPath, `{"source_prefixes":[],"name":"x"}`, http.StatusBadRequest},
		{"/api/v1/tenants/ten_nope/source_prefixes", `{"source_prefixes":["10.40.0.0/16"]}`, http.StatusNotFound},
	} {
		if code, body := h.do("PUT", c.path, h.operatorKey, strings.NewReader(c.body)); code != c.status {
			t.Errorf("PUT %s %s: %d %s, want %d", c.path, c.body, code, body, c.status)
		}
	}
	if code, body := h.do("GET", prefixesPath, h.operatorKey, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d %s", code, body)
	}
	if after := h.snapshot(acme.ID); !reflect.DeepEqual(before, after) {
		t.Errorf("refused writes changed the tenant")
	}
	if after := h.snapshot(other.Tenant.ID); !reflect.DeepEqual(otherBefore, after) {
		t.Errorf("refused writes changed the other tenant")
	}

	// Clearing the claims first, the operator may narrow.
	must[vault.Sandbox](t)(h.admin.SetSourceAddrs(ctx, b.ID, nil))
	got = must[vault.Tenant](t)(op.SetSourcePrefixes(ctx, acme.ID, []string{"10.20.0.0/24", "fd20::/48"}))
	if !reflect.DeepEqual(got.Settings.SourcePrefixes, []string{"10.20.0.0/24", "fd20::/48"}) {
		t.Errorf("narrowed to %q", got.Settings.SourcePrefixes)
	}
}

package api_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// allRows follows AuditAll with f and returns the ids in order.
func allRows(t *testing.T, c *client.Client, f client.AuditFilter) []audit.Row {
	t.Helper()
	var out []audit.Row
	if err := c.AuditAll(context.Background(), f, func(r audit.Row) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func idsOf(rows []audit.Row) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// TestAuditTenantIsolation gives two tenants rows with the same external
// ids and sandbox ids: each sees exactly its own, whatever the filter or
// cursor.
func TestAuditTenantIsolation(t *testing.T) {
	h := newAuditHarness(t)
	ctx := context.Background()
	tb, _, cb := h.newTenant("beta")
	rowsA := seedAudit(t, h.store, h.tenant.ID, 700, 1)
	rowsB := seedAudit(t, h.store, tb.ID, 500, 2)
	sbxA := must[client.SandboxCreated](t)(h.admin.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	must[client.SandboxCreated](t)(cb.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1"}))
	if len(h.auditRows(h.tenant.ID, audit.Filter{SandboxID: sbxA.ID})) != 1 {
		t.Fatal("no admin row for tenant A's sandbox")
	}

	for _, tc := range []struct {
		name   string
		c      *client.Client
		tenant string
		seeded []audit.Row
	}{{"A", h.admin, h.tenant.ID, rowsA}, {"B", cb, tb.ID, rowsB}} {
		for _, f := range []client.AuditFilter{{}, {ExternalUserID: "eu1"}, {SandboxID: "sb1"}, {SecretID: "sec3", Limit: 50}} {
			got := allRows(t, tc.c, f)
			for _, r := range got {
				if r.TenantID != tc.tenant {
					t.Fatalf("tenant %s sees a row of %s", tc.name, r.TenantID)
				}
			}
			// Everything the vault holds for this tenant, filtered by hand.
			own := slices.Collect(maps.Values(h.auditRows(tc.tenant, audit.Filter{})))
			want := bruteForce(own, audit.Filter{ExternalUserID: f.ExternalUserID, SandboxID: f.SandboxID, SecretID: f.SecretID})
			if ids := idsOf(got); !slices.Equal(ids, want) {
				t.Errorf("tenant %s, %+v: %d rows, want %d", tc.name, f, len(ids), len(want))
			}
		}
	}

	// A cursor is a position, not a key: tenant A's cursor given to B
	// answers B's rows below that position, never A's.
	pa := must[client.AuditPage](t)(h.admin.Audit(ctx, client.AuditFilter{Limit: 10}))
	pb := must[client.AuditPage](t)(cb.Audit(ctx, client.AuditFilter{Cursor: pa.NextCursor, Limit: 1000}))
	if len(pb.Rows) == 0 {
		t.Fatal("B's rows below A's cursor: none")
	}
	for _, r := range pb.Rows {
		if r.TenantID != tb.ID {
			t.Fatalf("A's cursor showed B a row of %s", r.TenantID)
		}
	}
	// An id of A is nothing in B.
	if rows := allRows(t, cb, client.AuditFilter{SandboxID: sbxA.ID}); len(rows) != 0 {
		t.Errorf("B sees rows by A's sandbox id: %+v", rows)
	}
}

// TestAuditBrowserToken checks that a browser token sees exactly its
// external user's rows, with or without naming its user, and that naming
// another user is refused (403), as is the operator key.
func TestAuditBrowserToken(t *testing.T) {
	h := newAuditHarness(t)
	ctx := context.Background()
	all := seedAudit(t, h.store, h.tenant.ID, 1500, 3)
	bt := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(ctx, "eu1", 0))
	br := h.client(bt.Token)
	// The token's own issue is a row of eu1 too.
	for _, r := range h.auditRows(h.tenant.ID, audit.Filter{Kind: audit.KindAdmin, ExternalUserID: "eu1"}) {
		if r.Action == vault.ActionBrowserTokenIssued {
			all = append(all, r)
		}
	}

	since := auditNow.Add(-30 * 24 * time.Hour)
	for _, tc := range []struct {
		q     client.AuditFilter
		since time.Time
	}{
		{q: client.AuditFilter{}}, {q: client.AuditFilter{ExternalUserID: "eu1"}}, {q: client.AuditFilter{SandboxID: "sb2"}},
		{q: client.AuditFilter{ExternalWorkspaceID: "ew0", Limit: 7}}, {q: client.AuditFilter{Kind: audit.KindAdmin}},
		{q: client.AuditFilter{Outcome: "denied", Since: since.Format(time.RFC3339)}, since: since},
	} {
		f := tc.q
		want := bruteForce(all, audit.Filter{ExternalUserID: "eu1", SandboxID: f.SandboxID, ExternalWorkspaceID: f.ExternalWorkspaceID, Kind: f.Kind, Outcome: f.Outcome, Since: tc.since})
		got := idsOf(allRows(t, br, f))
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("browser token, %+v: %d rows, want %d (> 0)", f, len(got), len(want))
		}
	}
	for _, other := range []string{"eu2", "EU1", "eu1 "} {
		_, err := br.Audit(ctx, client.AuditFilter{ExternalUserID: other})
		mustStatus(t, err, 403)
		if e := apiErr(err); e == nil || !strings.Contains(e.Message, "only its own external user") {
			t.Errorf("refusal for %q: %v", other, err)
		}
	}
	_, err := h.client(h.operatorKey).Audit(ctx, client.AuditFilter{})
	mustStatus(t, err, 403)
	_, err = h.client("not-a-token").Audit(ctx, client.AuditFilter{})
	mustStatus(t, err, 401)
}

// TestAuditNoValue stores values through the API, writes request rows as
// the proxy would, then searches every audit answer (pages, filters, both
// kinds of key, refusals that carry the value in each parameter) and the
// log for the values: they are nowhere.
func TestAuditNoValue(t *testing.T) {
	h := newAuditHarness(t)
	ctx := context.Background()
	c := h.admin
	value, refresh, rotated := randomText("auditvalue"), randomText("auditrefresh"), randomText("auditrotated")
	values := []string{value, refresh, rotated}

	sbx := must[client.SandboxCreated](t)(c.CreateSandbox(ctx, client.SandboxInput{ExternalUserID: "eu1", ExternalWorkspaceID: "ew1"}))
	up := must[client.UpsertResult](t)(c.UpsertSecret(ctx, client.SecretInput{Name: "openai", Value: value, RefreshToken: refresh, Type: "oauth_token",
		Scope: vault.ScopeExternalUser, ExternalUserID: "eu1", ExposeAsEnv: "OPENAI_API_KEY", ResourceID: sbx.ID, AllowedHosts: []string{"api.openai.com"}}))
	must[vault.Secret](t)(c.RotateSecret(ctx, up.Secret.ID, client.RotateInput{Value: rotated}))
	must[vault.Secret](t)(c.DisableSecret(ctx, up.Secret.ID))
	must[vault.Secret](t)(c.EnableSecret(ctx, up.Secret.ID))
	bt := must[client.BrowserToken](t)(c.CreateBrowserToken(ctx, "eu1", 0))
	env := must[client.SandboxEnv](t)(c.SandboxEnv(ctx, sbx.ID))
	ph := env.Env["OPENAI_API_KEY"]
	if ph == "" {
		t.Fatalf("no placeholder in %v", env.Env)
	}
	// Request rows as the proxy's sink writes them: the path holds the
	// placeholder, never the value (and a query string is cut).
	for _, outcome := range []string{"substituted", "denied"} {
		if err := h.store.AppendAudit(audit.Row{Kind: audit.KindRequest, TenantID: h.tenant.ID, ExternalUserID: "eu1", ExternalWorkspaceID: "ew1",
			SandboxID: sbx.ID, SecretID: up.Secret.ID, SecretName: "openai", SecretVersion: 2, Level: "binding",
			Host: "api.openai.com", Method: "GET", Path: "/v1/" + ph + "?key=" + ph, Status: 200, Outcome: outcome,
			Uses: []audit.Use{{Name: "openai", SecretID: up.Secret.ID, Version: 2, Location: "path", Action: outcome}}}); err != nil {
			t.Fatal(err)
		}
	}

	var bodies []string
	get := func(token, query string) string {
		t.Helper()
		code, body := h.do("GET", "/api/v1/audit?"+query, token, nil)
		if code >= 500 {
			t.Fatalf("%s: %d %s", query, code, body)
		}
		bodies = append(bodies, body)
		return body
	}
	for _, tok := range []string{h.adminKey, bt.Token} {
		for _, q := range []string{"", "limit=1", "kind=admin", "kind=request", "secret_id=" + up.Secret.ID, "sandbox_id=" + sbx.ID, "external_user_id=eu1", "outcome=denied", "since=1d"} {
			get(tok, q)
		}
		// The value where a parameter goes: refused or matching nothing,
		// never echoed.
		for _, p := range []string{"since", "until", "limit", "cursor", "kind", "outcome", "external_user_id", "external_workspace_id", "sandbox_id", "secret_id", value} {
			get(tok, url.QueryEscape(p)+"="+url.QueryEscape(value))
		}
	}
	// Follow every page too.
	p := client.AuditFilter{Limit: 1}
	for {
		page := must[client.AuditPage](t)(c.Audit(ctx, p))
		bodies = append(bodies, page.NextCursor)
		if p.Cursor = page.NextCursor; p.Cursor == "" {
			break
		}
	}
	answers := strings.Join(bodies, "\n")
	if !strings.Contains(answers, up.Secret.ID) || !strings.Contains(answers, `"action":"secret.rotated"`) || !strings.Contains(answers, `"outcome":"denied"`) {
		t.Fatalf("the answers do not hold the rows: %.400s", answers)
	}
	if strings.Contains(answers, "?key=") {
		t.Error("a row holds a query string")
	}
	for where, text := range map[string]string{"audit answers": answers, "log": h.logs.String()} {
		for _, v := range values {
			for _, form := range []string{v, base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)), hex.EncodeToString([]byte(v))} {
				if strings.Contains(text, form) {
					t.Errorf("a stored value (%.12s...) appears in the %s", form, where)
				}
			}
		}
		for _, tok := range []string{h.adminKey, bt.Token, sbx.ProxyToken} {
			if strings.Contains(text, tok) {
				t.Errorf("a token appears in the %s", where)
			}
		}
	}
}

package api_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// auditNow is the API's clock in the audit query tests: relative since
// and until are read against it.
var auditNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newAuditHarness(t *testing.T) *harness {
	h := newHarnessWith(t, func(c *api.Config) { c.Now = func() time.Time { return auditNow } })
	// The tests compare the log with what they seeded: drop the row of the
	// tenant's creation (the harness made it through the API).
	if n, err := h.store.PruneAudit(time.Now().Add(time.Hour), 0); err != nil || n != 1 {
		t.Fatalf("pruned %d rows of a new tenant (%v), want its tenant.created row", n, err)
	}
	return h
}

// seedAudit writes n rows for tenantID straight into the log, as the
// proxy's sink would: mostly request rows, some admin rows, every 90
// minutes back from auditNow over 125 days, many sharing a timestamp.
func seedAudit(t *testing.T, store *vault.Store, tenantID string, n int, seed uint64) []audit.Row {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	rows := make([]audit.Row, n)
	for i := range rows {
		at := auditNow.Add(-time.Duration(r.IntN(2000)) * 90 * time.Minute)
		row := audit.Row{
			ID: audit.NewID(at), Time: at, Kind: audit.KindRequest, TenantID: tenantID,
			WorkspaceID: pick("w0", "w1"), ExternalUserID: pick("eu0", "eu1", "eu2", "eu3", ""),
			ExternalWorkspaceID: pick("ew0", "ew1", ""), SandboxID: pick("sb0", "sb1", "sb2", "sb3", "sb4", "sb5", "sb6", "sb7"),
			SecretID: pick("sec0", "sec1", "sec2", "sec3", "sec4", ""),
			Host:     "api.example.test", Method: "POST", Path: "/v1/x", Status: 200,
			Outcome: pick("substituted", "denied", "left", "error"),
		}
		if row.SecretID != "" {
			row.Uses = []audit.Use{{Name: "n", SecretID: row.SecretID}}
			if r.IntN(3) == 0 {
				row.Uses = append(row.Uses, audit.Use{Name: "m", SecretID: pick("sec0", "sec1", "sec2", "sec3", "sec4")})
			}
		}
		if r.IntN(10) == 0 {
			row.Kind, row.Action, row.ActorKind, row.ActorID = audit.KindAdmin, vault.ActionSecretRotated, vault.ActorAPIKey, "key_x"
			row.Host, row.Method, row.Path, row.Status, row.Outcome, row.Uses = "", "", "", 0, "", nil
		}
		rows[i] = row
	}
	if err := store.AppendAudit(rows...); err != nil {
		t.Fatal(err)
	}
	return rows
}

// bruteForce is the rows of all that match f (Since, Until already
// resolved), newest first: the answer the API must give.
func bruteForce(all []audit.Row, f audit.Filter) []string {
	var out []audit.Row
	for _, r := range all {
		usesSecret := r.SecretID == f.SecretID
		for _, u := range r.Uses {
			usesSecret = usesSecret || u.SecretID == f.SecretID
		}
		if (f.ExternalUserID == "" || r.ExternalUserID == f.ExternalUserID) &&
			(f.ExternalWorkspaceID == "" || r.ExternalWorkspaceID == f.ExternalWorkspaceID) &&
			(f.SandboxID == "" || r.SandboxID == f.SandboxID) &&
			(f.SecretID == "" || usesSecret) &&
			(f.Outcome == "" || r.Outcome == f.Outcome) &&
			(f.Kind == "" || r.Kind == f.Kind) &&
			(f.Since.IsZero() || !r.Time.Before(f.Since)) &&
			(f.Until.IsZero() || r.Time.Before(f.Until)) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b audit.Row) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	ids := make([]string, len(out))
	for i, r := range out {
		ids[i] = r.ID
	}
	return ids
}

// pages follows the cursors of f through the API, checking each page's
// size, and returns the ids in order.
func pages(t *testing.T, c *client.Client, f client.AuditFilter) []string {
	t.Helper()
	var ids []string
	for n := 0; ; n++ {
		p, err := c.Audit(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		limit := f.Limit
		if limit == 0 {
			limit = audit.DefaultLimit
		}
		if len(p.Rows) > limit || n > 10000 {
			t.Fatalf("page %d: %d rows, limit %d", n, len(p.Rows), limit)
		}
		for _, r := range p.Rows {
			ids = append(ids, r.ID)
		}
		if p.NextCursor == "" {
			return ids
		}
		f.Cursor = p.NextCursor
	}
}

// TestAuditFiltersAndPages pages through a few thousand rows with each
// filter and several page sizes: the pages, joined, are exactly the rows a
// brute-force filter picks, in order, each once.
func TestAuditFiltersAndPages(t *testing.T) {
	h := newAuditHarness(t)
	all := seedAudit(t, h.store, h.tenant.ID, 3000, 7)
	ago := func(d time.Duration) time.Time { return auditNow.Add(-d) }
	day := 24 * time.Hour
	cases := []struct {
		name string
		q    client.AuditFilter
		want audit.Filter
	}{
		{"everything", client.AuditFilter{}, audit.Filter{}},
		{"external user", client.AuditFilter{ExternalUserID: "eu1"}, audit.Filter{ExternalUserID: "eu1"}},
		{"external workspace", client.AuditFilter{ExternalWorkspaceID: "ew0"}, audit.Filter{ExternalWorkspaceID: "ew0"}},
		{"sandbox", client.AuditFilter{SandboxID: "sb3"}, audit.Filter{SandboxID: "sb3"}},
		{"secret, also among uses", client.AuditFilter{SecretID: "sec2"}, audit.Filter{SecretID: "sec2"}},
		{"outcome", client.AuditFilter{Outcome: "denied"}, audit.Filter{Outcome: "denied"}},
		{"kind admin", client.AuditFilter{Kind: "admin"}, audit.Filter{Kind: "admin"}},
		{"kind, user, outcome", client.AuditFilter{Kind: "request", ExternalUserID: "eu2", Outcome: "substituted"}, audit.Filter{Kind: "request", ExternalUserID: "eu2", Outcome: "substituted"}},
		{"since 7d", client.AuditFilter{Since: "7d"}, audit.Filter{Since: ago(7 * day)}},
		{"since 90m", client.AuditFilter{Since: "90m"}, audit.Filter{Since: ago(90 * time.Minute)}},
		{"30d to 7d", client.AuditFilter{Since: "30d", Until: "7d"}, audit.Filter{Since: ago(30 * day), Until: ago(7 * day)}},
		{"until 12h, sandbox", client.AuditFilter{Until: "12h", SandboxID: "sb1"}, audit.Filter{Until: ago(12 * time.Hour), SandboxID: "sb1"}},
		{"RFC 3339 window, workspace", client.AuditFilter{Since: ago(50*day - 30*time.Minute).Format(time.RFC3339), Until: ago(10 * day).In(time.FixedZone("x", 7200)).Format(time.RFC3339), ExternalWorkspaceID: "ew1"},
			audit.Filter{Since: ago(50*day - 30*time.Minute), Until: ago(10 * day), ExternalWorkspaceID: "ew1"}},
		{"every id", client.AuditFilter{SecretID: "sec0", SandboxID: "sb0", ExternalUserID: "eu0", ExternalWorkspaceID: "ew0"}, audit.Filter{SecretID: "sec0", SandboxID: "sb0", ExternalUserID: "eu0", ExternalWorkspaceID: "ew0"}},
		{"since 30d, admin", client.AuditFilter{Since: "30d", Kind: "admin"}, audit.Filter{Since: ago(30 * day), Kind: "admin"}},
		{"nobody", client.AuditFilter{ExternalUserID: "nobody"}, audit.Filter{ExternalUserID: "nobody"}},
	}
	limits := []int{13, 100, 1000}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := bruteForce(all, tc.want)
			ls := []int{limits[i%len(limits)]}
			if i == 0 {
				ls = append(limits, 0, 1)
			}
			for _, l := range ls {
				q := tc.q
				q.Limit = l
				if got := pages(t, h.admin, q); !slices.Equal(got, want) {
					t.Errorf("limit %d: %d rows, want %d (first difference at %d)", l, len(got), len(want), firstDiff(got, want))
				}
			}
		})
	}
	if n := len(bruteForce(all, audit.Filter{})); n != 3000 {
		t.Fatalf("%d rows seeded", n)
	}
	// The default page is 100 rows.
	if p := must[client.AuditPage](t)(h.admin.Audit(context.Background(), client.AuditFilter{})); len(p.Rows) != 100 || p.NextCursor == "" {
		t.Errorf("default page: %d rows, cursor %q", len(p.Rows), p.NextCursor)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

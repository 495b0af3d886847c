package api_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

// auditNow is the API's clock in the audit query tests: relative since
// and until are read against it.
var auditNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newAuditHarness(t *testing.T) *harness {
	return newHarnessWith(t, func(c *api.Config) { c.Now = func() time.Time { return auditNow } })
}

// seedAudit writes n rows for tenantID straight into the log, as the
// proxy's sink would: mostly request rows, some admin rows, every 90
// minutes back from auditNow over 125 days, many sharing a timestamp.
func seedAudit(t *testing.T, store *vault.Store, tenantID string, n int, seed uint64) []vault.AuditRow {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	rows := make([]vault.AuditRow, n)
	for i := range rows {
		at := auditNow.Add(-time.Duration(r.IntN(2000)) * 90 * time.Minute)
		row := vault.AuditRow{
			ID: vault.NewAuditID(at), Time: at, Kind: vault.AuditKindRequest, TenantID: tenantID,
			WorkspaceID: pick("w0", "w1"), ExternalUserID: pick("eu0", "eu1", "eu2", "eu3", ""),
			ExternalWorkspaceID: pick("ew0", "ew1", ""), SandboxID: pick("sb0", "sb1", "sb2", "sb3", "sb4", "sb5", "sb6", "sb7"),
			SecretID: pick("sec0", "sec1", "sec2", "sec3", "sec4", ""),
			Host:     "api.example.test", Method: "POST", Path: "/v1/x", Status: 200,
			Outcome: pick("substituted", "denied", "left", "error"),
		}
		if row.SecretID != "" {
			row.Uses = []vault.AuditUse{{Name: "n", SecretID: row.SecretID}}
			if r.IntN(3) == 0 {
				row.Uses = append(row.Uses, vault.AuditUse{Name: "m", SecretID: pick("sec0", "sec1", "sec2", "sec3", "sec4")})
			}
		}
		if r.IntN(10) == 0 {
			row.Kind, row.Action, row.ActorKind, row.ActorID = vault.AuditKindAdmin, vault.ActionSecretRotated, vault.ActorAPIKey, "key_x"
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
func bruteForce(all []vault.AuditRow, f vault.AuditFilter) []string {
	var out []vault.AuditRow
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
	slices.SortFunc(out, func(a, b vault.AuditRow) int {
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
			limit = vault.DefaultAuditLimit
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
		want vault.AuditFilter
	}{
		{"everything", client.AuditFilter{}, vault.AuditFilter{}},
		{"external user", client.AuditFilter{ExternalUserID: "eu1"}, vault.AuditFilter{ExternalUserID: "eu1"}},
		{"external workspace", client.AuditFilter{ExternalWorkspaceID: "ew0"}, vault.AuditFilter{ExternalWorkspaceID: "ew0"}},
		{"sandbox", client.AuditFilter{SandboxID: "sb3"}, vault.AuditFilter{SandboxID: "sb3"}},
		{"secret, also among uses", client.AuditFilter{SecretID: "sec2"}, vault.AuditFilter{SecretID: "sec2"}},
		{"outcome", client.AuditFilter{Outcome: "denied"}, vault.AuditFilter{Outcome: "denied"}},
		{"kind admin", client.AuditFilter{Kind: "admin"}, vault.AuditFilter{Kind: "admin"}},
		{"kind, user, outcome", client.AuditFilter{Kind: "request", ExternalUserID: "eu2", Outcome: "substituted"}, vault.AuditFilter{Kind: "request", ExternalUserID: "eu2", Outcome: "substituted"}},
		{"since 7d", client.AuditFilter{Since: "7d"}, vault.AuditFilter{Since: ago(7 * day)}},
		{"since 90m", client.AuditFilter{Since: "90m"}, vault.AuditFilter{Since: ago(90 * time.Minute)}},
		{"30d to 7d", client.AuditFilter{Since: "30d", Until: "7d"}, vault.AuditFilter{Since: ago(30 * day), Until: ago(7 * day)}},
		{"until 12h, sandbox", client.AuditFilter{Until: "12h", SandboxID: "sb1"}, vault.AuditFilter{Until: ago(12 * time.Hour), SandboxID: "sb1"}},
		{"RFC 3339 window, workspace", client.AuditFilter{Since: ago(50*day - 30*time.Minute).Format(time.RFC3339), Until: ago(10 * day).In(time.FixedZone("x", 7200)).Format(time.RFC3339), ExternalWorkspaceID: "ew1"},
			vault.AuditFilter{Since: ago(50*day - 30*time.Minute), Until: ago(10 * day), ExternalWorkspaceID: "ew1"}},
		{"every id", client.AuditFilter{SecretID: "sec0", SandboxID: "sb0", ExternalUserID: "eu0", ExternalWorkspaceID: "ew0"}, vault.AuditFilter{SecretID: "sec0", SandboxID: "sb0", ExternalUserID: "eu0", ExternalWorkspaceID: "ew0"}},
		{"since 30d, admin", client.AuditFilter{Since: "30d", Kind: "admin"}, vault.AuditFilter{Since: ago(30 * day), Kind: "admin"}},
		{"nobody", client.AuditFilter{ExternalUserID: "nobody"}, vault.AuditFilter{ExternalUserID: "nobody"}},
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
	if n := len(bruteForce(all, vault.AuditFilter{})); n != 3000 {
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

// TestAuditSinceUntil reads since and until in each form against rows at
// known ages; since is inclusive, until exclusive.
func TestAuditSinceUntil(t *testing.T) {
	h := newAuditHarness(t)
	day := 24 * time.Hour
	ages := map[string]time.Duration{
		"1m": time.Minute, "89m": 89 * time.Minute, "90m": 90 * time.Minute, "91m": 91 * time.Minute,
		"11h": 11 * time.Hour, "12h": 12 * time.Hour, "13h": 13 * time.Hour, "6d": 6 * day, "7d": 7 * day,
		"8d": 8 * day, "29d": 29 * day, "31d": 31 * day, "100d": 100 * day,
	}
	var rows []vault.AuditRow
	for name, age := range ages {
		rows = append(rows, vault.AuditRow{ID: "r_" + name, Time: auditNow.Add(-age), Kind: vault.AuditKindRequest, TenantID: h.tenant.ID, Outcome: "substituted"})
	}
	if err := h.store.AppendAudit(rows...); err != nil {
		t.Fatal(err)
	}
	rfc := func(d time.Duration) string { return url.QueryEscape(auditNow.Add(-d).Format(time.RFC3339Nano)) }
	cases := []struct {
		query string
		want  string // the rows' names, newest first; or the error's text
	}{
		{"since=90m", "1m 89m 90m"},
		{"since=12h", "1m 89m 90m 91m 11h 12h"},
		{"since=2h30m", "1m 89m 90m 91m"},
		{"since=7d", "1m 89m 90m 91m 11h 12h 13h 6d 7d"},
		{"since=30d", "1m 89m 90m 91m 11h 12h 13h 6d 7d 8d 29d"},
		{"until=12h", "13h 6d 7d 8d 29d 31d 100d"},
		{"until=1m", "89m 90m 91m 11h 12h 13h 6d 7d 8d 29d 31d 100d"},
		{"since=30d&until=7d", "8d 29d"},
		{"since=" + rfc(8*day) + "&until=" + rfc(90*time.Minute), "91m 11h 12h 13h 6d 7d 8d"},
		{"since=" + url.QueryEscape(auditNow.Add(-13*time.Hour).In(time.FixedZone("", -5*3600)).Format(time.RFC3339)), "1m 89m 90m 91m 11h 12h 13h"},
		{"since=%207d%20", "1m 89m 90m 91m 11h 12h 13h 6d 7d"},
		{"since=", "1m 89m 90m 91m 11h 12h 13h 6d 7d 8d 29d 31d 100d"},
		{"since=7x", "error since:"},
		{"since=-7d", "error since:"},
		{"since=d", "error since:"},
		{"since=7.5d", "error since:"},
		{"since=-5m", "error since:"},
		{"since=last+week", "error since:"},
		{"until=yesterday", "error until:"},
		{"since=2025-13-01T00:00:00Z", "error since:"},
		{"since=2025-06-01", "error since:"},
		{"since=1969-12-31T23:59:59Z", "error since: out of range"},
		{"until=2300-01-01T00:00:00Z", "error until: out of range"},
		{"since=1d&until=7d", "error until: must be after since"},
		{"since=7d&until=7d", "error until: must be after since"},
	}
	for _, tc := range cases {
		code, body := h.do("GET", "/api/v1/audit?"+tc.query, h.adminKey, nil)
		if msg, ok := strings.CutPrefix(tc.want, "error "); ok {
			checkRefusal(t, code, body, 400, msg)
			continue
		}
		var page api.AuditPage
		if code != 200 || jsonUnmarshal(body, &page) != nil {
			t.Errorf("%s: %d %s", tc.query, code, body)
			continue
		}
		var got []string
		for _, r := range page.Rows {
			got = append(got, strings.TrimPrefix(r.ID, "r_"))
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s: %s, want %s", tc.query, g, tc.want)
		}
	}
}

// TestAuditBadQuery refuses unknown, repeated and malformed parameters
// with 400 and a message that names the parameter.
func TestAuditBadQuery(t *testing.T) {
	h := newAuditHarness(t)
	for query, msg := range map[string]string{
		"foo=1":                             "unknown query parameter \"foo\"",
		"Since=7d":                          "unknown query parameter",
		"limit=0":                           "limit: want a whole number from 1 to 1000",
		"limit=1001":                        "limit:",
		"limit=-1":                          "limit:",
		"limit=abc":                         "limit:",
		"limit=1.5":                         "limit:",
		"cursor=garbage!":                   "cursor",
		"cursor=AAAA":                       "cursor",
		"cursor=" + strings.Repeat("A", 60): "cursor",
		"kind=other":                        "kind: want request or admin",
		"since=7d&since=8d":                 "given 2 times",
		"external_user_id=a%00b":            "external_user_id",
		"sandbox_id=" + strings.Repeat("s", 2000): "sandbox_id",
		"a=%zz": "malformed query string",
	} {
		code, body := h.do("GET", "/api/v1/audit?"+query, h.adminKey, nil)
		checkRefusal(t, code, body, 400, msg)
	}
	for _, query := range []string{"limit=1", "limit=1000", "kind=request", "kind=admin", "outcome=denied"} {
		if code, body := h.do("GET", "/api/v1/audit?"+query, h.adminKey, nil); code != 200 || !strings.Contains(body, `"next_cursor":""`) {
			t.Errorf("%s: %d %s", query, code, body)
		}
	}
	if code, body := h.do("POST", "/api/v1/audit", h.adminKey, nil); code != 405 {
		t.Errorf("POST: %d %s", code, body)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

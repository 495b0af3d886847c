package audit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var auditBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// auditFixture appends n rows over two tenants that share their external
// ids, with about eight rows on each timestamp, and returns them.
func auditFixture(tb testing.TB, s *testLog, n int) []Row {
	tb.Helper()
	rng := rand.New(rand.NewPCG(4, 2))
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	var rows []Row
	for i := range n {
		t := auditBase.Add(time.Duration(rng.IntN(n/8)) * time.Second)
		r := Row{
			ID: NewID(t), Time: t, Kind: KindRequest, TenantID: pick("ten_a", "ten_b"),
			ExternalUserID: pick("", "eu1", "eu2", "eu3"), ExternalWorkspaceID: pick("", "ew1", "ew2"),
			SandboxID: pick("", "sbx_1", "sbx_2", "sbx_3", "sbx_4", "sbx_5", "sbx_6"), SecretID: pick("", "sec_1", "sec_2", "sec_3", "sec_4"),
			Outcome: pick("substituted", "denied", "left"), Path: fmt.Sprintf("/v1/%d", i),
		}
		if rng.IntN(4) == 0 {
			r.Uses = []Use{{Name: "x", SecretID: pick("sec_1", "sec_2", "sec_3", "sec_4")}, {Name: "y"}}
		}
		if rng.IntN(10) == 0 {
			r.Kind, r.Action, r.Outcome = KindAdmin, "secret.rotated", ""
			r.Details = map[string]string{"outcome": "denied", "kind": "request"}
		}
		if rng.IntN(20) == 0 {
			// Filters that look at the raw row must not see these.
			r.Path = `/q"outcome":"denied","kind":"admin"`
		}
		rows = append(rows, r)
	}
	for i := 0; i < len(rows); i += 97 {
		if err := s.Append(rows[i:min(i+97, len(rows))]...); err != nil {
			tb.Fatal(err)
		}
	}
	// Indexed now: tests that read the buckets directly see every row.
	if err := s.Sync(); err != nil {
		tb.Fatal(err)
	}
	return rows
}

// bruteAudit is what QueryAudit should return over all pages: the rows
// of tenantID that match f, newest first, written without the store's
// own matching code.
func bruteAudit(rows []Row, tenantID string, f Filter) []Row {
	out := []Row{}
	for _, r := range rows {
		usesSecret := r.SecretID == f.SecretID
		for _, u := range r.Uses {
			usesSecret = usesSecret || u.SecretID == f.SecretID
		}
		if r.TenantID == tenantID &&
			(f.ExternalUserID == "" || r.ExternalUserID == f.ExternalUserID) &&
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
	slices.SortFunc(out, func(a, b Row) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

// pages follows the cursors from the first page to the last.
func pages(tb testing.TB, query func(Filter) ([]Row, string, error), f Filter) (all []Row, n int) {
	tb.Helper()
	all = []Row{}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	for {
		rows, next, err := query(f)
		if err != nil {
			tb.Fatalf("page %d: %v", n, err)
		}
		if len(rows) > limit {
			tb.Fatalf("page %d holds %d rows, limit %d", n, len(rows), limit)
		}
		all = append(all, rows...)
		n++
		if next == "" {
			return all, n
		}
		if n > 100000 {
			tb.Fatal("cursors never end")
		}
		f.Cursor = next
	}
}

func TestQueryAuditPages(t *testing.T) {
	s := openTest(t)
	rows := auditFixture(t, s, 3000)
	at := func(sec int) time.Time { return auditBase.Add(time.Duration(sec) * time.Second) }
	filters := []struct {
		name string
		f    Filter
	}{
		{"all", Filter{}},
		{"external user", Filter{ExternalUserID: "eu1"}},
		{"external workspace", Filter{ExternalWorkspaceID: "ew2"}},
		{"sandbox", Filter{SandboxID: "sbx_3"}},
		{"secret, also in uses", Filter{SecretID: "sec_2"}},
		{"outcome", Filter{Outcome: "denied"}},
		{"kind", Filter{Kind: KindAdmin}},
		{"since and until", Filter{Since: at(100), Until: at(200)}},
		{"since", Filter{Since: at(300)}},
		{"until", Filter{Until: at(50)}},
		{"user and outcome", Filter{ExternalUserID: "eu2", Outcome: "substituted"}},
		{"sandbox and user", Filter{SandboxID: "sbx_1", ExternalUserID: "eu3"}},
		{"secret, workspace, window", Filter{SecretID: "sec_4", ExternalWorkspaceID: "ew1", Since: at(20), Until: at(330)}},
		{"every filter", Filter{ExternalUserID: "eu1", ExternalWorkspaceID: "ew1", SandboxID: "sbx_2", SecretID: "sec_1", Outcome: "left", Kind: KindRequest, Since: at(10)}},
		{"no such user", Filter{ExternalUserID: "nobody"}},
		{"empty window", Filter{Since: at(1000), Until: at(2000)}},
	}
	for _, tenant := range []string{"ten_a", "ten_b", "ten_none"} {
		for _, c := range filters {
			want := bruteAudit(rows, tenant, c.f)
			if tenant != "ten_none" && c.name == "all" && len(want) < 1000 {
				t.Fatalf("fixture too small: %d rows", len(want))
			}
			for _, limit := range []int{0, 7, 100, MaxLimit} {
				t.Run(fmt.Sprintf("%s/%s/limit=%d", tenant, c.name, limit), func(t *testing.T) {
					f := c.f
					f.Limit = limit
					got, n := pages(t, func(f Filter) ([]Row, string, error) { return s.Query(tenant, f) }, f)
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("%d rows in %d pages, want %d rows%s", len(got), n, len(want), firstDiff(got, want))
					}
					l := max(limit, 1)
					if limit == 0 {
						l = DefaultLimit
					}
					// Full pages, and no empty last page.
					if wantPages := max(1, (len(want)+l-1)/l); n != wantPages {
						t.Errorf("%d pages, want %d", n, wantPages)
					}
				})
			}
			// A scan bound far below the page: short pages, same rows.
			t.Run(fmt.Sprintf("%s/%s/bounded scan", tenant, c.name), func(t *testing.T) {
				got, _ := pages(t, func(f Filter) ([]Row, string, error) { return s.queryAudit(tenant, f, 13, allAuditFields) }, Filter(c.f))
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%d rows, want %d%s", len(got), len(want), firstDiff(got, want))
				}
			})
		}
	}
}

func firstDiff(got, want []Row) string {
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			return fmt.Sprintf("; first difference at %d: got %s %v, want %s %v", i, got[i].ID, got[i].Time, want[i].ID, want[i].Time)
		}
	}
	return ""
}

// TestQueryAuditTenants checks that a tenant's cursor gives another tenant
// nothing of the first: a cursor is a position, applied inside the
// tenant's own keys.
func TestQueryAuditTenants(t *testing.T) {
	s := openTest(t)
	rows := auditFixture(t, s, 400)
	page, next, err := s.Query("ten_a", Filter{Limit: 10, ExternalUserID: "eu1"})
	if err != nil || next == "" || len(page) != 10 {
		t.Fatalf("first page: %d rows, next %q, %v", len(page), next, err)
	}
	got, _ := pages(t, func(f Filter) ([]Row, string, error) { return s.Query("ten_b", f) }, Filter{Cursor: next, ExternalUserID: "eu1"})
	want := bruteAudit(rows, "ten_b", Filter{ExternalUserID: "eu1", Until: page[9].Time.Add(time.Nanosecond)})
	// Rows of ten_b at the cursor's time sort by id around it: drop those
	// the position excludes.
	want = slices.DeleteFunc(want, func(r Row) bool { return r.Time.Equal(page[9].Time) && r.ID >= page[9].ID })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for _, r := range got {
		if r.TenantID != "ten_b" {
			t.Fatalf("ten_b sees a row of %s", r.TenantID)
		}
	}
}

func TestQueryAuditRefuses(t *testing.T) {
	s := openTest(t)
	auditFixture(t, s, 50)
	id := NewID(auditBase)
	enc := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	good := enc(append(append([]byte{cursorVersion}, auditTime(auditBase)...), id...))
	if _, _, err := s.Query("ten_a", Filter{Cursor: good}); err != nil {
		t.Fatalf("good cursor: %v", err)
	}
	for _, c := range []struct {
		name   string
		tenant string
		f      Filter
	}{
		{"no tenant", "", Filter{}},
		{"negative limit", "ten_a", Filter{Limit: -1}},
		{"limit over the max", "ten_a", Filter{Limit: MaxLimit + 1}},
		{"since after until", "ten_a", Filter{Since: auditBase.Add(time.Hour), Until: auditBase}},
		{"since equals until", "ten_a", Filter{Since: auditBase, Until: auditBase}},
		{"since before 1970", "ten_a", Filter{Since: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"unknown kind", "ten_a", Filter{Kind: "debug"}},
		{"NUL in a filter", "ten_a", Filter{ExternalUserID: "eu\x00"}},
		{"cursor not base64", "ten_a", Filter{Cursor: "!!!"}},
		{"cursor padded", "ten_a", Filter{Cursor: good + "="}},
		{"cursor of another version", "ten_a", Filter{Cursor: enc(append(append([]byte{9}, auditTime(auditBase)...), id...))}},
		{"cursor without id", "ten_a", Filter{Cursor: enc(append([]byte{cursorVersion}, auditTime(auditBase)...))}},
		{"cursor too short", "ten_a", Filter{Cursor: enc([]byte{cursorVersion, 1, 2})}},
		{"cursor with a bad id", "ten_a", Filter{Cursor: enc(append(append([]byte{cursorVersion}, auditTime(auditBase)...), "a\x00b"...))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := s.Query(c.tenant, c.f); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
		})
	}
}

package api_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
	"github.com/egressd/egressd/vault"
)

func jsonlIDs(t *testing.T, body string) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r audit.Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", len(ids)+1, err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

func csvRecords(t *testing.T, body string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// exportedCSVRow is the row with id in the tenant's CSV export, cell by
// column name; the test fails if the export lacks it.
func exportedCSVRow(t *testing.T, h *harness, id string) map[string]string {
	t.Helper()
	_, body := h.get("/api/v1/audit/export?format=csv", h.adminKey)
	recs := csvRecords(t, body)
	for _, r := range recs[1:] {
		row := make(map[string]string, len(r))
		for i, name := range recs[0] {
			row[name] = r[i]
		}
		if row["id"] == id {
			return row
		}
	}
	t.Fatal("the row is not in the export")
	return nil
}

// TestAuditExport streams every matching row across pages, in both
// formats, in the list's order.
func TestAuditExport(t *testing.T) {
	h := newAuditHarness(t)
	all := seedAudit(t, h.store, h.tenant.ID, 2600, 7)
	rfc := func(d time.Duration) string { return url.QueryEscape(auditNow.Add(-d).Format(time.RFC3339Nano)) }
	for _, c := range []struct {
		name  string
		query string
		f     audit.Filter
	}{
		{"everything (more than one page)", "", audit.Filter{}},
		{"external user", "external_user_id=eu1", audit.Filter{ExternalUserID: "eu1"}},
		{"window, outcome and kind", "since=30d&until=" + rfc(24*time.Hour) + "&outcome=denied&kind=request",
			audit.Filter{Since: auditNow.Add(-30 * 24 * time.Hour), Until: auditNow.Add(-24 * time.Hour), Outcome: "denied", Kind: "request"}},
		{"secret (also in uses)", "secret_id=sec2", audit.Filter{SecretID: "sec2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := bruteForce(all, c.f)
			if c.f == (audit.Filter{}) && len(want) <= audit.MaxLimit {
				t.Fatalf("fixture too small: %d rows", len(want))
			}
			resp, body := h.get("/api/v1/audit/export?"+c.query, h.adminKey)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
				t.Fatalf("jsonl: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if got := jsonlIDs(t, body); !slices.Equal(got, want) {
				t.Fatalf("jsonl: %d rows, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
			}
			resp, body = h.get("/api/v1/audit/export?format=csv&"+c.query, h.adminKey)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
				t.Fatalf("csv: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			recs := csvRecords(t, body)
			if recs[0][0] != "time" || recs[0][1] != "id" {
				t.Fatalf("csv header %v", recs[0])
			}
			var got []string
			for _, r := range recs[1:] {
				if len(r) != len(recs[0]) {
					t.Fatalf("a record of %d cells under %d columns", len(r), len(recs[0]))
				}
				got = append(got, r[1])
			}
			if !slices.Equal(got, want) {
				t.Fatalf("csv: %d rows, want %d", len(got), len(want))
			}
		})
	}
	resp, _ := h.get("/api/v1/audit/export?format=csv&external_user_id=eu1", h.adminKey)
	cd := resp.Header.Get("Content-Disposition")
	if !strings.HasPrefix(cd, `attachment; filename="egressd-audit-`+h.tenant.ID+`-20250601T120000Z.csv"`) ||
		resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers: %v", resp.Header)
	}
}

// Regression: a CSV cell that starts like a formula is defused (CSV
// injection), and values sent to the API never appear in an export.
func TestAuditExportCSVSafeAndNoValues(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	value := randomText("sk-export-")
	sec := must[client.UpsertResult](t)(h.admin.UpsertSecret(ctx, client.SecretInput{Name: "K", Value: value, Scope: vault.ScopeTenant, AllowedHosts: []string{"api.example.com"}}))
	must[vault.Secret](t)(h.admin.RotateSecret(ctx, sec.Secret.ID, client.RotateInput{Value: value + "-2"}))
	at := time.Now().UTC()
	evil := []audit.Row{{ID: audit.NewID(at), Time: at, Kind: audit.KindRequest, TenantID: h.tenant.ID,
		Host: "h.test", Method: "GET", Path: "/=cmd|'/c calc'!A0", SecretName: "=HYPERLINK(\"http://x\")", Reason: "+1",
		ExternalUserID: "@user", ExternalWorkspaceID: "-2", ExternalProjectID: "\tx", SandboxID: "sbx_1", Outcome: "denied"}}
	if err := h.store.AppendAudit(evil...); err != nil {
		t.Fatal(err)
	}
	row := exportedCSVRow(t, h, evil[0].ID)
	for name, want := range map[string]string{
		"secret_name": `'=HYPERLINK("http://x")`, "reason": "'+1", "external_user_id": "'@user",
		"external_workspace_id": "'-2", "external_project_id": "'\tx", "path": "/=cmd|'/c calc'!A0", "host": "h.test",
	} {
		if got := row[name]; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	for _, format := range []string{"jsonl", "csv"} {
		_, body := h.get("/api/v1/audit/export?format="+format, h.adminKey)
		if strings.Contains(body, value) {
			t.Errorf("%s export holds a secret value", format)
		}
		if !strings.Contains(body, sec.Secret.ID) {
			t.Errorf("%s export lacks the secret's admin rows", format)
		}
	}
}

// A browser token exports only its own external user's rows, as the list
// answers them.
func TestAuditExportBrowserToken(t *testing.T) {
	h := newAuditHarness(t)
	all := seedAudit(t, h.store, h.tenant.ID, 600, 3)
	bt := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(context.Background(), "eu2", time.Hour))
	for _, q := range []string{"", "format=csv", "external_user_id=eu2"} {
		resp, body := h.get("/api/v1/audit/export?"+q, bt.Token)
		if resp.StatusCode != 200 {
			t.Fatalf("%q: %d %s", q, resp.StatusCode, body)
		}
		want := bruteForce(all, audit.Filter{ExternalUserID: "eu2"})
		var got []string
		if strings.Contains(q, "csv") {
			for _, r := range csvRecords(t, body)[1:] {
				got = append(got, r[1])
			}
		} else {
			got = jsonlIDs(t, body)
		}
		// Newest first: the token's own issuing (an admin row naming eu2,
		// stamped by the real clock), then the seeded rows of eu2.
		if len(got) != len(want)+1 || !slices.Equal(got[1:], want) {
			t.Fatalf("%q: %d rows, want the %d of eu2 and the token's admin row", q, len(got), len(want))
		}
		if strings.Contains(body, `"external_user_id":"eu1"`) || strings.Contains(body, ",eu1,") {
			t.Fatalf("%q: another user's rows", q)
		}
	}
	resp, body := h.get("/api/v1/audit/export?external_user_id=eu1", bt.Token)
	checkRefusal(t, resp.StatusCode, body, 403, "its own external user")
}

func TestAuditExportRefuses(t *testing.T) {
	h := newHarness(t)
	h.checkQueryRefusals(t, "/api/v1/audit/export", []queryRefusal{
		{"unknown format", "format=xml", 400, "format: want jsonl or csv"},
		{"limit is not a parameter here", "limit=10", 400, "unknown query parameter"},
		{"cursor is not a parameter here", "cursor=abc", 400, "unknown query parameter"},
		{"bad since", "since=yesterday", 400, "since:"},
		{"until before since", "since=1h&until=2h", 400, "until: must be after since"},
		{"repeated", "format=csv&format=jsonl", 400, "given 2 times"},
	})
	code, body := h.do("GET", "/api/v1/audit/export", "", nil)
	checkRefusal(t, code, body, 401, "missing bearer token")
	code, body = h.do("GET", "/api/v1/audit/export", h.operatorKey, nil)
	checkRefusal(t, code, body, 403, "operator key")
}

package api_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/client"
)

func getSummary(t *testing.T, h *harness, query, token string) audit.Summary {
	t.Helper()
	resp, body := h.get("/api/v1/audit/summary?"+query, token)
	if resp.StatusCode != 200 {
		t.Fatalf("%q: %d %s", query, resp.StatusCode, body)
	}
	var s audit.Summary
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuditSummary counts request rows per bucket, by outcome and level,
// as the rows themselves say.
func TestAuditSummary(t *testing.T) {
	h := newAuditHarness(t)
	all := seedAudit(t, h.store, h.tenant.ID, 2000, 11)
	rfc := func(tm time.Time) string { return url.QueryEscape(tm.Format(time.RFC3339)) }
	since, until := auditNow.Add(-30*24*time.Hour), auditNow.Add(-2*24*time.Hour)
	for _, c := range []struct {
		name, query string
		f           audit.Filter
		bucket      time.Duration
	}{
		{"days", "since=" + rfc(since) + "&until=" + rfc(until) + "&bucket=1d", audit.Filter{Since: since, Until: until}, 24 * time.Hour},
		{"relative since, auto bucket", "since=30d", audit.Filter{Since: since, Until: auditNow}, 12 * time.Hour},
		{"external user and outcome", "since=30d&bucket=6h&external_user_id=eu3&outcome=denied",
			audit.Filter{Since: since, Until: auditNow, ExternalUserID: "eu3", Outcome: "denied"}, 6 * time.Hour},
		{"sandbox", "since=30d&bucket=12h&sandbox_id=sb4", audit.Filter{Since: since, Until: auditNow, SandboxID: "sb4"}, 12 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := getSummary(t, h, c.query, h.adminKey)
			if got.BucketSeconds != int64(c.bucket/time.Second) || !got.Since.Equal(c.f.Since) || !got.Until.Equal(c.f.Until) {
				t.Fatalf("window %v–%v by %ds, want %v–%v by %v", got.Since, got.Until, got.BucketSeconds, c.f.Since, c.f.Until, c.bucket)
			}
			f := c.f
			f.Kind = audit.KindRequest
			want := map[string]int{}
			byID := map[string]audit.Row{}
			for _, r := range all {
				byID[r.ID] = r
			}
			n := 0
			for _, id := range bruteForce(all, f) {
				want[byID[id].Outcome]++
				n++
			}
			if n == 0 {
				t.Fatal("fixture matches nothing")
			}
			if got.Total.Requests != n || got.Truncated {
				t.Fatalf("%d requests (truncated %v), want %d", got.Total.Requests, got.Truncated, n)
			}
			for o, k := range want {
				if got.Total.Outcomes[o] != k {
					t.Errorf("outcome %s: %d, want %d", o, got.Total.Outcomes[o], k)
				}
			}
			sum := 0
			for _, b := range got.Buckets {
				sum += b.Requests
			}
			if sum != n || got.Total.Levels["none"] != n {
				t.Errorf("buckets add up to %d, levels %v; want %d", sum, got.Total.Levels, n)
			}
		})
	}
}

// The default window is the last 24 hours of the server's clock.
func TestAuditSummaryDefaults(t *testing.T) {
	h := newAuditHarness(t)
	got := getSummary(t, h, "", h.adminKey)
	if !got.Until.Equal(auditNow) || !got.Since.Equal(auditNow.Add(-24*time.Hour)) || got.BucketSeconds != 30*60 || len(got.Buckets) != 48 {
		t.Fatalf("default window %v–%v by %ds (%d buckets)", got.Since, got.Until, got.BucketSeconds, len(got.Buckets))
	}
	if got.MaxRows != audit.MaxSummaryRows || got.Truncated || got.CompleteSince != nil {
		t.Errorf("bounds: %+v", got)
	}
}

// A browser token counts only its own external user's rows.
func TestAuditSummaryBrowserToken(t *testing.T) {
	h := newAuditHarness(t)
	all := seedAudit(t, h.store, h.tenant.ID, 800, 5)
	bt := must[client.BrowserToken](t)(h.admin.CreateBrowserToken(context.Background(), "eu0", time.Hour))
	got := getSummary(t, h, "since=400d", bt.Token)
	want := len(bruteForce(all, audit.Filter{ExternalUserID: "eu0", Kind: audit.KindRequest}))
	if got.Total.Requests != want || want == 0 {
		t.Fatalf("%d requests, want the %d of eu0", got.Total.Requests, want)
	}
	resp, body := h.get("/api/v1/audit/summary?external_user_id=eu1", bt.Token)
	checkRefusal(t, resp.StatusCode, body, 403, "its own external user")
}

func TestAuditSummaryRefuses(t *testing.T) {
	h := newHarness(t)
	h.checkQueryRefusals(t, "/api/v1/audit/summary", []queryRefusal{
		{"bad bucket", "bucket=often", 400, "bucket: want a width"},
		{"sub-second bucket", "bucket=10ms", 400, "bucket: at least 1s"},
		{"too many buckets", "since=30d&bucket=1m", 400, "more than 1000 buckets"},
		{"zero days", "bucket=0d", 400, "bucket: want a width"},
		{"kind is not a parameter here", "kind=admin", 400, "unknown query parameter"},
		{"limit is not a parameter here", "limit=5", 400, "unknown query parameter"},
		{"until before since", "since=1h&until=2h", 400, "until: must be after since"},
		{"until in the past, no since", "until=2000-01-01T00:00:00Z&since=2001-01-01T00:00:00Z", 400, "until: must be after since"},
	})
	code, body := h.do("GET", "/api/v1/audit/summary", h.operatorKey, nil)
	checkRefusal(t, code, body, 403, "operator key")
}

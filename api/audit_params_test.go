package api_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/api"
	"github.com/egressd/egressd/audit"
)

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
	var rows []audit.Row
	for name, age := range ages {
		rows = append(rows, audit.Row{ID: "r_" + name, Time: auditNow.Add(-age), Kind: audit.KindRequest, TenantID: h.tenant.ID, Outcome: "substituted"})
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

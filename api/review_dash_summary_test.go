package api_test

import (
	"net/url"
	"testing"
)

// Regression: a huge bucket (up to Go's 292-year Duration) overflowed the bucket count (a negative make panicked, 500) or mis-bucketed rows.
func TestReviewDashSummaryHugeBucket(t *testing.T) {
	h := newHarness(t)
	q := func(s string) string { return url.QueryEscape(s) }
	h.checkQueryRefusals(t, "/api/v1/audit/summary", []queryRefusal{
		{"146 years", "since=" + q("1970-01-01T00:00:00Z") + "&until=" + q("2200-01-01T00:00:00Z") + "&bucket=1281023h", 400, "bucket: at most"},
		{"max duration", "since=" + q("1970-01-01T00:00:00Z") + "&until=" + q("2200-01-01T00:00:00Z") + "&bucket=2562047h", 400, "bucket: at most"},
		{"200 years", "since=" + q("1970-01-01T00:00:00Z") + "&until=" + q("2200-01-01T00:00:00Z") + "&bucket=1752000h", 400, "bucket: at most"},
	})
	// The widest bucket the API takes still answers.
	getSummary(t, h, "since="+q("1970-01-01T00:00:00Z")+"&until="+q("2200-01-01T00:00:00Z")+"&bucket=3650d", h.adminKey)
	getSummary(t, h, "since="+q("1970-01-01T00:00:00Z")+"&until="+q("2200-01-01T00:00:00Z"), h.adminKey)
}

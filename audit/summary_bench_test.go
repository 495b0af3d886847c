package audit

import (
	"testing"
	"time"
)

// BenchmarkSummarizeAudit is the dashboard's chart on a large tenant:
// SummarizeAudit of a day of 16,700 request rows (10 tenants of as many
// interleaved, rows shaped as egress-bench -size makes them), hourly
// buckets; and the same filtered by one sandbox.
func BenchmarkSummarizeAudit(b *testing.B) {
	s := openTest(b)
	const tenants, perTenant = 10, 16700
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fillSizeRows(b, s, tenants, 0, tenants*perTenant, start, 24*time.Hour/(tenants*perTenant))
	tenant := sizeRow(0, 0, start).TenantID
	for _, c := range []struct {
		name string
		f    Filter
	}{
		{"day", Filter{}},
		{"day-one-sandbox", Filter{SandboxID: sizeRow(0, 3, start).SandboxID}},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := c.f
			f.Since, f.Until = start, start.Add(24*time.Hour)
			b.ReportAllocs()
			for b.Loop() {
				sum, err := s.Summarize(tenant, f, time.Hour)
				if err != nil {
					b.Fatal(err)
				}
				if sum.Total.Requests == 0 || sum.Truncated {
					b.Fatalf("%d requests, truncated %v", sum.Total.Requests, sum.Truncated)
				}
			}
		})
	}
}

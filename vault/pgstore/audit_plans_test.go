package pgstore

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// sizeRecords are n audit records spread over days days before end: half
// of one tenant's (ten_00), the rest of ten others'; each of one of 1,000
// sandboxes of its tenant and of 200 secrets, 60% with one of 2,000
// external users, 40% with one of 300 external workspaces, 5% using
// another secret besides, 0.1% using sec_rare; outcomes substituted 70%,
// passed 20%, denied 8%, upstream_error 2%; one in 50 an admin row.
func sizeRecords(end time.Time, days, from, n, total int) []storage.AuditRecord {
	out := make([]storage.AuditRecord, n)
	span := time.Duration(days) * 24 * time.Hour
	for i := range out {
		k := from + i
		h := uint64(k)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
		h ^= h >> 29
		pick := func(m uint64) uint64 { h = h*0xbf58476d1ce4e5b9 + 1; h ^= h >> 31; return h % m }
		tenant := 0
		if k%20 >= 10 {
			tenant = k % 20
		}
		r := storage.AuditRecord{
			TenantID: fmt.Sprintf("ten_%02d", tenant), Time: end.Add(-span + time.Duration(int64(span)/int64(total)*int64(k))),
			ID: fmt.Sprintf("aud_%016d", k), Kind: "request",
			SandboxID: fmt.Sprintf("sbx_%02d_%04d", tenant, pick(1000)), SecretID: fmt.Sprintf("sec_%d", pick(200)),
		}
		if pick(10) < 6 {
			r.ExternalUserID = fmt.Sprintf("eu_%d", pick(2000))
		}
		if pick(10) < 4 {
			r.ExternalWorkspaceID = fmt.Sprintf("ew_%d", pick(300))
		}
		if pick(100) < 5 {
			r.UseSecretIDs = append(r.UseSecretIDs, fmt.Sprintf("sec_%d", pick(200)))
		}
		if pick(1000) == 0 {
			r.UseSecretIDs = append(r.UseSecretIDs, "sec_rare")
		}
		switch o := pick(100); {
		case o < 70:
			r.Outcome = "substituted"
		case o < 90:
			r.Outcome = "passed"
		case o < 98:
			r.Outcome = "denied"
		default:
			r.Outcome = "upstream_error"
		}
		if pick(50) == 0 {
			r.Kind, r.Outcome, r.SecretID, r.UseSecretIDs = "admin", "", "", nil
		}
		r.Data = fmt.Appendf(nil, "%0300d", k)
		out[i] = r
	}
	return out
}

// BenchmarkAuditQueriesAtSize fills the audit table with
// EGRESSD_TEST_AUDIT_ROWS rows (1,000,000 unless set) as sizeRecords says,
// over 10 days, vacuums and analyzes it as autovacuum would, then times
// each query the vault's API sends (QueryAudit with each filter, pages of
// 101 rows; ScanAudit's export pages of 512), reporting the buffers each
// touches and logging its plan (EXPLAIN ANALYZE), and the time it takes
// with the plan PostgreSQL makes for any values (generic-ms/op, forced:
// a prepared statement may get it after five runs).
//
//	EGRESSD_TEST_POSTGRES=... go test -run '^$' -bench AuditQueriesAtSize -benchtime 20x ./vault/pgstore/
func BenchmarkAuditQueriesAtSize(b *testing.B) {
	total := 1_000_000
	if v := os.Getenv("EGRESSD_TEST_AUDIT_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		total = n
	}
	// EGRESSD_TEST_AUDIT_SCHEMA names a schema to fill and keep (not
	// dropped at the end), and to reuse when it holds the rows already.
	opts := Options{Schema: os.Getenv("EGRESSD_TEST_AUDIT_SCHEMA")}
	s := openTest(b, opts)
	if err := s.EnsureBuckets([]byte("meta")); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	end := time.Now().UTC().Truncate(time.Hour)
	const days = 10
	t0 := time.Now()
	have, err := s.CountAudit()
	if err != nil {
		b.Fatal(err)
	}
	if have == int64(total) {
		var last int64
		if err := s.pool.QueryRow(ctx, "SELECT max(ns) FROM "+s.aq.table).Scan(&last); err != nil {
			b.Fatal(err)
		}
		end = time.Unix(0, last).UTC().Truncate(time.Hour).Add(time.Hour)
		total = 0 // filled before
	}
	for from := 0; from < total; from += 4096 {
		recs := sizeRecords(end, days, from, min(4096, total-from), total)
		if err := s.AppendAudit(recs, storage.AuditMark{Bucket: []byte("meta"), Key: []byte("pos"), Value: []byte("x")}); err != nil {
			b.Fatal(err)
		}
	}
	if total > 0 {
		b.Logf("%d rows shipped in %v", total, time.Since(t0).Round(time.Millisecond))
		if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE "+s.aq.table); err != nil {
			b.Fatal(err)
		}
	}
	var size string
	if err := s.pool.QueryRow(ctx, "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)", s.aq.table).Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.Logf("audit table with its indexes: %s", size)

	mid := end.Add(-days * 24 * time.Hour / 2)
	midPos := storage.AuditPos{Time: mid, ID: "aud_9", Tenant: "ten_00"}
	q := func(f func(*storage.AuditQuery)) func() (string, []any) {
		return func() (string, []any) {
			aq := storage.AuditQuery{TenantID: "ten_00", Limit: 101}
			f(&aq)
			return s.queryAuditSQL(aq)
		}
	}
	for _, c := range []struct {
		name string
		sql  func() (string, []any)
	}{
		{"tenant", q(func(*storage.AuditQuery) {})},
		{"tenant-one-day", q(func(a *storage.AuditQuery) { a.Since, a.Until = mid, mid.Add(24*time.Hour) })},
		{"tenant-page-at-half", q(func(a *storage.AuditQuery) { a.Before = midPos })},
		{"small-tenant", q(func(a *storage.AuditQuery) { a.TenantID = "ten_13" })},
		{"external-user", q(func(a *storage.AuditQuery) { a.ExternalUserID = "eu_7" })},
		{"external-user-page-at-half", q(func(a *storage.AuditQuery) { a.ExternalUserID, a.Before = "eu_7", midPos })},
		{"external-workspace", q(func(a *storage.AuditQuery) { a.ExternalWorkspaceID = "ew_7" })},
		{"sandbox", q(func(a *storage.AuditQuery) { a.SandboxID = "sbx_00_0007" })},
		{"sandbox-none", q(func(a *storage.AuditQuery) { a.SandboxID = "sbx_99_0007" })},
		{"secret", q(func(a *storage.AuditQuery) { a.SecretID = "sec_7" })},
		{"secret-page-at-half", q(func(a *storage.AuditQuery) { a.SecretID, a.Before = "sec_7", midPos })},
		{"secret-used-only", q(func(a *storage.AuditQuery) { a.SecretID = "sec_rare" })},
		{"secret-one-day", q(func(a *storage.AuditQuery) { a.SecretID, a.Since, a.Until = "sec_7", mid, mid.Add(24*time.Hour) })},
		{"outcome-substituted", q(func(a *storage.AuditQuery) { a.Outcome = "substituted" })},
		{"outcome-denied", q(func(a *storage.AuditQuery) { a.Outcome = "denied" })},
		{"outcome-upstream_error", q(func(a *storage.AuditQuery) { a.Outcome = "upstream_error" })},
		{"kind-admin", q(func(a *storage.AuditQuery) { a.Kind = "admin" })},
		{"sandbox-denied-one-day", q(func(a *storage.AuditQuery) {
			a.SandboxID, a.Outcome, a.Since, a.Until = "sbx_00_0007", "denied", mid, mid.Add(24*time.Hour)
		})},
		{"export-first", func() (string, []any) { return s.scanAuditSQL("", time.Time{}, storage.AuditPos{}, 512) }},
		{"export-at-half", func() (string, []any) { return s.scanAuditSQL("", time.Time{}, midPos, 512) }},
		{"export-since-half", func() (string, []any) { return s.scanAuditSQL("", mid, storage.AuditPos{}, 512) }},
		{"export-tenant-at-half", func() (string, []any) { return s.scanAuditSQL("ten_00", time.Time{}, midPos, 512) }},
		{"export-small-tenant-at-half", func() (string, []any) {
			return s.scanAuditSQL("ten_13", time.Time{}, storage.AuditPos{Time: mid, ID: "aud_9", Tenant: "ten_13"}, 512)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			sql, args := c.sql()
			var plan []string
			rows, err := s.pool.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					b.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			buffers := 0
			for _, l := range plan {
				if _, v, ok := strings.Cut(l, "Buffers: shared hit="); ok {
					n, _ := strconv.Atoi(strings.Fields(v)[0])
					if _, r, ok := strings.Cut(v, "read="); ok {
						m, _ := strconv.Atoi(strings.Fields(r)[0])
						n += m
					}
					buffers = n
					break
				}
			}
			n := 0
			for b.Loop() {
				recs, err := s.readAudit(sql, args)
				if err != nil {
					b.Fatal(err)
				}
				n = len(recs)
			}
			// The same with PostgreSQL's plan for any values (which a
			// prepared statement may get after five runs).
			conn, err := s.pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
				b.Fatal(err)
			}
			const runs = 5
			t0 := time.Now()
			for range runs {
				rows, err := conn.Query(ctx, sql, args...)
				if err != nil {
					b.Fatal(err)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
			}
			generic := time.Since(t0) / runs
			if _, err := conn.Exec(ctx, "RESET plan_cache_mode"); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(generic.Microseconds())/1000, "generic-ms/op")
			b.ReportMetric(float64(buffers), "buffers/op")
			b.ReportMetric(float64(n), "rows/op")
			b.Logf("%s\n%s", sql, strings.Join(plan, "\n"))
		})
	}
}

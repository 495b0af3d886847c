package audit

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/internal/pgtest"
	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// partitionNames lists the audit table's partitions in ps's schema.
func partitionNames(tb testing.TB, ps *pgstore.Store) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := ps.Pool().Query(ctx, "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1) ORDER BY 1",
		pgx.Identifier{ps.Schema(), "audit"}.Sanitize())
	if err != nil {
		tb.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return names
}

// On PostgreSQL the audit log is a table partitioned by day: rows of a
// day land in its partition, made as they come (and today's and the next
// days' ahead); retention drops the partitions of the days wholly before
// its cutoff and deletes the older rows of the day it falls in.
func TestPruneAuditPartitions(t *testing.T) {
	dsn := testDSN(t)
	ps := openPostgres(t, dsn, pgtest.FreshSchema(t, dsn, "egressd_at_"))
	s, err := openCfg(t, "", Config{Backend: ps, JournalPath: filepath.Join(t.TempDir(), "journal"), NodeID: "n1", NoSync: true})
	if err != nil {
		ps.Close()
		t.Fatal(err)
	}
	defer s.Close()
	day0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	var rows []Row
	for d := range 4 {
		for h := 0; h < 24; h += 6 {
			tm := day0.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + 123)
			rows = append(rows, Row{ID: NewID(tm), Time: tm, Kind: KindRequest, TenantID: "ten_p", SandboxID: "sbx_1", Outcome: "substituted"})
		}
	}
	if err := s.Append(rows...); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	names := partitionNames(t, ps)
	for _, want := range []string{"audit_p20250301", "audit_p20250302", "audit_p20250303", "audit_p20250304", "audit_p" + time.Now().UTC().Format("20060102")} {
		if !slices.Contains(names, want) {
			t.Fatalf("partitions %v: no %s", names, want)
		}
	}
	// The cutoff falls on day 2 at 12:00: days 0 and 1 are dropped, day 2
	// keeps its rows from 12:00 on.
	cut := day0.Add(2*24*time.Hour + 12*time.Hour)
	n, err := s.Prune(cut, 0)
	if err != nil || n != 10 {
		t.Fatalf("pruned %d (%v), want 10", n, err)
	}
	names = partitionNames(t, ps)
	if slices.Contains(names, "audit_p20250301") || slices.Contains(names, "audit_p20250302") || !slices.Contains(names, "audit_p20250303") {
		t.Fatalf("partitions after the prune: %v", names)
	}
	got := allAudit(t, s, "ten_p")
	if len(got) != 6 {
		t.Fatalf("%d rows left, want 6", len(got))
	}
	for _, r := range got {
		if r.Time.Before(cut) {
			t.Fatalf("row of %v left", r.Time)
		}
	}
	// A row of a dropped day comes back to a partition made again.
	late := rows[0]
	if err := s.Append(late); err != nil {
		t.Fatal(err)
	}
	if got := allAudit(t, s, "ten_p"); len(got) != 7 {
		t.Fatalf("%d rows after a late row of a dropped day, want 7", len(got))
	}
	if n, err := s.Prune(cut, 0); err != nil || n != 1 {
		t.Fatalf("second prune: %d (%v), want 1", n, err)
	}
	for _, name := range partitionNames(t, ps) {
		if !strings.HasPrefix(name, "audit_p") {
			t.Fatalf("partition %q", name)
		}
	}
}

// A store whose audit rows were written to the audit buckets (before the
// backend kept the log itself) has them moved into its audit table by
// the next Open: every row once, found by queries, the buckets emptied.
func TestAuditBucketsMovedToTable(t *testing.T) {
	dsn := testDSN(t)
	schema := pgtest.FreshSchema(t, dsn, "egressd_at_")
	dir := t.TempDir()
	open := func(wrap bool) *testLog {
		var b storage.Backend = openPostgres(t, dsn, schema)
		if wrap {
			b = bucketsOnly{b}
		}
		s, err := openCfg(t, "", Config{Backend: b, JournalPath: filepath.Join(dir, "journal"), NodeID: "n1", NoSync: true})
		if err != nil {
			b.Close()
			t.Fatal(err)
		}
		return s
	}
	s := open(true)
	n := auditMoveChunk + 10
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = journalRow(i)
	}
	if err := s.Append(rows...); err != nil {
		t.Fatal(err)
	}
	// An admin row, written in a transaction of its own as the vault
	// writes one with the write it records.
	admin := Row{TenantID: "ten_acme", Kind: KindAdmin, Action: "tenant.created", ActorKind: "cli", ActorID: "test"}
	if err := s.db.Update(func(tx storage.Tx) error { return Put(tx, admin, time.Now) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(false)
	defer s.Close()
	wantRows(t, s, [2]int{0, n})
	if got, _, err := s.Query("ten_acme", Filter{Kind: KindAdmin}); err != nil || len(got) != 1 {
		t.Fatalf("admin rows after the move: %d (%v)", len(got), err)
	}
	if got, _, err := s.Query("ten_j", Filter{SandboxID: "sbx_3", Limit: MaxLimit}); err != nil || len(got) != (n+1)/5 {
		t.Fatalf("rows of sbx_3 after the move: %d (%v), want %d", len(got), err, (n+1)/5)
	}
	err := s.db.View(func(tx storage.Tx) error {
		for _, name := range append([][]byte{bAudit}, Buckets()[1:]...) {
			if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
				t.Errorf("bucket %s still holds %q", name, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

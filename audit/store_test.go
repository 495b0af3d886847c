package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd/vault/pgstore"
	"github.com/egressd/egressd/vault/storage"
)

// Helpers for the audit tests that look under the vault at how the log
// is stored: in the audit buckets (bbolt), or in pgstore's audit table.

// auditTable is the pgstore whose audit table holds s's log, or nil when
// the log is the audit buckets.
func auditTable(s *testLog) *pgstore.Store {
	ps, _ := s.as.(*pgstore.Store)
	return ps
}

// execAudit runs sql on ps, with %s in it standing for the audit table.
func execAudit(tb testing.TB, ps *pgstore.Store, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	table := pgx.Identifier{ps.Schema(), "audit"}.Sanitize()
	if _, err := ps.Pool().Exec(ctx, fmt.Sprintf(sql, table), args...); err != nil {
		tb.Fatal(err)
	}
}

// blockAudit makes every write of row fail in ps's audit table (a CHECK
// constraint refusing its id: a real failure of PostgreSQL's), and
// returns what lifts it.
func blockAudit(tb testing.TB, ps *pgstore.Store, row Row) func() {
	tb.Helper()
	execAudit(tb, ps, "ALTER TABLE %s ADD CONSTRAINT "+blockName(row)+" CHECK (id <> '"+row.ID+"') NOT VALID")
	return func() { unblockAudit(tb, ps, row) }
}

// unblockAudit lifts blockAudit's constraint, from any pgstore on the
// schema.
func unblockAudit(tb testing.TB, ps *pgstore.Store, row Row) {
	execAudit(tb, ps, "ALTER TABLE %s DROP CONSTRAINT "+blockName(row))
}

func blockName(row Row) string {
	return pgx.Identifier{"egressd_test_block_" + row.ID}.Sanitize()
}

// closedAuditTable opens the pgstore of the vault at path while no vault
// has it open, or returns nil on bbolt. The caller closes it.
func closedAuditTable(tb testing.TB, path string) *pgstore.Store {
	tb.Helper()
	if !onPostgres() {
		return nil
	}
	return openPostgres(tb, testDSN(tb), schemaOf(path))
}

// tableIndexKeys lists, for the rows in ps's audit table, the keys the
// audit buckets' indexes would hold (indexKeys' format), so one
// expectation checks either layout.
func tableIndexKeys(tb testing.TB, ps *pgstore.Store) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := ps.Pool().Query(ctx, "SELECT tenant_id, ns, id, coalesce(external_user_id, ''), coalesce(external_workspace_id, ''), "+
		"coalesce(sandbox_id, ''), coalesce(secret_id, ''), coalesce(use_secret_ids, '{}') FROM "+pgx.Identifier{ps.Schema(), "audit"}.Sanitize())
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var tenant, id, user, ws, sbx, sec string
		var ns int64
		var uses []string
		if err := rows.Scan(&tenant, &ns, &id, &user, &ws, &sbx, &sec, &uses); err != nil {
			tb.Fatal(err)
		}
		tm := string(auditTime(time.Unix(0, ns)))
		add := func(bucket []byte, v string) {
			if v != "" {
				out = append(out, fmt.Sprintf("%s/%q", bucket, tenant+"\x00"+v+"\x00"+tm+"\x00"+id))
			}
		}
		add(bAuditByExtUser, user)
		add(bAuditByExtWorkspace, ws)
		add(bAuditBySandbox, sbx)
		add(bAuditBySecret, sec)
		for _, u := range uses {
			add(bAuditBySecret, u)
		}
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// storedAuditCount counts the audit rows of the store, whichever layout.
func storedAuditCount(tb testing.TB, b storage.Backend, ps *pgstore.Store) int {
	tb.Helper()
	if ps != nil {
		n, err := ps.CountAudit()
		if err != nil {
			tb.Fatal(err)
		}
		return int(n)
	}
	n := 0
	if err := b.View(func(tx storage.Tx) error { n = countKeys(tx.Bucket(bAudit)); return nil }); err != nil {
		tb.Fatal(err)
	}
	return n
}

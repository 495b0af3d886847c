package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/egressd/egressd/vault/storage"
)

// The audit log lives in the table audit (migrations/0003_audit.sql),
// partitioned by day: the Store implements storage.AuditStore and its
// transactions storage.AuditTx. The node's indexer ships its journal's
// rows as audit_ship.go says.

var (
	_ storage.AuditStore = (*Store)(nil)
	_ storage.AuditTx    = (*tx)(nil)
)

// lockPartition is the advisory lock class (see lockMigrate) that
// partition creation takes, so replicas never create the same one twice.
const lockPartition int32 = 0x65677203

const (
	day = int64(24 * time.Hour)
	// partitionsAhead is how many days after today get their partition
	// before a row needs it, so an admin row written at midnight finds
	// its day made.
	partitionsAhead = 2
	// dropLockTimeout bounds how long retention waits to drop a
	// partition (DROP TABLE locks the whole log): past it, the day's
	// rows are deleted instead.
	dropLockTimeout = "5s"
	// partitionFillfactor leaves a tenth of each page of a partition free,
	// for the final rows of requests whose provisional rows are there
	// (migrations/0004_audit_fillfactor.sql).
	partitionFillfactor = 90
)

// auditColumns are the columns COPY and the staging table fill, in order.
var auditColumns = []string{"tenant_id", "ns", "id", "at", "kind", "outcome", "external_user_id",
	"external_workspace_id", "sandbox_id", "secret_id", "use_secret_ids", "data"}

// auditSQL is the audit log's SQL, built once with the schema's name.
type auditSQL struct {
	schema, table, order, partitions string
	// upsert is the statement that writes rows into a partition, each
	// replacing the row of its key: upsert[0], the partition's name,
	// upsert[1], with the columns as arrays, one a column (upsertAudit).
	upsert [2]string
}

func newAuditSQL(schema string) auditSQL {
	table := pgx.Identifier{schema, "audit"}.Sanitize()
	cols := strings.Join(auditColumns, ", ")
	var set []string
	for _, c := range auditColumns[3:] {
		set = append(set, c+" = EXCLUDED."+c)
	}
	params := make([]string, len(auditColumns))
	for i := range params {
		params[i] = "$" + strconv.Itoa(i+1) + "::" + auditArrayTypes[i]
	}
	return auditSQL{
		schema: schema,
		table:  table,
		upsert: [2]string{"INSERT INTO ", " (" + cols + ") SELECT " + strings.Replace(cols, "use_secret_ids", "use_secret_ids::text[]", 1) +
			" FROM unnest(" + strings.Join(params, ", ") + ") AS u(" + cols + ")" +
			" ON CONFLICT (tenant_id, ns, id) DO UPDATE SET " + strings.Join(set, ", ")},
		partitions: "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid " +
			"WHERE i.inhparent = to_regclass($1)",
		order: " ORDER BY ns DESC, id DESC",
	}
}

// auditArrayTypes are the types of the arrays upsertAudit passes, one a
// column in auditColumns' order: use_secret_ids, a list a row, as each
// row's array literal (textArrayLiteral).
var auditArrayTypes = []string{"text[]", "int8[]", "text[]", "timestamptz[]", "text[]", "text[]", "text[]",
	"text[]", "text[]", "text[]", "text[]", "bytea[]"}

// partitionID is the partition of day d.
func (q *auditSQL) partitionID(d int64) pgx.Identifier {
	return pgx.Identifier{q.schema, partitionName(d)}
}

// partitions is what this Store knows of the audit table's partitions:
// the days (since 1970, UTC) it made or saw made.
type partitions struct {
	mu   sync.Mutex
	days map[int64]bool
}

func (p *partitions) known(d int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.days[d]
}

func (p *partitions) add(d int64) {
	p.mu.Lock()
	if p.days == nil {
		p.days = map[int64]bool{}
	}
	p.days[d] = true
	p.mu.Unlock()
}

// forget drops what is known: after a failed write (another replica's
// retention may have dropped a partition this one knew).
func (p *partitions) forget() {
	p.mu.Lock()
	p.days = nil
	p.mu.Unlock()
}

func dayOf(t time.Time) int64 {
	ns := t.UnixNano()
	if ns < 0 {
		return (ns+1)/day - 1
	}
	return ns / day
}

func partitionName(d int64) string {
	return "audit_p" + time.Unix(0, d*day).UTC().Format("20060102")
}

// partitionDay reads the day of a partition's name (ok false for another
// name).
func partitionDay(name string) (int64, bool) {
	s, ok := strings.CutPrefix(name, "audit_p")
	if !ok || len(s) != 8 {
		return 0, false
	}
	t, err := time.Parse("20060102", s)
	if err != nil {
		return 0, false
	}
	return dayOf(t), true
}

// ensurePartitions makes the partitions of the days recs fall on, and of
// today and partitionsAhead days after it, that this Store does not know
// to exist. Each is made in a transaction of its own on a connection of
// its own (so a caller's transaction that wrote other days' rows is not
// waited for: ATTACH PARTITION needs only a lock that inserts do not
// conflict with), under the partition lock, if it does not exist yet.
func (s *Store) ensurePartitions(ctx context.Context, recs []storage.AuditRecord) error {
	var need []int64
	add := func(d int64) {
		if !s.parts.known(d) {
			for _, x := range need {
				if x == d {
					return
				}
			}
			need = append(need, d)
		}
	}
	for i := range recs {
		add(dayOf(recs[i].Time))
	}
	today := dayOf(time.Now())
	for d := today; d <= today+partitionsAhead; d++ {
		add(d)
	}
	if len(need) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		if _, err := ptx.Exec(ctx, s.q.updateLock, lockPartition, s.opts.Schema); err != nil {
			return err
		}
		rows, err := ptx.Query(ctx, s.aq.partitions, s.aq.table)
		if err != nil {
			return err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		have := map[int64]bool{}
		for _, n := range names {
			if d, ok := partitionDay(n); ok {
				have[d] = true
			}
		}
		for _, d := range need {
			if have[d] {
				continue
			}
			part := s.aq.partitionID(d).Sanitize()
			for _, q := range []string{
				"CREATE TABLE " + part + " (LIKE " + s.aq.table + " INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" +
					" WITH (fillfactor = " + strconv.Itoa(partitionFillfactor) + ")",
				"ALTER TABLE " + s.aq.table + " ATTACH PARTITION " + part +
					" FOR VALUES FROM (" + strconv.FormatInt(d*day, 10) + ") TO (" + strconv.FormatInt((d+1)*day, 10) + ")",
			} {
				if _, err := ptx.Exec(ctx, q); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: audit partitions: %w", err)
	}
	for _, d := range need {
		s.parts.add(d)
	}
	return nil
}

// auditValues are a record's columns in auditColumns' order.
func auditValues(r *storage.AuditRecord) []any {
	return []any{r.TenantID, r.Time.UnixNano(), r.ID, r.Time, r.Kind, nullable(r.Outcome), nullable(r.ExternalUserID),
		nullable(r.ExternalWorkspaceID), nullable(r.SandboxID), nullable(r.SecretID), nullableList(r.UseSecretIDs), r.Data}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullableList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// PutAudit writes recs inside the Update t, as upserts (upsertAudit).
func (t *tx) PutAudit(recs []storage.AuditRecord) error {
	switch {
	case !t.write:
		return storage.ErrTxNotWritable
	case t.err != nil:
		return t.err
	case len(recs) == 0:
		return nil
	}
	if err := t.s.ensurePartitions(t.ctx, recs); err != nil {
		return t.fail("audit partitions", err)
	}
	if err := t.s.upsertAudit(t.ctx, t.ptx, recs); err != nil {
		t.s.parts.forget()
		return t.fail("put audit", err)
	}
	return nil
}

// AuditStore is the store itself.
func (t *tx) AuditStore() storage.AuditStore { return t.s }

// QueryAudit returns a page of q.TenantID's records, newest first. A
// secret's records are those whose secret_id is it, read in order by its
// index, merged with those that used it otherwise (use_secret_ids, a few
// rows: most requests use one secret), all read by the GIN index and
// sorted. The second set is fenced (OFFSET 0) so that it is planned for
// all its rows, not for the page's first few, and its tenant and time
// are checked outside the fence (a secret's rows are its tenant's), so
// that no other index is read beside the GIN index: the statement is
// prepared, and PostgreSQL's plan for any secret (after five runs)
// otherwise read the tenant's rows newest first until enough used the
// secret, or (with audit_order on ns alone, migration 0005) and'ed the
// GIN index's rows with every row of each partition before a page's
// cursor (45 ms at 1,000,000 rows, 1 ms fenced). At 1,000,000 rows (BenchmarkAuditQueriesAtSize), for a
// secret a thousandth of the rows used besides, that plan took 209 ms
// (123 ms in the benchmark's loop), the one fenced with the tenant inside
// 45 ms (a bitmap of the tenant's 500,000 rows and'ed in).
func (s *Store) QueryAudit(q storage.AuditQuery) ([]storage.AuditRecord, error) {
	if q.Limit <= 0 {
		return nil, errors.New("pgstore: query audit: limit must be positive")
	}
	return s.readAudit(s.queryAuditSQL(q))
}

// queryAuditSQL is QueryAudit's statement and its arguments.
func (s *Store) queryAuditSQL(q storage.AuditQuery) (string, []any) {
	args := []any{q.TenantID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	// span is the conditions on the time, rest the others but the
	// tenant's.
	span, rest := "", ""
	if !q.Since.IsZero() {
		span += " AND ns >= " + arg(q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		span += " AND ns < " + arg(q.Until.UnixNano())
	}
	if !q.Before.IsZero() {
		span += " AND (ns, id) < (" + arg(q.Before.Time.UnixNano()) + ", " + arg(q.Before.ID) + ")"
	}
	for _, f := range []struct{ col, v string }{
		{"sandbox_id", q.SandboxID}, {"external_user_id", q.ExternalUserID},
		{"external_workspace_id", q.ExternalWorkspaceID}, {"outcome", q.Outcome}, {"kind", q.Kind},
	} {
		if f.v != "" {
			rest += " AND " + f.col + " = " + arg(f.v)
		}
	}
	where := "tenant_id = $1" + span + rest
	sel := "SELECT tenant_id, ns, id, data FROM " + s.aq.table + " WHERE "
	limit := arg(q.Limit)
	var sql string
	if q.SecretID == "" {
		sql = sel + where + s.aq.order + " LIMIT " + limit
	} else {
		sec := arg(q.SecretID)
		sql = "(" + sel + where + " AND secret_id = " + sec + s.aq.order + " LIMIT " + limit + ") UNION ALL (" +
			"SELECT * FROM (" + sel + "use_secret_ids @> ARRAY[" + sec + "::text] AND secret_id IS DISTINCT FROM " + sec + rest +
			" OFFSET 0) u WHERE tenant_id = $1" + span + s.aq.order + " LIMIT " + limit + ")" + s.aq.order + " LIMIT " + limit
	}
	return sql, args
}

// ScanAudit returns records oldest first after a position: of one tenant
// by the primary key, of all by audit_order.
func (s *Store) ScanAudit(tenant string, since time.Time, after storage.AuditPos, limit int) ([]storage.AuditRecord, error) {
	if limit <= 0 {
		return nil, errors.New("pgstore: scan audit: limit must be positive")
	}
	return s.readAudit(s.scanAuditSQL(tenant, since, after, limit))
}

// scanAuditSQL is ScanAudit's statement and its arguments.
func (s *Store) scanAuditSQL(tenant string, since time.Time, after storage.AuditPos, limit int) (string, []any) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := "true"
	if tenant != "" {
		where += " AND tenant_id = " + arg(tenant)
	}
	if !since.IsZero() {
		where += " AND ns >= " + arg(since.UnixNano())
	}
	order := " ORDER BY ns, id, tenant_id"
	if !after.IsZero() {
		if tenant != "" {
			where += " AND (ns, id) > (" + arg(after.Time.UnixNano()) + ", " + arg(after.ID) + ")"
		} else {
			where += " AND (ns, id, tenant_id) > (" + arg(after.Time.UnixNano()) + ", " + arg(after.ID) + ", " + arg(after.Tenant) + ")"
		}
	}
	if tenant != "" {
		order = " ORDER BY ns, id"
	}
	return "SELECT tenant_id, ns, id, data FROM " + s.aq.table + " WHERE " + where + order + " LIMIT " + arg(limit), args
}

func (s *Store) readAudit(sql string, args []any) ([]storage.AuditRecord, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	// A read that fails because Close ran meanwhile (its pool closed
	// under it) is ErrClosed, as one begun after it is.
	failed := func(err error) error {
		if s.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("pgstore: read audit: %w", err)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, failed(err)
	}
	out := []storage.AuditRecord{}
	for rows.Next() {
		var r storage.AuditRecord
		var ns int64
		if err := rows.Scan(&r.TenantID, &ns, &r.ID, &r.Data); err != nil {
			rows.Close()
			return nil, failed(err)
		}
		r.Time = time.Unix(0, ns).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, failed(err)
	}
	return out, nil
}

// DeleteAudit drops the partitions of days that end at or before
// before, then deletes the older rows of the partition before falls in.
// A partition that cannot be dropped within dropLockTimeout (a long
// export reads it) has its rows deleted instead.
func (s *Store) DeleteAudit(before time.Time) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	cut := before.UnixNano()
	rows, err := s.pool.Query(ctx, s.aq.partitions, s.aq.table)
	if err != nil {
		return 0, fmt.Errorf("pgstore: delete audit: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("pgstore: delete audit: %w", err)
	}
	var n int64
	for _, name := range names {
		d, ok := partitionDay(name)
		if !ok || (d+1)*day > cut {
			continue
		}
		part := pgx.Identifier{s.opts.Schema, name}.Sanitize()
		// Counted before the drop, which locks the whole log: only for as
		// long as the drop itself takes, not for a count of the day. (A
		// row of that day shipped in between, days late, goes uncounted.)
		var rowsIn int64
		err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+part).Scan(&rowsIn)
		if err == nil {
			err = pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
				if _, err := ptx.Exec(ctx, "SET LOCAL lock_timeout = '"+dropLockTimeout+"'"); err != nil {
					return err
				}
				_, err := ptx.Exec(ctx, "DROP TABLE "+part)
				return err
			})
		}
		var pe *pgconn.PgError
		switch {
		case err == nil:
			n += rowsIn
		case errors.As(err, &pe) && (pe.Code == "55P03" || pe.Code == "42P01"):
			// lock_not_available: the DELETE below takes the day's rows;
			// undefined_table: another replica dropped it first.
		default:
			return n, fmt.Errorf("pgstore: drop audit partition %s: %w", name, err)
		}
	}
	s.parts.forget()
	tag, err := s.pool.Exec(ctx, "DELETE FROM "+s.aq.table+" WHERE ns < $1", cut)
	if err != nil {
		return n, fmt.Errorf("pgstore: delete audit: %w", err)
	}
	return n + tag.RowsAffected(), nil
}

// CountAudit counts every row of the audit table.
func (s *Store) CountAudit() (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+s.aq.table).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgstore: count audit: %w", err)
	}
	return n, nil
}

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/egressd/egressd/vault/storage"
)

// Shipping the node's audit rows (AppendAudit): each batch of the
// indexer, with the journal's position in kv, in one transaction that
// does not take the update lock (shipping never waits for the cluster's
// admin writes, nor holds them up).
//
// A row written again replaces the one there (a request's provisional
// row by its final one, with the same tenant, time and id), which takes
// an INSERT … ON CONFLICT. Most rows of a batch were never shipped: the
// indexer keeps only the last version of a row in its batch, so only the
// final rows of requests the batch's end cut in two follow their
// provisional ones. Those rows are the ones no newer than the newest row
// this Store shipped before (the rows' times are the journal's order,
// give or take the requests in flight together); every newer row goes
// straight into the table with COPY, the others through upsertAudit.
// Should a row COPY writes be there after all (this process restarted
// and ships its journal's tail again, or a commit failed after it was
// made), the unique key refuses the COPY and the batch is written again,
// all of it as upserts: the guess costs time when wrong, never a row.
//
// Both write into the day's partition itself (audit_pYYYYMMDD; a batch
// that spans midnight, one statement a day), not through the table: the
// server routes no row. The upserts are one statement a day with the
// rows as arrays (unnest), not a statement a row (each of which set up
// the routing to the partition and its indexes again: about 380,000
// instructions of the server a row, against about 100,000 so) nor COPY
// into a temporary table (created, filled and emptied in every such
// transaction).
//
// What a row costs the server is mostly its index entries (five btrees
// for a proxied request's row, more with external ids; partial ones hold
// only the rows with the id: migrations/0005_audit_narrow_indexes.sql).
// Measured with BenchmarkShipAudit (512 requests a batch, none, a
// twentieth or a fifth of their final rows a batch late, spread through
// the batch; a twentieth at its end, "tail"): the instructions a row of
// the server's backend that ships (callgrind, the same every run), and
// the server's CPU a row read from /proc (medians of six runs alternated,
// fsync on, this 2-core machine shared with other jobs: ±15%).
//
//	                                  instructions a row              server-µs/row
//	                                  none    5%      20%     tail    none  5%    20%
//	COPY into a temporary table,      -       -       -       -       15.5 and 18.5
//	  one upsert from it
//	COPY into the table, the finals   81,800  96,400  97,700  99,700  12.8  15.0  15.4
//	  a statement each (or through
//	  the temporary table past 64)
//	into the day's partition, the     78,400  79,900  87,700  80,700  11.2  12.4  13.4
//	  finals one statement, the
//	  narrower indexes of 0005
//
// Writing the finals before the COPY (so that they could take the room
// left on the last page of the batch before, where their provisional
// rows are) made no difference: 80,500 with the tail.

// auditKey is what makes a row the same row: the primary key.
type auditKey struct {
	tenant string
	ns     int64
	id     string
}

// lastOfEach returns recs with only the last of the records that share a
// key (recs itself when no two do).
func lastOfEach(recs []storage.AuditRecord) []storage.AuditRecord {
	at := make(map[auditKey]int, len(recs))
	dup := false
	for i := range recs {
		k := auditKey{recs[i].TenantID, recs[i].Time.UnixNano(), recs[i].ID}
		if _, ok := at[k]; ok {
			dup = true
		}
		at[k] = i
	}
	if !dup {
		return recs
	}
	out := make([]storage.AuditRecord, 0, len(at))
	for i := range recs {
		if at[auditKey{recs[i].TenantID, recs[i].Time.UnixNano(), recs[i].ID}] == i {
			out = append(out, recs[i])
		}
	}
	return out
}

// AppendAudit writes recs (the last of each key) and puts mark, in one
// transaction: rows newer than any this Store shipped with COPY, the
// others as upserts (see above).
func (s *Store) AppendAudit(recs []storage.AuditRecord, mark storage.AuditMark) error {
	if s.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.TxTimeout)
	defer cancel()
	recs = lastOfEach(recs)
	if err := s.ensurePartitions(ctx, recs); err != nil {
		return err
	}
	shipped := s.shippedNS.Load()
	var fresh, again []storage.AuditRecord
	newest := shipped
	for i := range recs {
		ns := recs[i].Time.UnixNano()
		if ns > shipped {
			fresh = append(fresh, recs[i])
		} else {
			again = append(again, recs[i])
		}
		newest = max(newest, ns)
	}
	err := s.shipAudit(ctx, fresh, again, mark)
	var pe *pgconn.PgError
	if len(fresh) > 0 && errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		err = s.shipAudit(ctx, nil, recs, mark)
	}
	if err != nil {
		s.parts.forget()
		if s.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("pgstore: append audit: %w", err)
	}
	for {
		old := s.shippedNS.Load()
		if newest <= old || s.shippedNS.CompareAndSwap(old, newest) {
			return nil
		}
	}
}

// shipAudit writes fresh with COPY, again as upserts, and mark, in one
// transaction. Each day's rows go straight into its partition (all of a
// batch's rows, nearly always): no tuple routing through the table.
func (s *Store) shipAudit(ctx context.Context, fresh, again []storage.AuditRecord, mark storage.AuditMark) error {
	return pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		for _, recs := range byDay(fresh) {
			if _, err := ptx.CopyFrom(ctx, s.aq.partitionID(dayOf(recs[0].Time)), auditColumns, auditSource(recs)); err != nil {
				return err
			}
		}
		if err := s.upsertAudit(ctx, ptx, again); err != nil {
			return err
		}
		if mark.Key != nil {
			if _, err := ptx.Exec(ctx, s.q.put, string(mark.Bucket), mark.Key, mark.Value); err != nil {
				return fmt.Errorf("pgstore: audit journal position: %w", err)
			}
		}
		return nil
	})
}

// byDay splits recs by the day they fall in, in the order of their first
// rows; recs itself when all fall in one.
func byDay(recs []storage.AuditRecord) [][]storage.AuditRecord {
	if len(recs) == 0 {
		return nil
	}
	first := dayOf(recs[0].Time)
	i := 1
	for i < len(recs) && dayOf(recs[i].Time) == first {
		i++
	}
	if i == len(recs) {
		return [][]storage.AuditRecord{recs}
	}
	var out [][]storage.AuditRecord
	at := map[int64]int{}
	for _, r := range recs {
		d := dayOf(r.Time)
		k, ok := at[d]
		if !ok {
			k = len(out)
			at[d] = k
			out = append(out, nil)
		}
		out[k] = append(out[k], r)
	}
	return out
}

// auditSource feeds recs to COPY.
func auditSource(recs []storage.AuditRecord) pgx.CopyFromSource {
	i := 0
	return pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(recs) {
			return nil, nil
		}
		i++
		return auditValues(&recs[i-1]), nil
	})
}

// upsertAudit writes recs (the last of each key) in ptx, each replacing
// the row of its key: one INSERT … ON CONFLICT a day, straight into the
// day's partition, with the rows as arrays, one a column (unnest).
func (s *Store) upsertAudit(ctx context.Context, ptx pgx.Tx, recs []storage.AuditRecord) error {
	for _, recs := range byDay(lastOfEach(recs)) {
		n := len(recs)
		tenants, ids, kinds := make([]string, n), make([]string, n), make([]string, n)
		nss, ats, data := make([]int64, n), make([]time.Time, n), make([][]byte, n)
		outcomes, users, workspaces, sandboxes, secrets, uses :=
			make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		for i := range recs {
			r := &recs[i]
			tenants[i], nss[i], ids[i], ats[i], kinds[i], data[i] = r.TenantID, r.Time.UnixNano(), r.ID, r.Time, r.Kind, r.Data
			outcomes[i], users[i], workspaces[i] = nullable(r.Outcome), nullable(r.ExternalUserID), nullable(r.ExternalWorkspaceID)
			sandboxes[i], secrets[i], uses[i] = nullable(r.SandboxID), nullable(r.SecretID), textArrayLiteral(r.UseSecretIDs)
		}
		sql := s.aq.upsert[0] + s.aq.partitionID(dayOf(recs[0].Time)).Sanitize() + s.aq.upsert[1]
		if _, err := ptx.Exec(ctx, sql, tenants, nss, ids, ats, kinds, outcomes, users, workspaces, sandboxes, secrets, uses, data); err != nil {
			return err
		}
	}
	return nil
}

// textArrayLiteral is l as PostgreSQL's text[] input reads it (each
// element quoted, its quotes and backslashes escaped), nil for an empty
// l (NULL): a row's list in an array of rows.
func textArrayLiteral(l []string) *string {
	if len(l) == 0 {
		return nil
	}
	b := []byte{'{'}
	for i, e := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		for j := 0; j < len(e); j++ {
			if e[j] == '"' || e[j] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, e[j])
		}
		b = append(b, '"')
	}
	b = append(b, '}')
	lit := string(b)
	return &lit
}

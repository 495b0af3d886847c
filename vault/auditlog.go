package vault

import (
	"errors"
	"time"

	"github.com/egressd/egressd/audit"
	"github.com/egressd/egressd/vault/storage"
)

// The audit log of the vault is package audit's Log, opened with the
// store on its backend; these methods are its doors on Store. Admin rows
// are written in their write's own transaction (txAudit, audit_admin.go).

// AppendAudit writes request rows to the audit log and returns once they
// are on disk (audit.Log.Append): journaled and fdatasync'd, shared with
// concurrent callers (group commit). A row with a bad field fails the
// whole call with ErrInvalid and writes nothing; a node that cannot ship
// its rows and holds as many as it may returns ErrAuditUnavailable.
func (s *Store) AppendAudit(rows ...audit.Row) error { return s.log.Append(rows...) }

// AppendAuditLater is AppendAudit for rows that need not be on disk when
// it returns (audit.Log.AppendLater): the proxy's final row of a request.
func (s *Store) AppendAuditLater(rows ...audit.Row) error { return s.log.AppendLater(rows...) }

// QueryAudit returns a page of the tenant's audit rows that match f,
// newest first, and the cursor of the next page ("" after the last):
// audit.Log.Query.
func (s *Store) QueryAudit(tenantID string, f audit.Filter) (rows []audit.Row, nextCursor string, err error) {
	return s.log.Query(tenantID, f)
}

// SummarizeAudit counts the tenant's request rows that match f in buckets
// of width bucket between f.Since and f.Until: audit.Log.Summarize.
func (s *Store) SummarizeAudit(tenantID string, f audit.Filter, bucket time.Duration) (audit.Summary, error) {
	return s.log.Summarize(tenantID, f, bucket)
}

// ExportAudit calls fn with every audit row of the tenant (of every
// tenant when tenantID is empty) from since on, oldest first:
// audit.Log.Export.
func (s *Store) ExportAudit(tenantID string, since time.Time, fn func(audit.Row) error) error {
	return s.log.Export(tenantID, since, fn)
}

// PruneAudit deletes every audit row older than before, in transactions
// of at most batch rows (zero means audit.DefaultPruneBatch), and returns
// how many it deleted: audit.Log.Prune.
func (s *Store) PruneAudit(before time.Time, batch int) (deleted int, err error) {
	return s.log.Prune(before, batch)
}

// AuditShipping reports the state of the audit spool, for metrics and
// readiness (audit.Log.Shipping). It is cheap (atomic loads).
func (s *Store) AuditShipping() audit.Shipping { return s.log.Shipping() }

// SetAuditSpoolMax changes Config.AuditSpoolMax of the open store: zero or
// less means audit.DefaultSpoolMax.
func (s *Store) SetAuditSpoolMax(n int) { s.log.SetSpoolMax(n) }

// ExportStoredAudit is ExportAudit on a backend that keeps the audit log
// itself (vault/pgstore), without opening the vault (audit.ExportStored):
// it needs no master key and writes nothing, so it runs beside the
// replicas. A backend that holds no vault is refused, as is one without
// an audit store (open the vault and use ExportAudit there).
func ExportStoredAudit(b storage.Backend, tenantID string, since time.Time, fn func(audit.Row) error) error {
	if since.Year() > 2200 {
		return invalid("since", "out of range")
	}
	ok, err := HasVault(b)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("vault: the store holds no egressd vault")
	}
	return audit.ExportStored(b, tenantID, since, fn)
}

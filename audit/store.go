package audit

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/egressd/egressd/vault/storage"
)

// The audit log on a backend that keeps it itself (storage.AuditStore,
// vault/pgstore's partitioned table): Query, Export and
// Prune come here instead of walking the audit buckets. Validation,
// the cursor's format and the rows' encoding are the same on both paths;
// only the reading differs.

// queryAuditStore is queryAudit on the backend's audit store: the
// filters go to the store, which reads the matching rows by its indexes;
// one row more than the page says whether another follows. budget bounds
// the rows read as it bounds the entries read on the buckets: a page of
// Limit rows over budget holds budget rows, and a cursor.
func (l *Log) queryAuditStore(tenantID string, f Filter, before storage.AuditPos, budget int, need uint64) ([]Row, string, error) {
	f.Limit = min(f.Limit, budget)
	for _, v := range [...]string{tenantID, f.ExternalUserID, f.ExternalWorkspaceID, f.SandboxID, f.SecretID, f.Outcome} {
		if !utf8.ValidString(v) {
			// No stored row holds it (the store keeps text): none match.
			return []Row{}, "", nil
		}
	}
	recs, err := l.as.QueryAudit(storage.AuditQuery{
		TenantID: tenantID, Since: f.Since, Until: f.Until, Before: before,
		ExternalUserID: f.ExternalUserID, ExternalWorkspaceID: f.ExternalWorkspaceID,
		SandboxID: f.SandboxID, SecretID: f.SecretID, Outcome: f.Outcome, Kind: f.Kind,
		Limit: f.Limit + 1,
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]Row, 0, min(len(recs), f.Limit))
	for i := range recs {
		if len(out) == f.Limit {
			last := &recs[i-1]
			return out, encodeCursor(auditTime(last.Time), []byte(last.ID)), nil
		}
		var r Row
		if err := decodeAuditRowFields(recs[i].Data, nil, &r, need); err != nil {
			return nil, "", err
		}
		out = append(out, r)
	}
	return out, "", nil
}

// exportAuditStore is Export on the backend's audit store: pages of
// auditExportBatch rows in (time, id, tenant) order, each read after the
// last one given.
func (l *Log) exportAuditStore(tenantID string, since time.Time, fn func(Row) error) error {
	return exportAudit(l.as, tenantID, since, fn)
}

// ExportStored is Export on a backend that keeps the audit log itself
// (vault/pgstore), without opening a Log: it reads the rows the replicas
// have shipped (a replica's last rows, journaled and not shipped yet, are
// not in it until that replica ships them), needs no master key (rows are
// not sealed) and writes nothing, so it runs beside the replicas. A
// backend without an audit store is refused (open the vault and export
// there). vault.ExportStoredAudit checks first that b holds a vault.
func ExportStored(b storage.Backend, tenantID string, since time.Time, fn func(Row) error) error {
	if since.Year() > 2200 {
		return invalid("since", "out of range")
	}
	as, err := StoreOf(b)
	if err != nil {
		return err
	}
	if as == nil {
		return errors.New("audit: the store keeps no audit table of its own; open the vault to export its audit log")
	}
	return exportAudit(as, tenantID, since, fn)
}

func exportAudit(as storage.AuditStore, tenantID string, since time.Time, fn func(Row) error) error {
	if !utf8.ValidString(tenantID) {
		return nil // no stored row holds it
	}
	if since.Year() < 1970 {
		since = time.Time{}
	}
	var after storage.AuditPos
	for {
		recs, err := as.ScanAudit(tenantID, since, after, auditExportBatch)
		if err != nil {
			return err
		}
		for i := range recs {
			var r Row
			if err := decodeAuditRow(recs[i].Data, nil, &r); err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(recs) < auditExportBatch {
			return nil
		}
		last := &recs[len(recs)-1]
		after = storage.AuditPos{Time: last.Time, ID: last.ID, Tenant: last.TenantID}
	}
}

// auditMoveChunk is how many rows moveAuditBuckets moves a transaction.
const auditMoveChunk = 1000

// moveAuditBuckets moves the rows a backend with an audit store holds in
// the audit buckets (written there before the backend kept the log
// itself) into its audit store, with their encoding as it is, and deletes
// them and their index keys: in Updates of auditMoveChunk rows, each
// whole or not at all, so replicas opening together (Updates run one at a
// time) or an interrupted Open leave every row in one place, once.
func (l *Log) moveAuditBuckets() error {
	var none bool
	if err := l.db.View(func(tx storage.Tx) error {
		k, _ := tx.Bucket(bAudit).Cursor().First()
		none = k == nil
		return nil
	}); err != nil || none {
		return err
	}
	for {
		n := 0
		err := l.db.Update(func(tx storage.Tx) error {
			atx, ok := tx.(storage.AuditTx)
			if !ok {
				return nil
			}
			kb := kvAuditBuckets(tx)
			type old struct {
				k []byte
				r Row
			}
			var olds []old
			var recs []storage.AuditRecord
			c := kb.rows.Cursor()
			for k, v := c.First(); k != nil && len(olds) < auditMoveChunk; k, v = c.Next() {
				var r Row
				if err := decodeAuditRow(v, k, &r); err != nil {
					return fmt.Errorf("audit: row %q in the buckets: %w", k, err)
				}
				e, err := r.prepare(l.now)
				if err != nil {
					return fmt.Errorf("audit: row %q in the buckets: %w", k, err)
				}
				olds = append(olds, old{bytes.Clone(k), r})
				recs = append(recs, e.rec)
			}
			if err := atx.PutAudit(recs); err != nil {
				return err
			}
			for i := range olds {
				if err := kb.delete(olds[i].k, &olds[i].r); err != nil {
					return err
				}
			}
			n = len(olds)
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: move the rows into the store's audit table: %w", err)
		}
		if n < auditMoveChunk {
			return nil
		}
	}
}

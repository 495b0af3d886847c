package vault

import (
	"bytes"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/egressd/egressd/vault/storage"
)

// The audit log on a backend that keeps it itself (storage.AuditStore,
// vault/pgstore's partitioned table): QueryAudit, ExportAudit and
// PruneAudit come here instead of walking the audit buckets. Validation,
// the cursor's format and the rows' encoding are the same on both paths;
// only the reading differs.

// queryAuditStore is queryAudit on the backend's audit store: the
// filters go to the store, which reads the matching rows by its indexes;
// one row more than the page says whether another follows. budget bounds
// the rows read as it bounds the entries read on the buckets: a page of
// Limit rows over budget holds budget rows, and a cursor.
func (s *Store) queryAuditStore(tenantID string, f AuditFilter, before storage.AuditPos, budget int, need uint64) ([]AuditRow, string, error) {
	f.Limit = min(f.Limit, budget)
	for _, v := range [...]string{tenantID, f.ExternalUserID, f.ExternalWorkspaceID, f.SandboxID, f.SecretID, f.Outcome} {
		if !utf8.ValidString(v) {
			// No stored row holds it (the store keeps text): none match.
			return []AuditRow{}, "", nil
		}
	}
	recs, err := s.auditStore.QueryAudit(storage.AuditQuery{
		TenantID: tenantID, Since: f.Since, Until: f.Until, Before: before,
		ExternalUserID: f.ExternalUserID, ExternalWorkspaceID: f.ExternalWorkspaceID,
		SandboxID: f.SandboxID, SecretID: f.SecretID, Outcome: f.Outcome, Kind: f.Kind,
		Limit: f.Limit + 1,
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]AuditRow, 0, min(len(recs), f.Limit))
	for i := range recs {
		if len(out) == f.Limit {
			last := &recs[i-1]
			return out, encodeCursor(auditTime(last.Time), []byte(last.ID)), nil
		}
		var r AuditRow
		if err := decodeAuditRowFields(recs[i].Data, nil, &r, need); err != nil {
			return nil, "", err
		}
		out = append(out, r)
	}
	return out, "", nil
}

// exportAuditStore is ExportAudit on the backend's audit store: pages of
// auditExportBatch rows in (time, id, tenant) order, each read after the
// last one given.
func (s *Store) exportAuditStore(tenantID string, since time.Time, fn func(AuditRow) error) error {
	return exportAudit(s.auditStore, tenantID, since, fn)
}

// ExportStoredAudit is ExportAudit on a backend that keeps the audit log
// itself (vault/pgstore), without opening the vault: it reads the rows
// the replicas have shipped (a replica's last rows, journaled and not
// shipped yet, are not in it until that replica ships them), needs no
// master key (rows are not sealed) and writes nothing, so it runs beside
// the replicas. A backend that holds no vault is refused, as is one
// without an audit store (open the vault and use ExportAudit there).
func ExportStoredAudit(b storage.Backend, tenantID string, since time.Time, fn func(AuditRow) error) error {
	if since.Year() > 2200 {
		return invalid("since", "out of range")
	}
	var as storage.AuditStore
	err := b.View(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil || meta.Get(metaCanary) == nil {
			return errors.New("vault: the store holds no egressd vault")
		}
		if atx, ok := tx.(storage.AuditTx); ok {
			as = atx.AuditStore()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if as == nil {
		return errors.New("vault: the store keeps no audit table of its own; open the vault to export its audit log")
	}
	return exportAudit(as, tenantID, since, fn)
}

func exportAudit(as storage.AuditStore, tenantID string, since time.Time, fn func(AuditRow) error) error {
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
			var r AuditRow
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
func (s *Store) moveAuditBuckets() error {
	var none bool
	if err := s.backend.View(func(tx storage.Tx) error {
		k, _ := tx.Bucket(bAudit).Cursor().First()
		none = k == nil
		return nil
	}); err != nil || none {
		return err
	}
	for {
		n := 0
		err := s.backend.Update(func(tx storage.Tx) error {
			atx, ok := tx.(storage.AuditTx)
			if !ok {
				return nil
			}
			kb := kvAuditBuckets(tx)
			type old struct {
				k []byte
				r AuditRow
			}
			var olds []old
			var recs []storage.AuditRecord
			c := kb.rows.Cursor()
			for k, v := c.First(); k != nil && len(olds) < auditMoveChunk; k, v = c.Next() {
				var r AuditRow
				if err := decodeAuditRow(v, k, &r); err != nil {
					return fmt.Errorf("vault: audit row %q in the buckets: %w", k, err)
				}
				e, err := r.prepare(s.now)
				if err != nil {
					return fmt.Errorf("vault: audit row %q in the buckets: %w", k, err)
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
			return fmt.Errorf("vault: move the audit rows into the store's audit table: %w", err)
		}
		if n < auditMoveChunk {
			return nil
		}
	}
}

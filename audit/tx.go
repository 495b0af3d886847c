package audit

import (
	"fmt"
	"time"

	"github.com/egressd/egressd/vault/storage"
)

// What runs inside a vault transaction: an admin row written with the
// write it records, and the rows a store copy moves.

// Put writes row in tx, an Update of the backend a Log is opened on (or
// will be): the vault's admin row, which commits with the write it
// records or not at all. now fills an empty ID and a zero Time. A row
// with a bad field fails with ErrInvalid, and the transaction with it.
func Put(tx storage.Tx, row Row, now func() time.Time) error {
	e, err := row.prepare(now)
	if err != nil {
		return err
	}
	b := txAuditBuckets(tx)
	return b.put(&e)
}

// CopyRows copies every audit row of src (its audit store's, srcAS,
// or its buckets') into dtx, in the layout of dtx's store: rows are read
// and written as rows, decoded and encoded again (JSON rows of an older
// file or table come out binary), so a log moves between the buckets and
// a backend's table.
func CopyRows(dtx storage.Tx, src storage.Backend, srcAS storage.AuditStore) error {
	const chunk = 1000
	b := txAuditBuckets(dtx)
	var batch []auditEntry
	flush := func() error {
		defer func() { batch = batch[:0] }()
		if b.atx != nil {
			recs := make([]storage.AuditRecord, len(batch))
			for i := range batch {
				recs[i] = batch[i].rec
			}
			return b.atx.PutAudit(recs)
		}
		for i := range batch {
			if err := b.put(&batch[i]); err != nil {
				return err
			}
		}
		return nil
	}
	add := func(key, val []byte) error {
		var r Row
		if err := decodeAuditRow(val, key, &r); err != nil {
			return fmt.Errorf("audit: copy row: %w", err)
		}
		e, err := r.prepare(time.Now)
		if err != nil {
			return fmt.Errorf("audit: copy row %s: %w", r.ID, err)
		}
		if batch = append(batch, e); len(batch) == chunk {
			return flush()
		}
		return nil
	}
	if srcAS != nil {
		var after storage.AuditPos
		for {
			recs, err := srcAS.ScanAudit("", time.Time{}, after, chunk)
			if err != nil {
				return fmt.Errorf("audit: copy rows: %w", err)
			}
			for i := range recs {
				if err := add(nil, recs[i].Data); err != nil {
					return err
				}
			}
			if len(recs) < chunk {
				break
			}
			last := &recs[len(recs)-1]
			after = storage.AuditPos{Time: last.Time, ID: last.ID, Tenant: last.TenantID}
		}
	} else if err := src.View(func(stx storage.Tx) error {
		if rows := stx.Bucket(bAudit); rows != nil {
			return rows.ForEach(add)
		}
		return nil
	}); err != nil {
		return err
	}
	return flush()
}
